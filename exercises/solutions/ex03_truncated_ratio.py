"""Solution to exercise 3 -- the truncated ratio and the TOPR loss family."""
import torch


def truncated_weight(logp, logp_behavior, advantage, pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0)):
    """alpha_i = clip(rho_i, a+, b+) if A_i >= 0 else clip(rho_i, a-, b-), detached."""
    rho = torch.exp(logp.detach() - logp_behavior.detach())        # sg: the weight is a constant
    return torch.where(advantage >= 0, rho.clamp(*pos_limits), rho.clamp(*neg_limits))


def truncated_is_loss(logp, logp_behavior, reward, baseline=0.0, lengths=None,
                      pos_limits=(1.0, 1.0), neg_limits=(0.0, 1.0)):
    """loss = - mean_i sg(alpha_i) A_i logp_i / L_i."""
    A = reward - baseline
    alpha = truncated_weight(logp, logp_behavior, A, pos_limits, neg_limits)
    L = torch.ones_like(A) if lengths is None else lengths.to(A.dtype).clamp(min=1)
    return -(alpha * A * logp / L).mean()
