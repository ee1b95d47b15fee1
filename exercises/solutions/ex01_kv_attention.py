"""Solution to exercise 1 -- one decode step of attention that reads a KV cache."""
import math

import torch


def attend_cached(q, k_cache, v_cache, pos, key_mask=None):
    """y = softmax(q K[:pos]^T / sqrt(hs) + mask) V[:pos]; shapes as in the exercise."""
    k, v = k_cache[:, :, :pos], v_cache[:, :, :pos]                 # (B, nh, pos, hs): filled slots only
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))         # (B, nh, 1, pos)
    if key_mask is not None:
        att = att.masked_fill(~key_mask[:, None, None, :pos], float("-inf"))
    return torch.softmax(att, dim=-1) @ v                           # (B, nh, 1, hs)
