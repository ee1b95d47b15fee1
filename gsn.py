"""
gsn.py -- Generative Stochastic Networks (Bengio, Thibodeau-Laufer, Alain, Yosinski, ICML 2014;
Alain, Bengio, Yao et al. 2015) and the walkback denoising auto-encoder (Bengio, Yao, Alain,
Vincent, NeurIPS 2013), following the authors' Theano code github:yaoli/GSN ("[C]" below; its exact
settings are summarised in RESULTS.md, section GSN).

The idea: instead of writing down p(x), learn the *transition operator* of a Markov chain whose
stationary distribution is the data distribution:
    H_{t+1} ~ P(H | H_t, X_t)          (noisy encoder: the hidden state carries the chain's memory)
    X_{t+1} ~ P(X | H_{t+1})           (decoder: factorised Bernoulli over the 784 pixels)
Training = denoising with *walkback*: start the chain at a corrupted training example, run it for
N steps, and ask every step to reconstruct the ORIGINAL clean example. The later steps visit the
places the chain would wander to (spurious modes) and learn to pull back toward the data.
Sampling = just run the chain. Inpainting = run the chain with the observed pixels clamped.
Evaluation = Parzen-window log-likelihood of one long chain's means (report; `eval.py gsn`).

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
import shutil
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

import common
from common import UserError
from images import load_digits, load_mnist

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
# Sampling and inpainting ([C] sample_some_numbers, inpainting). Both draw from torch's global RNG:
# a caller that wants a reproducible picture seeds it first (chain_figure, inpaint_figure, report).

@torch.no_grad()
def sample_chain(model, n_chains, n_steps, start=None, noisy=True):
    """Run n_chains chains for n_steps steps -> (n_steps, n_chains, 784) chain MEANS p(X | H_t).
    As [C]: each chain starts from a data example (`start`, (n_chains, 784)) corrupted by salt-and-pepper
    noise, hiddens at 0, and ALL training noise stays on while sampling. Without `start`: sparse
    Bernoulli(0.13) images (uniform noise can lead a GSN into an inverted, white-background mode).
    The recorded means p(X|H) are what Parzen scores (never the binary samples)."""
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
def inpaint(model, images, mask, n_steps=49):
    """Conditional sampling ([C] inpainting): the pixels where mask is True are observed and clamped to
    `images` after EVERY step, in the recorded mean and in the visible fed back (clean, no salt-and-pepper);
    the free pixels start as U(0, 1) noise; hiddens are never clamped.
    Returns (n_steps + 1, n, 784): the initial image then one mean per step."""
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


def load_data(spec, n_train=None):
    """'procedural' -> the MNIST-like generator (60k/10k); otherwise a folder of MNIST IDX files.
    n_train limits the training images (plus the N_VALID held out; for quick runs).
    Returns (train, valid, test, test_labels): float32 (n, 784) in [0, 1], and int64 labels."""
    if spec == "procedural":
        n = None if n_train is None else n_train + N_VALID
        Xtr, _ = load_digits("train", n=n)
        Xte, yte = load_digits("test", n=None if n is None else min(n, 10000))
    else:
        mnist = load_mnist(spec)
        (Xtr, _), (Xte, yte) = mnist["train"], mnist["test"]
        if n_train is not None:
            Xtr = Xtr[:n_train + N_VALID]
    if len(Xtr) <= N_VALID:
        raise UserError(f"need more than {N_VALID} training images, got {len(Xtr)}")
    return Xtr[:-N_VALID], Xtr[-N_VALID:], Xte, yte


def data_flag(s):
    """--data: 'procedural' or an existing folder of MNIST IDX files (checked where the flag enters)."""
    if s != "procedural" and not os.path.isdir(s):
        raise argparse.ArgumentTypeError(f"MNIST folder not found: {s}")
    return s


def one_per_class(X, y, seed=2):
    """[C]: the first test digit of each class 0-9 after shuffling with numpy seed 2."""
    perm = np.random.RandomState(seed).permutation(len(y))
    return X[[perm[np.nonzero(y[perm] == c)[0][0]] for c in range(10) if (y == c).any()]]


def tile(frames, rows, cols, pad=1):
    """(rows*cols, 784) -> one (rows*29-1, cols*29-1) image, with thin grey gaps."""
    frames = np.asarray(frames, dtype=np.float32).reshape(rows, cols, 28, 28)
    out = np.full((rows * (28 + pad) - pad, cols * (28 + pad) - pad), 0.5, np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * (28 + pad):r * (28 + pad) + 28, c * (28 + pad):c * (28 + pad) + 28] = frames[r, c]
    return out


def save_image(path, img):
    """Grey-level 8-bit PNG (4x smaller than matplotlib's RGBA imsave; Pillow comes with matplotlib)."""
    from PIL import Image
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(path, optimize=True)


def save_rows(path, frames):
    """(T, C, 784) frames -> one image, a row per chain C, time running left to right."""
    T, C = frames.shape[:2]
    save_image(path, tile(np.asarray(frames).transpose(1, 0, 2).reshape(-1, 784), C, T))


def chain_figure(model, starts, path, n_steps=60, seed=0):
    """Each row: one chain, its clean start digit, then n_steps - 1 consecutive means (sample_chain)."""
    torch.manual_seed(seed)
    chains = sample_chain(model, len(starts), n_steps - 1, start=starts).numpy()       # (T, C, 784)
    save_rows(path, np.concatenate([np.asarray(starts)[None], chains], 0))


INPAINT_SHOWN = [0, 1, 2, 3, 5, 10, 20, 30, 40, 49]  # the start, then the means after these steps


def inpaint_figure(model, digits, path, seed=0):
    """Each row: the true digit, then the chain with the right half clamped ([C]: free half starts as
    U(0,1) noise, 49 steps) at INPAINT_SHOWN."""
    torch.manual_seed(seed)
    x = torch.as_tensor(digits)
    steps = inpaint(model, x, right_half_mask(len(x)), n_steps=INPAINT_SHOWN[-1]).numpy()
    save_rows(path, np.concatenate([x.numpy()[None], steps[INPAINT_SHOWN]], 0))


# -----------------------------------------------------------------------------
# Training

def make_config(a):
    """The run's settings as a plain dict (stored in ckpt.pt; weights_only loading needs plain types).
    Per-model defaults follow [C]: GSN = tanh, hidden sigma 2, walkback 4, real-valued targets;
    DAE = sigmoid, no hidden noise, walkback 5, binarised (x > 0.5) targets (run_dae_*.py use MNIST_binary)."""
    gsn = a.model == "gsn"
    if not gsn and a.layers not in (None, 1):
        raise UserError("--model dae has exactly one hidden layer (use --model gsn --layers K)")
    cfg = dict(model=a.model, layers=(a.layers or 2) if gsn else 1, hidden=a.hidden or (500 if gsn else 1000),
               act="tanh" if gsn else "sigmoid", walkbacks=a.walkbacks or (4 if gsn else 5),
               input_noise=a.input_noise, hidden_noise=(2.0 if gsn else 0.0) if a.hidden_noise is None else a.hidden_noise,
               binarize=(not gsn) if a.binarize is None else bool(a.binarize),
               optimizer=a.optimizer, batch_size=a.batch_size, epochs=a.epochs, max_steps=a.max_steps,
               minutes=a.minutes, data=a.data, n_train=a.n_train, seed=a.seed)
    # Adam 1e-3 for short CPU budgets (an early prototype: the original SGD gives a blurry blob in 10 min);
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
    return common.distributed(_train, cfg, out, resume, log_every, ckpt_every, quiet, figures,
                              device=device or "auto")


def _train(rank, world, dev, cfg, out, resume, log_every, ckpt_every, quiet, figures):
    master = rank == 0
    quiet, figures = quiet or not master, figures and master
    common.make_out_dir(out)
    ckpt_path = os.path.join(out, "ckpt.pt")
    state = None
    if resume:
        state = common.load_checkpoint(ckpt_path)
        # keep the architecture and data of the run; allow extending its budget from the command line
        cfg = {**state["config"], **{k: cfg.get(k) for k in ("epochs", "max_steps", "minutes")}}
    torch.manual_seed(cfg["seed"])
    Xtr, Xva, Xte, yte = load_data(cfg["data"], n_train=cfg.get("n_train"))
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
        common.set_rng_state(state["rng"])
        step = state["step"]
    B = cfg["batch_size"]
    if B % world:
        raise UserError(f"--batch-size {B} must be divisible by the number of processes ({world})")
    train_model = model
    if world > 1:
        # with fewer walkback steps than layers the top layers' biases never reach the loss: DDP must be told
        train_model = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                          find_unused_parameters=cfg["walkbacks"] < cfg["layers"])
        torch.manual_seed(cfg["seed"] * 1000 + rank + step)  # independent chain noise in each process
    per_epoch = len(X) // B
    max_steps = cfg["max_steps"] or (int(cfg["epochs"] * per_epoch) if cfg["epochs"] else None)
    deadline = time.time() + 60 * cfg["minutes"] if cfg["minutes"] else None
    if max_steps is None and deadline is None:
        raise UserError("give a budget: --epochs, --max-steps or --minutes")
    # the log is cut back to the rows the checkpoint had seen: a crash + --resume never repeats a row
    metrics = common.Metrics(out, resume=state is not None, rows=state.get("metrics_rows") if state else None,
                             enabled=master)

    def save():
        if master:
            common.atomic_save({"config": cfg, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "rng": common.rng_state(), "step": step, "metrics_rows": metrics.rows}, ckpt_path)

    losses, unchecked = [], []  # unchecked: the losses since the last check, still on the device
    # to `losses` at each check (common.check_pending); 0-based step numbers, as before
    check_losses = lambda: losses.extend(common.check_pending(unchecked, step - len(unchecked), world, dev))

    t0, last_t, last_step = time.time(), time.time(), step
    stop = common.StopFlag()  # Ctrl-C: finish the step, save, stop
    if not quiet:
        n_par = sum(p.numel() for p in model.parameters())
        print(f"{cfg['model']} K={cfg['layers']} hidden={cfg['hidden']} walkbacks={cfg['walkbacks']} "
              f"params={n_par/1e6:.2f}M train={len(X)} device={dev} steps={max_steps} "
              f"minutes={cfg['minutes']} start_step={step}", flush=True)
    try:
        stopped = False
        while max_steps is None or step < max_steps:
            # Ctrl-C or the --minutes deadline in any process stops all (a process that stopped alone
            # would leave the others waiting in DDP's next all-reduce)
            stopped = common.agree(stop.stop or (deadline is not None and time.time() >= deadline), world, dev)
            if stopped:
                break
            epoch, i = divmod(step, per_epoch)
            for g in opt.param_groups:  # [C]: lr x 0.995 per epoch (stateless, so --resume continues exactly)
                g["lr"] = cfg["lr"] * cfg["lr_decay"] ** epoch
            x, tgt = X[i * B:(i + 1) * B][rank::world], target_all[i * B:(i + 1) * B][rank::world]
            loss, step_losses, _ = train_model(x, cfg["walkbacks"], target=tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # A step whose gradients are not finite (a nan/inf loss; under torchrun, in any process) is not
            # applied, with no host sync: its gradients become 0 and its loss counts as nan, so the next
            # check stops the run. Applied, it would put NaN in the weights, and torch.bernoulli in the
            # next forward rejects NaN (on CUDA with a device-side assert, not a clear NonFiniteLoss).
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            bad = ~torch.isfinite(torch.nn.utils.get_total_norm(grads))
            for g in grads:
                g.masked_fill_(bad, 0.0)
            unchecked.append(loss.detach().masked_fill(bad, float("nan")))
            opt.step()
            step += 1
            if step % log_every == 0 or step % ckpt_every == 0 or step == max_steps:
                check_losses()  # in every process (a collective under torchrun), before logging or saving
            if step % log_every == 0 or step == max_steps:
                now = time.time()
                rec = {"step": step, "epoch": round(step / per_epoch, 3), "loss": losses[-1],
                       "loss_last_step": step_losses[-1].item(), "lr": opt.param_groups[0]["lr"],
                       "img_per_s": round((step - last_step) * B / max(now - last_t, 1e-9), 1),
                       "elapsed_s": round(now - t0, 1)}
                metrics.log(**rec)
                last_t, last_step = now, step
                if not quiet:
                    left = (now - t0) / len(losses) * (max_steps - step) if max_steps else max(deadline - now, 0)
                    print(f"step {step} epoch {rec['epoch']:.2f} loss {rec['loss']:.4f} (last step "
                          f"{rec['loss_last_step']:.4f}) {rec['img_per_s']:.0f} img/s eta {left / 60:.1f} min", flush=True)
            if step % ckpt_every == 0:
                save()
        check_losses()  # stopped between two checks (Ctrl-C, --minutes)
        save()
    finally:
        metrics.close()
    if stopped and (deadline is None or time.time() < deadline) and master:
        print(f"stopped at step {step}; continue with --resume", flush=True)
    if figures:
        paths = os.path.join(out, "samples.png"), os.path.join(out, "inpainting.png")
        chain_figure(model, Xva[:10], paths[0], n_steps=30)
        inpaint_figure(model, one_per_class(Xte, yte), paths[1])
        if not quiet:
            print(f"wrote {ckpt_path}, {os.path.join(out, 'metrics.jsonl')}, {paths[0]}, {paths[1]}")
    return model, losses


def load_model(path, device=None):
    """(model in eval mode on device, config dict, training step) from a ckpt.pt written by train()."""
    state = common.load_checkpoint(path)
    if not isinstance(state.get("config"), dict) or "model" not in state:
        raise UserError(f"{path} is not a gsn.py checkpoint")
    model = build_model(state["config"])
    model.load_state_dict(state["model"])
    return model.to(common.get_device(device or "auto")).eval(), state["config"], state["step"]


def demo(out, seed=0, quick=False):
    """The end-to-end demo's GSN stage: the default deep GSN for 800 steps (~1.5-2 CPU minutes; digits
    already recognisable), then its chain and inpainting figures. quick=True: a seconds-long toy run.
    Returns a small summary dict."""
    argv = ["--out", out, "--seed", str(seed), "--max-steps", "800"]
    if quick:
        argv = ["--out", out, "--seed", str(seed), "--max-steps", "20", "--hidden", "32", "--n-train", "200"]
    print(f"$ python gsn.py {' '.join(argv)}", flush=True)
    a = parse_args(argv)
    t0 = time.time()
    _, losses = train(make_config(a), out, device=a.device)
    return {"steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
            "train_seconds": round(time.time() - t0, 1), "ckpt": os.path.join(out, "ckpt.pt"),
            "samples": os.path.join(out, "samples.png"), "inpainting": os.path.join(out, "inpainting.png")}


# -----------------------------------------------------------------------------
# Evaluation (`eval.py gsn`, `gsn.py --experiment`)
#
# Protocol ([C]'s likelihood_estimation_parzen.py): for each model, ONE chain of n_samples (10,000)
# consecutive steps started from the first held-out validation digit corrupted by salt-and-pepper noise (as [C], which
# starts from test_X[0]; a validation digit keeps every test image out of the Parzen centres), all
# training noise on, no burn-in, recording the means p(X|H). Parzen sigma is chosen on the 1000
# held-out validation images (never trained on) from GSN_SIGMAS, as the GAN paper does; the test
# log-likelihood +- standard error is reported at that sigma and at [C]'s fixed sigma = 0.2.
# Reference rows (real training images, independent pixels) are scored the same way.

GSN_SIGMAS = [float(s) for s in np.logspace(-1.3, -0.3, 21)]  # 0.05 .. 0.5, fine grid


def report(runs, out, data_spec=None, seed=1, device=None, n_samples=10000, train_seconds=None,
           references=True):
    """Parzen table for runs = [(name, ckpt path), ...] plus the reference rows; per model the chain,
    inpainting and 400-mean figures under out/. data_spec None: the first checkpoint's data. Writes
    out/results.md and out/results.json, prints the table and one JSON line; returns the rows."""
    models = [(name, *load_model(path, device)) for name, path in runs]  # a bad checkpoint fails first
    data_spec = data_spec or models[0][2]["data"]
    common.make_out_dir(out)
    train_X, valid, test, test_y = load_data(data_spec)
    protocol = (f"Parzen centres: one chain of {n_samples} consecutive means p(X|H) per model, started from the "
                f"first held-out validation digit corrupted by salt-and-pepper noise, all noise on, no burn-in; "
                f"sigma tuned on {len(valid)} held-out validation images over logspace(-1.3,-0.3,21), also sigma=0.2; "
                f"{len(test)} test images, mean +- standard error")
    print(protocol, flush=True)
    rows = []

    def score(name, samples, note, **extra):
        t0 = time.time()
        r = parzen_evaluate(torch.as_tensor(samples), valid, test, GSN_SIGMAS)
        r.update(name=name, note=note, n_samples=len(samples), parzen_s=round(time.time() - t0, 1), **extra)
        rows.append(r)
        print(f"  {name}: log-lik {r['ll']:.1f} +- {r['se']:.1f} (sigma {r['sigma']:.3f}); "
              f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} at sigma 0.2", flush=True)

    for name, model, cfg, step in models:
        print(f"[{name}] sampling a {n_samples}-step chain ...", flush=True)
        t0 = time.time()
        torch.manual_seed(seed)
        s = sample_chain(model, 1, n_samples, start=torch.as_tensor(valid[:1]))[:, 0]    # (n_samples, 784)
        t_chain = time.time() - t0
        chain_figure(model, valid[:8], os.path.join(out, f"{name}-chains.png"), seed=seed)
        inpaint_figure(model, one_per_class(test, test_y), os.path.join(out, f"{name}-inpainting.png"), seed=seed)
        if len(s) >= 400:  # [C]'s figure: the first 400 consecutive means, 20 x 20
            save_image(os.path.join(out, f"{name}-chain400.png"), tile(s[:400].numpy(), 20, 20))
        desc = f"{cfg['model']} K={cfg['layers']} h={cfg['hidden']} walkbacks={cfg['walkbacks']} {cfg['optimizer']} steps={step}"
        train_s = (train_seconds or {}).get(name)  # None (JSON null) when the report did not train it
        score(name, s, desc, chain_s=round(t_chain, 1), step=step,
              epochs=round(step * cfg["batch_size"] / len(train_X), 2),
              train_s=None if train_s is None else round(train_s, 1))
    if references:
        rng = np.random.RandomState(seed)
        real = train_X[:n_samples]
        score("real training images", real, f"{len(real)} training images as centres (upper reference)")
        score("independent pixels", (rng.rand(n_samples, 784) < train_X.mean(0)).astype(np.float32),
              "Bernoulli(training pixel means) samples")
    lines = ["| model | Parzen log-lik (tuned sigma) | sigma | log-lik at sigma=0.2 | training | setting |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        tr = "-"
        if "step" in r:
            took = "" if r["train_s"] is None else f", {r['train_s']:.0f} s"
            tr = f"{r['step']} steps ({r['epochs']} ep{took})"
        lines.append(f"| {r['name']} | {r['ll']:.1f} +- {r['se']:.1f} | {r['sigma']:.3f} | "
                     f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} | {tr} | {r['note']} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table + "\n\n" + protocol + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"data": data_spec, "seed": seed, "protocol": protocol, "rows": rows}, f, indent=1)
    print(json.dumps({"gsn_parzen": [{k: r[k] for k in ("name", "ll", "se", "sigma", "ll_fixed", "se_fixed")}
                                     for r in rows]}))
    return rows


def add_report_args(p):
    """The flags of `eval.py gsn` (report_from_args runs it)."""
    p.add_argument("--ckpt", nargs="+", required=True, help="one or more gsn.py checkpoints (name=path allowed)")
    p.add_argument("--dae-ckpt", default=None, help="a DAE trained without walkback, scored as a reference row")
    p.add_argument("--data", type=data_flag, default=None, help="override the data the first checkpoint was trained on")
    p.add_argument("--out", default=None, help="figures/results folder (default: the first ckpt's folder)")
    p.add_argument("--n-samples", type=common.positive, default=10000, help="consecutive chain means used as Parzen centres")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default=None)
    p.add_argument("--no-references", action="store_true", help="skip the real-images and pixel rows")


def report_from_args(args):
    """Run report() for flags declared by add_report_args. A run is named by `name=path` or its folder."""
    runs = []
    for c in args.ckpt + ([f"dae-no-walkback={args.dae_ckpt}"] if args.dae_ckpt else []):
        name, _, path = c.rpartition("=")
        runs.append((name or os.path.basename(os.path.dirname(os.path.abspath(path))), path))
    return report(runs, args.out or os.path.dirname(os.path.abspath(runs[0][1])), data_spec=args.data,
                  seed=args.seed, device=args.device, n_samples=args.n_samples, references=not args.no_references)


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
    """Train the three models (EXPERIMENT, steps x --budget-scale), then report() on them: writes
    <out>/results.json, results.md and the figures."""
    runs, seconds = [], {}
    for name, flags in EXPERIMENT:
        run_out = os.path.join(a.out, name)
        ra = parse_args(flags + ["--data", a.data, "--seed", str(a.seed), "--out", run_out])
        ra.max_steps = max(1, round(ra.max_steps * a.budget_scale))  # e.g. 0.1 for a quick look
        print(f"=== experiment: training {name} ===", flush=True)
        t0 = time.time()
        train(make_config(ra), run_out, device=a.device)
        runs.append((name, os.path.join(run_out, "ckpt.pt")))
        seconds[name] = time.time() - t0
    return report(runs, a.out, data_spec=a.data, seed=a.seed, device=a.device, n_samples=a.parzen_samples,
                  train_seconds=seconds)



# -----------------------------------------------------------------------------
# The curve: Parzen log-likelihood against training budget. One point per model says little when
# the models learn at different speeds: does the deep GSN lose, or only learn slower?

# name, flags, steps per budget unit (1/8 of the model's --experiment budget, ~0.4 CPU-minutes), the
# longest budget in units (64 = 8 times the --experiment budget); checkpoints at 1, 2, 4, ... units
CURVE = [
    ("gsn2-500", ["--model", "gsn"], 450, 64),
    ("dae-walkback-1000", ["--model", "dae", "--hidden", "1000", "--walkbacks", "5"], 295, 64),
    # [C]'s optimiser: SGD lr 0.25, momentum 0.5 (dampening 0.5), lr x 0.995 per epoch. Real-valued
    # targets, tanh and hidden noise sigma 2 are already the GSN defaults; 1500 units would cost 4x.
    ("gsn2-500-original", ["--model", "gsn", "--optimizer", "sgd"], 450, 16),
]
CURVE_SEED2_UNITS = 4  # the second seed stops here (the first three checkpoints)


def run_curve(a):
    """Train each CURVE model once, evaluating a copy of the checkpoint at 1, 2, 4, 8, ... budget units
    (the run continues from that checkpoint: one run gives the curve). Seed a.seed goes to the model's
    longest budget, seed a.seed + 1 to CURVE_SEED2_UNITS. Training CPU time (time.process_time) is summed up to each point. Finished
    points are read back from <out>/<run>/point_<u>.json, so a stopped curve continues where it was."""
    rows = []
    for name, flags, unit, longest in CURVE:
        for seed, last in ((a.seed, longest), (a.seed + 1, CURVE_SEED2_UNITS)):
            units = [2 ** i for i in range(int(math.log2(last)) + 1)]
            run_out = os.path.join(a.out, f"{name}-s{seed}")
            cpu = 0.0
            for u in units:
                point = os.path.join(run_out, f"point_{u}.json")
                if os.path.exists(point):
                    with open(point) as f:
                        rows.append(json.load(f))
                    cpu = rows[-1]["cpu_s"]
                    continue
                steps = max(1, round(u * unit * a.budget_scale))
                ra = parse_args(flags + ["--data", a.data, "--seed", str(seed), "--out", run_out,
                                         "--max-steps", str(steps)] + (["--n-train", str(a.n_train)] if a.n_train else []))
                t0 = time.process_time()
                train(make_config(ra), run_out, resume=os.path.exists(os.path.join(run_out, "ckpt.pt")),
                      device=a.device, quiet=True, figures=False)
                cpu += time.process_time() - t0
                ckpt = os.path.join(run_out, f"ckpt_{u}.pt")
                os.replace(os.path.join(run_out, "ckpt.pt"), ckpt)  # the next point resumes from a copy
                shutil.copy(ckpt, os.path.join(run_out, "ckpt.pt"))
                refs = os.path.join(a.out, "references.json")
                r = report([(f"{name}-s{seed}-{u}", ckpt)], os.path.join(run_out, f"report_{u}"), data_spec=a.data,
                           seed=a.seed, device=a.device, n_samples=a.parzen_samples, references=not os.path.exists(refs))
                if len(r) > 1:  # the reference rows (real training images, independent pixels), once
                    with open(refs, "w") as f:
                        json.dump(r[1:], f)
                rows.append(dict(model=name, seed=seed, units=u, steps=steps, cpu_s=round(cpu, 3),
                                 **{k: r[0][k] for k in ("ll", "se", "sigma", "ll_fixed", "se_fixed")}))
                with open(point, "w") as f:
                    json.dump(rows[-1], f)
                print(f"[curve {time.strftime('%H:%M:%S')}] {name} seed {seed}: {u} units = {steps} steps, "
                      f"{cpu / 60:.1f} CPU-min, Parzen {rows[-1]['ll']:.1f} +- {rows[-1]['se']:.1f}", flush=True)
    with open(os.path.join(a.out, "references.json")) as f:
        rows += [dict(r, reference=True) for r in json.load(f)]
    with open(os.path.join(a.out, "curve.json"), "w") as f:
        json.dump(rows, f, indent=1)
    curve_report(rows, a.out)
    return rows


def curve_report(rows, out):
    """Table and figure: Parzen (tuned sigma, and sigma = 0.2) against training CPU-minutes, mean over
    the seeds at each budget; error bar = sqrt(seed variance / n + mean test-image variance / n)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    points = {}
    for r in rows:
        if "model" in r:
            points.setdefault((r["model"], r["units"]), []).append(r)
    lines = ["| model | units | steps | seeds | CPU-min (mean) | Parzen, tuned sigma | Parzen at sigma = 0.2 |",
             "|---|---|---|---|---|---|---|"]
    stats = {}
    for (model, u), rs in points.items():
        n = len(rs)
        cell = {}
        for key, se_key in (("ll", "se"), ("ll_fixed", "se_fixed")):
            vals = [r[key] for r in rs]
            var_seed = float(np.var(vals, ddof=1)) if n > 1 else 0.0
            cell[key] = (float(np.mean(vals)), math.sqrt(var_seed / n + np.mean([r[se_key] ** 2 for r in rs]) / n))
        stats[model, u] = (float(np.mean([r["cpu_s"] for r in rs])) / 60, cell)
        lines.append(f"| {model} | {u} | {rs[0]['steps']} | {n} | {stats[model, u][0]:.1f} | "
                     f"{cell['ll'][0]:.1f} +- {cell['ll'][1]:.1f} | {cell['ll_fixed'][0]:.1f} +- {cell['ll_fixed'][1]:.1f} |")
    refs = [r for r in rows if r.get("reference")]
    lines += [f"| *reference:* {r['name']} | | | | | {r['ll']:.1f} +- {r['se']:.1f} | {r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} |"
              for r in refs]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(out, "curve.md"), "w") as f:
        f.write(table + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in zip(axes, ("ll", "ll_fixed"), ("sigma tuned on validation", "sigma = 0.2")):
        for model in dict.fromkeys(m for m, _ in points):
            us = sorted(u for m, u in points if m == model)
            ax.errorbar([stats[model, u][0] for u in us], [stats[model, u][1][key][0] for u in us],
                        yerr=[stats[model, u][1][key][1] for u in us], marker="o", ms=3, capsize=2, label=model)
        for r, ls in zip(refs, ("--", ":")):
            ax.axhline(r[key], color="gray", ls=ls, lw=1, label=r["name"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training CPU-minutes (one core)")
        ax.set_title(f"Parzen log-likelihood, {title}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test log-likelihood (nats)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curve.png"), dpi=80)
    plt.close(fig)


# -----------------------------------------------------------------------------
# CLI

def parse_args(argv=None):
    pos, pos_float = common.positive, common.positive_float
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["gsn", "dae"], default="gsn", help="deep GSN or one-layer (walkback) DAE")
    p.add_argument("--layers", type=pos, default=None, help="hidden layers K (gsn; default 2)")
    p.add_argument("--hidden", type=pos, default=None, help="units per hidden layer (default gsn 500, dae 1000; paper 1500/2000)")
    p.add_argument("--walkbacks", type=pos, default=None, help="unrolled chain steps N (default gsn 4, dae 5; 1 = no walkback)")
    p.add_argument("--input-noise", type=common.flag(float, min=0.0, max=1.0, name="probability"), default=0.4,
                   help="salt-and-pepper probability")
    p.add_argument("--hidden-noise", type=common.flag(float, min=0.0), default=None,
                   help="Gaussian sigma pre/post activation (default gsn 2, dae 0)")
    p.add_argument("--binarize", type=int, choices=[0, 1], default=None, help="train on x > 0.5 (default: dae 1, gsn 0, as [C])")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="adam (short budgets) or the original sgd")
    p.add_argument("--lr", type=pos_float, default=None, help="default adam 1e-3; sgd gsn 0.25, dae 10")
    p.add_argument("--epochs", type=pos_float, default=None, help="training epochs")
    p.add_argument("--minutes", type=pos_float, default=None, help="wall-clock budget (stops early if reached)")
    p.add_argument("--max-steps", type=pos, default=None, help="number of minibatch updates (default 3600 if no other budget)")
    p.add_argument("--batch-size", type=pos, default=100)
    p.add_argument("--data", type=data_flag, default="procedural", help="'procedural' or a folder with MNIST IDX files")
    p.add_argument("--n-train", type=pos, default=None, help="use only this many training images (quick runs)")
    p.add_argument("--out", default=None, help="default runs/gsn (--experiment: runs/gsn-experiment)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue from <out>/ckpt.pt")
    p.add_argument("--device", default=None, help="cuda if available, else cpu")
    p.add_argument("--threads", type=pos, default=None, help="torch.set_num_threads")
    p.add_argument("--experiment", action="store_true", help="train gsn vs walkback dae vs dae, then Parzen table")
    p.add_argument("--curve", action="store_true", help="Parzen against training budget: gsn vs walkback dae vs gsn with sgd")
    p.add_argument("--budget-scale", type=pos_float, default=1.0, help="--experiment/--curve: multiply every model's steps")
    p.add_argument("--parzen-samples", type=pos, default=10000, help="--experiment/--curve: chain means used as Parzen centres")
    a = p.parse_args(argv)
    if a.epochs is None and a.minutes is None and a.max_steps is None:
        a.max_steps = 3600  # default budget (~6 epochs): ~8 minutes of one free CPU core for the default GSN
    a.out = a.out or ("runs/gsn-experiment" if a.experiment else "runs/gsn-curve" if a.curve else "runs/gsn")
    return a


@common.cli
def main(argv=None):
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.experiment:
        return run_experiment(a)
    if a.curve:
        return run_curve(a)
    train(make_config(a), a.out, resume=a.resume, device=a.device)


if __name__ == "__main__":
    main()
