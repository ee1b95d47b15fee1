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

This file is the paper's concept. How a chain is scored (Parzen window, reference centres, error bars)
is parzen.py; the figures and the experiments that train and score several models are gsn_experiments.py.

  salt_and_pepper, GSN, build_model              the model: corruption, one chain step, the walkback loss
  train_flops                                    matmul FLOPs of one training step (equal compute, bench.py)
  sample_chain, inpaint, right_half_mask         sampling and inpainting
  N_VALID, load_data, data_flag                  the digits: training, held-out validation, test
  BINARIZE, GSNConfig, config_from_args          a run's settings (the deep GSN's and the DAE's defaults)
  read_checkpoint, saved_config, train,          training (resume, torchrun; common.Run) and its
    load_model                                   checkpoint
  parse_args, main                               the command line: train one model (ckpt.pt, metrics.jsonl)

  python gsn.py                                   deep GSN (2 x 500 tanh), 3600 steps, ~8 CPU-minutes
  python gsn.py --model dae --hidden 1000         walkback DAE (1 sigmoid layer, 5 walkback steps)
  python gsn.py --model dae --walkbacks 1         ordinary DAE (no walkback)
  python gsn.py --data /path/to/mnist             real MNIST IDX files instead of procedural digits
  python gsn.py --resume                          continue runs/gsn/ckpt.pt
  python gsn_experiments.py figures --ckpt runs/gsn/ckpt.pt       its chains and inpainting (PNG)
  torchrun --nproc_per_node=2 gsn.py ...          data parallel: each process takes a share of every minibatch
"""
import argparse
import functools
import math
import os
import time
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

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
        h_0 = salt_and_pepper(Bernoulli(p), input_noise)          the corrupted sample fed back in (p itself,
                                                                  not a sample, when not input_sampling)
    noiseless_h1 and input_sampling are [C]'s options of the same names (both on in every [C] run).
    """

    def __init__(self, n_visible=784, hidden=(500, 500), *, act="tanh", input_noise=0.4, hidden_noise=2.0,
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
        """One chain step in place on the state hs; returns the visible logits (p = sigmoid(logits)).
        noisy=False: no hidden Gaussian noise, as [C]'s update_layers(noisy=False) (its reconstruction figure);
        training, sampling and inpainting keep it on."""
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
        Returns (loss, per-step losses (detached): the log's loss_last_step)."""
        target = x if target is None else target
        hs = self.init_state(salt_and_pepper(x, self.input_noise))
        losses = []
        for _ in range(walkbacks):
            logits = self.step(hs, noisy=True)
            # with logits = a0, BCE(sigmoid(a0), x) computed stably (same objective as [C]'s BCE on p)
            losses.append(F.binary_cross_entropy_with_logits(logits, target))
        loss = torch.stack(losses).sum()                                    # walkback: sum over steps
        return loss, [l.detach() for l in losses]


def build_model(cfg):
    """GSN/DAE from a GSNConfig."""
    return GSN(784, [cfg.hidden] * cfg.layers, act=cfg.act, input_noise=cfg.input_noise, hidden_noise=cfg.hidden_noise,
               noiseless_h1=cfg.noiseless_h1, input_sampling=cfg.input_sampling)


def train_flops(sizes, walkbacks, batch):
    """Matmul FLOPs of one walkback training step of GSN (sizes = [784, h1, .., hK]).
    Per chain step each hidden layer i multiplies by W_{i-1} (from below) and W_i^T (from above, i < K),
    and the visible reconstruction by W_0^T: 2*B*(n_in*n_out) FLOPs per product. Backward ~ 2x forward
    (gradients w.r.t. inputs and weights), so a step ~ 3x the forward count (slightly over: x needs no grad).
    Equal compute in gsn_experiments (equal_compute_steps) is equal counts of these."""
    K = len(sizes) - 1
    per_chain_step = sizes[0] * sizes[1]                                   # visible: h1 W0^T
    for i in range(1, K + 1):
        per_chain_step += sizes[i - 1] * sizes[i] + (sizes[i] * sizes[i + 1] if i < K else 0)
    return 3 * 2 * batch * per_chain_step * walkbacks


# -----------------------------------------------------------------------------
# Sampling and inpainting ([C] sample_some_numbers, inpainting). Both draw from torch's global RNG:
# a caller that wants a reproducible picture seeds it first (gsn_experiments: chain_figure,
# inpaint_figure, report).

@torch.no_grad()
def sample_chain(model, n_chains, n_steps, start=None):
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
        out[t] = torch.sigmoid(model.step(hs, noisy=True)).cpu()
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
# Data

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


# -----------------------------------------------------------------------------
# A run's settings

BINARIZE = ("none", "targets", "both")  # which of the training inputs and targets are thresholded at 0.5


@dataclass
class GSNConfig:
    """A run's settings. The defaults are the deep GSN's, as [C]: tanh, hidden noise sigma 2, 4 walkback
    steps, real-valued targets; GSNConfig.for_model states the DAE's and the original SGD's. Stored in
    ckpt.pt as a plain dict (asdict: weights_only loading takes plain types only)."""
    model: str = "gsn"                 # "gsn" (K tanh layers) or "dae" (one layer)
    layers: int = 2                    # hidden layers K
    hidden: int = 500                  # units per hidden layer (the paper: 1500)
    act: str = "tanh"
    walkbacks: int = 4                 # chain steps N unrolled in training (1 = no walkback)
    input_noise: float = 0.4           # salt-and-pepper probability
    hidden_noise: float = 2.0          # Gaussian sigma before and after each hidden activation
    noiseless_h1: bool = True          # [C]'s noiseless_h1: no hidden noise on h1, the layer next to the pixels
    input_sampling: bool = True        # [C]'s input_sampling: feed back a Bernoulli sample of p (False: p itself)
    binarize: str = "none"             # which are x > 0.5: "none", "targets", or inputs and targets ("both", [C]'s DAE)
    optimizer: str = "adam"            # "adam" or [C]'s "sgd"
    batch_size: int = 100
    epochs: float | None = None        # the budget: epochs, steps and/or wall-clock minutes, whichever
    max_steps: int | None = None       # comes first (train refuses a run with none)
    minutes: float | None = None
    data: str = "procedural"           # or a folder of MNIST IDX files
    n_train: int | None = None         # only this many training images (quick runs); None = all
    seed: int = 1
    # Adam 1e-3 for short CPU budgets: an early prototype with the original SGD gave a blurry blob in 10 min
    lr: float = 1e-3
    momentum: float = 0.0              # SGD momentum, also its dampening ([C]: m = 0.5 m + 0.5 g)
    lr_decay: float = 1.0              # lr x lr_decay per epoch

    def __post_init__(self):
        # checkpoints written before "both" existed stored a bool: True meant grey inputs, binary targets
        self.binarize = {True: "targets", False: "none"}.get(self.binarize, self.binarize)
        if self.binarize not in BINARIZE:
            raise UserError(f"binarize must be one of {', '.join(BINARIZE)}, got {self.binarize!r}")
        for name in ("noiseless_h1", "input_sampling"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.model == "dae" and self.layers != 1:
            raise UserError("--model dae has exactly one hidden layer (use --model gsn --layers K)")

    @classmethod
    def for_model(cls, model="gsn", optimizer="adam", **settings):
        """The defaults of `model` trained with `optimizer`, then `settings` (a None value = not given).
        The DAE, as [C]'s run_dae_*.py: one sigmoid layer (1000 units here), no hidden noise, 5 walkback
        steps, binary inputs and targets (they train on MNIST_binary: the images thresholded at 0.5).
        [C]'s SGD: GSN lr 0.25, momentum 0.5, lr x 0.995 per epoch; DAE lr 10, no momentum, no decay."""
        defaults = {}
        if model == "dae":
            defaults.update(layers=1, hidden=1000, act="sigmoid", walkbacks=5, hidden_noise=0.0, binarize="both")
        if optimizer == "sgd":
            defaults.update(dict(lr=0.25, momentum=0.5, lr_decay=0.995) if model == "gsn" else dict(lr=10.0))
        defaults.update({k: v for k, v in settings.items() if v is not None})
        return cls(model=model, optimizer=optimizer, **defaults)


def config_from_args(a):
    """GSNConfig from parse_args' flags: the defaults of --model and --optimizer, then the flags given."""
    flags = {f.name: getattr(a, f.name) for f in fields(GSNConfig) if hasattr(a, f.name)}
    return GSNConfig.for_model(**flags)


def read_checkpoint(path):
    """(checkpoint dict, its GSNConfig) from a ckpt.pt written by train() (common.load_checkpoint, kind "gsn":
    common's one schema; an older gsn.py checkpoint reads the same)."""
    state = common.load_checkpoint(path, kind="gsn")
    return state, saved_config(state, path)


def saved_config(state, path):
    """The GSNConfig of a checkpoint dict read from path (a one-line UserError if it is not one)."""
    try:
        return GSNConfig(**state["config"])
    except TypeError:  # another file's config: settings GSNConfig does not have
        raise UserError(f"{path} is not a gsn.py checkpoint (its config is not a GSNConfig)") from None


# -----------------------------------------------------------------------------
# Training

def train(cfg, out, *, resume=False, device=None, log_every=100, ckpt_every=500, quiet=False):
    """Train a GSN/DAE (cfg: a GSNConfig) with walkback; writes out/ckpt.pt (atomic, common.Run's schema) and
    out/metrics.jsonl (its figures: gsn_experiments.py figures). resume: continue out/ckpt.pt with its own
    settings, only the budget (epochs, max_steps, minutes) taken from cfg. Returns (model, list of per-step
    total losses of this call). Under torchrun, each process takes rows rank, rank + world, ... of every
    minibatch and DDP averages the gradients; process 0 writes."""
    job = functools.partial(_train, cfg=cfg, out=out, resume=resume, log_every=log_every, ckpt_every=ckpt_every,
                            quiet=quiet)
    return common.distributed(job, device=device or "auto")


def _train(rank, world, dev, *, cfg, out, resume, log_every, ckpt_every, quiet):
    master = rank == 0
    quiet = quiet or not master
    # the folder, --resume's checkpoint, the metrics log (cut back to the checkpoint's rows: a crash + --resume
    # never repeats a row), Ctrl-C; only process 0 logs and saves
    run = common.Run(out, "gsn", resume, master, dev)
    if resume:  # keep the architecture and data of the run; allow extending its budget from the command line
        cfg = replace(saved_config(run.ckpt, run.path), epochs=cfg.epochs, max_steps=cfg.max_steps, minutes=cfg.minutes)
    torch.manual_seed(cfg.seed)
    Xtr = load_data(cfg.data, n_train=cfg.n_train)[0]
    # [C]: shuffle the training set ONCE with a fixed seed, then sequential minibatches every epoch
    Xtr = Xtr[np.random.RandomState(cfg.seed).permutation(len(Xtr))]
    X = torch.from_numpy(Xtr).to(dev)
    binary = (X > 0.5).float() if cfg.binarize != "none" else None  # [C] load_mnist_binary: x > 0.5
    target_all = X if binary is None else binary
    X = binary if cfg.binarize == "both" else X
    model = build_model(cfg).to(dev)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.momentum)
    step = run.restore(model, opt)  # on --resume: the checkpoint's step, weights, optimizer state and RNGs
    B = cfg.batch_size
    if B % world:
        raise UserError(f"--batch-size {B} must be divisible by the number of processes ({world})")
    if len(X) < B:  # an epoch is len(X) // B whole batches: none at all
        what = f"--n-train {cfg.n_train}" if cfg.n_train is not None else f"--data {cfg.data}"
        raise UserError(f"{what}: {len(X)} training images, fewer than one batch (--batch-size {B}); "
                        f"give at least {B} images or a --batch-size of at most {len(X)}")
    # with fewer walkback steps than layers the top layers' biases never reach the loss: DDP must be told
    train_model = common.ddp_wrap(model, dev, world, find_unused_parameters=cfg.walkbacks < cfg.layers)
    if world > 1:
        torch.manual_seed(cfg.seed * 1000 + rank + step)  # independent chain noise in each process
    per_epoch = len(X) // B
    max_steps = cfg.max_steps or (int(cfg.epochs * per_epoch) if cfg.epochs else None)
    deadline = time.time() + 60 * cfg.minutes if cfg.minutes else None
    if max_steps is None and deadline is None:
        raise UserError("give a budget: --epochs, --max-steps or --minutes")
    save = lambda: run.save(model, opt, cfg, step)  # common's one checkpoint schema
    losses, unchecked = [], []  # unchecked: the losses since the last check, still on the device
    # to `losses` at each check (common.check_pending); 1-based step numbers, like the "step N" log lines
    check_losses = lambda: losses.extend(common.check_pending(unchecked, step - len(unchecked) + 1, world, dev))

    t0, last_t, last_step = time.time(), time.time(), step
    if not quiet:
        n_par = sum(p.numel() for p in model.parameters())
        print(f"{cfg.model} K={cfg.layers} hidden={cfg.hidden} walkbacks={cfg.walkbacks} "
              f"params={n_par/1e6:.2f}M train={len(X)} device={dev} steps={max_steps} "
              f"minutes={cfg.minutes} start_step={step}", flush=True)
    try:
        stopped = False
        while max_steps is None or step < max_steps:
            # Ctrl-C or the --minutes deadline in any process stops all (a process that stopped alone
            # would leave the others waiting in DDP's next all-reduce)
            stopped = run.should_stop(world, dev, also=deadline is not None and time.time() >= deadline)
            if stopped:
                break
            epoch, i = divmod(step, per_epoch)
            for g in opt.param_groups:  # [C]: lr x 0.995 per epoch (stateless, so --resume continues exactly)
                g["lr"] = cfg.lr * cfg.lr_decay ** epoch
            x, tgt = X[i * B:(i + 1) * B][rank::world], target_all[i * B:(i + 1) * B][rank::world]
            loss, step_losses = train_model(x, cfg.walkbacks, target=tgt)
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
                run.metrics.log(**rec)
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
        run.metrics.close()
    if stopped and (deadline is None or time.time() < deadline) and master:
        print(f"stopped at step {step}; continue with --resume", flush=True)
    if not quiet:
        print(f"wrote {run.path}, {os.path.join(out, 'metrics.jsonl')}; figures: "
              f"python gsn_experiments.py figures --ckpt {run.path}")
    return model, losses


def load_model(path, device=None):
    """(model in eval mode on device, its GSNConfig, the checkpoint dict) from a ckpt.pt written by train():
    the shape of eval.load_gpt's (model, tokenizer, checkpoint dict). The training step: ckpt["step"]."""
    ckpt, cfg = read_checkpoint(path)
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(common.get_device(device or "auto")).eval(), cfg, ckpt


# -----------------------------------------------------------------------------
# CLI

def parse_args(argv=None):
    """The flags of one training run. A flag left out is None where the default depends on --model or
    --optimizer (GSNConfig.for_model fills it in), else GSNConfig's default."""
    pos, pos_float, d = common.positive, common.positive_float, GSNConfig
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["gsn", "dae"], default=d.model, help="deep GSN or one-layer (walkback) DAE")
    p.add_argument("--layers", type=pos, default=None, help="hidden layers K (gsn; default 2)")
    p.add_argument("--hidden", type=pos, default=None, help="units per hidden layer (default gsn 500, dae 1000; paper 1500/2000)")
    p.add_argument("--walkbacks", type=pos, default=None, help="unrolled chain steps N (default gsn 4, dae 5; 1 = no walkback)")
    p.add_argument("--input-noise", type=common.flag(float, min=0.0, max=1.0, name="probability"), default=d.input_noise,
                   help="salt-and-pepper probability")
    p.add_argument("--hidden-noise", type=common.flag(float, min=0.0), default=None,
                   help="Gaussian sigma pre/post activation (default gsn 2, dae 0)")
    p.add_argument("--noiseless-h1", action=argparse.BooleanOptionalAction, default=d.noiseless_h1,
                   help="no hidden noise on h1 (default, as [C]; with one layer the hidden noise then reaches no unit)")
    p.add_argument("--input-sampling", action=argparse.BooleanOptionalAction, default=d.input_sampling,
                   help="feed back a Bernoulli sample of p (default, as [C]); --no-input-sampling: p itself")
    p.add_argument("--binarize", choices=BINARIZE, default=None,
                   help="which of inputs and targets are x > 0.5 (default: dae both, gsn none, as [C])")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=d.optimizer, help="adam (short budgets) or the original sgd")
    p.add_argument("--lr", type=pos_float, default=None, help="default adam 1e-3; sgd gsn 0.25, dae 10")
    p.add_argument("--epochs", type=pos_float, default=None, help="training epochs")
    p.add_argument("--minutes", type=pos_float, default=None, help="wall-clock budget (stops early if reached)")
    p.add_argument("--max-steps", type=pos, default=None, help="number of minibatch updates (default 3600 if no other budget)")
    p.add_argument("--batch-size", type=pos, default=d.batch_size)
    p.add_argument("--data", type=data_flag, default=d.data, help="'procedural' or a folder with MNIST IDX files")
    p.add_argument("--n-train", type=pos, default=None, help="use only this many training images (quick runs)")
    p.add_argument("--out", default="runs/gsn")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue from <out>/ckpt.pt")
    common.add_device_arg(p)
    p.add_argument("--threads", type=pos, default=None, help="torch.set_num_threads")
    a = p.parse_args(argv)
    if a.epochs is None and a.minutes is None and a.max_steps is None:
        a.max_steps = 3600  # default budget (~6 epochs): ~8 minutes of one free CPU core for the default GSN
    return a


@common.cli
def main(argv=None):
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    train(config_from_args(a), a.out, resume=a.resume, device=a.device)


if __name__ == "__main__":
    main()
