"""Exercise 17, a solution: the SFT targets, -1 everywhere but on the completion."""
import torch


def sft_batch(examples, pad_id):
    T = max(len(p) + len(c) for p, c in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), -1, dtype=torch.long)
    for r, (p, c) in enumerate(examples):
        s = torch.tensor(list(p) + list(c))
        x[r, :len(s) - 1] = s[:-1]
        y[r, len(p) - 1:len(s) - 1] = s[len(p):]
    return x, y
