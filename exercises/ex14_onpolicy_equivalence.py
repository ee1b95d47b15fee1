"""Exercise 14 -- on-policy, positives, negatives and any constant baseline share ONE expected gradient,
unless each sequence is divided by its own length.

A policy over M completions, pi = softmax(theta), rewards R(y) = +1 or -1, lengths L(y) in tokens. From one
sample y ~ pi the policy-gradient estimator is g(y) = A(y) * grad_theta log pi(y) / N(y), where
grad_theta log pi(y) = e_y - pi (the one-hot vector of y minus pi) and N(y) is the normaliser of
`--length-norm`: 1 (none, or any constant) or L(y) (sequence). The advantage A = R - c sets the method:
    SFT on the positives   c = -1:  A = 2 on positives, 0 on negatives    (topr.py preset sft_pos)
    REINFORCE              c =  0:  A = R                                  (reinforce, = topr on-policy)
    negatives only         c = +1:  A = 0 on positives, -2 on negatives    (neg_only)

PREDICT before you code (write your answers down):
  (a) Without length normalisation, which of the three has the largest expected gradient E[g]?
  (b) A binary choice, pi = (0.05 right, 0.95 wrong). Which estimator has the smallest variance?
  (c) pi = 0.5 on the right answer and 0.5 spread over 15 different wrong answers. Which one now?
  (d) Divide by each completion's own length, N(y) = L(y). Is E[g] still the same for every c? If not,
      write E[g_c] - E[g_0] in terms of c and E_pi[1/L], and say which way neg_only (c = +1) pushes the
      length of the completions.
Then implement exact_moments (no sampling: sum over the M outcomes) and check your predictions with
    EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex14
"""
import torch


def exact_moments(pi, reward, c, lengths=None):
    """Exact mean and total variance of g(y) = (R(y) - c) (e_y - pi) / N(y) for y ~ pi.

    pi: (M,) float64 probabilities summing to 1; reward: (M,) float64 of +-1; c: float; lengths: None
    (N = 1) or (M,) float64 L(y) (N = L, the sequence's own length).
    Returns (mean (M,) tensor = sum_y pi(y) g(y), variance float = sum_y pi(y) ||g(y)||^2 - ||mean||^2)."""
    raise NotImplementedError("ex14: build g(y) for each y with torch.eye(M)[y] - pi, divide by N(y), weight by pi(y)")
