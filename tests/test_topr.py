"""Tests for topr.py: gradients against hand-derived formulas, stop-gradient, padding,
p_eff and its inverse, PPO clipping, the tapered objective, curation, input errors. Fast and seeded."""
import json
import itertools
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import topr  # noqa: E402

B = 48


def make_batch(seed=0, B=B, dtype=torch.float64):
    """Random off-policy batch: ratios in [e^-2, e^2] and rewards +-1, every (sign, side of 1) present."""
    g = torch.Generator().manual_seed(seed)
    logp = (-1 - 20 * torch.rand(B, generator=g, dtype=dtype)).requires_grad_()
    log_ratio = 4 * torch.rand(B, generator=g, dtype=dtype) - 2
    logp_behavior = logp.detach() - log_ratio
    reward = torch.where(torch.rand(B, generator=g) < 0.4, 1.0, -1.0).to(dtype)
    lengths = torch.randint(1, 30, (B,), generator=g)
    rho = log_ratio.exp()
    for sign in (1.0, -1.0):
        m = reward == sign
        assert (m & (rho < 1)).any() and (m & (rho > 1)).any()
    return logp, logp_behavior, reward, lengths


def baselines(reward, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    return {"zero": 0.0, "const+": 0.3, "const-": -0.5,
            "group": topr.group_baseline(reward, 4),
            "per_sample": (2 * torch.rand(reward.shape, generator=g, dtype=reward.dtype) - 1)}


MAX_LEN = 48  # the constant normaliser of the tests


def normaliser(lengths, length_norm, dtype):
    """L_i by hand: the sequence's own length, one constant for all, or 1."""
    return {"sequence": lengths.to(dtype), "constant": torch.full(lengths.shape, MAX_LEN, dtype=dtype),
            "none": torch.ones(lengths.shape, dtype=dtype)}[length_norm]


def hand_grad(logp, logp_behavior, reward, baseline, lengths, length_norm, pos_limits, neg_limits):
    """By hand: d loss / d logp_i = - alpha_i A_i / (B L_i), alpha_i a constant."""
    A = reward - baseline
    rho = torch.exp(logp.detach() - logp_behavior)
    alpha = torch.where(A >= 0, rho.clamp(*pos_limits), rho.clamp(*neg_limits))
    return -alpha * A / (len(A) * normaliser(lengths, length_norm, A.dtype))


def grad_of(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


# -----------------------------------------------------------------------------
# gradients equal the hand-derived formula

@pytest.mark.parametrize("name", list(topr.PRESETS))
@pytest.mark.parametrize("length_norm", topr.LENGTH_NORMS)
@pytest.mark.parametrize("seed,bname", list(enumerate(["zero", "const+", "const-", "group", "per_sample"])))
def test_preset_gradient_matches_formula(name, length_norm, seed, bname):
    logp, logp_behavior, reward, lengths = make_batch(seed=100 + seed)
    baseline = baselines(reward)[bname]
    loss, rows = topr.topr_loss(logp, logp_behavior, reward, name=name, baseline=baseline,
                                 lengths=lengths, length_norm=length_norm, max_len=MAX_LEN)
    stats = topr.summarize(rows)
    preset = topr.PRESETS[name]
    c = preset.get("baseline", baseline)  # sft_pos overrides the baseline with c = -1
    want = hand_grad(logp, logp_behavior, reward, c, lengths, length_norm,
                     preset["pos_limits"], preset["neg_limits"])
    torch.testing.assert_close(grad_of(loss, logp), want, rtol=1e-10, atol=1e-12)
    # the loss value is the surrogate -mean alpha A logp / L
    torch.testing.assert_close(loss.detach(), (want * logp.detach()).sum())


def test_custom_limits_gradient_matches_formula():
    logp, logp_behavior, reward, lengths = make_batch(seed=7)
    for pos_limits, neg_limits in [((0.5, 2.0), (0.2, 1.5)), ((0.0, math.inf), (1.0, 1.0)), ((1.0, 3.0), (0.0, 0.5))]:
        loss, _ = topr.truncated_is_loss(logp, logp_behavior, reward, pos_limits=pos_limits,
                                         neg_limits=neg_limits, baseline=0.1, lengths=lengths)
        want = hand_grad(logp, logp_behavior, reward, 0.1, lengths, "sequence", pos_limits, neg_limits)
        torch.testing.assert_close(grad_of(loss, logp), want)


# d loss / d logp for rho = [0.5, 3, 0.5, 3], R = [+1, +1, -1, -1], c = 0, L = 1, B = 4: -w A / 4 with w from
# the table of presets (sft_pos: A = R + 1; ppo eps 0.2: weight rho, or 0 where the clip is active)
EXPLICIT = {
    "topr":      ([1.0, 1.0, 0.5, 1.0], [1, 1, -1, -1]),
    "reinforce": ([1.0, 1.0, 1.0, 1.0], [1, 1, -1, -1]),
    "tis":       ([0.5, 1.0, 0.5, 1.0], [1, 1, -1, -1]),
    "is":        ([0.5, 3.0, 0.5, 3.0], [1, 1, -1, -1]),
    "sft_pos":   ([1.0, 1.0, 1.0, 1.0], [2, 2, 0, 0]),
    "neg_only":  ([1.0, 1.0, 0.5, 1.0], [0, 0, -2, -2]),
    "ppo":       ([0.5, 0.0, 0.0, 3.0], [1, 1, -1, -1]),
}


@pytest.mark.parametrize("name", topr.LOSSES)
def test_explicit_weights_per_loss(name):
    logp = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    rho = torch.tensor([0.5, 3.0, 0.5, 3.0], dtype=torch.float64)
    reward = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    loss, _ = topr.topr_loss(logp, logp.detach() - rho.log(), reward, name, length_norm="none")
    w, A = (torch.tensor(v, dtype=torch.float64) for v in EXPLICIT[name])
    torch.testing.assert_close(grad_of(loss, logp), -w * A / 4)


def test_presets_match_design_table():
    assert topr.PRESETS["topr"] == dict(pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0))
    assert topr.PRESETS["reinforce"] == dict(pos_limits=(1.0, 1.0), neg_limits=(1.0, 1.0))
    assert topr.PRESETS["tis"] == dict(pos_limits=(0.0, 1.0), neg_limits=(0.0, 1.0))
    assert topr.PRESETS["is"] == dict(pos_limits=(0.0, math.inf), neg_limits=(0.0, math.inf))
    assert topr.PRESETS["sft_pos"] == dict(pos_limits=(1.0, 1.0), neg_limits=(1.0, 1.0), baseline=-1.0)
    assert topr.PRESETS["neg_only"] == dict(pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0), baseline=1.0)


def test_zero_advantage_counts_as_positive():
    """A = 0 (a group whose samples all share one reward) is 'positive' (A >= 0) and gets no gradient."""
    logp, logp_behavior, reward, lengths = make_batch(seed=1)
    reward[:4] = -1.0
    baseline = topr.group_baseline(reward, 4)
    loss, rows = topr.topr_loss(logp, logp_behavior, reward, "topr", baseline, lengths)
    stats = topr.summarize(rows)
    A = reward - baseline
    assert stats["n_pos"] == int((A >= 0).sum()) and stats["n_neg"] == int((A < 0).sum())
    assert torch.all(grad_of(loss, logp)[:4] == 0)
    assert stats["logp_reward_neg"] == pytest.approx(logp.detach()[reward < 0].mean().item())


def test_topr_explicit_weights():
    """TOPR spelled out: positives weight exactly A, negatives clip(rho, 0, 1) * A (paper Eq. 8)."""
    logp = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    log_ratio = torch.tensor([math.log(0.5), math.log(3.0), math.log(0.5), math.log(3.0)], dtype=torch.float64)
    reward = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    loss, rows = topr.topr_loss(logp, logp - log_ratio.detach(), reward, length_norm="none")
    stats = topr.summarize(rows)
    torch.testing.assert_close(grad_of(loss, logp), -torch.tensor([1.0, 1.0, -0.5, -1.0], dtype=torch.float64) / 4)
    assert stats["n_pos"] == 2 and stats["n_neg"] == 2
    assert stats["frac_neg_alpha_lt1"] == 0.5
    assert stats["frac_neg_ratio_lt1"] == 0.5  # the same for any loss: sft_pos has no negatives by A
    sft_pos = topr.topr_loss(logp, logp - log_ratio.detach(), reward, "sft_pos", length_norm="none")[1]
    assert topr.summarize(sft_pos)["frac_neg_ratio_lt1"] == 0.5
    assert stats["mean_alpha"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert stats["mean_ratio_neg"] == pytest.approx(1.75)
    assert stats["frac_clipped"] == pytest.approx(3 / 4)  # 0.5 and 3.0 truncated for positives, 3.0 for neg
    json.dumps(stats)  # json-ready python scalars


def test_sft_pos_ignores_negatives_and_baseline():
    logp, logp_behavior, reward, lengths = make_batch(seed=3)
    g = grad_of(topr.topr_loss(logp, logp_behavior, reward, "sft_pos", baseline=0.7, lengths=lengths)[0], logp)
    assert torch.all(g[reward < 0] == 0)
    torch.testing.assert_close(g[reward > 0], -2.0 / (B * lengths[reward > 0].double()))  # A = 1 - (-1)


def test_on_policy_presets_agree():
    logp, _, reward, lengths = make_batch(seed=11)
    for baseline in (0.0, 0.3, topr.group_baseline(reward, 4)):
        grads = {name: grad_of(topr.topr_loss(logp, logp.detach(), reward, name, baseline, lengths)[0], logp)
                 for name in ["topr", "reinforce", "tis", "is", "ppo"]}
        for name, g in grads.items():
            torch.testing.assert_close(g, grads["reinforce"], rtol=0, atol=1e-15, msg=name)
        A = reward - baseline
        torch.testing.assert_close(grads["topr"], -A / (B * lengths.double()))


# -----------------------------------------------------------------------------
# stop-gradient on the ratio weight

@pytest.mark.parametrize("name", topr.LOSSES)
def test_no_gradient_through_behavior_logp(name):
    logp, logp_behavior, reward, lengths = make_batch(seed=5)
    logp_behavior = logp_behavior.clone().requires_grad_()
    baseline = topr.group_baseline(reward, 4).requires_grad_()
    loss, _ = topr.topr_loss(logp, logp_behavior, reward, name, baseline=baseline, lengths=lengths)
    g_logp, g_beh, g_base = torch.autograd.grad(loss, [logp, logp_behavior, baseline], allow_unused=True)
    assert g_beh is None or torch.all(g_beh == 0)
    assert g_base is None or torch.all(g_base == 0)
    if name != "ppo":  # alpha is a constant: gradient = -alpha A / (B L), not -(alpha + alpha logp) A / (B L)
        p = topr.PRESETS[name]
        want = hand_grad(logp, logp_behavior.detach(), reward, p.get("baseline", baseline.detach()), lengths,
                         "sequence", p["pos_limits"], p["neg_limits"])
        torch.testing.assert_close(g_logp, want)


# -----------------------------------------------------------------------------
# padding

@pytest.mark.parametrize("name", topr.LOSSES)
def test_padding_contributes_nothing(name):
    g = torch.Generator().manual_seed(2)
    Bp, T = 8, 12
    lengths = torch.randint(1, T + 1, (Bp,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    tok = (-3 * torch.rand(Bp, T, generator=g, dtype=torch.float64))
    tok_beh = tok + 0.3 * torch.randn(Bp, T, generator=g, dtype=torch.float64)
    reward = torch.tensor([1.0, -1.0] * (Bp // 2), dtype=torch.float64)

    def run(pad_value):
        t = torch.where(mask, tok, torch.full_like(tok, pad_value)).requires_grad_()
        tb = torch.where(mask, tok_beh, torch.full_like(tok, pad_value))
        logp = topr.sequence_logp(t, mask)
        loss, _ = topr.topr_loss(logp, topr.sequence_logp(tb, mask), reward, name, lengths=lengths)
        return loss.detach(), grad_of(loss, t)

    loss0, g0 = run(0.0)
    for pad in (-1e4, 7.0, float("nan"), -float("inf")):
        loss1, g1 = run(pad)
        assert torch.equal(loss0, loss1) and torch.equal(g0, g1)
    assert torch.all(g0[~mask] == 0)
    # every real token of sequence i gets the sequence's gradient -w_i A_i / (B L_i)
    for i in range(Bp):
        assert torch.allclose(g0[i, mask[i]], g0[i, mask[i]][0].expand(int(lengths[i])))


def test_sequence_logp_sums_real_tokens():
    tok = torch.tensor([[-1.0, -2.0, -5.0], [-0.5, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(topr.sequence_logp(tok, mask), torch.tensor([-3.0, -0.5]))


# -----------------------------------------------------------------------------
# PPO

def test_ppo_clipping():
    eps = 0.2
    rho = torch.tensor([0.5, 0.9, 1.1, 1.5, 0.5, 0.9, 1.1, 1.5], dtype=torch.float64)
    reward = torch.tensor([1.0] * 4 + [-1.0] * 4, dtype=torch.float64)
    lengths = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    logp = torch.full((8,), -4.0, dtype=torch.float64, requires_grad=True)
    logp_behavior = logp.detach() - rho.log()
    for ln in topr.LENGTH_NORMS:
        loss, rows = topr.ppo_loss(logp, logp_behavior, reward, eps=eps, lengths=lengths, length_norm=ln,
                                    max_len=MAX_LEN)
        stats = topr.summarize(rows)
        g = grad_of(loss, logp)
        L = normaliser(lengths, ln, torch.float64)
        unclipped = -rho * reward / (8 * L)             # d/dlogp of -rho A / (B L): rho carries the gradient
        active = torch.tensor([0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.bool)  # A>0 & rho>1+eps; A<0 & rho<1-eps
        assert torch.all(g[active] == 0)
        torch.testing.assert_close(g[~active], unclipped[~active])
        obj = torch.minimum(rho * reward, rho.clamp(1 - eps, 1 + eps) * reward) / L
        assert loss.item() == pytest.approx(-obj.mean().item())
        assert stats["frac_clipped"] == pytest.approx(2 / 8)
    # the baseline shifts A for ppo too
    loss, _ = topr.ppo_loss(logp, logp_behavior, reward, baseline=0.5, lengths=lengths, length_norm="none")
    g = grad_of(loss, logp)
    assert g[1].item() == pytest.approx(-0.9 * 0.5 / 8)


# -----------------------------------------------------------------------------
# tapered objective

@pytest.mark.parametrize("a,b", [(0.0, 1.0), (1.0, 1.0), (0.5, 2.0), (0.0, math.inf), (1.0, math.inf), (0.2, 0.2)])
def test_tapered_shape_and_continuity(a, b):
    rho = torch.logspace(-3, 3, 601, dtype=torch.float64)
    T = topr.tapered(rho, a, b)
    inside = (rho >= a) & (rho <= b)
    torch.testing.assert_close(T[inside], rho[inside])
    for k in (a, b):
        if 0 < k < math.inf:
            lo, hi = topr.tapered(torch.tensor([k * (1 - 1e-9), k * (1 + 1e-9)], dtype=torch.float64), a, b)
            assert abs(lo - k) < 1e-8 and abs(hi - k) < 1e-8
    assert torch.all(T[1:] > T[:-1])  # increasing
    # dT/dlogp = rho T'(rho) = clip(rho, a, b): the TOPR weight
    log_rho = rho.log().requires_grad_()
    T2 = topr.tapered(log_rho.exp(), a, b, log_ratio=log_rho)
    torch.testing.assert_close(grad_of(T2.sum(), log_rho), rho.clamp(a, b))
    torch.testing.assert_close(T2.detach(), T)


def test_tapered_special_cases():
    rho = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    torch.testing.assert_close(topr.tapered(rho, 1.0, 1.0), 1 + rho.log())  # topr positives: 1 + log rho
    torch.testing.assert_close(topr.tapered(rho, 0.0, math.inf), rho)      # full IS
    torch.testing.assert_close(topr.tapered(rho, 0.0, 1.0), torch.where(rho > 1, 1 + rho.log(), rho))


@pytest.mark.parametrize("name", list(topr.PRESETS))
def test_tapered_objective_gradient_equals_loss_gradient(name):
    logp, logp_behavior, reward, lengths = make_batch(seed=13)
    baseline = topr.group_baseline(reward, 4)
    loss, rows = topr.topr_loss(logp, logp_behavior, reward, name, baseline=baseline, lengths=lengths)
    stats = topr.summarize(rows)
    p = topr.PRESETS[name]
    A = reward - p.get("baseline", baseline)
    rho = torch.exp(logp - logp_behavior)  # with gradient this time
    T = torch.where(A >= 0, topr.tapered(rho, *p["pos_limits"]), topr.tapered(rho, *p["neg_limits"]))
    J = (A * T / lengths.double()).mean()
    assert stats["objective"] == pytest.approx(J.item(), rel=1e-9)
    torch.testing.assert_close(grad_of(-J, logp), grad_of(loss, logp))


def test_huge_log_ratios_stay_finite():
    logp = torch.tensor([-10.0, -10.0, -10.0, -10.0], requires_grad=True)
    log_ratio = torch.tensor([200.0, -200.0, 200.0, -200.0])  # e^200 overflows float32
    reward = torch.tensor([1.0, 1.0, -1.0, -1.0])
    for name in ["topr", "reinforce", "tis", "sft_pos"]:
        loss, rows = topr.topr_loss(logp, logp.detach() - log_ratio, reward, name, length_norm="none")
        stats = topr.summarize(rows)
        g = grad_of(loss, logp)
        assert torch.isfinite(loss) and torch.all(torch.isfinite(g)) and math.isfinite(stats["objective"])
    loss, _ = topr.topr_loss(logp, logp.detach() - log_ratio, reward, "topr", length_norm="none")
    torch.testing.assert_close(grad_of(loss, logp), torch.tensor([-1.0, -1.0, 1.0, 0.0]) / 4)
    # ppo: clipped branches (A>0 & rho huge, A<0 & rho tiny) give exactly 0, not 0 * inf = nan; A<0 with
    # rho = e^200 is PPO's unbounded negative weight (rho A): +inf in float32, inherent, not a bug here
    loss, _ = topr.ppo_loss(logp, logp.detach() - log_ratio, reward, length_norm="none")
    g = grad_of(loss, logp)
    assert g[0] == 0 and g[3] == 0 and torch.isfinite(g[1]) and g[2] > 0


# -----------------------------------------------------------------------------
# baseline and dataset composition

def test_effective_pos_fraction_hand_cases():
    for p in (0.01, 0.1, 0.44, 0.9, 1.0):
        assert topr.effective_pos_fraction(p, -1.0) == pytest.approx(1.0)   # c = -1: SFT on positives
        assert topr.effective_pos_fraction(p, 0.0) == pytest.approx(p)
    for p in (0.0, 0.1, 0.9):
        assert topr.effective_pos_fraction(p, 1.0) == pytest.approx(0.0)
    # p = 0.5, c = 0.5: positives weight 0.5, negatives 1.5 -> 0.25
    assert topr.effective_pos_fraction(0.5, 0.5) == pytest.approx(0.25)
    # direct count: weight p(1-c) on positives, (1-p)(1+c) on negatives
    p, c = 0.3, -0.4
    assert topr.effective_pos_fraction(p, c) == pytest.approx(p * (1 - c) / (p * (1 - c) + (1 - p) * (1 + c)))
    with pytest.raises(ValueError):
        topr.effective_pos_fraction(1.5, 0.0)
    with pytest.raises(ValueError):
        topr.effective_pos_fraction(0.5, 2.0)


def test_baseline_inverse_round_trips():
    grid = [0.02, 0.1, 0.2, 0.44, 0.5, 0.7, 0.95]
    for p in grid:
        assert topr.baseline_for_pos_fraction(p, p) == pytest.approx(0.0, abs=1e-12)
        for p_eff in grid:
            c = topr.baseline_for_pos_fraction(p, p_eff)
            assert -1 < c < 1
            assert topr.effective_pos_fraction(p, c) == pytest.approx(p_eff, rel=1e-10)
    for bad in [(0.0, 0.2), (1.0, 0.2), (0.5, 0.0), (0.5, 1.0), (-0.1, 0.5)]:
        with pytest.raises(ValueError, match="must be in"):
            topr.baseline_for_pos_fraction(*bad)


def test_group_baseline():
    reward = torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(topr.group_baseline(reward, 4), torch.tensor([-0.5] * 4 + [1.0] * 4))
    with pytest.raises(ValueError):
        topr.group_baseline(reward, 3)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.2, 0.5, 0.8, 1.0])
def test_curate_hits_target(target):
    g = torch.Generator().manual_seed(0)
    reward = torch.where(torch.rand(1000, generator=g) < 0.4, 1.0, -1.0)
    n_pos, n_neg = int((reward > 0).sum()), int((reward < 0).sum())
    idx = topr.curate(reward, target, generator=torch.Generator().manual_seed(1))
    assert idx.dtype == torch.long and len(idx.unique()) == len(idx) and torch.all(idx[1:] > idx[:-1])
    kept = reward[idx]
    k_pos, k_neg = int((kept > 0).sum()), int((kept < 0).sum())
    assert abs(k_pos / len(idx) - target) <= 1 / len(idx)
    # the under-represented side is kept whole
    if target < n_pos / 1000:
        assert k_neg == n_neg
    else:
        assert k_pos == n_pos
    # deterministic given the generator
    again = topr.curate(reward, target, generator=torch.Generator().manual_seed(1))
    assert torch.equal(idx, again)


def test_curate_errors():
    with pytest.raises(ValueError):
        topr.curate(torch.tensor([-1.0, -1.0]), 0.2)
    with pytest.raises(ValueError):
        topr.curate(torch.tensor([1.0, -1.0]), 1.5)


# -----------------------------------------------------------------------------
# input errors and API

def test_unknown_loss_name():
    logp, logp_behavior, reward, lengths = make_batch()
    with pytest.raises(ValueError, match=r"unknown loss 'grpo'; choose from topr, reinforce, tis, is, sft_pos, neg_only, ppo"):
        topr.topr_loss(logp, logp_behavior, reward, name="grpo", lengths=lengths)


def test_bad_inputs():
    logp, logp_behavior, reward, lengths = make_batch()
    with pytest.raises(ValueError, match="needs lengths"):
        topr.topr_loss(logp, logp_behavior, reward)
    with pytest.raises(ValueError, match="needs max_len"):
        topr.topr_loss(logp, logp_behavior, reward, length_norm="constant")
    with pytest.raises(ValueError, match="unknown length_norm"):
        topr.topr_loss(logp, logp_behavior, reward, lengths=lengths, length_norm="per_token")
    with pytest.raises(ValueError, match="must all be"):
        topr.topr_loss(logp, logp_behavior[:-1], reward, lengths=lengths)
    with pytest.raises(ValueError, match="0 <= a <= b"):
        topr.truncated_is_loss(logp, logp_behavior, reward, pos_limits=(2.0, 1.0), lengths=lengths)


def test_api_and_stats_keys():
    assert set(topr.PRESETS) == {"topr", "reinforce", "tis", "is", "sft_pos", "neg_only"}
    assert topr.LOSSES == ["topr", "reinforce", "tis", "is", "sft_pos", "neg_only", "ppo"]
    logp, logp_behavior, reward, lengths = make_batch()
    keys = None
    for name in topr.LOSSES:
        _, rows = topr.topr_loss(logp, logp_behavior, reward, name, lengths=lengths)
        stats = topr.summarize(rows)
        json.dumps(stats)
        assert all(isinstance(v, (int, float)) for v in stats.values())
        keys = keys or set(stats)
        assert set(stats) == keys  # same keys for every loss: the RL loop logs them uniformly
    for k in ["loss", "objective", "mean_alpha", "frac_neg_alpha_lt1", "mean_ratio", "logp_pos", "logp_neg",
              "n_pos", "n_neg"]:
        assert k in keys


# -----------------------------------------------------------------------------
# On-policy: one expected gradient for every constant baseline; the variance decides (exact, no sampling)
# (no length normalisation here; under per-sequence length normalisation see the tabular tests below)
#
# A categorical policy pi = softmax(theta) over M "completions" with rewards +-1. For each method the
# per-sample gradient estimator g is -grad_theta of topr_loss on the sampled batch (rho = 1: on-policy).
# Its mean and total variance E||g - E g||^2 are sums over every possible batch, weighted by its probability.

def exact_moments(theta, reward, name, baseline=0.0, k=1):
    """Exact (E[g], E||g - E[g]||^2) of the gradient of topr_loss on a batch of k samples y_i ~ pi."""
    M = len(theta)
    pi = torch.softmax(theta, 0)
    mean, second = torch.zeros(M, dtype=torch.float64), 0.0
    for ys in itertools.product(range(M), repeat=k):
        th = theta.clone().requires_grad_()
        logp = torch.log_softmax(th, 0)[list(ys)]
        r = reward[list(ys)]
        c = topr.group_baseline(r, k) if baseline == "group" else baseline
        loss, _ = topr.topr_loss(logp, logp.detach(), r, name, baseline=c, length_norm="none")
        g = -torch.autograd.grad(loss, th)[0]
        prob = torch.prod(pi[list(ys)]).item()
        mean += prob * g
        second += prob * (g @ g).item()
    return mean, second - (mean @ mean).item()


ESTIMATORS = {  # name -> (topr preset, baseline, group size k, expected factor in front of E[R grad log pi])
    "sft_pos": ("sft_pos", 0.0, 1, 1.0),
    "reinforce c=0": ("reinforce", 0.0, 1, 1.0),
    "reinforce c=0.5": ("reinforce", 0.5, 1, 1.0),
    "neg_only": ("neg_only", 0.0, 1, 1.0),
    "group mean, k=3": ("reinforce", "group", 3, 2 / 3),  # A_i = R_i - mean_j R_j: (k-1)/k of R_i's weight
}


@pytest.mark.parametrize("probs, reward", [
    ([0.05, 0.9, 0.03, 0.02], [1.0, -1.0, -1.0, -1.0]),
    ([0.5, 0.2, 0.2, 0.1], [1.0, -1.0, 1.0, -1.0]),
])
def test_on_policy_expected_gradients_are_parallel(probs, reward):
    """E[(R - c) grad log pi] = E[R grad log pi] for any constant c, because E_pi[grad log pi] = 0:
    sft_pos (c=-1), reinforce (c=0, 0.5), neg_only (c=+1) have the same expected gradient exactly; the
    group-mean baseline (which includes the sample itself) scales it by (k-1)/k."""
    theta = torch.tensor(probs, dtype=torch.float64).log()
    reward = torch.tensor(reward, dtype=torch.float64)
    pi = torch.softmax(theta, 0)
    policy_gradient = (pi * reward) - pi * (pi @ reward)  # E[R (e_y - pi)], by hand
    for label, (name, c, k, factor) in ESTIMATORS.items():
        mean, _ = exact_moments(theta, reward, name, c, k)
        torch.testing.assert_close(mean, factor * policy_gradient, rtol=1e-10, atol=1e-12, msg=label)
    assert policy_gradient.norm() > 0.01


# The same expectations for sequences of different lengths, under each --length-norm. A tabular
# autoregressive policy over the tokens {a, b, EOS} with at most 3 tokens: each prefix has its own
# logits, a completion ends at EOS (counted in its length, as in train.py) or after 3 tokens.
# Enumerating every completion gives exact expectations: no sampling.

def tabular_completions():
    """[(tokens, prefix rows)]: every completion and, for each of its tokens, the row of its prefix."""
    prefixes = [()] + [(t,) for t in (0, 1)] + [(t, u) for t in (0, 1) for u in (0, 1)]
    row = {p: i for i, p in enumerate(prefixes)}
    out = []
    def walk(seq):
        for t in (0, 1, 2):  # 2 = EOS
            y = seq + (t,)
            if t == 2 or len(y) == 3:
                out.append((y, [row[y[:i]] for i in range(len(y))]))
            else:
                walk(y)
    walk(())
    return out, len(prefixes)


def exact_mean_gradient(theta, completions, reward, name, c, length_norm):
    """E_pi[g] over every completion y (one sample, rho = 1), g = -grad_theta topr_loss(y)."""
    mean = torch.zeros_like(theta)
    for (y, rows), r in zip(completions, reward):
        th = theta.clone().requires_grad_()
        logp = torch.log_softmax(th, 1)[rows, list(y)].sum().reshape(1)     # log pi(y) = sum_t log pi(y_t | y_<t)
        loss, _ = topr.topr_loss(logp, logp.detach(), r.reshape(1), name, baseline=c,
                                 lengths=torch.tensor([float(len(y))]), length_norm=length_norm, max_len=MAX_LEN)
        mean += logp.exp().detach() * -torch.autograd.grad(loss, th)[0]
    return mean


@pytest.mark.parametrize("length_norm", topr.LENGTH_NORMS)
def test_on_policy_baselines_and_length_normalisation(length_norm):
    """sft_pos (c = -1), reinforce (c = 0, 0.5) and neg_only (c = +1) on sequences of 1 to 3 tokens.
    'constant' and 'none': one expected gradient for every c. 'sequence' (divide by the sequence's own
    length L): E[g_c] = E[g_0] - c grad E_pi[1/L], with grad E_pi[1/L] computed on its own, by autograd."""
    completions, n_prefixes = tabular_completions()
    theta = torch.randn(n_prefixes, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reward = torch.tensor([1.0 if y[0] == 0 and len(y) < 3 else -1.0 for y, _ in completions], dtype=torch.float64)
    th = theta.clone().requires_grad_()
    probs = torch.stack([torch.log_softmax(th, 1)[rows, list(y)].sum() for y, rows in completions]).exp()
    assert torch.isclose(probs.sum(), torch.tensor(1.0, dtype=torch.float64))  # every completion enumerated
    inv_len = torch.tensor([1.0 / len(y) for y, _ in completions], dtype=torch.float64)
    grad_inv_len = torch.autograd.grad(probs @ inv_len, th)[0]                  # grad E_pi[1/L]
    assert grad_inv_len.norm() > 0.01                                           # lengths depend on theta
    g0 = exact_mean_gradient(theta, completions, reward, "reinforce", 0.0, length_norm)
    assert g0.norm() > 1e-3  # (constant: divided by MAX_LEN)
    for name, c in (("sft_pos", -1.0), ("reinforce", 0.5), ("neg_only", 1.0)):
        g = exact_mean_gradient(theta, completions, reward, name, c if name == "reinforce" else 0.0, length_norm)
        if length_norm == "sequence":
            torch.testing.assert_close(g, g0 - c * grad_inv_len, rtol=1e-10, atol=1e-12, msg=name)
            assert (g - g0).norm() > 0.01 * abs(c)                              # the bias is not negligible here
        else:
            torch.testing.assert_close(g, g0, rtol=1e-10, atol=1e-12, msg=name)


def test_on_policy_variance_ordering_flips_with_the_error_pattern():
    """A confident, systematic error (a binary choice: the wrong answer holds 0.95, the right one 0.05):
    learning from the negatives has hundreds of times less variance than learning from the rare positives.
    Diffuse errors (the right answer holds 0.5, the rest is spread over 15 different wrong strings): the
    positives win. (A few rare extra wrong strings next to the wrong mode already erase neg_only's edge:
    each one is a large, noisy push; exercise 14 explores this.)"""
    concentrated = torch.tensor([0.05, 0.95], dtype=torch.float64)
    diffuse = torch.tensor([0.5] + [0.5 / 15] * 15, dtype=torch.float64)
    var = {}
    for case, probs in (("concentrated", concentrated), ("diffuse", diffuse)):
        reward = -torch.ones(len(probs), dtype=torch.float64)
        reward[0] = 1.0
        for name in ("sft_pos", "neg_only", "reinforce"):
            var[case, name] = exact_moments(probs.log(), reward, name)[1]
    assert var["concentrated", "neg_only"] < var["concentrated", "sft_pos"] / 100
    assert var["diffuse", "sft_pos"] < var["diffuse", "neg_only"] / 4
    # reinforce (c = 0) spreads the weight over both and sits in between in both cases
    for case in ("concentrated", "diffuse"):
        lo, hi = sorted([var[case, "sft_pos"], var[case, "neg_only"]])
        assert lo < var[case, "reinforce"] < hi


@pytest.mark.parametrize("name", topr.LOSSES)
def test_summarize_micro_batches_equals_the_whole_batch(name):
    """A training step computes the loss per micro-batch and summarizes the concatenated rows once: the
    statistics equal those of the whole batch in one call (the loss to float rounding of its mean)."""
    logp, logp_behavior, reward, lengths = make_batch(seed=11)
    _, whole = topr.topr_loss(logp, logp_behavior, reward, name, lengths=lengths)
    parts = [topr.topr_loss(logp[s], logp_behavior[s], reward[s], name, lengths=lengths[s])[1]
             for s in (slice(0, 3), slice(3, None))]
    joined = {k: torch.cat([p[k] for p in parts]) for k in whole}
    a, b = topr.summarize(whole), topr.summarize(joined)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15, nan_ok=True), k


# -----------------------------------------------------------------------------
# 5. token-level credit: the group's prefix tree, and the loss with per-token advantages

def _adv(completions, reward, k):
    return [a.tolist() for a in topr.prefix_tree_advantages(completions, torch.tensor(reward), k)]


def test_prefix_tree_advantages_on_a_hand_built_tree():
    # V() = 0; V(1) = (1 - 1 + 1)/3; V(1,2) = 0; leaves = their rewards
    adv = _adv([[1, 2, 3], [1, 2, 4], [1, 5], [6]], [1.0, -1.0, 1.0, -1.0], 4)
    expected = [[1 / 3, -1 / 3, 1.0], [1 / 3, -1 / 3, -1.0], [1 / 3, 2 / 3], [-1.0]]
    for a, e in zip(adv, expected):
        assert a == pytest.approx(e, abs=1e-15)


def test_prefix_tree_groups_single_samples_equal_rewards_and_ties():
    # groups are independent: the same tree in two groups of 2, and a group of 1 gets nothing
    assert _adv([[1, 2], [1, 3], [1, 2], [1, 3]], [1.0, -1.0, -1.0, 1.0], 2) == [[0.0, 1.0], [0.0, -1.0],
                                                                                  [0.0, -1.0], [0.0, 1.0]]
    assert _adv([[4, 5, 6]], [1.0], 1) == [[0.0, 0.0, 0.0]]
    assert _adv([[1, 2], [3], [1, 4]], [-1.0, -1.0, -1.0], 3) == [[0.0, 0.0], [0.0], [0.0, 0.0]]
    # identical completions (a tie) share their node: V(1,2) = 1, V(1) = 1/3 = V()
    adv = _adv([[1, 2], [1, 2], [1, 3]], [1.0, 1.0, -1.0], 3)
    assert adv[0] == adv[1] == pytest.approx([0.0, 2 / 3]) and adv[2] == pytest.approx([0.0, -4 / 3])
    # identical completions with different rewards: their advantages cannot tell them apart (sum 0, not R - mean)
    assert _adv([[7], [7]], [1.0, -1.0], 2) == [[0.0], [0.0]]


def test_a_wrong_operator_followed_by_forced_arithmetic_gets_all_the_credit_on_the_operator():
    right, shortcut = list(b"7+3=10"), list(b"7-3=4")  # bytes as token ids
    adv = _adv([right, shortcut, shortcut, right], [1.0, -1.0, -1.0, 1.0], 4)
    assert adv[1][1] == -1.0 and adv[0][1] == 1.0               # the operator: V(7-) - V(7) = -1 - 0
    assert all(a == 0.0 for i, a in enumerate(adv[1]) if i != 1)  # the arithmetic after it: nothing
    assert adv[0] == adv[3] and adv[1] == adv[2]


def test_prefix_tree_advantages_telescope_to_reward_minus_group_mean():
    g = torch.Generator().manual_seed(0)
    k, comps = 8, []
    for _ in range(5 * k):  # short sequences over 3 tokens (many shared prefixes), each ending in EOS (9)
        comps.append(torch.randint(0, 3, (int(torch.randint(0, 4, (1,), generator=g)),), generator=g).tolist() + [9])
    reward = [float(hash(tuple(c)) % 2 * 2 - 1) for c in comps]  # a deterministic function of the completion
    for i, a in enumerate(_adv(comps, reward, k)):
        mean = sum(reward[i // k * k:(i // k + 1) * k]) / k
        assert len(a) == len(comps[i]) and sum(a) == pytest.approx(reward[i] - mean, abs=1e-12)
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        topr.prefix_tree_advantages(comps[:4], torch.ones(4), 3)


def _token_batch(seed=0, B=12, T=6):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    token_logp = (-3 * torch.rand(B, T, generator=g, dtype=torch.float64)).requires_grad_()
    token_logp_b = token_logp.detach() + 0.8 * torch.randn(B, T, generator=g, dtype=torch.float64)
    reward = torch.where(torch.rand(B, generator=g) < 0.5, 1.0, -1.0).double()
    return token_logp, mask, token_logp_b, reward, lengths


@pytest.mark.parametrize("name", ["topr", "reinforce", "tis", "is"])
@pytest.mark.parametrize("length_norm", topr.LENGTH_NORMS)
def test_token_credit_with_one_advantage_per_sequence_is_the_sequence_loss(name, length_norm):
    token_logp, mask, token_logp_b, reward, lengths = _token_batch()
    c = 0.3
    logp_b = topr.sequence_logp(token_logp_b, mask)
    adv = ((reward - c)[:, None] * mask).double()
    kw = dict(lengths=lengths, length_norm=length_norm, max_len=6)
    loss, rows = topr.token_credit_loss(token_logp, mask, logp_b, reward, adv, name=name, **kw)
    (grad,) = torch.autograd.grad(loss, token_logp)
    ref, ref_rows = topr.topr_loss(topr.sequence_logp(token_logp, mask), logp_b, reward, name=name, baseline=c, **kw)
    (ref_grad,) = torch.autograd.grad(ref, token_logp)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    # the same statistics, except two that token credit defines per token: a sample's advantage is the SUM of
    # its tokens' (L_i (R - c) here) and the objective is the surrogate (the taper has no per-token form)
    stats, ref_stats = (topr.summarize(r) for r in (rows, ref_rows))
    for key in ("objective", "mean_adv"):
        stats.pop(key), ref_stats.pop(key)
    assert stats == pytest.approx(ref_stats, nan_ok=True)


@pytest.mark.parametrize("ratio", ["sequence", "token"])
def test_token_credit_gradient_matches_formula(ratio):
    token_logp, mask, token_logp_b, reward, lengths = _token_batch(seed=1)
    g = torch.Generator().manual_seed(2)
    adv = torch.where(mask, torch.randn(mask.shape, generator=g, dtype=torch.float64), 0.0)  # mixed signs
    logp_b = topr.sequence_logp(token_logp_b, mask)
    loss, _ = topr.token_credit_loss(token_logp, mask, logp_b, reward, adv, name="topr", ratio=ratio,
                                     token_logp_behavior=token_logp_b, lengths=lengths)
    (grad,) = torch.autograd.grad(loss, token_logp)
    if ratio == "sequence":
        rho = (topr.sequence_logp(token_logp.detach(), mask) - logp_b).exp()[:, None].expand_as(adv)
    else:
        rho = (token_logp.detach() - token_logp_b).exp()
    alpha = torch.where(adv >= 0, torch.ones_like(rho), rho.clamp(0, 1))  # topr: positives 1, negatives clip(rho, 0, 1)
    expected = -alpha * adv * mask / (len(reward) * lengths[:, None].double())
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)


def test_token_credit_loss_errors():
    token_logp, mask, token_logp_b, reward, lengths = _token_batch()
    adv, logp_b = torch.zeros_like(token_logp), topr.sequence_logp(token_logp_b, mask)
    with pytest.raises(ValueError, match="without a fixed baseline .* got 'sft_pos'"):
        topr.token_credit_loss(token_logp, mask, logp_b, reward, adv, name="sft_pos", lengths=lengths)
    with pytest.raises(ValueError, match="with token_logp_behavior"):
        topr.token_credit_loss(token_logp, mask, logp_b, reward, adv, ratio="token", lengths=lengths)
    with pytest.raises(ValueError, match=r"must all be \(B, T\)"):
        topr.token_credit_loss(token_logp, mask, logp_b, reward, adv[:, :2], lengths=lengths)


@pytest.mark.parametrize("name", ["topr", "reinforce", "tis", "is"])
@pytest.mark.parametrize("ratio", ["sequence", "token"])
def test_token_credit_ignores_inf_padding(name, ratio):
    """Padding that holds -inf (log pi of a masked token, or log mu there: the ratio) changes nothing: the same
    loss and finite gradients equal to the clean case's, as sequence_logp promises for the sequence losses."""
    token_logp, mask, token_logp_b, reward, lengths = _token_batch(seed=3)
    g = torch.Generator().manual_seed(4)
    adv = torch.where(mask, torch.randn(mask.shape, generator=g, dtype=torch.float64), 0.0)
    logp_b = topr.sequence_logp(token_logp_b, mask)
    kw = dict(name=name, ratio=ratio, lengths=lengths)
    loss, _ = topr.token_credit_loss(token_logp, mask, logp_b, reward, adv, token_logp_behavior=token_logp_b, **kw)
    (clean,) = torch.autograd.grad(loss, token_logp)
    inf = torch.tensor(-math.inf, dtype=torch.float64)
    for pad_pi, pad_mu in [(True, False), (False, True), (True, True)]:
        lp = torch.where(mask, token_logp, inf) if pad_pi else token_logp
        lp_b = torch.where(mask, token_logp_b, inf) if pad_mu else token_logp_b
        got, _ = topr.token_credit_loss(lp, mask, logp_b, reward, adv, token_logp_behavior=lp_b, **kw)
        (grad,) = torch.autograd.grad(got, token_logp)
        assert torch.isfinite(grad).all(), (pad_pi, pad_mu)
        torch.testing.assert_close(got, loss, rtol=0, atol=0)
        torch.testing.assert_close(grad, clean, rtol=0, atol=0)
