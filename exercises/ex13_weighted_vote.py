"""Exercise 13 -- verifier-weighted majority voting and best-of-k (eval.py: weighted_majority_vote, best_of).

k candidate solutions of one problem give k final answers (a string, or None when a candidate has no
'#### N'); a verifier gives each candidate a weight w = P(Yes | problem, candidate).
Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex13
"""


def weighted_majority_vote(answers, weights):
    """The valid answer with the largest total weight: argmax_a sum_{i: answers[i] == a} weights[i].

    None (invalid) never wins; on a tie the answer that appears first in `answers` wins; if every
    answer is None (or the list is empty), return None. answers: list of str or None; weights: list of floats."""
    raise NotImplementedError("ex13: sum the weights per valid answer, keep first-seen order for ties")


def best_of(answers, weights):
    """The answer of the single highest-weight candidate (the first one on a tie), even if it is None."""
    raise NotImplementedError("ex13: the index of the largest weight, first on ties")
