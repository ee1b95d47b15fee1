"""Solution to exercise 2 -- nucleus (top-p) filtering."""
import torch
import torch.nn.functional as F


def top_p_filter(logits, top_p):
    """Drop token (j) iff the strictly more likely tokens already hold >= top_p of the mass."""
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= top_p    # exclusive cumsum: mass before (j)
    drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_idx, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))
