"""Solution to exercise 14 -- exact moments of the on-policy gradient estimator.

Answers: (a) none: E[g] = E[R (e_y - pi)] - c E[e_y - pi] and E[e_y - pi] = 0, so every c gives the same
mean. (b) negatives only: its samples are the frequent wrong answer, whose e_y - pi is tiny (0.05 in each
coordinate); the positives-only estimator is 0 95% of the time and a large push 5% of the time (~360x the
variance). (c) SFT on the positives: each wrong string is a rare, large, different push.
"""
import torch


def exact_moments(pi, reward, c):
    M = len(pi)
    g = (reward - c)[:, None] * (torch.eye(M, dtype=pi.dtype) - pi[None, :])  # row y: g(y)
    mean = pi @ g
    return mean, (pi * (g * g).sum(1)).sum().item() - (mean @ mean).item()
