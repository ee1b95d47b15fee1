"""
parzen.py -- the GSN tower's evaluation: how a set of samples is scored, with no GSN model in sight.
A chain's means (gsn.sample_chain) are the centres of a Parzen window; the same estimate scores the
reference centres; several seeds' and chains' estimates pool into one mean with its error split by source.

  sq_distance_blocks, parzen_log_likelihood,      Parzen-window log-likelihood (Breuleux, Bengio, Vincent 2011),
  GSN_SIGMAS, parzen_evaluate                     sigma chosen on validation; the nearest-centre distance
  KMEANS_ITERS, kmeans, reference_sets            the reference rows' centres: training images, k-means
                                                  centroids, independent pixels
  error_components, seeds_mean_se, gap_components the error bar of pooled Parzen estimates, by source
                                                  (training seed, chain, test set)

"[C]" is the GSN authors' Theano code, github:yaoli/GSN (likelihood_estimation_parzen.py: sigma fixed at 0.2);
"[G]" the GAN paper's Parzen code (Goodfellow et al. 2014), github:goodfeli/adversarial parzen_ll.py (sigma
chosen from a log-spaced grid by the mean log-likelihood of validation images). Beside gsn.py in the GSN tower:
imports neither gsn nor anything above it (tests/test_layers.py).
"""
import math
import time

import numpy as np
import torch

# -----------------------------------------------------------------------------
# Parzen-window log-likelihood (Breuleux, Bengio, Vincent 2011; [C] likelihood_estimation_parzen.py)

def sq_distance_blocks(test, samples, chunk=1000):
    """Yield (i, D): D[a, b] = ||test[i + a] - samples[b]||^2 (float64) for chunks of `chunk` test rows,
    from matmuls (||x||^2 + ||s||^2 - 2 x.s), never a (n_test, N, d) tensor."""
    test = torch.as_tensor(test, dtype=torch.float32)
    samples = torch.as_tensor(samples, dtype=torch.float32)
    s2 = (samples * samples).sum(1)
    for i in range(0, len(test), chunk):
        x = test[i:i + chunk]
        yield i, ((x * x).sum(1, keepdim=True) + s2[None] - 2 * x @ samples.T).clamp_min_(0).double()


def parzen_log_likelihood(test, samples, sigma, chunk=1000, nearest=False):
    """Per-test-point log p(x) under an isotropic Gaussian mixture on the samples:
        log p(x) = logsumexp_i(-||x - s_i||^2 / (2 sigma^2)) - log N - (d/2) log(2 pi sigma^2)
    `sigma` may be a float or a list (then returns (len(sigma), n_test)). The squared distances
    (sq_distance_blocks) are reused for every sigma. nearest=True: also returns each test point's squared
    distance to its nearest sample (n_test,), from the same distances (one pass). It needs no sigma: as
    sigma -> 0 the log-likelihood is -nearest / (2 sigma^2) + a constant, and at a tuned sigma the nearest
    few samples still dominate the sum, so one nat is about 2 sigma^2 of squared distance."""
    sigmas = [float(sigma)] if np.isscalar(sigma) else [float(s) for s in sigma]
    N, d = torch.as_tensor(samples).shape
    out = torch.empty(len(sigmas), len(test), dtype=torch.float64)
    near = torch.empty(len(test), dtype=torch.float64)
    for i, D in sq_distance_blocks(test, samples, chunk):
        near[i:i + len(D)] = D.min(1).values
        for j, s in enumerate(sigmas):
            out[j, i:i + len(D)] = (torch.logsumexp(-D / (2 * s * s), 1) - math.log(N)
                                    - d / 2 * math.log(2 * math.pi * s * s))
    out = out[0] if np.isscalar(sigma) else out
    return (out, near) if nearest else out


GSN_SIGMAS = [float(s) for s in np.logspace(-1.3, -0.3, 21)]  # 0.05 .. 0.5: finer than [G]'s logspace(-1, 0, 10)


def parzen_evaluate(samples, valid, test, sigmas, fixed_sigma=0.2, chunk=1000, per_image=False):
    """[G]'s protocol: pick sigma from the grid (GSN_SIGMAS in every report) by the mean log-likelihood of a
    held-out validation set, then report the test mean +- standard error (std / sqrt(n)); also at [C]'s
    fixed sigma = 0.2, and the mean squared distance from a test image to its nearest sample (+- s.e.).
    Returns a dict of plain floats; per_image=True adds "ll_images", the tuned-sigma log-likelihood of
    every test image (a float64 numpy array, for error bars that pool several chains and seeds)."""
    val = parzen_log_likelihood(valid, samples, list(sigmas), chunk).mean(1)
    best = float(sigmas[int(val.argmax())])
    ll, near = parzen_log_likelihood(test, samples, [best, fixed_sigma], chunk, nearest=True)
    se = lambda v: float(v.std() / math.sqrt(len(v)))
    r = {"sigma": best, "ll": float(ll[0].mean()), "se": se(ll[0]), "valid_ll": float(val.max()),
         "sigma_fixed": fixed_sigma, "ll_fixed": float(ll[1].mean()), "se_fixed": se(ll[1]),
         "nearest": float(near.mean()), "nearest_se": se(near)}
    if per_image:
        r["ll_images"] = ll[0].numpy()
    return r


# -----------------------------------------------------------------------------
# The reference rows: centres that no model drew, scored like a chain's means

KMEANS_ITERS = 5  # Lloyd iterations of the k-means reference: enough to turn random images into averages


@torch.no_grad()
def kmeans(X, k, iters=KMEANS_ITERS, seed=1, chunk=2000):
    """Lloyd's k-means: k centroids started at k distinct random rows of X (numpy seed), then `iters`
    rounds of (assign each row to its nearest centroid, move each centroid to its rows' mean). A centroid
    left with no rows stays where it was. Returns (k, d) float32. The Parzen reference of Theis, van den
    Oord and Bethge (2016): averages of a few images, blurry prototypes that no sampler would draw."""
    X = torch.as_tensor(X, dtype=torch.float32)
    C = X[torch.from_numpy(np.random.RandomState(seed).choice(len(X), k, replace=False))].clone()
    for _ in range(iters):
        assign = torch.cat([D.argmin(1) for _, D in sq_distance_blocks(X, C, chunk)])
        sums = torch.zeros_like(C).index_add_(0, assign, X)
        counts = torch.bincount(assign, minlength=k).float()
        moved = counts > 0
        C[moved] = sums[moved] / counts[moved, None]
    return C


def reference_sets(train_X, n, seed):
    """The reference rows' Parzen centres, as many as a model's chain means: yields (name, (n, 784) array,
    note), each made when it is asked for (the k-means takes minutes; the real images are scored first)."""
    yield "real training images", train_X[:n], f"the first {n} training images as centres"
    t0 = time.time()
    centroids = kmeans(train_X, n, seed=seed).numpy()
    yield "k-means centroids", centroids, (f"{n} k-means centroids of the {len(train_X)} training images "
                                           f"({KMEANS_ITERS} iterations, {time.time() - t0:.0f} s)")
    pixels = np.random.RandomState(seed).rand(n, 784) < train_X.mean(0)
    yield "independent pixels", pixels.astype(np.float32), "Bernoulli(training pixel means) samples"


# -----------------------------------------------------------------------------
# Error bars: a Parzen estimate pooled over training seeds and chains, its standard error by source

def error_components(ll):
    """Mean of a Parzen estimate pooled over S training seeds x C chains x N test images, and its
    standard error split by source. ll: (S, C, N), the log-likelihood of test image i under the chain c of
    seed s. Seeds and chains are nested random effects; the N test images are shared by every chain:
      chain: var_chain = mean over seeds of the variance of that seed's C chain means; s.e. sqrt(var_chain / (S C))
      seed:  var_seed = variance of the S seed means - var_chain / C (floored at 0); s.e. sqrt(var_seed / S)
      test:  variance over the images of each image's mean over all S x C chains, / N
      total: sqrt(seed^2 + chain^2 + test^2). seed (chain) is None with one seed (chain): not measured,
             and then left out of the total.
    Also the standard deviations of one seed and one chain (how far a single run can land) and the per-image
    means (for gap_components)."""
    ll = np.asarray(ll, dtype=np.float64)
    S, C, N = ll.shape
    chain_means = ll.mean(2)
    var_chain = float(chain_means.var(1, ddof=1).mean()) if C > 1 else None
    var_seed = (max(float(chain_means.mean(1).var(ddof=1)) - (var_chain or 0.0) / C, 0.0) if S > 1 else None)
    images = ll.mean((0, 1))
    r = {"mean": float(ll.mean()), "seeds": S, "chains": C,
         "seed": None if var_seed is None else math.sqrt(var_seed / S),
         "chain": None if var_chain is None else math.sqrt(var_chain / (S * C)),
         "test": float(images.std(ddof=1) / math.sqrt(N)),
         "sd_seed": None if var_seed is None else math.sqrt(var_seed),
         "sd_chain": None if var_chain is None else math.sqrt(var_chain)}
    r["total"] = math.sqrt(sum(r[k] ** 2 for k in ("seed", "chain", "test") if r[k] is not None))
    return r, images


def seeds_mean_se(values, ses):
    """(mean, total s.e., test-set s.e.) of n seeds' Parzen estimates from their summaries alone, one chain each
    (the curve keeps no per-image values): error_components' seed and test terms. seed: sqrt(variance of the n
    values / n) (0 with one seed); test: sqrt(mean of the seeds' se^2), NOT divided by n: every seed is scored on
    the same test images, so their error does not average out over the seeds (error_components' test term, which
    this equals when the seeds' per-image values differ by a constant)."""
    n = len(values)
    var_seed = float(np.var(values, ddof=1)) if n > 1 else 0.0
    test = math.sqrt(float(np.mean(np.square(ses))))
    return float(np.mean(values)), math.sqrt(var_seed / n + test ** 2), test


def gap_components(a, b):
    """(mean of A) - (mean of B) from two error_components results, (r, images) each: the seed and chain
    variances add (independent runs); the test-set term is paired (both are scored on the same images), so
    it is the variance of the per-image difference / N, smaller than either model's own."""
    (ra, ia), (rb, ib) = a, b
    add = lambda k: None if ra[k] is None or rb[k] is None else math.hypot(ra[k], rb[k])
    r = {"mean": ra["mean"] - rb["mean"], "seed": add("seed"), "chain": add("chain"),
         "test": float((ia - ib).std(ddof=1) / math.sqrt(len(ia)))}
    r["total"] = math.sqrt(sum(r[k] ** 2 for k in ("seed", "chain", "test") if r[k] is not None))
    return r
