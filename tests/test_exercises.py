"""Tests of the coding exercises in exercises/ (see exercises/README.md).

By default every test runs against the reference solutions in exercises/solutions/ (CI proves each
exercise is solvable). A student checks their own stubs in exercises/ with
    EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex03
Each implementation is compared with the repo's own code (model.py, topr.py, train.py, gsn.py, parzen.py) or with a
formula derived by hand, on random inputs.
"""
import copy
import importlib.util
import inspect
import math
import os
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import data  # noqa: E402
import gsn  # noqa: E402
import images  # noqa: E402
import model as gpt_model  # noqa: E402
import parzen  # noqa: E402
import topr  # noqa: E402
import train  # noqa: E402

EX_DIR = os.path.join(ROOT, "exercises")
TARGET = os.environ.get("EXERCISE_TARGET", "solutions")
if TARGET not in ("solutions", "student"):
    raise ValueError(f"EXERCISE_TARGET must be 'solutions' (default) or 'student', got {TARGET!r}")
CODING = ["ex01_kv_attention", "ex02_top_p", "ex03_truncated_ratio", "ex04_tapered", "ex05_p_eff",
          "ex06_walkback", "ex07_inpaint", "ex08_parzen", "ex13_weighted_vote", "ex14_onpolicy_equivalence",
          "ex15_prefix_tree", "ex16_reuse_ratio", "ex17_sft_mask",
          "ex18_gsn_train_step"]


def load(name, target=TARGET):
    """Import exercises/<name>.py (student) or exercises/solutions/<name>.py by path."""
    path = os.path.join(EX_DIR, f"{name}.py") if target == "student" else os.path.join(EX_DIR, "solutions", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"exercise_{target}_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def exercise(name):
    """A fixture giving the module under test; its test ids say which target ran, e.g. [solutions]."""
    @pytest.fixture(params=[TARGET])
    def fixture(request):
        return load(name, request.param)
    return fixture


ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex13, ex14, ex15, ex16, ex17, ex18 = (exercise(n) for n in CODING)


# -----------------------------------------------------------------------------
# ex01: single-query attention reading a KV cache

def test_ex01_matches_causal_attention_last_row(ex01):
    g = torch.Generator().manual_seed(0)
    B, nh, T_max, hs = 3, 2, 12, 8
    for pos in (1, 5, 12):
        q_all = torch.randn(B, nh, pos, hs, generator=g)
        k_cache = torch.full((B, nh, T_max, hs), float("nan"))  # unfilled slots are garbage
        v_cache = torch.full((B, nh, T_max, hs), float("nan"))
        k_cache[:, :, :pos] = torch.randn(B, nh, pos, hs, generator=g)
        v_cache[:, :, :pos] = torch.randn(B, nh, pos, hs, generator=g)
        ref = F.scaled_dot_product_attention(q_all, k_cache[:, :, :pos], v_cache[:, :, :pos], is_causal=True)
        got = ex01.attend_cached(q_all[:, :, -1:], k_cache, v_cache, pos)
        assert got.shape == (B, nh, 1, hs)
        torch.testing.assert_close(got, ref[:, :, -1:], atol=1e-5, rtol=1e-5)


def test_ex01_key_mask_hides_padding(ex01):
    g = torch.Generator().manual_seed(1)
    B, nh, T_max, hs, pos = 2, 2, 10, 4, 7
    q = torch.randn(B, nh, 1, hs, generator=g)
    k_cache, v_cache = torch.randn(B, nh, T_max, hs, generator=g), torch.randn(B, nh, T_max, hs, generator=g)
    key_mask = torch.ones(B, T_max, dtype=torch.bool)
    key_mask[0, :3] = False                                            # row 0: 3 left-pad slots
    v_cache[0, :, :3] = 1e6                                            # a leak would show
    ref = F.scaled_dot_product_attention(q, k_cache[:, :, :pos], v_cache[:, :, :pos],
                                         attn_mask=key_mask[:, None, None, :pos])
    got = ex01.attend_cached(q, k_cache, v_cache, pos, key_mask)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mixed_lengths", [False, True])
def test_ex01_drives_the_models_decode(ex01, monkeypatch, mixed_lengths):
    """Swap the student's function into model.py's decode steps: same tokens and log-probs as the repo."""
    torch.manual_seed(0)
    m = gpt_model.GPT(gpt_model.GPTConfig(block_size=32, vocab_size=20, n_layer=2, n_head=2, n_embd=16)).eval()
    prompts = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]] if mixed_lengths else torch.randint(0, 20, (3, 5))
    ref_tok, ref_lp = m.generate(prompts, 10, temperature=1.0, num_samples=2,
                                 generator=torch.Generator().manual_seed(3))
    real_sdpa, calls = F.scaled_dot_product_attention, []

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        if q.size(2) != 1:  # prefill: the repo's path
            return real_sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)
        calls.append(1)
        key_mask = None if attn_mask is None else attn_mask[:, 0, 0, :]
        return ex01.attend_cached(q, k, v, k.size(2), key_mask)

    monkeypatch.setattr(gpt_model, "F", types.SimpleNamespace(**{**vars(F), "scaled_dot_product_attention": sdpa}))
    tok, lp = m.generate(prompts, 10, temperature=1.0, num_samples=2, generator=torch.Generator().manual_seed(3))
    assert calls, "the decode path did not go through attend_cached"
    assert torch.equal(tok, ref_tok)
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=1e-5)


# -----------------------------------------------------------------------------
# ex02: top-p filtering

def test_ex02_matches_model_filter(ex02):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(64, 50, generator=g)
    for top_p in (0.01, 0.2, 0.5, 0.8, 0.95, 0.999, 1.0):
        got = ex02.top_p_filter(logits, top_p)
        ref = gpt_model._filter_logits(logits, None, top_p)
        assert torch.equal(torch.isinf(got), torch.isinf(ref)), f"kept set differs at top_p={top_p}"
        assert torch.equal(got[~torch.isinf(got)], logits[~torch.isinf(ref)])  # kept logits unchanged


def test_ex02_smallest_set_reaching_top_p(ex02):
    """By hand: the kept set is the shortest prefix of the sorted probabilities whose mass reaches top_p."""
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])                    # sorted: 0.5, 0.3, 0.15, 0.05
    logits = probs.log()
    for top_p, keep in ((0.3, [1]), (0.75, [1, 3]), (0.85, [1, 2, 3]), (0.97, [0, 1, 2, 3])):
        got = ex02.top_p_filter(logits, top_p)
        assert torch.nonzero(torch.isfinite(got[0])).flatten().tolist() == keep, top_p
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(32, 40, generator=g)
    for top_p in (0.1, 0.6, 0.9):
        kept = torch.isfinite(ex02.top_p_filter(logits, top_p))
        p = logits.softmax(-1)
        assert kept.any(1).all() and (kept.gather(1, p.argmax(1, keepdim=True))).all()  # top-1 always kept
        mass = (p * kept).sum(1)
        smallest_kept = torch.where(kept, p, torch.ones_like(p)).min(1).values
        assert (mass >= top_p - 1e-6).all()                            # reaches top_p ...
        assert (mass - smallest_kept < top_p + 1e-6).all()             # ... and no kept token is superfluous


# -----------------------------------------------------------------------------
# ex03: the truncated ratio and the loss family

def off_policy_batch(seed, B=40):
    g = torch.Generator().manual_seed(seed)
    logp = (-1 - 20 * torch.rand(B, generator=g, dtype=torch.float64)).requires_grad_()
    log_ratio = 4 * torch.rand(B, generator=g, dtype=torch.float64) - 2   # rho in [e^-2, e^2]
    logp_behavior = logp.detach() - log_ratio
    reward = torch.where(torch.rand(B, generator=g) < 0.4, 1.0, -1.0).double()
    lengths = torch.randint(1, 30, (B,), generator=g).double()
    return logp, logp_behavior, reward, lengths


@pytest.mark.parametrize("name", ["topr", "reinforce", "tis", "is"])
def test_ex03_weight_is_the_clipped_ratio(ex03, name):
    lim = topr.PRESETS[name]
    logp, logp_b, reward, _ = off_policy_batch(0)
    A = reward - 0.2
    alpha = ex03.truncated_weight(logp, logp_b, A, lim["pos_limits"], lim["neg_limits"])
    rho = torch.exp(logp.detach() - logp_b)
    (ap, bp), (an, bn) = lim["pos_limits"], lim["neg_limits"]
    hand = torch.where(A >= 0, rho.clamp(ap, bp), rho.clamp(an, bn))
    assert not alpha.requires_grad, "alpha must be a constant (stop-gradient)"
    torch.testing.assert_close(alpha, hand)
    # A = 0 (e.g. a group whose samples all got the same reward) counts as positive
    rho = torch.tensor([0.5, 2.0, 0.5, 2.0], dtype=torch.float64)
    A0 = torch.tensor([0.0, 0.0, -1.0, -1.0], dtype=torch.float64)
    alpha = ex03.truncated_weight(rho.log(), torch.zeros(4, dtype=torch.float64), A0, (ap, bp), (an, bn))
    torch.testing.assert_close(alpha, torch.cat([rho[:2].clamp(ap, bp), rho[2:].clamp(an, bn)]))


@pytest.mark.parametrize("name", ["topr", "reinforce", "tis", "is"])
@pytest.mark.parametrize("baseline", [0.0, -0.5, "per_sample"])
@pytest.mark.parametrize("normalize", [True, False])
def test_ex03_loss_and_gradient_match_topr(ex03, name, baseline, normalize):
    logp, logp_b, reward, lengths = off_policy_batch(1)
    if baseline == "per_sample":
        baseline = topr.group_baseline(reward, 4)
    lim = topr.PRESETS[name]
    got = ex03.truncated_is_loss(logp, logp_b, reward, baseline=baseline, lengths=lengths if normalize else None,
                                 pos_limits=lim["pos_limits"], neg_limits=lim["neg_limits"])
    (g_got,) = torch.autograd.grad(got, logp)
    ref, _ = topr.topr_loss(logp, logp_b, reward, name=name, baseline=baseline, lengths=lengths,
                            length_norm="sequence" if normalize else "none")
    (g_ref,) = torch.autograd.grad(ref, logp)
    torch.testing.assert_close(got.detach(), ref.detach())
    torch.testing.assert_close(g_got, g_ref)
    # and the hand-derived gradient d loss / d logp_i = - alpha_i A_i / (B L_i)
    A = reward - baseline
    rho = torch.exp(logp.detach() - logp_b)
    alpha = torch.where(A >= 0, rho.clamp(*lim["pos_limits"]), rho.clamp(*lim["neg_limits"]))
    L = lengths if normalize else torch.ones_like(A)
    torch.testing.assert_close(g_got, -alpha * A / (len(A) * L))


def test_ex03_on_policy_all_equal_and_far_negatives_are_safe(ex03):
    logp, _, reward, lengths = off_policy_batch(2)
    grads = []
    for name in ("topr", "reinforce", "tis", "is"):  # rho = 1: the same gradient
        lim = topr.PRESETS[name]
        loss = ex03.truncated_is_loss(logp, logp.detach(), reward, lengths=lengths,
                                      pos_limits=lim["pos_limits"], neg_limits=lim["neg_limits"])
        grads.append(torch.autograd.grad(loss, logp)[0])
    for gr in grads[1:]:
        torch.testing.assert_close(gr, grads[0])
    # TOPR in float32 with log-ratios of +-200 nats: weights stay in [0, 1], no nan
    lp = torch.tensor([-5.0, -300.0, -5.0, -300.0])
    lb = torch.tensor([-205.0, -100.0, -205.0, -100.0])
    alpha = ex03.truncated_weight(lp, lb, torch.tensor([1.0, 1.0, -1.0, -1.0]))
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha, torch.tensor([1.0, 1.0, 1.0, 0.0]))


# -----------------------------------------------------------------------------
# ex04: the tapered objective

LIMITS = [(0.0, 1.0), (1.0, 1.0), (0.5, 2.0), (0.0, math.inf), (0.2, math.inf)]


@pytest.mark.parametrize("a,b", LIMITS)
def test_ex04_matches_topr_and_its_gradient_is_the_clipped_ratio(ex04, a, b):
    g = torch.Generator().manual_seed(0)
    log_ratio = (6 * torch.rand(200, generator=g, dtype=torch.float64) - 3).requires_grad_()
    T = ex04.tapered(log_ratio, a, b)
    torch.testing.assert_close(T.detach(), topr.tapered(log_ratio.detach().exp(), a, b, log_ratio.detach()))
    (dT,) = torch.autograd.grad(T.sum(), log_ratio)
    torch.testing.assert_close(dT, log_ratio.detach().exp().clamp(a, b))   # dT/dlog rho = clip(rho, a, b)


def test_ex04_continuous_and_finite(ex04):
    for a, b in ((0.5, 2.0), (1.0, 1.0)):
        for edge in (a, b):
            lr = torch.tensor([math.log(edge) - 1e-7, math.log(edge) + 1e-7], dtype=torch.float64)
            T = ex04.tapered(lr, a, b)
            assert abs(T[0] - T[1]) < 1e-6 and abs(T[0] - edge) < 1e-6
    T = ex04.tapered(torch.tensor([-1000.0, 1000.0], dtype=torch.float64), 1.0, 1.0)   # exp: 0 and inf
    torch.testing.assert_close(T, torch.tensor([-999.0, 1001.0], dtype=torch.float64))  # 1 + log rho


def test_ex04_gradient_of_A_times_T_is_the_topr_gradient(ex04):
    """The surrogate's gradient equals the gradient of the objective J = mean_i A_i T(rho_i) / L_i."""
    logp, logp_b, reward, lengths = off_policy_batch(3)
    A = reward - 0.1
    T = torch.where(A >= 0, ex04.tapered(logp - logp_b, 1.0, 1.0), ex04.tapered(logp - logp_b, 0.0, 1.0))
    (g_obj,) = torch.autograd.grad((A * T / lengths).mean(), logp)
    loss, _ = topr.topr_loss(logp, logp_b, reward, name="topr", baseline=0.1, lengths=lengths)
    (g_loss,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(g_obj, -g_loss)


# -----------------------------------------------------------------------------
# ex05: p_eff and its inverse

def test_ex05_matches_topr_and_a_counted_dataset(ex05):
    for p in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
        for c in (-1.0, -0.6, 0.0, 0.3, 0.99):
            if (p, c) == (0.0, -1.0):
                continue                                               # 0 / 0: no weight at all
            got = ex05.effective_pos_fraction(p, c)
            assert abs(got - topr.effective_pos_fraction(p, c)) < 1e-12, (p, c)
    # by hand from an explicit dataset: share of the total |R - c| weight that sits on positives
    reward = torch.tensor([1.0] * 7 + [-1.0] * 13, dtype=torch.float64)
    for c in (-0.8, -0.3, 0.0, 0.5):
        w = (reward - c).abs()
        assert abs(ex05.effective_pos_fraction(7 / 20, c) - (w[reward > 0].sum() / w.sum()).item()) < 1e-12
    assert ex05.effective_pos_fraction(0.3, 0.0) == pytest.approx(0.3)
    assert ex05.effective_pos_fraction(0.3, -1.0) == pytest.approx(1.0)
    assert ex05.effective_pos_fraction(0.3, 1.0) == pytest.approx(0.0)


def test_ex05_inverse_round_trips(ex05):
    for p in (0.05, 0.2, 0.44, 0.8):
        for target in (0.1, 0.15, 0.2, 0.5, 0.9):
            c = ex05.baseline_for_pos_fraction(p, target)
            assert -1 < c < 1
            assert abs(c - topr.baseline_for_pos_fraction(p, target)) < 1e-12
            assert abs(topr.effective_pos_fraction(p, c) - target) < 1e-12


# -----------------------------------------------------------------------------
# ex06: walkback loss

def small_gsn(seed=0, deterministic=False, hidden=(16, 12)):
    torch.manual_seed(seed)
    if deterministic:
        return gsn.GSN(n_visible=20, hidden=hidden, input_noise=0.0, hidden_noise=0.0, input_sampling=False)
    return gsn.GSN(n_visible=20, hidden=hidden)


@pytest.mark.parametrize("hidden", [(16,), (16, 12), (16, 12, 8)])
def test_ex06_deterministic_chain_equals_gsn_forward(ex06, hidden):
    model = small_gsn(deterministic=True, hidden=hidden)
    x = torch.rand(6, 20, generator=torch.Generator().manual_seed(1))
    for N in (1, 3):
        loss, steps = ex06.walkback_loss(model, x, N)
        (g,) = torch.autograd.grad(loss, model.W[0])
        ref, ref_steps = model(x, N)
        (g_ref,) = torch.autograd.grad(ref, model.W[0])
        torch.testing.assert_close(loss.detach(), ref.detach())
        torch.testing.assert_close(torch.stack(list(steps)), torch.stack(ref_steps))
        torch.testing.assert_close(g, g_ref)
    # by hand, walkbacks = 1: the ordinary DAE loss, BCE of one reconstruction against the clean x
    hs = model.init_state(x)
    p = torch.sigmoid(model.step(hs, noisy=False))
    hand = -(x * p.log() + (1 - x) * (1 - p).log()).mean()
    torch.testing.assert_close(ex06.walkback_loss(model, x, 1)[0].detach(), hand.detach(), atol=1e-5, rtol=1e-5)


def test_ex06_noisy_chain_equals_gsn_forward_under_one_seed(ex06):
    model = small_gsn()
    x = (torch.rand(8, 20, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    target = torch.rand(8, 20, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(7)
    loss, steps = ex06.walkback_loss(model, x, 4, target=target)
    torch.manual_seed(7)
    ref, ref_steps = model(x, 4, target=target)
    assert len(steps) == 4
    torch.testing.assert_close(loss.detach(), ref.detach())
    torch.testing.assert_close(torch.stack(list(steps)), torch.stack(ref_steps))
    assert all(not s.requires_grad for s in steps)


# -----------------------------------------------------------------------------
# ex07: inpainting

def test_ex07_matches_gsn_inpaint_and_clamps(ex07):
    model = small_gsn()
    images = torch.rand(5, 20, generator=torch.Generator().manual_seed(4))
    mask = torch.arange(20) % 3 == 0                                   # (D,) broadcast over the batch
    torch.manual_seed(11)
    got = ex07.inpaint(model, images, mask, 6)
    torch.manual_seed(11)
    ref = gsn.inpaint(model, images, mask.expand(5, 20), n_steps=6)
    assert got.shape == (7, 5, 20)
    torch.testing.assert_close(got, ref)
    assert torch.equal(got[:, :, mask], images[:, mask].expand(7, -1, -1))    # observed pixels: exact at every step
    assert ((got[1:, :, ~mask] > 0) & (got[1:, :, ~mask] < 1)).all()         # free pixels: chain means


def test_ex07_clamps_the_fed_back_visible(ex07):
    """With the visible clamped, a deterministic chain's next step is a function of the clamped state:
    replay it by hand from the recorded means."""
    model = small_gsn(deterministic=True, hidden=(16,))
    images = torch.rand(3, 20, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(3, 20, dtype=torch.bool)
    mask[:, 10:] = True
    got = ex07.inpaint(model, images, mask, 3)
    with torch.no_grad():
        for t in range(1, 4):
            hs = model.init_state(got[t - 1])        # K = 1, no noise: h1 depends only on the visible fed in
            p = torch.sigmoid(model.step(hs, noisy=False))
            torch.testing.assert_close(got[t], torch.where(mask, images, p))


# -----------------------------------------------------------------------------
# ex08: Parzen log-likelihood

def test_ex08_matches_gsn_and_a_direct_formula(ex08):
    g = torch.Generator().manual_seed(0)
    test, samples = torch.rand(23, 9, generator=g), torch.rand(31, 9, generator=g)
    for sigma in (0.1, 0.3, 1.0):
        got = ex08.parzen_log_likelihood(test, samples, sigma, chunk=5)   # 23 = 4 chunks of 5 + 3
        assert got.shape == (23,) and got.dtype == torch.float64
        torch.testing.assert_close(got, parzen.parzen_log_likelihood(test, samples, sigma), atol=1e-4, rtol=1e-6)
        # direct: log mean_i N(x; s_i, sigma^2 I), with the (n, N, d) tensor (fine at this size)
        d2 = ((test.double()[:, None] - samples.double()[None]) ** 2).sum(-1)
        direct = (torch.exp(-d2 / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2) ** (9 / 2)).mean(1).log()
        torch.testing.assert_close(got, direct, atol=1e-4, rtol=1e-6)
    # one centre: a single isotropic Gaussian
    one = ex08.parzen_log_likelihood(test, samples[:1], 0.5)
    ref = torch.distributions.Normal(samples[0].double(), 0.5).log_prob(test.double()).sum(1)
    torch.testing.assert_close(one, ref, atol=1e-4, rtol=1e-6)


def test_ex08_chunking_and_stability(ex08):
    g = torch.Generator().manual_seed(1)
    test, samples = torch.rand(50, 784, generator=g), (torch.rand(300, 784, generator=g) > 0.8).float()
    a = ex08.parzen_log_likelihood(test, samples, 0.05, chunk=7)
    b = ex08.parzen_log_likelihood(test, samples, 0.05, chunk=1000)
    assert torch.isfinite(a).all(), "far from every centre with a small sigma: use logsumexp, not log(sum(exp))"
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-6)              # float32 distances, ~1e4-nat values
    torch.testing.assert_close(a, parzen.parzen_log_likelihood(test, samples, 0.05), atol=1e-3, rtol=1e-6)


# -----------------------------------------------------------------------------
# the exercise files themselves (always run against both folders)

@pytest.mark.parametrize("name", CODING)
def test_stub_and_solution_have_the_same_api(name):
    """Each stub raises NotImplementedError with a hint, and offers the solution's functions and signatures."""
    if TARGET == "student":
        pytest.skip("checks the stubs' shape, not the student's work")
    stub, sol = load(name, "student"), load(name, "solutions")
    funcs = {n: f for n, f in vars(sol).items() if inspect.isfunction(f) and f.__module__ == sol.__name__}
    assert funcs
    for n, f in funcs.items():
        s = getattr(stub, n, None)
        assert s is not None, f"exercises/{name}.py lacks {n}"
        assert inspect.signature(s) == inspect.signature(f), n
        assert s.__doc__ and "raise NotImplementedError(" in inspect.getsource(s), n


# -----------------------------------------------------------------------------
# ex13: verifier-weighted majority voting and best-of-k

def test_ex13_hand_cases(ex13):
    wmv, best = ex13.weighted_majority_vote, ex13.best_of
    assert wmv(["3", "3", "5"], [0.1, 0.1, 0.9]) == "5"
    assert wmv(["3", "5"], [0.4, 0.4]) == "3"
    assert wmv([None, "4"], [0.99, 0.01]) == "4"
    assert wmv([None, None], [0.5, 0.5]) is None and wmv([], []) is None
    assert best(["3", None, "7"], [0.2, 0.9, 0.5]) is None
    assert best(["3", "5"], [0.6, 0.6]) == "3"


def test_ex13_matches_eval_on_random_votes(ex13):
    import random
    import eval as ev
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 9)
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(n)]
        weights = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(n)]  # coarse values: many ties
        assert ex13.weighted_majority_vote(answers, weights) == ev.weighted_majority_vote(answers, weights)
        assert ex13.best_of(answers, weights) == ev.best_of(answers, weights)


# -----------------------------------------------------------------------------
# ex14: on-policy equivalence of sft_pos, reinforce and neg_only; the variance decides

def test_ex14_matches_the_gradient_of_topr_losses(ex14):
    """exact_moments against the gradient of topr.topr_loss itself, outcome by outcome (rho = 1)."""
    g = torch.Generator().manual_seed(14)
    for M in (2, 5):
        theta = torch.randn(M, generator=g, dtype=torch.float64)
        pi = torch.softmax(theta, 0)
        reward = torch.where(torch.rand(M, generator=g) < 0.5, 1.0, -1.0).double()
        reward[0] = 1.0
        for name, c in (("sft_pos", -1.0), ("reinforce", 0.0), ("reinforce", 0.3), ("neg_only", 1.0)):
            rows = []
            for y in range(M):
                th = theta.clone().requires_grad_()
                logp = torch.log_softmax(th, 0)[[y]]
                loss, _ = topr.topr_loss(logp, logp.detach(), reward[[y]], name, baseline=c, length_norm="none")
                rows.append(-torch.autograd.grad(loss, th)[0])
            G = torch.stack(rows)
            mean, var = ex14.exact_moments(pi, reward, c)
            torch.testing.assert_close(mean, pi @ G)
            assert var == pytest.approx((pi * (G * G).sum(1)).sum().item() - (pi @ G).norm().item() ** 2, abs=1e-12)


def test_ex14_predictions(ex14):
    binary = torch.tensor([0.05, 0.95], dtype=torch.float64)
    diffuse = torch.tensor([0.5] + [0.5 / 15] * 15, dtype=torch.float64)
    for pi in (binary, diffuse):
        reward = -torch.ones(len(pi), dtype=torch.float64)
        reward[0] = 1.0
        (m_pos, v_pos), (m_rf, _), (m_neg, v_neg) = (ex14.exact_moments(pi, reward, c) for c in (-1.0, 0.0, 1.0))
        torch.testing.assert_close(m_pos, m_rf)  # (a) one expected gradient
        torch.testing.assert_close(m_neg, m_rf)
        if pi is binary:
            assert v_neg * 100 < v_pos  # (b) negatives only
        else:
            assert v_pos * 4 < v_neg    # (c) positives only


def test_ex14_length_bias(ex14):
    """(d) Divided by each completion's own length, the baselines no longer agree: E[g_c] = E[g_0] - c grad E[1/L],
    with grad_theta E_pi[1/L] computed here by autograd on pi = softmax(theta), independently of ex14; and
    the gradient of topr.topr_loss with length_norm='sequence', outcome by outcome, has the same moments."""
    theta = torch.tensor([0.3, -0.2, 0.5, 0.0], dtype=torch.float64)
    reward = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    lengths = torch.tensor([2.0, 9.0, 4.0, 6.0], dtype=torch.float64)
    th = theta.clone().requires_grad_()
    (grad_inv_len,) = torch.autograd.grad(torch.softmax(th, 0) @ (1 / lengths), th)   # grad E_pi[1/L]
    pi = torch.softmax(theta, 0)
    m0, _ = ex14.exact_moments(pi, reward, 0.0, lengths)
    for c in (-1.0, 0.5, 1.0):
        m, _ = ex14.exact_moments(pi, reward, c, lengths)
        torch.testing.assert_close(m, m0 - c * grad_inv_len)
        rows = []
        for y in range(4):
            t = theta.clone().requires_grad_()
            logp = torch.log_softmax(t, 0)[[y]]
            loss, _ = topr.topr_loss(logp, logp.detach(), reward[[y]], "reinforce", baseline=c, lengths=lengths[[y]],
                                     length_norm="sequence")
            rows.append(-torch.autograd.grad(loss, t)[0])
        torch.testing.assert_close(m, pi @ torch.stack(rows))
    # neg_only (c = +1) steps along -grad E[1/L] more than reinforce does: toward a smaller E[1/L], longer outputs
    m_neg, _ = ex14.exact_moments(pi, reward, 1.0, lengths)
    assert (m_neg - m0) @ grad_inv_len < 0
    torch.testing.assert_close(ex14.exact_moments(pi, reward, 1.0)[0], ex14.exact_moments(pi, reward, 0.0)[0])



# -----------------------------------------------------------------------------
# ex15: token-level advantages from the group's prefix tree

def test_ex15_the_prediction_tree(ex15):
    """The README's tree: "7+3=10" (right) twice, "7-3=4" (the shortcut) once, "8" (a slip) once."""
    right, short, slip = list("7+3=10"), list("7-3=4"), list("8")
    adv = ex15.prefix_tree_advantages([right, short, right, slip], [1.0, -1.0, 1.0, -1.0], 4)
    assert adv[0][0] == pytest.approx(1 / 3) and adv[3] == pytest.approx([-1.0])        # V(7) = 1/3, V() = 0
    assert adv[0][1] == pytest.approx(2 / 3) and adv[1][1] == pytest.approx(-4 / 3)     # the operator decides
    assert all(a == 0 for a in adv[0][2:] + adv[1][2:])                               # the arithmetic: nothing


def test_ex15_matches_topr_on_random_groups(ex15):
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, 8):
        comps = [torch.randint(0, 3, (int(torch.randint(0, 4, (1,), generator=g)),), generator=g).tolist() + [9]
                 for _ in range(4 * k)]
        rewards = torch.where(torch.rand(4 * k, generator=g) < 0.5, 1.0, -1.0)
        mine = ex15.prefix_tree_advantages(comps, rewards.tolist(), k)
        ref = topr.prefix_tree_advantages(comps, rewards, k)
        assert len(mine) == len(ref)
        for a, b in zip(mine, ref):
            assert a == pytest.approx(b.tolist(), abs=1e-12)


# -----------------------------------------------------------------------------
# ex16: rho on the first on-policy step and under reuse (train.py rl: behavior_logp, solution_logp)

def ex16_dataset(dropout=0.0):
    """A tiny random policy in eval mode and a dataset it sampled (train.sample_solutions, as train.py rl does):
    4 problems x 2 samples of up to 16 tokens; tokens and completion mask laid out by model.pack."""
    tok = data.get_tokenizer("byte")
    torch.manual_seed(16)
    policy = gpt_model.GPT(gpt_model.GPTConfig(n_layer=1, n_head=2, n_embd=64, dropout=dropout)).eval()
    batch = train.sample_solutions(policy, tok, data.problems(4, 16, "train"), 2, 16, seed=16)
    tokens, _, compl = gpt_model.pack(batch.prompt, batch.completion, tok.pad_id)
    return tok, policy, batch, tokens, compl


def topr_sgd(model):
    """The caller's update: TOPR (c = 0) on rewards +1, -1, +1, ... (the random policy's are all -1), one SGD step."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    reward = torch.tensor([1.0, -1.0] * 4)

    def update(rows, logp, logp_mu):
        loss, _ = topr.topr_loss(logp, logp_mu, reward[rows], name="topr", baseline=0.0, length_norm="none")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return update


def test_ex16_completion_logp_is_the_rl_log_pi(ex16):
    tok, policy, batch, tokens, compl = ex16_dataset()
    got = ex16.completion_logp(policy, tokens, compl)
    assert got.shape == (8,) and got.requires_grad
    lp = train.solution_logp(policy, tok, batch, torch.device("cpu"))[0]
    torch.testing.assert_close(got.detach(), lp.detach(), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(got.detach(), batch.logp_behavior, atol=1e-4, rtol=1e-6)  # generate's, to rounding


def test_ex16_rho_is_one_on_the_first_step_only_and_matches_train(ex16):
    """Your ratios against train.py rl's own functions: log mu from behavior_logp over the first epoch's
    minibatches, log pi from solution_logp, the same updates applied to a copy of the policy."""
    tok, policy, batch, tokens, compl = ex16_dataset()
    mine = copy.deepcopy(policy)
    log_mu, rhos = ex16.reuse_ratios(mine, tokens, compl, 2, 4, topr_sgd(mine))
    assert len(rhos) == 4 and all(r.shape == (4,) and not r.requires_grad for r in rhos)
    assert torch.equal(rhos[0], torch.ones(4))                       # (a) on-policy: 1 to the last bit
    assert all(not torch.equal(r, torch.ones(4)) for r in rhos[1:])  # one update later, already off-policy
    ref, cpu = copy.deepcopy(policy), torch.device("cpu")
    mu_ref, _ = train.behavior_logp(ref, tok, batch, train.solution_logp,
                                     train.behavior_steps(torch.arange(8), 4, 4, 0, 1), 1, cpu)
    torch.testing.assert_close(log_mu, mu_ref, atol=1e-5, rtol=1e-6)
    step = topr_sgd(ref)
    for i, rows in enumerate([torch.arange(4), torch.arange(4, 8)] * 2):
        lp = train.solution_logp(ref, tok, batch[rows], cpu)[0]
        rho_ref = torch.exp(lp.detach() - mu_ref[rows])
        assert torch.equal(rho_ref, torch.ones(4)) == (i == 0)       # train.py rl's rho: the same story
        torch.testing.assert_close(rhos[i], rho_ref, atol=1e-4, rtol=1e-4)
        step(rows, lp, mu_ref[rows])
    # (c) the first epoch pushed the negatives (odd rows) down and the positives up: at the second epoch
    # rho < 1 on every negative (TOPR's weight clip(rho, 0, 1) < 1) and > 1 on every positive
    second = torch.cat(rhos[2:])
    assert (second[1::2] < 1).all() and (second[0::2] > 1).all()


def test_ex16_exact_under_bf16_and_dropout_unlike_generates_log_probs(ex16, monkeypatch):
    """(b) Sampled and trained in bf16 (CPU autocast stands in for CUDA's), with a dropout policy in eval mode:
    the recomputed log mu gives rho == 1 exactly, while generate's own log-probs (decoding with a KV cache:
    other kernels, other rounding) differ from it, so rho would not be 1 with them."""
    monkeypatch.setattr(common, "autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))
    tok, policy, batch, tokens, compl = ex16_dataset(dropout=0.2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_mu, rhos = ex16.reuse_ratios(policy, tokens, compl, 1, 4, topr_sgd(policy))
    assert torch.equal(rhos[0], torch.ones(4))
    gap = (log_mu.double() - batch.logp_behavior.double()).abs()
    assert 0 < gap.max() < 1


# -----------------------------------------------------------------------------
# ex17: the SFT loss mask (train.sft_batch)

def test_ex17_hand_case(ex17):
    x, y = ex17.sft_batch([([1, 2, 3], [4, 5, 256]), ([7], [8, 256])], 257)
    assert torch.equal(x, torch.tensor([[1, 2, 3, 4, 5], [7, 8, 257, 257, 257]]))
    assert torch.equal(y, torch.tensor([[-1, -1, 4, 5, 256], [8, 256, -1, -1, -1]]))


def test_ex17_matches_train_sft_batch_on_encoded_examples(ex17):
    tok = data.get_tokenizer("byte")
    examples = [data.encode_example(tok, p) for p in data.problems(12, 17, "train")]
    for ix in ([0], [3, 1, 4, 1, 5], list(range(12)), [11, 0, 7]):
        x, y = ex17.sft_batch([examples[i] for i in ix], tok.pad_id)
        x_ref, y_ref = train.sft_batch(examples, ix, tok.pad_id, torch.device("cpu"))
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
        assert (y != -1).sum() == sum(len(examples[i][1]) for i in ix)   # train.sft's n_tokens: the completions


def test_ex17_a_rows_loss_is_minus_log_pi_of_its_completion(ex17):
    """The per-row sum of the cross-entropy over your targets is -log pi(completion | prompt), the sequence
    log-prob that train.py rl's updates use (model.sequence_logprobs on model.pack's rows); its mean over the
    counted targets is GPT.forward's loss."""
    tok = data.get_tokenizer("byte")
    examples = [data.encode_example(tok, p) for p in data.problems(5, 18, "train")]
    torch.manual_seed(17)
    policy = gpt_model.GPT(gpt_model.GPTConfig(n_layer=1, n_head=2, n_embd=32)).eval()
    x, y = ex17.sft_batch(examples, tok.pad_id)
    with torch.no_grad():
        logits, loss = policy(x, y)
        nll = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=-1, reduction="none").sum(1)
        tokens, pad_mask, compl = gpt_model.pack([p for p, _ in examples], [c for _, c in examples], tok.pad_id)
        log_pi = gpt_model.sequence_logprobs(policy, tokens, pad_mask, compl).sum(1)
    torch.testing.assert_close(nll, -log_pi, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(loss, -log_pi.sum() / sum(len(c) for _, c in examples), atol=1e-5, rtol=1e-5)


# -----------------------------------------------------------------------------
# ex18: one step of the GSN trainer (gsn.train)

@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """An MNIST folder (IDX files) of 100 training images (+ the 1000 gsn.py holds out) and 20 test images:
    uniform noise, which the trainer reads like digits (and makes in a few ms)."""
    folder = tmp_path_factory.mktemp("ex18")
    rng = np.random.RandomState(18)
    for prefix, n in (("train", 1100), ("t10k", 20)):
        images.write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.randint(0, 256, (n, 28, 28)).astype(np.uint8))
        images.write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.randint(0, 10, n).astype(np.uint8))
    return str(folder)


@pytest.mark.parametrize("model, settings", [
    ("gsn", dict(optimizer="sgd", lr=0.1, momentum=0.5, lr_decay=0.5, binarize="targets", walkbacks=3)),
    ("dae", dict(optimizer="adam", lr=1e-2, lr_decay=0.5))])                      # binarize "both", 5 walkbacks
def test_ex18_replays_gsn_train(ex18, tiny_mnist, tmp_path, model, settings):
    """7 steps of batch 30 over 100 images: 3 minibatches per epoch (10 rows never read), epochs 0, 1, 2.
    Your steps from the trainer's own start (seed, data, shuffle, model, optimizer) give gsn.train's losses
    and weights, bit for bit."""
    cfg = gsn.GSNConfig.for_model(model, data=tiny_mnist, hidden=16, batch_size=30, max_steps=7, **settings)
    trained, losses = gsn.train(cfg, str(tmp_path / "run"), device="cpu", quiet=True)
    torch.manual_seed(cfg.seed)
    X = gsn.load_data(cfg.data)[0]
    X = torch.from_numpy(X[np.random.RandomState(cfg.seed).permutation(len(X))])
    inputs, targets = ex18.training_pairs(X, cfg.binarize)
    mine = gsn.build_model(cfg)
    opt = (torch.optim.Adam(mine.parameters(), lr=cfg.lr) if cfg.optimizer == "adam" else
           torch.optim.SGD(mine.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.momentum))
    got = [ex18.train_step(mine, opt, inputs, targets, step, cfg) for step in range(7)]
    assert all(l.shape == () and not l.requires_grad for l in got)
    assert [l.item() for l in got] == losses
    assert all(torch.equal(p, q) for p, q in zip(mine.parameters(), trained.parameters()))
    assert opt.param_groups[0]["lr"] == cfg.lr * 0.5 ** 2


def test_ex18_training_pairs(ex18):
    X = torch.tensor([[0.2, 0.5, 0.7, 1.0]])
    binary = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    for mode, (x, t) in {"none": (X, X), "targets": (X, binary), "both": (binary, binary)}.items():
        got = ex18.training_pairs(X, mode)
        assert torch.equal(got[0], x) and torch.equal(got[1], t), mode


def test_ex18_a_non_finite_step_is_not_applied_and_not_read(ex18, monkeypatch):
    """A nan gradient (a hook on W_1): SGD leaves every weight as it was and the step's loss is nan, with no
    tensor read on the host inside the step; the next, finite step trains again."""
    model = small_gsn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = gsn.GSNConfig(batch_size=4, walkbacks=2, lr=0.1)
    x = torch.rand(8, 20, generator=torch.Generator().manual_seed(18))
    before = [p.detach().clone() for p in model.parameters()]
    hook = model.W[1].register_hook(lambda g: torch.full_like(g, float("nan")))

    def no_host_read(*args):
        raise AssertionError("a tensor read on the host in the step (if / .item() / float()): use masked_fill_")
    with monkeypatch.context() as m:
        for name in ("__bool__", "item", "__float__", "tolist"):
            m.setattr(torch.Tensor, name, no_host_read)
        loss = ex18.train_step(model, opt, x, x, 0, cfg)
    assert math.isnan(loss.item())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    hook.remove()
    loss = ex18.train_step(model, opt, x, x, 1, cfg)
    assert math.isfinite(loss.item()) and not all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
