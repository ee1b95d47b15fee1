"""
common.py -- the plumbing every script shares, and nothing else (like nanochat's common.py). ONE way each.

  UserError, NonFiniteLoss          bad input (a flag, a file) / a nan-inf loss: printed as one line, exit 1
  @cli                              a script's main: only UserError becomes `error: ...`; a bug keeps its traceback
  flag(kind, ...), positive, positive_float, fraction     argparse types that reject bad numbers where they
                                    enter (`--lr nan`, `--n -3`)
  get_device, add_device_arg         the --device flag ("auto": cuda, else mps, else cpu; a named device is
                                    checked at once; TF32 for fp32 matmuls on CUDA)
  precision_for, amp_dtype, grad_scaler     the autocast dtype by the card (bf16, else fp16 with a GradScaler,
                                    else a one-line error; None on CPU: fp32) and the trainers' loss scaler
  sdpa_backends, attention_kernel, autocast      the attention kernel pinned on CUDA (the same in sampling and
                                    update: on-policy rho = 1) and the context of every GPT forward (autocast in
                                    amp_dtype with that kernel on CUDA; nothing on CPU)
  setup_precision, CUBLAS_DETERMINISTIC     a run's float settings and their line to print (TF32 by torch's
                                    current API; --deterministic: deterministic algorithms, cuBLAS's workspace)
  to_device                         a host tensor on the device without waiting (pinned memory, non_blocking)
  ddp_setup, ddp_cleanup, distributed, ddp_wrap, agree, all_gather_rows     torchrun: join/leave the
                                    process group, wrap the model in DDP, agree on a flag, gather rows
  check_finite, check_pending       stop every process on a nan/inf loss, naming its step (1-based, below)
  StopFlag                          Ctrl-C: save a checkpoint at the next step and stop
  atomic_write, atomic_save         every file a run writes (tables, JSON, figures; checkpoints), whole or not at all
  CHECKPOINT_KINDS, load_checkpoint     the checkpoint's kinds and its one loader (older schemas read as today's)
  make_out_dir                      the run folder, created (or a one-line error) before any work
  rng_state, set_rng_state          every global RNG, saved in and restored from a checkpoint
  Metrics                           the JSONL metrics log (on resume, rows past the checkpoint are dropped)
  Run                               a trainer's frame: its folder, resume, checkpoint (one schema), log, Ctrl-C
  t_quantile, t_interval, verdict   the t-based 95% interval (df = n - 1) and the rule that turns it into a verdict
  environment                       what decides a run's floats (threads, MKL_CBWR, CPU capability, device, dtype)
  pyplot, save_figure               matplotlib.pyplot on the Agg backend (imported when first drawn) to draw a
                                    figure, and the one way to write it (atomic_write by its suffix, then closed).
                                    An array of pixels is an image, not a figure: gsn_experiments.save_image writes it

Step numbers are 1-based in every trainer, as in their log lines: the run's n-th optimizer step is step n
(the step counter's value once that step is done). A nan/inf error names the first bad step that way:
check_finite(loss of step n, n); check_pending(pending, step - len(pending) + 1) after `step += 1`.

A checkpoint is one dict, written by Run.save (atomic_save), read by load_checkpoint; tensors and plain values
only (weights_only loading). Every trainer writes the same keys:
  kind          the trainer that wrote it: "sft" or "rl" (train.py, a GPT) or "gsn" (gsn.py); CHECKPOINT_KINDS
  config        the model's settings as a dict (a GPTConfig or a GSNConfig)
  model, optimizer      their state_dicts
  step          optimizer steps done (1-based numbering: the last step's number)
  rng           rng_state(), plus the trainer's own generators (sft: "batch", the batch order)
  metrics_rows  Metrics.rows at the save (a resumed log is cut back to them)
  ...           the trainer's position and what its readers need: sft best_val, in_band, tokenizer, args;
                rl iteration, samples, tokenizer, args
Older checkpoints keep loading: train.py's sft ("model_config", "iter"), rl ("model_config", kind "rl") and
gsn.py's (no kind) are renamed to these keys by load_checkpoint, in one place (_upgrade).

Imports torch and numpy only (matplotlib inside pyplot()).
"""
import argparse
import contextlib
import functools
import json
import math
import os
import random
import signal
import sys
import tempfile
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.parallel import DistributedDataParallel as DDP


class UserError(ValueError):
    """Bad input: a flag value, a missing or corrupt file, a malformed line. Printed as one line."""


class NonFiniteLoss(UserError):
    """A loss became nan/inf (lr too high?). Raised by every trainer; the last good checkpoint is kept."""


def cli(main):
    """Decorator for a script's main(argv): a UserError becomes `error: <message>` on stderr and exit
    status 1; any other exception is a bug and keeps its traceback."""
    @functools.wraps(main)
    def run(argv=None):
        try:
            out = main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # a torchrun worker whose work is done and saved, its process group destroyed: leave without the
            # interpreter's teardown, where gloo's threads can still abort the process now and then
            # (SIGABRT, "terminate called without an active exception"), failing a finished run
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return out
    return run


def flag(kind=int, min=None, above=None, max=None, below=None, name=None):
    """An argparse type: kind(s), finite, and within the bounds (min <= v, above < v, v <= max, v < below),
    else argparse's one-line error naming the flag, e.g. `argument --lr: must be > 0, got nan`."""
    lo = f"[{min}" if min is not None else f"({above}" if above is not None else None
    hi = f"{max}]" if max is not None else f"{below})" if below is not None else None
    rule = (f"in {lo}, {hi}" if lo and hi else f">= {min}" if min is not None else f"> {above}" if lo
            else f"<= {max}" if max is not None else f"< {below}" if hi else None)

    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {s!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {s}")
        if ((min is not None and v < min) or (above is not None and v <= above)
                or (max is not None and v > max) or (below is not None and v >= below)):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {s}")
        return v
    parse.__name__ = name or kind.__name__  # argparse names the type in some of its messages
    return parse


positive = flag(int, min=1, name="positive int")
positive_float = flag(float, above=0, name="positive float")
fraction = flag(float, above=0, below=1, name="fraction")


# -----------------------------------------------------------------------------
# Device and precision

def get_device(name="auto"):
    """The torch device of --device. "auto": cuda if available, else mps if available, else cpu. A named
    device (cpu, cuda, cuda:1, mps) is checked here: one this machine lacks is a one-line UserError now,
    not a traceback at its first use deep inside a run. On CUDA, fp32 matmuls may use TF32 (_tf32)."""
    if name == "auto":
        if torch.cuda.is_available():
            return _tf32(torch.device("cuda"))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is a CPU build" if torch.version.cuda is None else "no GPU is visible"
        raise UserError(f"--device {name}: CUDA is not available ({why}); use --device cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return _tf32(dev)


def _tf32(dev):
    # On CUDA the fp32 work (the GSN, the GPT's fp32 parts outside autocast) may use TF32 tensor cores: its
    # 10-bit mantissa is what bf16 autocast already accepts for the GPT, at several times fp32's speed. Set
    # with torch's fp32_precision: the allow_tf32 flags are deprecated, and torch raises on reading one
    # after the other API was used, so nothing in this repo touches them.
    if dev.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    return dev


def add_device_arg(parser):
    """The one --device flag of every script (get_device reads it)."""
    parser.add_argument("--device", default="auto",
                        help="auto (default): cuda if available, else mps, else cpu; or a torch device name "
                             "(cpu, cuda, cuda:1, mps), checked at start: one this machine lacks is a one-line error")


def precision_for(capability, bf16_supported, name="this GPU"):
    """The autocast dtype of a CUDA card of compute `capability` (major, minor): bf16 where the card runs it
    (8.0 and up: A100, H100, RTX 30xx on): fp32's range, so no loss scaling; else fp16 on cards with
    tensor cores (7.x: V100, T4, RTX 20xx), whose 5-bit exponent needs a GradScaler (grad_scaler) so that
    small gradients do not flush to zero; older cards have neither fast path: a one-line UserError."""
    if bf16_supported:
        return torch.bfloat16
    if tuple(capability) >= (7, 0):
        return torch.float16
    major, minor = capability
    raise UserError(f"{name} has compute capability {major}.{minor}: neither bf16 nor fp16 tensor cores, which "
                    f"the GPT's autocast needs; use a GPU of compute capability 7.0 or newer (V100, T4, A100, "
                    f"H100) or --device cpu")


def amp_dtype(device):
    """The autocast dtype on `device`: None on CPU and MPS (fp32, as always), precision_for the card on CUDA."""
    if device.type != "cuda":
        return None
    return _card_dtype(torch.cuda.current_device() if device.index is None else device.index)


@functools.lru_cache(maxsize=None)  # asked at every autocast: the card does not change
def _card_dtype(index):
    capability = torch.cuda.get_device_capability(index)
    bf16 = torch.version.hip is not None or capability >= (8, 0)  # is_bf16_supported without emulation, per card
    return precision_for(capability, bf16, f"GPU {index} ({torch.cuda.get_device_name(index)})")


def sdpa_backends(device):
    """The attention kernels allowed on `device`, in priority order; None: torch's own choice (CPU, MPS).
    On CUDA torch picks a kernel per call, among flash, memory-efficient, cuDNN and math, by the inputs' shape
    and dtype, the card, and whether a gradient is needed (cuDNN comes first on Hopper for some shapes): the
    sampler, log mu's recomputation (no gradient) and the update (gradient) could then run different kernels,
    and on-policy rho = pi / mu would not be 1. Pinned: memory-efficient attention, the one fused kernel that
    takes every call this repo makes (the padding masks of the sampler's prefill and decode: flash takes no
    mask) on every card that trains here; math only where it cannot run (a head size that is not a multiple
    of 8): a choice by shape alone, the same for the recomputation and the update."""
    if device.type != "cuda":
        return None
    return [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention_kernel(device, head_dim):
    """The name of the attention kernel that runs on `device` for heads of `head_dim` (printed at the start)."""
    if sdpa_backends(device) is None:
        return "torch's choice"
    return "memory-efficient" if head_dim % 8 == 0 else "math"


@contextlib.contextmanager
def autocast(device):
    """The context every GPT forward runs in (training, sampling, evaluation): on CUDA, autocast to amp_dtype
    (weights and optimizer stay fp32) with the attention kernel pinned (sdpa_backends); plain fp32 elsewhere."""
    dtype = amp_dtype(device)
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype), sdpa_kernel(sdpa_backends(device), set_priority=True):
        yield


def grad_scaler(device):
    """The loss scaler of a trainer: a GradScaler enabled only where autocast runs in fp16 (a no-op
    otherwise: scale(loss) is the loss, step(opt) is opt.step()). With it, a step is
    scaler.scale(loss).backward(); scaler.unscale_(opt) before clipping; scaler.step(opt); scaler.update()."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)


CUBLAS_DETERMINISTIC = ":4096:8"  # the workspace setting cuBLAS needs to repeat its results (cuBLAS's docs)


def setup_precision(device, deterministic=False, head_dim=None):
    """The float settings of a run on `device`, set once, before its model does any work; returns the line to
    print (with the attention kernel that runs for heads of head_dim, if given). CUDA: TF32 for fp32 matmuls
    (_tf32) and autocast in amp_dtype (a card with neither bf16 nor fp16 is the one-line error, here at the
    start). deterministic (CUDA): torch's deterministic algorithms and cuBLAS's deterministic workspace
    (CUBLAS_WORKSPACE_CONFIG, read when cuBLAS starts: hence before any work), so that a rerun repeats a run
    bit for bit; slower (kernels without atomics: attention's backward, for one, without split keys).
    A CPU run repeats already at the same thread count (`environment`): it is left as it is."""
    kernel = "" if head_dim is None else f", {attention_kernel(device, head_dim)} attention"
    if device.type != "cuda":
        return f"precision: float32 on {device.type}{kernel}" + (", deterministic already" if deterministic else "")
    _tf32(device)
    dtype = str(amp_dtype(device)).removeprefix("torch.")
    line = f"precision: {dtype} autocast{' + GradScaler' if dtype == 'float16' else ''}, TF32 fp32 matmuls{kernel}"
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
        torch.use_deterministic_algorithms(True)
        line += f", deterministic (CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}; slower)"
    return line


def environment(device):
    """What decides a run's floats beyond its flags: the thread count, MKL's code path (MKL_CBWR), the CPU
    instruction set torch dispatches to, the device and the autocast dtype. Two machines that differ here sum
    in another order, so their numbers differ in the last bits and short trainings amplify that (a machine is
    a seed): runs are compared by their conclusions, not their digits."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "mkl_cbwr": os.environ.get("MKL_CBWR", "unset"), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "device": str(device), "dtype": str(amp_dtype(device) or torch.float32).removeprefix("torch.")}


def to_device(t, device):
    """t (a host tensor) on `device`. On CUDA the copy comes from pinned (page-locked) memory with
    non_blocking=True, so the host queues it and goes on instead of waiting for the GPU to drain its queue
    (a copy from ordinary memory is a synchronisation); elsewhere a plain .to(device) (the same tensor on CPU)."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


# -----------------------------------------------------------------------------
# Several processes (torchrun): every process runs the same script; rank 0 logs and saves

def ddp_setup(device="auto"):
    """(rank, world, device). Alone: (0, 1, get_device(device)). Under torchrun (WORLD_SIZE > 1) join the
    process group, as nanoGPT does: nccl when the device is CUDA (one GPU per process, LOCAL_RANK picks
    it), gloo on CPU -- so `--device cpu` runs several CPU processes even on a machine with a GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = get_device(device)
    if world == 1:
        return 0, 1, dev
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UserError(f"process {local} needs its own GPU but {torch.cuda.device_count()} are visible: "
                            f"lower --nproc_per_node or pass --device cpu")
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, torch.device("cuda", local)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, dev


def ddp_cleanup(ok=True):
    """Leave the process group. After a normal run every rank first waits at a barrier: a rank that
    finished early (rank 1 while rank 0 still evaluates and saves) must not tear the group down under
    the others (gloo then aborts the process: "terminate called without an active exception").
    After an error there is no barrier: the other ranks may never reach it."""
    if dist.is_available() and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def distributed(run, *args, device="auto"):
    """run(rank, world, device, *args) in this process's place: alone, or as one rank under torchrun."""
    rank, world, dev = ddp_setup(device)
    try:
        out = run(rank, world, dev, *args)
    except BaseException:
        ddp_cleanup(ok=False)
        raise
    ddp_cleanup()
    return out


def ddp_wrap(model, device, world, find_unused_parameters=False):
    """The module a trainer calls in its steps: the model itself alone (world 1), else the model wrapped in
    DistributedDataParallel (one GPU per process on CUDA), which averages the gradients over the processes
    in backward. find_unused_parameters: some parameters may get no gradient in a step (gsn.py with fewer
    walkback steps than layers). Keep the model itself for state_dict, evaluation and checkpoints."""
    if world == 1:
        return model
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
               find_unused_parameters=find_unused_parameters)


def agree(flag, world, device):
    """True in every process if `flag` is True in any (Ctrl-C or a bad loss seen by one rank stops all).
    Alone (world 1) no device work at all: the loops call this every step."""
    if world == 1:
        return bool(flag)
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_rows(rows, world):
    """Every process's list of (key, row) pairs -> all of them, sorted by key, in every process."""
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, rows)
        rows = [r for part in parts for r in part]
    return [row for _, row in sorted(rows, key=lambda kr: kr[0])]


# -----------------------------------------------------------------------------
# nan/inf losses. Step numbers are 1-based, as in the log lines (see the module docstring).

def check_finite(loss, step, world=1, device=None):
    """Raise NonFiniteLoss in EVERY process if a loss is nan/inf in any of them (a process that stopped
    alone would leave the others waiting in the next collective until the timeout). loss: the loss of
    step `step` (1-based: the run's n-th optimizer step is step n), or a 1-D tensor of the losses of steps
    step, step + 1, ... -- the trainers check a log interval's losses at once: reading a flag on the host
    waits for the GPU, once per step is a stall. device: where processes agree (the training device;
    default: the loss's)."""
    loss = loss.detach().reshape(-1)
    bad = ~torch.isfinite(loss)
    if agree(bool(bad.any()), world, device or loss.device):
        if bad.any():
            i = int(bad.int().argmax())  # the first one
            raise NonFiniteLoss(f"loss is {loss[i].item()} at step {step + i}; stopped (last good checkpoint kept)")
        raise NonFiniteLoss(f"loss is nan/inf in another process by step {step + len(loss) - 1}; "
                            f"stopped (last good checkpoint kept)")


def check_pending(pending, first_step, world=1, device=None):
    """check_finite on the losses kept on the device since the last check, in one transfer; empties `pending`
    and returns them as floats. They are the losses of steps first_step, first_step + 1, ...: a trainer
    passes first_step = step - len(pending) + 1 (step: its counter, just incremented). The trainers call it at each log
    line and before every checkpoint, not every step (a read on the host waits for the GPU): the weights
    may be non-finite for up to a log interval of steps, and no checkpoint is ever written from them."""
    if not pending:
        return []
    losses = torch.stack(pending).cpu()
    pending.clear()
    check_finite(losses, first_step, world, device)
    return losses.tolist()


# -----------------------------------------------------------------------------
# Ctrl-C

class StopFlag:
    """Ctrl-C sets a flag; the loop saves a checkpoint at the next step and exits cleanly."""

    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, *_):
        if self.stop:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        print("\nSIGINT: saving a checkpoint and stopping (Ctrl-C again to abort)", flush=True)
        self.stop = True


# -----------------------------------------------------------------------------
# Files a run writes, and checkpoints

def atomic_write(path, content, binary=False):
    """Write a file whole or not at all: into a temp file in the same folder, flush + fsync, then rename it
    over `path` (atomic on POSIX), so a crash mid-write leaves the old file (or none), never half of one.
    content: the text to write, or a function that writes into the open temp file (binary=True opens it
    "wb": torch.save, savefig, PIL). Creates the folder."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private (0600): give it an ordinary file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path):
    """torch.save(obj) to path with atomic_write: a crash mid-write never leaves a truncated checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


# The checkpoint's kinds: the trainer that writes it -> its model ("gpt" or "gsn"). The script that writes
# each, for the error messages.
CHECKPOINT_KINDS = {"sft": "gpt", "rl": "gpt", "gsn": "gsn"}
_WRITER = {"gpt": "train.py", "gsn": "gsn.py", "sft": "train.py sft", "rl": "train.py rl"}


def _upgrade(ckpt):
    """A checkpoint of an older schema in today's, renamed in this one place (see the module docstring).
    train.py wrote the model's settings as "model_config" (sft its step as "iter"; rl kind "rl", "iteration",
    "step"), gsn.py "config" and "step" without a kind. Anything that is not a dict with a model: as it is."""
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        return ckpt
    ckpt = dict(ckpt)
    if "model_config" in ckpt:
        ckpt["config"] = ckpt.pop("model_config")
        ckpt.setdefault("kind", "sft")
        if "iter" in ckpt:
            ckpt["step"] = ckpt.pop("iter")
    elif "config" in ckpt:
        ckpt.setdefault("kind", "gsn")
    return ckpt


def load_checkpoint(path, kind=None):
    """The checkpoint dict at path (the schema: the module docstring; an older one is read as today's), on
    the CPU, loaded with weights_only=True (no pickled code). kind: its model ("gpt", "gsn") or the trainer
    that wrote it ("sft", "rl", "gsn"); it must match (None: any). A missing file, a corrupt one, or one that
    is not a checkpoint of this repo or of that kind is a one-line UserError."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:  # an interrupted copy, a `touch`: torch.load's EOFError would say nothing
        raise UserError(f"{path}: empty file, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = (str(e).splitlines() or [""])[0][:200]  # some exceptions have no message
        raise UserError(f"corrupt or unreadable checkpoint {path}: {type(e).__name__}" + (f": {why}" if why else ""))
    ckpt = _upgrade(ckpt)
    found = ckpt.get("kind") if isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt else None
    if found not in CHECKPOINT_KINDS:
        raise UserError(f"{path} is not a {_WRITER[kind] if kind else 'train.py or gsn.py'} checkpoint")
    if kind not in (None, found, CHECKPOINT_KINDS[found]):
        model = CHECKPOINT_KINDS.get(kind, kind)  # name the trainer only when the model is the same
        it_is = found if model == CHECKPOINT_KINDS[found] else CHECKPOINT_KINDS[found]
        raise UserError(f"{path} is not a {_WRITER[kind]} checkpoint (it is a {_WRITER[it_is]} one)")
    return ckpt


def make_out_dir(path):
    """Create the run folder now, so a bad --out fails before any work is done."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {path}: cannot create the folder ({e.strerror})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"--out {path}: the folder is not writable")
    return path


def rng_state():
    """Every global RNG a run may touch (torch, CUDA, numpy, python), as checkpoint-safe values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos),
            "numpy_gauss": (int(has_gauss), float(gauss)), "python": random.getstate()}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        cuda = state["cuda"][:torch.cuda.device_count()]  # saved with more GPUs than visible now
        torch.cuda.set_rng_state_all(cuda)
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))
    random.setstate(state["python"])


# -----------------------------------------------------------------------------
# The metrics log

class Metrics:
    """Appends one JSON object per line to <out>/metrics.jsonl; only rank 0 writes (enabled=False
    elsewhere). A checkpoint stores `metrics.rows`; on resume the log is cut back to that many rows, so
    the rows a crashed run logged after its last checkpoint do not appear twice."""

    def __init__(self, out, resume=False, rows=None, enabled=True, device=None):
        self.f, self.rows = None, 0
        if not enabled:
            return
        path = os.path.join(out, "metrics.jsonl")
        if resume and os.path.isfile(path):
            with open(path) as f:
                keep = [line for line in f if line.strip()][:rows]  # rows=None: keep them all
            atomic_write(path, "".join(keep))
            self.rows = len(keep)
        self.f = open(path, "a" if resume else "w")
        if device is not None:  # the first line of a run (and of each resume): what produced its floats
            self.log(env=environment(device))

    def log(self, **row):
        if self.f is not None:
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()
            self.rows += 1

    def close(self):
        if self.f is not None:
            self.f.close()


# -----------------------------------------------------------------------------
# The frame of every trainer: its folder, checkpoint, log and Ctrl-C

class Run:
    """What every trainer (train.py sft and rl, gsn.py) does around its steps, the same way:

        run = Run(out, kind, resume=False, master=True, device=None, config=None)
            the folder `out` (created); on resume its ckpt.pt, read by load_checkpoint(path, kind) into
            run.ckpt ({} for a fresh run), whose model settings must be `config` if one is given (a dataclass:
            sft's flags; else the trainer takes them from the checkpoint); the metrics log run.metrics (a
            Metrics: run.metrics.log(**row); on resume cut back to the checkpoint's rows; its first row: the
            environment on `device`); Ctrl-C caught (StopFlag). Only the master process (rank 0) logs and saves.
        run.restore(model, optimizer)  on resume: their states and every global RNG from run.ckpt; returns
                                       the step the checkpoint was written at (0 for a fresh run: nothing done)
        run.should_stop(world, device, also=False)    Ctrl-C, or `also` (a trainer's own reason: gsn.py's
                                       --minutes deadline), in any process: one agree, every process stops
                                       at the same step
        run.save(model, optimizer, config, step, rng=None, **extras)   out/ckpt.pt, atomically (master only)

    restore sets the global RNGs: call it where a fresh run would seed them, after building the model."""

    def __init__(self, out, kind, resume=False, master=True, device=None, config=None):
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CHECKPOINT_KINDS)}, got {kind!r}")
        self.kind, self.master = kind, master
        self.path = os.path.join(make_out_dir(out), "ckpt.pt")
        self.ckpt = load_checkpoint(self.path, kind=kind) if resume else {}
        if self.ckpt and config is not None and type(config)(**self.ckpt["config"]) != config:
            raise UserError(f"{self.path} was trained with a different model config: {self.ckpt['config']}")
        self.metrics = Metrics(out, resume, self.ckpt.get("metrics_rows"), enabled=master, device=device)
        self._stop = StopFlag()

    def restore(self, model, optimizer):
        if not self.ckpt:
            return 0
        model.load_state_dict(self.ckpt["model"])
        optimizer.load_state_dict(self.ckpt["optimizer"])
        set_rng_state(self.ckpt["rng"])
        return self.ckpt["step"]

    def should_stop(self, world, device, also=False):
        return agree(self._stop.stop or bool(also), world, device)

    def save(self, model, optimizer, config, step, rng=None, **extras):
        """The one schema (module docstring). config: the model's settings (a dataclass or a dict); rng: the
        trainer's own generators' states, saved beside rng_state()'s; extras: the trainer's position."""
        if self.master:
            atomic_save(dict(kind=self.kind, config=config if isinstance(config, dict) else asdict(config),
                             model=model.state_dict(), optimizer=optimizer.state_dict(), step=step,
                             rng={**(rng or {}), **rng_state()}, metrics_rows=self.metrics.rows, **extras), self.path)


# -----------------------------------------------------------------------------
# Statistics: the t-based 95% interval, and a verdict decided by it

@functools.lru_cache(maxsize=None)  # the same few quantiles are asked for at every point of a figure
def t_quantile(p, df):
    """The p-quantile of Student's t with df degrees of freedom (p >= 0.5): the CDF by Simpson's rule on the
    density, inverted by bisection (no scipy). t_quantile(0.975, 2) = 4.303: with 3 runs, "2 s.e." is not 95%."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    density = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)

    def cdf(x, n=2000):
        h = x / n
        return 0.5 + h / 3 * sum((1 if i in (0, n) else 4 if i % 2 else 2) * density(i * h) for i in range(n + 1))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def t_interval(values, level=0.95):
    """(mean, half-width) of the t-based interval over n >= 2 replicates (df = n - 1). For a paired design pass
    the per-pair differences. A half-width is only as good as its replicates: if the runs share a base, the
    base's own variance is not in it."""
    n = len(values)
    if n < 2:
        raise ValueError(f"an interval needs 2 replicates or more, got {n}")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)


def verdict(mean, half, predicted=+1):
    """The rule every verdict table uses: "holds" if the interval excludes 0 on the predicted side, "does not
    hold" if it excludes 0 on the other, else "within noise"."""
    lo, hi = mean - half, mean + half
    if lo > 0 or hi < 0:
        return "holds" if (lo > 0) == (predicted > 0) else "does not hold"
    return "within noise"


# -----------------------------------------------------------------------------
# Figures

def pyplot():
    """matplotlib.pyplot on the Agg backend (no display: figures go to files), imported here, when a
    figure is first drawn: a script that draws nothing never loads matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, dpi=80):
    """A drawn figure to path, in the format its suffix names (.png, .pdf, .svg; none: PNG), whole or not at all
    (atomic_write), then closed: pyplot keeps every open figure alive otherwise."""
    fmt = os.path.splitext(path)[1][1:] or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi), binary=True)
    pyplot().close(fig)
