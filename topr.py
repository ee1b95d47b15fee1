"""
topr.py -- Tapered Off-Policy REINFORCE (Le Roux, Bellemare, Lebensold et al., 2025) and relatives.

Pure torch; imports nothing from this repo. Sections 1-4 work on (B,) tensors of sequence log-probs, one
value per sample; section 5 on (B, T) tensors of per-token log-probs, one value per token.

  1. The truncated importance-sampling family: one loss, limits [a+, b+] / [a-, b-] (topr, reinforce,
     tis, is, sft_pos, neg_only), and `topr_loss` to pick a preset (or `ppo`) by name.
  2. PPO's clipped ratio objective (sequence-level ratio), the common baseline.
  3. The tapered objective T(rho; a, b), whose gradient the TOPR loss follows (logged, not optimised).
  4. Baseline c and dataset composition: p_eff and its inverse; group-mean baseline; curation.
  5. Token-level credit: each token its own advantage (the group's prefix tree), and the family's loss
     with a (B, T) advantage (`token_credit_loss`; one advantage per sequence gives section 1's loss).
Every loss returns (loss, rows): rows holds each sample's values (ratio, weight, ...), (B,) tensors on the
device; `summarize(rows)` turns them into the logged statistics in one transfer.

Notation: completion y of prompt x, reward R in {+1, -1}; pi = current policy,
mu = behavior policy that sampled y; logp = sum_t log pi(y_t), logp_behavior = sum_t log mu(y_t);
ratio rho = pi(y|x) / mu(y|x); advantage A = R - c; a sample is *positive* iff A >= 0; L = the normaliser
of each sequence's term (LENGTH_NORMS).
Sign convention: every function returns a LOSS to minimise (= minus the objective).
"""
import math

import torch

INF = math.inf

# name -> limits (a+, b+) for A >= 0, (a-, b-) for A < 0, and an optional baseline override
PRESETS = {
    "topr":      dict(pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0)),   # the paper's method (Eq. 8)
    "reinforce": dict(pos_limits=(1.0, 1.0), neg_limits=(1.0, 1.0)),   # naive off-policy REINFORCE
    "tis":       dict(pos_limits=(0.0, 1.0), neg_limits=(0.0, 1.0)),   # truncated IS, both signs
    "is":        dict(pos_limits=(0.0, INF), neg_limits=(0.0, INF)),   # full importance sampling
    "sft_pos":   dict(pos_limits=(1.0, 1.0), neg_limits=(1.0, 1.0), baseline=-1.0),  # c=-1: SFT on positives
    "neg_only":  dict(pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0), baseline=1.0),   # c=+1: negatives only (A=-2),
}                                                                                    # tapered like topr's
# On-policy (rho = 1) with R = +-1, E_pi[grad log pi] = 0, so for a constant c and a normaliser L that is
# the same for every sequence ("constant", "none"):  E[(R - c) grad log pi / L] = E[R grad log pi / L].
# sft_pos (c = -1), reinforce (c = 0) and neg_only (c = +1) then differ only in variance and, off-policy,
# in how the ratio treats reused data. Dividing each sequence by ITS OWN length L(y) ("sequence") breaks
# this: E_pi[grad log pi(y) / L(y)] = sum_y grad pi(y) / L(y) = grad E_pi[1/L], so
#     E[(R - c) grad log pi / L] = E[R grad log pi / L] - c grad E_pi[1/L]:
# a baseline c > 0 also pushes toward LONGER completions, c < 0 toward shorter ones.
# tests/test_topr.py computes these expectations exactly; exercise 14.
LOSSES = list(PRESETS) + ["ppo"]
# The normaliser L_i of each sequence's term: its own length (the default; reportedly the paper's), one number for every
# sequence (e.g. the longest allowed completion), or none (summed log-probs).
LENGTH_NORMS = ["sequence", "constant", "none"]


# -----------------------------------------------------------------------------
# helpers: padding, shapes, advantages

def sequence_logp(token_logp, mask):
    """(B, T) per-token log-probs + (B, T) mask (True/1 = completion token) -> (B,) summed log-prob.
    Padded positions contribute nothing, whatever they hold (even nan/inf), and get zero gradient."""
    mask = mask.bool()
    return torch.where(mask, token_logp, torch.zeros_like(token_logp)).sum(-1)


def _check(logp, logp_behavior, reward, baseline, lengths, length_norm, max_len):
    """Validate shapes; return detached advantage A = R - c and the per-sample normaliser L."""
    if logp.dim() != 1 or logp_behavior.shape != logp.shape or reward.shape != logp.shape:
        raise ValueError(f"logp, logp_behavior, reward must all be (B,); got {tuple(logp.shape)}, "
                         f"{tuple(logp_behavior.shape)}, {tuple(reward.shape)}")
    if torch.is_tensor(baseline) and baseline.dim() > 0 and baseline.shape != logp.shape:
        raise ValueError(f"baseline must be a float or a (B,) tensor; got shape {tuple(baseline.shape)}")
    c = baseline.detach().to(logp.dtype) if torch.is_tensor(baseline) else float(baseline)
    A = reward.detach().to(logp.dtype) - c                          # A = R - c
    return A, _normaliser(A, lengths, length_norm, max_len)


def _normaliser(A, lengths, length_norm, max_len):
    """L_i of each sequence's term (LENGTH_NORMS), shaped and typed like A."""
    if length_norm == "sequence":
        if lengths is None or lengths.shape != A.shape:
            raise ValueError(f"length_norm='sequence' needs lengths of shape (B,); got "
                             f"{None if lengths is None else tuple(lengths.shape)}")
        L = lengths.detach().to(A.dtype).clamp(min=1)               # L_i = |y_i| (>= 1 token)
    elif length_norm == "constant":
        if max_len is None or not max_len > 0:
            raise ValueError(f"length_norm='constant' needs max_len > 0 (e.g. max_new_tokens); got {max_len}")
        L = torch.full_like(A, float(max_len))                      # L_i = max_len for every i
    elif length_norm == "none":
        L = torch.ones_like(A)                                      # L_i = 1: summed log-probs
    else:
        raise ValueError(f"unknown length_norm {length_norm!r}; choose from {', '.join(LENGTH_NORMS)}")
    return L


def _check_limits(limits, which):
    a, b = float(limits[0]), float(limits[1])
    if not (0.0 <= a <= b):
        raise ValueError(f"{which} must satisfy 0 <= a <= b; got {limits}")
    return a, b


def _log_ratio(logp, logp_behavior):
    """log rho in float64 (sequence-level ratios overflow float32 past ~88 nats), no gradient."""
    return logp.detach().double() - logp_behavior.detach().double()


def _rows(loss_terms, logp, reward, A, ratio, alpha, clipped, objective):
    """What a step's statistics are made of: one detached (B,) tensor per quantity, per sample, left on the
    device (no host read here: a training loop gathers them over its micro-batches, then calls summarize)."""
    return {"loss": loss_terms.detach(), "objective": objective.detach(), "logp": logp.detach(),
            "reward": reward.detach(), "advantage": A, "ratio": ratio, "alpha": alpha, "clipped": clipped}


def summarize(rows):
    """rows (one dict of (B,) tensors from a loss, or several micro-batches' concatenated) -> json-ready
    floats, in ONE transfer to the host; nan where a subset is empty. Positive/negative = sign of A,
    *_reward_pos/neg = sign of the raw reward (they differ under a group baseline: A = 0 counts as positive)."""
    names = list(rows)
    table = {k: v.to(rows[k].dtype) for k, v in zip(names, torch.stack([rows[k].double() for k in names]).cpu())}
    r = table.__getitem__                                            # each value back in its own dtype
    pos, neg, rpos = r("advantage") >= 0, r("advantage") < 0, r("reward") > 0
    mean = lambda x, m: x[m].mean().item() if m.any() else float("nan")
    return {
        "loss": r("loss").mean().to(rows["logp"].dtype).item(),     # as the loss computes it
        "objective": r("objective").mean().item(),           # tapered T (family) or clipped (ppo)
        "mean_alpha": r("alpha").mean().item(),
        "mean_alpha_neg": mean(r("alpha"), neg),
        "frac_neg_alpha_lt1": mean((r("alpha") < 1).double(), neg),
        "frac_neg_ratio_lt1": mean((r("ratio") < 1).double(), ~rpos),  # wrong samples pi now makes rarer than mu did
        "frac_clipped": r("clipped").double().mean().item(), # weight != rho (truncated / ppo-clipped)
        "mean_ratio": r("ratio").mean().item(),
        "mean_ratio_pos": mean(r("ratio"), pos),
        "mean_ratio_neg": mean(r("ratio"), neg),
        "mean_adv": r("advantage").mean().item(),
        "logp_pos": mean(r("logp"), pos),
        "logp_neg": mean(r("logp"), neg),
        "logp_reward_pos": mean(r("logp"), rpos),
        "logp_reward_neg": mean(r("logp"), ~rpos),
        "n_pos": int(pos.sum().item()),
        "n_neg": int(neg.sum().item()),
    }


# -----------------------------------------------------------------------------
# 1. the truncated importance-sampling family (TOPR and friends)

def truncated_is_loss(logp, logp_behavior, reward, *, pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0),
                      baseline=0.0, lengths=None, length_norm="sequence", max_len=None):
    """loss = - mean_i sg(alpha_i) * A_i * logp_i / L_i, alpha_i = clip(rho_i, a, b) by sign of A_i.
    d loss / d logp_i = - alpha_i * A_i / (B * L_i); L_i by length_norm (LENGTH_NORMS: lengths_i,
    max_len, or 1). Returns (loss, rows): rows = the per-sample values of its statistics (summarize)."""
    A, L = _check(logp, logp_behavior, reward, baseline, lengths, length_norm, max_len)
    a_pos, b_pos = _check_limits(pos_limits, "pos_limits")
    a_neg, b_neg = _check_limits(neg_limits, "neg_limits")
    pos = A >= 0                                                    # positive iff A >= 0
    log_ratio = _log_ratio(logp, logp_behavior)
    ratio = log_ratio.exp()                                         # rho = exp(logp - logp_behavior)
    alpha = torch.where(pos, ratio.clamp(a_pos, b_pos), ratio.clamp(a_neg, b_neg))  # alpha = clip(rho, a, b)
    alpha = alpha.to(logp.dtype)                                    # detached: sg(alpha)
    terms = -alpha * A * logp / L                                   # Eq. 8 surrogate, per sample
    loss = terms.mean()                                             # -mean sg(alpha) A logp / L
    with torch.no_grad():
        T = torch.where(pos, tapered(ratio, a_pos, b_pos, log_ratio),
                        tapered(ratio, a_neg, b_neg, log_ratio))    # tapered T(rho; a, b)
        lo = torch.where(pos, torch.full_like(ratio, a_pos), torch.full_like(ratio, a_neg))
        hi = torch.where(pos, torch.full_like(ratio, b_pos), torch.full_like(ratio, b_neg))
        clipped = (ratio < lo) | (ratio > hi)
        rows = _rows(terms, logp, reward, A, ratio, alpha.double(), clipped, A.double() * T / L.double())  # J = A T / L
    return loss, rows


def topr_loss(logp, logp_behavior, reward, name="topr", baseline=0.0, lengths=None, length_norm="sequence",
              max_len=None, ppo_eps=0.2):
    """Dispatch by name: a PRESETS entry or "ppo" (clip range ppo_eps). sft_pos ignores `baseline` (it is c = -1).
    Returns (loss, rows); summarize(rows) gives the statistics."""
    if name == "ppo":
        return ppo_loss(logp, logp_behavior, reward, baseline=baseline, eps=ppo_eps, lengths=lengths,
                        length_norm=length_norm, max_len=max_len)
    if name not in PRESETS:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    preset = dict(PRESETS[name])
    baseline = preset.pop("baseline", baseline)                     # preset override (sft_pos: c = -1)
    return truncated_is_loss(logp, logp_behavior, reward, baseline=baseline, lengths=lengths,
                             length_norm=length_norm, max_len=max_len, **preset)


# -----------------------------------------------------------------------------
# 2. PPO: clipped sequence-level ratio

def ppo_loss(logp, logp_behavior, reward, baseline=0.0, eps=0.2, lengths=None, length_norm="sequence",
             max_len=None):
    """loss = - mean_i min(rho_i A_i, clip(rho_i, 1-eps, 1+eps) A_i) / L_i, rho with gradient.
    Each sequence's term is divided by L_i, as in the family above, so inside the band
    d loss / d logp_i = - rho_i * A_i / (B * L_i), and 0 where the clip is active. Returns (loss, rows)."""
    A, L = _check(logp, logp_behavior, reward, baseline, lengths, length_norm, max_len)
    ratio = torch.exp(logp.double() - logp_behavior.detach().double())  # rho (float64), grad through pi only
    A64 = A.double()
    unclipped = ratio * A64
    clipped_term = ratio.clamp(1 - eps, 1 + eps) * A64              # clip(rho, 1-eps, 1+eps) A
    objective = torch.minimum(unclipped, clipped_term) / L.double() # PPO: min(rho A, clip(rho) A) / L
    loss = -objective.mean().to(logp.dtype)
    with torch.no_grad():
        r = ratio.detach().double()
        clipped = ((A >= 0) & (r > 1 + eps)) | ((A < 0) & (r < 1 - eps))   # gradient is zero there
        weight = torch.where(clipped, torch.zeros_like(r), r)       # effective alpha: d obj/d logp = w A / L
        rows = _rows(-objective, logp, reward, A, r, weight, clipped, objective)
    return loss, rows


# -----------------------------------------------------------------------------
# 3. the tapered objective

def tapered(ratio, a, b, log_ratio=None):
    """T(rho; a, b) = a(1 + log(rho/a)) if rho < a; rho if a <= rho <= b; b(1 + log(rho/b)) if rho > b.
    a = 0 and b = inf drop the corresponding branch. Continuous, and dT/dlogp = rho T'(rho) = clip(rho, a, b).
    Pass log_ratio (= log rho) to stay finite when rho under/overflows."""
    log_ratio = torch.log(ratio) if log_ratio is None else log_ratio
    out = ratio                                                     # T = rho on [a, b]
    if a > 0:
        out = torch.where(ratio < a, a * (1 + log_ratio - math.log(a)), out)   # T = a(1 + log(rho/a)), rho < a
    if b < INF:
        out = torch.where(ratio > b, b * (1 + log_ratio - math.log(b)), out)   # T = b(1 + log(rho/b)), rho > b
    return out


# -----------------------------------------------------------------------------
# 4. baseline and dataset composition

def effective_pos_fraction(p, c):
    """Fraction of the total |A| weight on positives, rewards +-1, fraction p positives, baseline c:
    p_eff = p(1 - c) / (1 + c(1 - 2p)). c = 0 -> p; c = -1 -> 1 (SFT on positives); c = 1 -> 0."""
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"p (fraction of positives) must be in [0, 1]; got {p}")
    if not (-1.0 <= c <= 1.0):
        raise ValueError(f"baseline c must be in [-1, 1] for +-1 rewards; got {c}")
    den = 1 + c * (1 - 2 * p)                                       # = p(1-c) + (1-p)(1+c)
    if den == 0:
        raise ValueError(f"p_eff undefined for p={p}, c={c}: all weight is zero")
    return p * (1 - c) / den                                        # paper: p_eff = p(1-c) / (1 + c(1-2p))


def baseline_for_pos_fraction(p, p_eff):
    """Inverse of effective_pos_fraction: c = (p - p_eff) / (p + p_eff - 2 p p_eff), in (-1, 1)."""
    for name, v in (("p", p), ("p_eff", p_eff)):
        if not (0.0 < v < 1.0):
            raise ValueError(f"{name} must be in (0, 1) (open interval); got {v}")
    return (p - p_eff) / (p + p_eff - 2 * p * p_eff)                # solve p_eff(1 + c(1-2p)) = p(1-c) for c


def group_baseline(reward, group_size):
    """Per-prompt mean of its k = group_size samples' rewards; rows grouped contiguously. (B,) -> (B,)."""
    if reward.dim() != 1 or group_size < 1 or reward.numel() % group_size:
        raise ValueError(f"reward of shape {tuple(reward.shape)} does not split into groups of {group_size}")
    r = reward.detach() if reward.is_floating_point() else reward.detach().float()
    return r.view(-1, group_size).mean(1).repeat_interleave(group_size)   # c_x = mean_k R(x, y_k)


def curate(reward, target_pos_frac, generator=None):
    """Indices (sorted, LongTensor) of a subset whose fraction of positives (reward > 0) is as close as
    possible to target_pos_frac, keeping every sample of the under-represented side and a random subset
    (torch.randperm with `generator`) of the over-represented one."""
    f = float(target_pos_frac)
    if not (0.0 <= f <= 1.0):
        raise ValueError(f"target_pos_frac must be in [0, 1]; got {target_pos_frac}")
    pos_idx = torch.nonzero(reward > 0).flatten()
    neg_idx = torch.nonzero(reward <= 0).flatten()
    n_pos, n_neg = len(pos_idx), len(neg_idx)
    if (n_pos == 0 and f > 0) or (n_neg == 0 and f < 1):
        raise ValueError(f"cannot curate to {f} positives from {n_pos} positives and {n_neg} negatives")
    if n_pos * (1 - f) > f * n_neg:                                 # too many positives: subsample them
        keep = min(n_pos, round(f * n_neg / (1 - f))) if f < 1 else n_pos
        pos_idx = pos_idx[torch.randperm(n_pos, generator=generator)[:keep]]
    else:                                                           # too many negatives: subsample them
        keep = min(n_neg, round(n_pos * (1 - f) / f)) if f > 0 else n_neg
        neg_idx = neg_idx[torch.randperm(n_neg, generator=generator)[:keep]]
    return torch.cat([pos_idx, neg_idx]).sort().values


# -----------------------------------------------------------------------------
# 5. token-level credit: where a sequence's push lands
#
# Every loss above pushes all tokens of a sequence by the same A_i. A negative completion on the shortcut
# task is one wrong token (the operator) followed by correct arithmetic; its push lowers the arithmetic too.
# Token-level credit gives each token t of sample i its own advantage A_{i,t}, and the loss becomes
#     loss = - mean_i sum_t sg(alpha_{i,t}) A_{i,t} log pi(y_{i,t} | x_i, y_{i,<t}) / L_i,
# alpha_{i,t} = clip(rho, a, b) with the limits of the sign of A_{i,t} (TOPR: positives untruncated,
# negatives tapered). rho is the SEQUENCE ratio pi(y_i|x_i)/mu(y_i|x_i) by default: the sample y_i was drawn
# from mu as a whole, TOPR's taper (Eq. 8) is defined on it, and a token's own ratio ignores how its prefix
# became more or less likely (GSPO, Zheng et al. 2025, makes the same argument against GRPO's per-token
# ratios). ratio="token" uses pi(y_t|...)/mu(y_t|...) instead, as GRPO/PPO implementations do per token;
# the first-error diagnostic of train.py uses it.

def prefix_tree_advantages(completions, reward, group_size):
    """Token-level advantages from the group's own samples. completions: N token-id sequences (lists or 1-D
    tensors), grouped by prompt in consecutive runs of group_size; reward: (N,). Within a group, the value of
    a prefix is the mean reward of the samples that pass through it, V(empty) = the group's mean, and token
    t's advantage is V(y_<=t) - V(y_<t). -> N float64 tensors, one per completion, of its length.
    A token every sample of the group agrees on gets 0; the tokens of a sample telescope to
    V(whole sequence) - V(empty) = R_i - mean when no completion is a proper prefix of another (each ends in
    EOS, or all have the longest length) and identical completions have the same reward."""
    if reward.dim() != 1 or len(completions) != reward.numel() or group_size < 1 or reward.numel() % group_size:
        raise ValueError(f"{len(completions)} completions and reward of shape {tuple(reward.shape)} do not split "
                         f"into groups of {group_size}")
    r = reward.detach().double().cpu().tolist()
    out = []
    for g in range(0, len(r), group_size):
        seqs = [list(map(int, c)) for c in completions[g:g + group_size]]
        total, count = {}, {}  # prefix (a tuple) -> summed reward and number of samples through it
        for seq, ri in zip(seqs, r[g:g + group_size]):
            for t in range(len(seq) + 1):
                p = tuple(seq[:t])
                total[p], count[p] = total.get(p, 0.0) + ri, count.get(p, 0) + 1
        value = lambda p: total[p] / count[p]                       # V(prefix) = mean reward through it
        out += [torch.tensor([value(tuple(s[:t + 1])) - value(tuple(s[:t])) for t in range(len(s))],
                             dtype=torch.float64) for s in seqs]    # A_t = V(y_<=t) - V(y_<t)
    return out


def token_credit_loss(token_logp, mask, logp_behavior, reward, token_adv, *, name="topr", ratio="sequence",
                      token_logp_behavior=None, lengths=None, length_norm="sequence", max_len=None):
    """The family's loss (PRESETS[name]'s limits) with a per-token advantage: (B, T) token_logp (with
    gradient), mask, token_adv (0 at padding), (B,) logp_behavior (summed log mu), reward (for the
    statistics); ratio "sequence" or
    "token" (then token_logp_behavior (B, T) is needed). d loss / d logp_{i,t} = - alpha_{i,t} A_{i,t} / (B L_i).
    Returns (loss, rows) like truncated_is_loss; a row's advantage is sum_t A_{i,t}, its alpha the sequence's
    (the limits of that sign), its objective the surrogate -loss term (the taper has no per-token form).
    With length_norm "sequence" a token that decides gets the push sequence credit would give it (A / L_i),
    the tokens that decide nothing get none."""
    if name not in PRESETS or "baseline" in PRESETS[name]:
        raise ValueError(f"token-level credit needs a loss of the family without a fixed baseline "
                         f"({', '.join(n for n in PRESETS if 'baseline' not in PRESETS[n])}); got {name!r}")
    if token_logp.dim() != 2 or mask.shape != token_logp.shape or token_adv.shape != token_logp.shape:
        raise ValueError(f"token_logp, mask and token_adv must all be (B, T); got {tuple(token_logp.shape)}, "
                         f"{tuple(mask.shape)}, {tuple(token_adv.shape)}")
    if ratio not in ("sequence", "token") or (ratio == "token" and token_logp_behavior is None):
        raise ValueError(f"ratio must be 'sequence' or 'token' (with token_logp_behavior); got {ratio!r}")
    (a_pos, b_pos), (a_neg, b_neg) = PRESETS[name]["pos_limits"], PRESETS[name]["neg_limits"]
    mask = mask.bool()
    # padding may hold anything (-inf: log pi or log mu of a masked token); zeroed here, or a token ratio of
    # inf (or nan) there times its zero advantage would make a nan gradient
    zero = lambda t: None if t is None else torch.where(mask, t, torch.zeros_like(t))
    token_logp, token_logp_behavior = zero(token_logp), zero(token_logp_behavior)
    adv = torch.where(mask, token_adv.detach().to(token_logp.dtype), torch.zeros_like(token_logp))
    logp = sequence_logp(token_logp, mask)
    if logp_behavior.shape != logp.shape or reward.shape != logp.shape:
        raise ValueError(f"logp_behavior and reward must be (B,) = {tuple(logp.shape)}; got "
                         f"{tuple(logp_behavior.shape)}, {tuple(reward.shape)}")
    A = adv.sum(-1)                                                 # the sample's advantage: sum_t A_{i,t}
    L = _normaliser(A, lengths, length_norm, max_len)
    log_ratio = _log_ratio(logp, logp_behavior)
    if ratio == "sequence":
        rho = log_ratio.exp()[:, None].expand_as(adv)               # rho_i on every token
    else:
        rho = (token_logp.detach().double() - token_logp_behavior.detach().double()).exp()  # rho_{i,t}
    pos = adv >= 0
    alpha = torch.where(pos, rho.clamp(a_pos, b_pos), rho.clamp(a_neg, b_neg)).to(token_logp.dtype)
    terms = -sequence_logp(alpha * adv * token_logp, mask) / L      # - sum_t alpha A_t log pi_t / L_i
    loss = terms.mean()
    with torch.no_grad():
        seq_ratio = log_ratio.exp()
        seq_alpha = torch.where(A >= 0, seq_ratio.clamp(a_pos, b_pos), seq_ratio.clamp(a_neg, b_neg))
        clipped = seq_alpha != seq_ratio
        rows = _rows(terms, logp, reward, A, seq_ratio, seq_alpha, clipped, -terms.double())
    return loss, rows
