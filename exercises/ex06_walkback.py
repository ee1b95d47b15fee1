"""Exercise 6 -- the walkback training loss of a GSN / denoising auto-encoder (gsn.py: GSN.forward).

Run the model's own Markov chain from a corrupted training example and ask EVERY step to reconstruct
the ORIGINAL clean example: later steps visit where the chain would wander (spurious modes) and learn
to pull back to the data. walkbacks = 1 is an ordinary denoising auto-encoder.
Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex06
"""
import torch
import torch.nn.functional as F

from gsn import salt_and_pepper  # run from the repo root (pytest does)


def walkback_loss(model, x, walkbacks, target=None):
    """    x~_0 = salt_and_pepper(x, model.input_noise)        corrupt the clean batch once
           hs   = model.init_state(x~_0)                        [visible, hidden_1 = 0, ..., hidden_K = 0]
           for t = 1..walkbacks:
               logits_t = model.step(hs)                        one chain step; updates hs IN PLACE and
                                                                re-corrupts the visible it feeds back
               loss_t   = mean over batch and pixels of BCE(sigmoid(logits_t), target)
           loss = sum_t loss_t                                  target = x (clean) unless given

    model: a gsn.GSN; x: (B, D) in [0, 1]; walkbacks: int >= 1; target: None or (B, D).
    returns (loss scalar with grad, [loss_1, ..., loss_N] detached).
    Call the random functions in exactly this order (the test compares with GSN.forward under one seed).
    """
    raise NotImplementedError("ex06: F.binary_cross_entropy_with_logits(logits_t, target) is the stable "
                              "BCE; the target is the CLEAN x at every step, not the previous reconstruction")
