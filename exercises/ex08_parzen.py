"""Exercise 8 -- Parzen-window log-likelihood (Breuleux et al. 2011; parzen.py: parzen_log_likelihood).

Score test images under an isotropic Gaussian mixture centred on N generated samples. With N = 10,000
samples, 10,000 test images and d = 784, the naive (n_test, N, d) difference tensor would be 300 GB:
compute squared distances by matmul, one chunk of test images at a time.
Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex08
"""
import math

import torch


def parzen_log_likelihood(test, samples, sigma, chunk=1000):
    """Per-test-point log-density:

        log p(x) = logsumexp_i( -||x - s_i||^2 / (2 sigma^2) ) - log N - (d / 2) log(2 pi sigma^2)

    with ||x - s||^2 = ||x||^2 + ||s||^2 - 2 x.s  (clamp at 0: rounding can make it slightly negative).
    test: (n, d), samples: (N, d) float tensors; sigma: float; chunk: test rows per matmul.
    returns (n,) float64. Never build an (n, N, d) tensor; never exp() before the logsumexp
    (exp(-||x - s||^2 / 2 sigma^2) underflows to 0 for sigma = 0.05 and the log gives -inf).
    """
    raise NotImplementedError("ex08: s2 = (samples**2).sum(1) once; per chunk D = x2[:, None] + s2[None] "
                              "- 2 x @ samples.T; torch.logsumexp(-D / (2 sigma^2), dim=1) in float64")
