"""
data.py -- everything the models eat, and every file the repo reads or writes.

  1. Files: atomic checkpoints (write temp, fsync, rename).
  2. Text: an offline byte-level tiktoken tokenizer (or GPT-2 BPE from local files).
  3. Text: a procedural GSM8K-style word-problem task, its reward, and a GSM8K jsonl loader.
  4. Images: procedural MNIST-like digits, and real MNIST IDX files.

Imports nothing from this repo (model.py and topr.py never import it either).
"""
import os
import tempfile

import numpy as np
import torch


class DataError(ValueError):
    """Bad input (missing/corrupt file, malformed line). Scripts print it as one line and exit 1."""


# -----------------------------------------------------------------------------
# 1. Files: atomic checkpoints

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
        raise DataError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"corrupt or unreadable checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


# =============================================================================
# TEXT HALF (sections 2 and 3) -- owned by the text task work
# =============================================================================

# (text half goes here)

# =============================================================================
# IMAGE HALF (section 4) -- owned by the GSN work
# =============================================================================

# (image half goes here)
