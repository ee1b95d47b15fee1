"""Solution to exercise 14 -- exact moments of the on-policy gradient estimator.

Answers: (a) none: E[g] = E[R (e_y - pi)] - c E[e_y - pi] and E[e_y - pi] = 0, so every c gives the same
mean. (b) negatives only: its samples are the frequent wrong answer, whose e_y - pi is tiny (0.05 in each
coordinate); the positives-only estimator is 0 95% of the time and a large push 5% of the time (~360x the
variance). (c) SFT on the positives: each wrong string is a rare, large, different push.
(d) No: E[(e_y - pi) / L(y)] = grad_theta E_pi[1/L], which is not 0, so E[g_c] - E[g_0] = -c grad E_pi[1/L].
With c = +1 the step moves against grad E[1/L], i.e. toward a smaller E[1/L]: longer completions.
"""
import torch


def exact_moments(pi, reward, c, lengths=None):
    M = len(pi)
    N = torch.ones_like(pi) if lengths is None else lengths
    g = ((reward - c) / N)[:, None] * (torch.eye(M, dtype=pi.dtype) - pi[None, :])  # row y: g(y)
    mean = pi @ g
    return mean, (pi * (g * g).sum(1)).sum().item() - (mean @ mean).item()
