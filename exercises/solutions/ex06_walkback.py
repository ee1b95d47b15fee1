"""Solution to exercise 6 -- the walkback loss."""
import torch
import torch.nn.functional as F

from gsn import salt_and_pepper


def walkback_loss(model, x, walkbacks, target=None):
    """loss = sum_t BCE(p_t, x): every chain step reconstructs the clean example."""
    target = x if target is None else target
    hs = model.init_state(salt_and_pepper(x, model.input_noise))
    losses = []
    for _ in range(walkbacks):
        logits = model.step(hs, noisy=True)
        losses.append(F.binary_cross_entropy_with_logits(logits, target))
    return torch.stack(losses).sum(), [l.detach() for l in losses]
