"""
common.py -- the plumbing every script shares, and nothing else (like nanochat's common.py).

  UserError            the one exception for bad input: the CLI prints it as one line and exits 1
  @cli                 a script's main: only UserError becomes `error: ...`; a bug keeps its traceback
  flag(kind, ...)      argparse types that reject bad numbers where they enter (`--lr nan`, `--n -3`)
  get_device, autocast device choice and bf16 autocast on CUDA
  ddp_setup/ddp_cleanup, shard, all_gather_rows     torchrun: join/leave the process group, split work
  StopFlag             Ctrl-C: save a checkpoint at the next step and stop
  atomic_save, load_checkpoint, rng_state, set_rng_state     checkpoints that survive a crash
  Metrics              the JSONL metrics log (on resume, rows past the checkpoint are dropped)

Imports torch and numpy only.
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

import numpy as np
import torch
import torch.distributed as dist


class UserError(ValueError):
    """Bad input: a flag value, a missing or corrupt file, a malformed line. Printed as one line."""


class NonFiniteLoss(UserError):
    """A loss became nan/inf (lr too high?). Raised by every trainer; the last good checkpoint is kept."""


def check_finite(loss, step, world=1, device=None):
    """Raise NonFiniteLoss in EVERY process if a loss is nan/inf in any of them (a process that stopped
    alone would leave the others waiting in the next collective until the timeout). loss: the loss of
    step `step`, or a 1-D tensor of the losses of steps step, step + 1, ... -- the trainers check a log
    interval's losses at once: reading a flag on the host waits for the GPU, once per step is a stall.
    device: where processes agree (the training device; default: the loss's)."""
    loss = loss.detach().reshape(-1)
    bad = ~torch.isfinite(loss)
    if agree(bool(bad.any()), world, device or loss.device):
        if bad.any():
            i = int(bad.int().argmax())  # the first one
            raise NonFiniteLoss(f"loss is {loss[i].item()} at step {step + i}; stopped (last good checkpoint kept)")
        raise NonFiniteLoss(f"loss is nan/inf in another process by step {step + len(loss) - 1}; "
                            f"stopped (last good checkpoint kept)")


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
    """cuda if available, else mps, else cpu (or the device named)."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError as e:
            raise UserError(f"--device: {e}") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device):
    """bf16 autocast on CUDA (weights and optimizer stay fp32); plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def check_pending(pending, first_step, world=1, device=None):
    """check_finite on the losses kept on the device since the last check (steps first_step, first_step + 1,
    ...), in one transfer; empties `pending` and returns them as floats. The trainers call it at each log
    line and before every checkpoint, not every step (a read on the host waits for the GPU): the weights
    may be non-finite for up to a log interval of steps, and no checkpoint is ever written from them."""
    if not pending:
        return []
    losses = torch.stack(pending).cpu()
    pending.clear()
    check_finite(losses, first_step, world, device)
    return losses.tolist()


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
# Checkpoints and random state

def atomic_save(obj, path):
    """torch.save to a temp file in the same folder, flush + fsync, then rename: a crash
    mid-write never leaves a truncated checkpoint behind (rename is atomic on POSIX)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path):
    """Load a checkpoint written by atomic_save, with weights_only=True (no pickled code)."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"corrupt or unreadable checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


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

    def __init__(self, out, resume=False, rows=None, enabled=True):
        self.f, self.rows = None, 0
        if not enabled:
            return
        path = os.path.join(out, "metrics.jsonl")
        if resume and os.path.isfile(path):
            with open(path) as f:
                keep = [line for line in f if line.strip()][:rows]  # rows=None: keep them all
            with open(path, "w") as f:
                f.writelines(keep)
            self.rows = len(keep)
        self.f = open(path, "a" if resume else "w")

    def log(self, **row):
        if self.f is not None:
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()
            self.rows += 1

    def close(self):
        if self.f is not None:
            self.f.close()
