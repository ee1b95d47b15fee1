"""Exercise 2 -- nucleus (top-p) filtering of logits (model.py: _filter_logits, used by GPT.generate).

Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex02
"""
import torch
import torch.nn.functional as F


def top_p_filter(logits, top_p):
    """Keep the smallest set of most-likely tokens whose probability mass reaches top_p; the others get -inf.

    With tokens sorted by probability p_(1) >= p_(2) >= ..., token (j) is DROPPED iff
        sum_{i < j} p_(i) >= top_p          (the strictly more likely tokens already hold top_p)
    so the most likely token is always kept. top_p >= 1 keeps everything.

    logits: (B, V) float;  top_p: float in (0, 1]
    returns (B, V): the same logits where kept, -inf where dropped (feed it to softmax, then sample).
    """
    raise NotImplementedError("ex02: torch.sort(descending=True), softmax, exclusive cumsum = cumsum - probs, "
                              "drop where >= top_p, then scatter the sorted mask back to vocabulary order")
