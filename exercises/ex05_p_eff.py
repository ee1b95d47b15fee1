"""Exercise 5 -- the baseline sets the dataset composition (topr.py: effective_pos_fraction and inverse).

With rewards +1 / -1, a fraction p of positives and a constant baseline c, every sample's weight in the
gradient is |A| = |R - c|: positives weigh (1 - c), negatives (1 + c). The effective positive fraction
is the share of the total weight that sits on positives.
Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex05
"""


def effective_pos_fraction(p, c):
    """p_eff = p (1 - c) / (p (1 - c) + (1 - p)(1 + c)) = p (1 - c) / (1 + c (1 - 2p)).

    p in [0, 1], c in [-1, 1] (floats). c = 0 gives p, c = -1 gives 1 (SFT on positives), c = 1 gives 0.
    returns a float."""
    raise NotImplementedError("ex05: weight of positives / total weight, with |A| = 1 - c or 1 + c")


def baseline_for_pos_fraction(p, p_eff):
    """The inverse: the baseline c that turns a dataset with positive fraction p into the target p_eff.
    Solve p_eff (1 + c (1 - 2p)) = p (1 - c) for c.  p, p_eff in (0, 1).  returns a float in (-1, 1)."""
    raise NotImplementedError("ex05: the equation is linear in c: collect the c terms on one side")
