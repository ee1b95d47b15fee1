"""
gsn.py -- Generative Stochastic Networks (Bengio, Thibodeau-Laufer, Alain, Yosinski, ICML 2014;
Alain, Bengio, Yao et al. 2015) and the walkback denoising auto-encoder (Bengio, Yao, Alain,
Vincent, NeurIPS 2013), following the authors' Theano code github:yaoli/GSN ("[C]" below; its exact
settings are summarised in the README's GSN section).

The idea: instead of writing down p(x), learn the *transition operator* of a Markov chain whose
stationary distribution is the data distribution:
    H_{t+1} ~ P(H | H_t, X_t)          (noisy encoder: the hidden state carries the chain's memory)
    X_{t+1} ~ P(X | H_{t+1})           (decoder: factorised Bernoulli over the 784 pixels)
Training = denoising with *walkback*: start the chain at a corrupted training example, run it for
N steps, and ask every step to reconstruct the ORIGINAL clean example. The later steps visit the
places the chain would wander to (spurious modes) and learn to pull back toward the data.
Sampling = just run the chain. Inpainting = run the chain with the observed pixels clamped.

  python gsn.py                                   deep GSN (2 x 500 tanh), 3600 steps, ~8 CPU-minutes
  python gsn.py --model dae --hidden 1000         walkback DAE (1 sigmoid layer, 5 walkback steps)
  python gsn.py --model dae --walkbacks 1         ordinary DAE (no walkback)
  python gsn.py --data /path/to/mnist             real MNIST IDX files instead of procedural digits
  python gsn.py --experiment                      deep GSN vs walkback DAE vs DAE, Parzen table (~30 min)
  python gsn.py --resume                          continue runs/gsn/ckpt.pt
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
from data import DataError
from model import get_device


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


# -----------------------------------------------------------------------------
# Model

def salt_and_pepper(x, p):
    """[C] salt_and_pepper: each pixel is, with probability p, replaced by 0 or 1 (a fair coin).
    out = x * keep + (1 - keep) * coin, keep ~ Bern(1 - p), coin ~ Bern(1/2). No gradient (constant mask)."""
    if p <= 0:
        return x
    keep = torch.rand_like(x) >= p
    coin = (torch.rand_like(x) < 0.5).to(x.dtype)
    return torch.where(keep, x, coin)


class GSN(nn.Module):
    """K hidden layers h1..hK above the visible layer h0 = x, with TIED weights: W_i (size_i x size_{i+1})
    is used upward and W_i^T downward, as in a Deep Boltzmann Machine. K = 1 is the (walkback) DAE.

    One chain step ([C] update_layers) recomputes the odd layers (1, 3, ...) then the even ones (0, 2, ...),
    each from its current neighbours, like one sweep of a DBM's Gibbs sampler:
        a_i = h_{i-1} W_{i-1} + h_{i+1} W_i^T + b_i                (only the neighbours that exist)
        h_i = act(a_i + sigma * eps) + sigma * eps'               hidden i (pre- and post-activation noise;
                                                                  none on h1 when noiseless_h1, [C] default)
        p   = sigmoid(h_1 W_0^T + b_0)                            visible: P(X | H), one reconstruction
        h_0 = salt_and_pepper(Bernoulli(p), input_noise)          the corrupted sample fed back in
    """

    def __init__(self, n_visible=784, hidden=(500, 500), act="tanh", input_noise=0.4, hidden_noise=2.0,
                 noiseless_h1=True, input_sampling=True):
        super().__init__()
        sizes = [n_visible] + list(hidden)
        self.sizes, self.K = sizes, len(hidden)
        self.act = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}[act]
        self.input_noise, self.hidden_noise = input_noise, hidden_noise
        self.noiseless_h1, self.input_sampling = noiseless_h1, input_sampling
        # [C] init: Glorot uniform U(-sqrt(6/(n_in+n_out)), +...) for W, zeros for all biases (vis_init=0)
        self.W = nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            r = math.sqrt(6.0 / (n_in + n_out))
            self.W.append(nn.Parameter(torch.empty(n_in, n_out).uniform_(-r, r)))
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(s)) for s in sizes])

    def init_state(self, x_in):
        """Chain state: [h0 = the (corrupted) visible fed in, h1..hK = 0] ([C]: hiddens start at zero)."""
        return [x_in] + [x_in.new_zeros(x_in.shape[0], s) for s in self.sizes[1:]]

    def step(self, hs, noisy=True):
        """One chain step in place on the state hs; returns the visible logits (p = sigmoid(logits))."""
        K = self.K
        logits = None
        for i in list(range(1, K + 1, 2)) + list(range(0, K + 1, 2)):      # odd layers, then even
            if i == 0:
                logits = hs[1] @ self.W[0].T + self.b[0]                    # P(X|H): a0 = h1 W0^T + b0
                with torch.no_grad():                                       # Theano binomial: no gradient
                    x = torch.bernoulli(torch.sigmoid(logits)) if self.input_sampling else torch.sigmoid(logits)
                    hs[0] = salt_and_pepper(x, self.input_noise)            # C(X~|X) re-applied every step
                continue
            a = hs[i - 1] @ self.W[i - 1] + self.b[i]                       # from below: h_{i-1} W_{i-1}
            if i < K:
                a = a + hs[i + 1] @ self.W[i].T                             # from above: h_{i+1} W_i^T
            sigma = self.hidden_noise if (noisy and not (i == 1 and self.noiseless_h1)) else 0.0
            if sigma > 0:                                                   # GSN paper: noise pre and post act
                hs[i] = self.act(a + sigma * torch.randn_like(a)) + sigma * torch.randn_like(a)
            else:
                hs[i] = self.act(a)
        return logits

    def forward(self, x, walkbacks, target=None):
        """Walkback training graph ([C] build_graph): x~_0 = S&P(x), hiddens 0, `walkbacks` chain steps,
        loss = sum_t mean_{batch,pixels} BCE(p_t, x)   (the target is always the ORIGINAL clean x).
        Gradients flow through the hidden states carried across steps (not through the Bernoulli samples).
        Returns (loss, per-step losses (detached), per-step logits)."""
        target = x if target is None else target
        hs = self.init_state(salt_and_pepper(x, self.input_noise))
        losses, all_logits = [], []
        for _ in range(walkbacks):
            logits = self.step(hs, noisy=True)
            # with logits = a0, BCE(sigmoid(a0), x) computed stably (same objective as [C]'s BCE on p)
            losses.append(F.binary_cross_entropy_with_logits(logits, target))
            all_logits.append(logits)
        loss = torch.stack(losses).sum()                                    # walkback: sum over steps
        return loss, [l.detach() for l in losses], all_logits


def build_model(cfg):
    """GSN/DAE from a plain config dict (what the checkpoint stores)."""
    return GSN(784, [cfg["hidden"]] * cfg["layers"], act=cfg["act"], input_noise=cfg["input_noise"],
               hidden_noise=cfg["hidden_noise"])


# -----------------------------------------------------------------------------
# Sampling and inpainting ([C] sample_some_numbers, inpainting)

@torch.no_grad()
def sample_chain(model, n_chains, n_steps, start=None, noisy=True, generator_seed=None):
    """Run n_chains chains for n_steps steps -> (n_steps, n_chains, 784) chain MEANS p(X | H_t).
    As [C]: each chain starts from a data example (`start`, (n_chains, 784)) corrupted by salt-and-pepper
    noise, hiddens at 0, and ALL training noise stays on while sampling. Without `start`: sparse
    Bernoulli(0.13) images (uniform noise can lead a GSN into an inverted, white-background mode).
    The recorded means p(X|H) are what Parzen scores (never the binary samples)."""
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    dev = next(model.parameters()).device
    if start is None:
        start = torch.bernoulli(torch.full((n_chains, 784), 0.13, device=dev))
    start = torch.as_tensor(start, dtype=torch.float32, device=dev)
    hs = model.init_state(salt_and_pepper(start, model.input_noise))
    out = torch.empty(n_steps, n_chains, 784)
    for t in range(n_steps):
        out[t] = torch.sigmoid(model.step(hs, noisy=noisy)).cpu()
    return out


@torch.no_grad()
def inpaint(model, images, mask, n_steps=49, generator_seed=None):
    """Conditional sampling ([C] inpainting): the pixels where mask is True are observed and clamped to
    `images` after EVERY step, in the recorded mean and in the visible fed back (clean, no salt-and-pepper);
    the free pixels start as U(0, 1) noise; hiddens are never clamped.
    Returns (n_steps + 1, n, 784): the initial image then one mean per step."""
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    dev = next(model.parameters()).device
    x = torch.as_tensor(images, dtype=torch.float32, device=dev)
    m = torch.as_tensor(mask, dtype=torch.bool, device=dev).expand_as(x)
    v = torch.where(m, x, torch.rand_like(x))
    hs = model.init_state(v)
    out = [v.cpu()]
    for _ in range(n_steps):
        p = torch.sigmoid(model.step(hs, noisy=True))
        hs[0] = torch.where(m, x, hs[0])                                   # clamp the fed-back visible
        out.append(torch.where(m, x, p).cpu())                             # and the recorded mean
    return torch.stack(out)


def right_half_mask(n=1):
    """[C]'s inpainting mask: columns > 14 (right half) observed, columns 0-14 free. (n, 784) bool."""
    cols = torch.arange(784) % 28
    return (cols > 14).expand(n, 784).clone()


# -----------------------------------------------------------------------------
# Parzen-window log-likelihood (Breuleux, Bengio, Vincent 2011; [C] likelihood_estimation_parzen.py)

def parzen_log_likelihood(test, samples, sigma, chunk=1000):
    """Per-test-point log p(x) under an isotropic Gaussian mixture on the samples:
        log p(x) = logsumexp_i(-||x - s_i||^2 / (2 sigma^2)) - log N - (d/2) log(2 pi sigma^2)
    `sigma` may be a float or a list (then returns (len(sigma), n_test)). Squared distances come from
    chunked matmuls (||x||^2 + ||s||^2 - 2 x.s), never a (n_test, N, d) tensor, and are reused for
    every sigma."""
    test = torch.as_tensor(test, dtype=torch.float32)
    samples = torch.as_tensor(samples, dtype=torch.float32)
    sigmas = [float(sigma)] if np.isscalar(sigma) else [float(s) for s in sigma]
    N, d = samples.shape
    s2 = (samples * samples).sum(1)
    out = torch.empty(len(sigmas), len(test), dtype=torch.float64)
    for i in range(0, len(test), chunk):
        x = test[i:i + chunk]
        D = ((x * x).sum(1, keepdim=True) + s2[None] - 2 * x @ samples.T).clamp_min_(0).double()
        for j, s in enumerate(sigmas):
            out[j, i:i + chunk] = (torch.logsumexp(-D / (2 * s * s), 1) - math.log(N)
                                   - d / 2 * math.log(2 * math.pi * s * s))
    return out[0] if np.isscalar(sigma) else out


def parzen_evaluate(samples, valid, test, sigmas, fixed_sigma=0.2, chunk=1000):
    """The GAN paper's protocol ([G] parzen_ll.py): pick sigma from the grid by the mean log-likelihood of a
    held-out validation set, then report the test mean +- standard error (std / sqrt(n)); also at [C]'s
    fixed sigma = 0.2. Returns a dict of plain floats."""
    val = parzen_log_likelihood(valid, samples, list(sigmas), chunk).mean(1)
    best = float(sigmas[int(val.argmax())])
    ll = parzen_log_likelihood(test, samples, [best, fixed_sigma], chunk)
    se = lambda v: float(v.std() / math.sqrt(len(v)))
    return {"sigma": best, "ll": float(ll[0].mean()), "se": se(ll[0]), "valid_ll": float(val.max()),
            "sigma_fixed": fixed_sigma, "ll_fixed": float(ll[1].mean()), "se_fixed": se(ll[1])}


# -----------------------------------------------------------------------------
# Data and figures

N_VALID = 1000  # the last 1000 training images are held out (Parzen's sigma is chosen on them)


def load_data(spec, seed=0, cache_dir=None, n_train=None):
    """'procedural' -> the MNIST-like generator (60k/10k); otherwise a folder of MNIST IDX files.
    n_train limits the training images (plus the N_VALID held out; for quick runs).
    Returns (train, valid, test) float32 numpy arrays (n, 784) in [0, 1]."""
    if spec == "procedural":
        n = None if n_train is None else n_train + N_VALID
        Xtr, _ = data.load_digits("train", n=n, seed=seed, cache_dir=cache_dir)
        Xte, _ = data.load_digits("test", n=None if n is None else min(n, 10000), seed=seed, cache_dir=cache_dir)
    else:
        d = data.load_mnist(spec)
        Xtr, Xte = d["train"][0], d["test"][0]
        if n_train is not None:
            Xtr = Xtr[:n_train + N_VALID]
    if len(Xtr) <= N_VALID:
        raise DataError(f"need more than {N_VALID} training images, got {len(Xtr)}")
    return Xtr[:-N_VALID], Xtr[-N_VALID:], Xte


def tile(images, rows, cols, pad=1):
    """(rows*cols, 784) -> one (rows*29-1, cols*29-1) image for plt.imsave, with thin grey gaps."""
    images = np.asarray(images, dtype=np.float32).reshape(rows, cols, 28, 28)
    out = np.full((rows * (28 + pad) - pad, cols * (28 + pad) - pad), 0.5, np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * (28 + pad):r * (28 + pad) + 28, c * (28 + pad):c * (28 + pad) + 28] = images[r, c]
    return out


def save_image(path, img):
    """Grey-level 8-bit PNG (4x smaller than matplotlib's RGBA imsave; Pillow comes with matplotlib)."""
    from PIL import Image
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(path, optimize=True)


def save_figures(model, valid, test, out, n_chains=10, n_steps=30, seed=0):
    """Chain figure (each row: one chain, consecutive means, started from an S&P-corrupted held-out digit
    shown first) and inpainting figure (each row: the true digit, the start, then means every few steps;
    right half clamped). Returns the two paths."""
    torch.manual_seed(seed)
    chains = sample_chain(model, n_chains, n_steps - 1, start=valid[:n_chains])      # (T, C, 784)
    grid = np.concatenate([valid[:n_chains][None], chains.numpy()], 0)              # start digit first
    p_chain = os.path.join(out, "samples.png")
    save_image(p_chain, tile(grid.transpose(1, 0, 2).reshape(-1, 784), n_chains, n_steps))
    # one test digit per class when labels are unknown: just the first 10 test images
    x = torch.as_tensor(test[:10])
    steps = inpaint(model, x, right_half_mask(len(x)), n_steps=49)                  # (50, 10, 784)
    keep = [0, 1, 2, 3, 5, 10, 20, 30, 40, 49]
    grid = np.concatenate([x[None].numpy(), steps[keep].numpy()], 0)                # truth, then steps
    p_inp = os.path.join(out, "inpainting.png")
    save_image(p_inp, tile(grid.transpose(1, 0, 2).reshape(-1, 784), len(x), len(keep) + 1))
    return p_chain, p_inp


# -----------------------------------------------------------------------------
# Training

def validate_args(a):
    """Bad flag values -> one-line DataError (the CLI prints it and exits 1)."""
    for name in ("layers", "hidden", "walkbacks", "batch_size", "n_train"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if not 0 <= a.input_noise < 1:
        raise DataError(f"--input-noise must be in [0, 1), got {a.input_noise}")
    if a.hidden_noise is not None and a.hidden_noise < 0:
        raise DataError(f"--hidden-noise must be >= 0, got {a.hidden_noise}")
    if a.lr is not None and not a.lr > 0:
        raise DataError(f"--lr must be > 0, got {a.lr}")
    for name in ("epochs", "minutes", "max_steps"):
        v = getattr(a, name)
        if v is not None and v <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be > 0, got {v}")
    if a.data != "procedural" and not os.path.isdir(a.data):
        raise DataError(f"--data: MNIST folder not found: {a.data}")


def make_config(a):
    """The run's settings as a plain dict (stored in ckpt.pt; weights_only loading needs plain types).
    Per-model defaults follow [C]: GSN = tanh, hidden sigma 2, walkback 4, real-valued targets;
    DAE = sigmoid, no hidden noise, walkback 5, binarised (x > 0.5) targets (run_dae_*.py use MNIST_binary)."""
    gsn = a.model == "gsn"
    cfg = dict(model=a.model, layers=(a.layers or 2) if gsn else 1, hidden=a.hidden or (500 if gsn else 1000),
               act="tanh" if gsn else "sigmoid", walkbacks=a.walkbacks or (4 if gsn else 5),
               input_noise=a.input_noise, hidden_noise=(2.0 if gsn else 0.0) if a.hidden_noise is None else a.hidden_noise,
               binarize=(not gsn) if a.binarize is None else bool(a.binarize),
               optimizer=a.optimizer, batch_size=a.batch_size, epochs=a.epochs, max_steps=a.max_steps,
               minutes=a.minutes, data=a.data, n_train=a.n_train, seed=a.seed)
    if a.model == "dae" and a.layers not in (None, 1):
        raise DataError("--model dae has exactly one hidden layer (use --model gsn --layers K)")
    # Adam 1e-3 for short CPU budgets (DESIGN sec. 10: the original SGD gives a blurry blob in 10 min);
    # sgd = [C]: GSN lr 0.25, momentum 0.5 (dampening 0.5: m = 0.5 m + 0.5 g), x0.995 per epoch;
    #            DAE lr 10, no momentum, no decay.
    if a.optimizer == "adam":
        cfg.update(lr=a.lr or 1e-3, momentum=0.0, lr_decay=1.0)
    else:
        cfg.update(lr=a.lr or (0.25 if gsn else 10.0), momentum=0.5 if gsn else 0.0, lr_decay=0.995 if gsn else 1.0)
    return cfg


def train(cfg, out, resume=False, device=None, log_every=100, ckpt_every=500, quiet=False, figures=True):
    """Train a GSN/DAE with walkback; writes out/ckpt.pt (atomic), out/metrics.jsonl, figures.
    Returns (model, list of per-step total losses of this call). Under torchrun, each process takes
    rows rank, rank + world, ... of every minibatch and DDP averages the gradients; process 0 writes."""
    rank, world, dev = data.ddp_setup()
    try:
        res = _train(cfg, out, resume, dev or get_device(device or "auto"), rank, world, log_every, ckpt_every,
                     quiet or rank != 0, figures and rank == 0)
    except BaseException:
        data.ddp_cleanup(ok=False)
        raise
    data.ddp_cleanup()
    return res


def _train(cfg, out, resume, dev, rank, world, log_every, ckpt_every, quiet, figures):
    master = rank == 0
    os.makedirs(out, exist_ok=True)
    ckpt_path, metrics_path = os.path.join(out, "ckpt.pt"), os.path.join(out, "metrics.jsonl")
    state = None
    if resume:
        state = data.load_checkpoint(ckpt_path)
        saved = state["config"]
        # keep the architecture and data of the run; allow extending its budget from the command line
        cfg = {**saved, **{k: cfg.get(k) for k in ("epochs", "max_steps", "minutes")}}
    random.seed(cfg["seed"]); np.random.seed(cfg["seed"]); torch.manual_seed(cfg["seed"])
    Xtr, Xva, Xte = load_data(cfg["data"], seed=0, n_train=cfg.get("n_train"))
    # [C]: shuffle the training set ONCE with a fixed seed, then sequential minibatches every epoch
    Xtr = Xtr[np.random.RandomState(cfg["seed"]).permutation(len(Xtr))]
    X = torch.from_numpy(Xtr).to(dev)
    target_all = (X > 0.5).float() if cfg["binarize"] else X
    model = build_model(cfg).to(dev)
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                              dampening=cfg["momentum"])
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        data.set_rng_state(state["rng"])
        step = state["step"]
    B = cfg["batch_size"]
    if B % world:
        raise DataError(f"--batch-size {B} must be divisible by the number of processes ({world})")
    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        train_model = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        torch.manual_seed(cfg["seed"] * 1000 + rank + step)  # independent chain noise in each process
    per_epoch = len(X) // B
    max_steps = cfg["max_steps"] or (int(cfg["epochs"] * per_epoch) if cfg["epochs"] else None)
    deadline = time.time() + 60 * cfg["minutes"] if cfg["minutes"] else None
    if max_steps is None and deadline is None:
        raise DataError("give a budget: --epochs, --max-steps or --minutes")

    def save():
        if not master:
            return
        data.atomic_save({"config": cfg, "model": model.state_dict(), "optimizer": opt.state_dict(),
                          "rng": data.rng_state(), "step": step}, ckpt_path)

    losses = []
    t0, last_t, last_step = time.time(), time.time(), step
    mf = open(metrics_path, "a") if master else open(os.devnull, "w")
    stop = data.StopFlag()  # Ctrl-C: finish the step, save, stop
    if not quiet:
        n_par = sum(p.numel() for p in model.parameters())
        print(f"{cfg['model']} K={cfg['layers']} hidden={cfg['hidden']} walkbacks={cfg['walkbacks']} "
              f"params={n_par/1e6:.2f}M train={len(X)} device={dev} steps={max_steps} "
              f"minutes={cfg['minutes']} start_step={step}", flush=True)
    while (max_steps is None or step < max_steps) and (deadline is None or time.time() < deadline) and not stop.stop:
        epoch, i = divmod(step, per_epoch)
        for g in opt.param_groups:  # [C]: lr x 0.995 per epoch (stateless, so --resume continues exactly)
            g["lr"] = cfg["lr"] * cfg["lr_decay"] ** epoch
        x, tgt = X[i * B:(i + 1) * B][rank::world], target_all[i * B:(i + 1) * B][rank::world]
        loss, step_losses, _ = train_model(x, cfg["walkbacks"], target=tgt)
        if not torch.isfinite(loss):
            mf.close()
            raise TrainingError(f"non-finite loss {loss.item()} at step {step}; stopped, last good "
                                f"checkpoint kept in {ckpt_path}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % log_every == 0 or step == max_steps:
            now = time.time()
            rec = {"step": step, "epoch": round(step / per_epoch, 3), "loss": losses[-1],
                   "loss_last_step": step_losses[-1].item(), "lr": opt.param_groups[0]["lr"],
                   "img_per_s": round((step - last_step) * B / max(now - last_t, 1e-9), 1),
                   "elapsed_s": round(now - t0, 1)}
            mf.write(json.dumps(rec) + "\n"); mf.flush()
            last_t, last_step = now, step
            if not quiet:
                if max_steps:
                    eta = f"eta {(now - t0) / len(losses) * (max_steps - step) / 60:.1f} min"
                else:
                    eta = f"eta {max(deadline - now, 0) / 60:.1f} min"
                print(f"step {step} epoch {rec['epoch']:.2f} loss {rec['loss']:.4f} (last step "
                      f"{rec['loss_last_step']:.4f}) {rec['img_per_s']:.0f} img/s {eta}", flush=True)
        if step % ckpt_every == 0:
            save()
    mf.close()
    save()
    if stop.stop and master:
        print(f"stopped at step {step}; continue with --resume", flush=True)
    if figures:
        paths = save_figures(model, Xva, Xte, out)
        if not quiet:
            print(f"wrote {ckpt_path}, {metrics_path}, {paths[0]}, {paths[1]}")
    return model, losses


def load_model(path, device=None):
    """(model in eval mode on device, config dict) from a ckpt.pt written by train()."""
    state = data.load_checkpoint(path)
    if "config" not in state or "model" not in state:
        raise DataError(f"{path} is not a gsn.py checkpoint")
    model = build_model(state["config"])
    model.load_state_dict(state["model"])
    return model.to(get_device(device or "auto")).eval(), state["config"]


def demo(out, seed=0, quick=False):
    """The end-to-end demo's GSN stage: the default deep GSN for 800 steps (~1.5-2 CPU minutes; digits
    already recognisable), then its chain and inpainting figures. quick=True: a seconds-long toy run.
    Returns a small summary dict."""
    argv = ["--out", out, "--seed", str(seed), "--max-steps", "800"]
    if quick:
        argv = ["--out", out, "--seed", str(seed), "--max-steps", "20", "--hidden", "32", "--n-train", "200"]
    print(f"$ python gsn.py {' '.join(argv)}", flush=True)
    a = parse_args(argv)
    validate_args(a)
    t0 = time.time()
    _, losses = train(make_config(a), out, device=a.device)
    return {"steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
            "train_seconds": round(time.time() - t0, 1), "ckpt": os.path.join(out, "ckpt.pt"),
            "samples": os.path.join(out, "samples.png"), "inpainting": os.path.join(out, "inpainting.png")}


# -----------------------------------------------------------------------------
# The experiment: deep GSN vs walkback DAE vs DAE without walkback, equal CPU minutes each

# name, flags on top of the defaults. Budgets are fixed step counts (reproducible, unlike wall time on a
# shared machine) chosen for EQUAL matmul FLOPs, i.e. about equal CPU time (~8 one-core minutes each):
# per step, GSN-2/500 x 4 walkbacks = 4 x 1.28M weights touched, DAE/1000 x 5 = 5 x 1.57M, x 1 = 1.57M.
EXPERIMENT = [
    ("gsn2-500", ["--model", "gsn", "--layers", "2", "--hidden", "500", "--max-steps", "3600"]),
    ("dae-walkback-1000", ["--model", "dae", "--hidden", "1000", "--walkbacks", "5", "--max-steps", "2360"]),
    ("dae-no-walkback-1000", ["--model", "dae", "--hidden", "1000", "--walkbacks", "1", "--max-steps", "11800"]),
]


def run_experiment(a):
    """Train the three models for about the same CPU time each (EXPERIMENT), then evaluate each with eval.py's Parzen
    protocol plus the reference rows; writes <out>/results.json, results.md and figures."""
    import eval as ev
    rows = []
    for name, flags in EXPERIMENT:
        run_out = os.path.join(a.out, name)
        ra = parse_args(flags + ["--data", a.data, "--seed", str(a.seed), "--out", run_out])
        if a.budget_scale != 1:  # e.g. 0.1 for a quick look, 10+ for longer runs (same ratios)
            ra.max_steps = max(1, round(ra.max_steps * a.budget_scale))
        validate_args(ra)
        cfg = make_config(ra)
        t0 = time.time()
        print(f"=== experiment: training {name} ===", flush=True)
        train(cfg, run_out, device=a.device)
        rows.append((name, os.path.join(run_out, "ckpt.pt"), time.time() - t0))
    ev.gsn_report([(n, p) for n, p, _ in rows], a.out, data_spec=a.data, seed=a.seed, device=a.device,
                  train_seconds={n: s for n, _, s in rows})


# -----------------------------------------------------------------------------
# CLI

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["gsn", "dae"], default="gsn", help="deep GSN or one-layer (walkback) DAE")
    p.add_argument("--layers", type=int, default=None, help="hidden layers K (gsn; default 2)")
    p.add_argument("--hidden", type=int, default=None, help="units per hidden layer (default gsn 500, dae 1000; paper 1500/2000)")
    p.add_argument("--walkbacks", type=int, default=None, help="unrolled chain steps N (default gsn 4, dae 5; 1 = no walkback)")
    p.add_argument("--input-noise", type=float, default=0.4, help="salt-and-pepper probability")
    p.add_argument("--hidden-noise", type=float, default=None, help="Gaussian sigma pre/post activation (default gsn 2, dae 0)")
    p.add_argument("--binarize", type=int, choices=[0, 1], default=None, help="train on x > 0.5 (default: dae 1, gsn 0, as [C])")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="adam (short budgets) or the original sgd")
    p.add_argument("--lr", type=float, default=None, help="default adam 1e-3; sgd gsn 0.25, dae 10")
    p.add_argument("--epochs", type=float, default=None, help="training epochs")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (stops early if reached)")
    p.add_argument("--max-steps", type=int, default=None, help="number of minibatch updates (default 3600 if no other budget)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--data", default="procedural", help="'procedural' or a folder with MNIST IDX files")
    p.add_argument("--n-train", type=int, default=None, help="use only this many training images (quick runs)")
    p.add_argument("--out", default="runs/gsn")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue from <out>/ckpt.pt")
    p.add_argument("--device", default=None, help="cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--experiment", action="store_true", help="train gsn vs walkback dae vs dae, then Parzen table")
    p.add_argument("--budget-scale", type=float, default=1.0, help="--experiment: multiply every model's steps")
    a = p.parse_args(argv)
    if a.epochs is None and a.minutes is None and a.max_steps is None:
        a.max_steps = 3600  # default budget (~6 epochs): ~8 minutes of one free CPU core for the default GSN
    return a


def main(argv=None):
    a = parse_args(argv)
    try:
        if a.threads:
            torch.set_num_threads(a.threads)
        if a.experiment:
            if a.out == "runs/gsn":
                a.out = "runs/gsn-experiment"
            if a.data != "procedural" and not os.path.isdir(a.data):
                raise DataError(f"--data: MNIST folder not found: {a.data}")
            return run_experiment(a)
        validate_args(a)
        train(make_config(a), a.out, resume=a.resume, device=a.device)
    except (DataError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
