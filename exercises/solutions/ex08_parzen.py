"""Solution to exercise 8 -- Parzen-window log-likelihood in chunks."""
import math

import torch


def parzen_log_likelihood(test, samples, sigma, chunk=1000):
    """log p(x) = logsumexp_i(-||x - s_i||^2 / (2 sigma^2)) - log N - (d/2) log(2 pi sigma^2), (n,) float64."""
    test, samples = test.float(), samples.float()
    N, d = samples.shape
    s2 = (samples * samples).sum(1)                                 # (N,)
    out = []
    for i in range(0, len(test), chunk):
        x = test[i:i + chunk]
        D = ((x * x).sum(1, keepdim=True) + s2[None] - 2 * x @ samples.T).clamp_min(0).double()  # (chunk, N)
        out.append(torch.logsumexp(-D / (2 * sigma ** 2), dim=1))
    return torch.cat(out) - math.log(N) - d / 2 * math.log(2 * math.pi * sigma ** 2)
