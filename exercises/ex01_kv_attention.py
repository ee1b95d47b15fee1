"""Exercise 1 -- one decode step of attention that reads a KV cache (model.py: KVCache, GPT.generate).

During generation the new token's query attends to the keys/values of every earlier token, which the
cache already holds; its own K/V have just been written at slot pos-1. Nothing is recomputed.
Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex01
"""
import math

import torch


def attend_cached(q, k_cache, v_cache, pos, key_mask=None):
    """Attention output of ONE new query against the first `pos` cached positions.

        y = softmax(q K[:pos]^T / sqrt(hs)  +  mask) V[:pos]        mask = -inf where key_mask is False

    q:        (B, nh, 1, hs)      query of the token being decoded
    k_cache:  (B, nh, T_max, hs)  keys; only slots [0, pos) are filled, the rest is garbage (may be nan)
    v_cache:  (B, nh, T_max, hs)  values, same layout
    pos:      int, number of filled slots (the new token's own K/V are at slot pos-1)
    key_mask: None or (B, >= pos) bool, False = a padding key nobody may attend to
    returns   (B, nh, 1, hs)

    No causal mask is needed: a single query is the LAST position, it may see every filled slot.
    """
    raise NotImplementedError("ex01: slice K and V to [:pos] first (never touch the garbage slots), "
                              "then scores = q @ K^T / sqrt(hs), masked_fill(~key_mask, -inf), softmax, @ V")
