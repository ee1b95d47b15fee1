"""Exercise 3 -- the truncated importance ratio and the TOPR loss family (topr.py: truncated_is_loss).

Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex03
"""
import torch


def truncated_weight(logp, logp_behavior, advantage, pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0)):
    """The per-sample weight alpha, a constant (no gradient):

        rho_i   = exp(logp_i - logp_behavior_i)                   sequence ratio pi(y|x) / mu(y|x)
        alpha_i = clip(rho_i, a+, b+)  if A_i >= 0                (positive sample)
                  clip(rho_i, a-, b-)  if A_i <  0                (negative sample)

    TOPR = pos [1, 1], neg [0, 1]; naive REINFORCE = [1, 1], [1, 1]; TIS = [0, 1], [0, 1]; IS = [0, inf] both.
    logp, logp_behavior, advantage: (B,) float (logp may require grad).  returns alpha (B,), detached.
    """
    raise NotImplementedError("ex03: compute rho from logp.detach(); torch.where(advantage >= 0, "
                              "rho.clamp(*pos_limits), rho.clamp(*neg_limits))")


def truncated_is_loss(logp, logp_behavior, reward, baseline=0.0, lengths=None,
                      pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0)):
    """The surrogate loss whose gradient is TOPR's (paper Eq. 8) for the chosen limits:

        A_i  = R_i - c                      (c = baseline, a float or a (B,) tensor)
        loss = - mean_i  sg(alpha_i) * A_i * logp_i / L_i          L_i = lengths_i, or 1 if lengths is None

    so that d loss / d logp_i = - alpha_i A_i / (B L_i).
    logp: (B,) summed log pi(y|x) with grad; logp_behavior, reward, lengths: (B,).  returns a scalar.
    """
    raise NotImplementedError("ex03: A = reward - baseline; alpha = truncated_weight(...); "
                              "-(alpha * A * logp / L).mean()")
