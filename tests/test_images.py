"""images.py: procedural digits and MNIST IDX files."""
import gzip
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import images  # noqa: E402
from common import UserError  # noqa: E402


def test_digits_shapes_range_and_determinism():
    X, y = images.make_digits(300, seed=3)
    assert X.shape == (300, 784) and X.dtype == np.float32
    assert y.shape == (300,) and y.dtype == np.int64 and set(y.tolist()) == set(range(10))
    assert X.min() == 0.0 and X.max() <= 1.0
    X2, y2 = images.make_digits(300, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    X3, _ = images.make_digits(300, seed=4)
    assert not np.array_equal(X, X3)


def test_digits_look_like_mnist():
    X, _ = images.make_digits(500, seed=0)
    # MNIST: mean intensity 0.133, 13.4% of pixels > 0.5, background exactly 0, strokes reach 1
    assert 0.09 < X.mean() < 0.18
    assert 0.09 < (X > 0.5).mean() < 0.18
    assert (X == 0).mean() > 0.6
    assert np.all(X.max(1) > 0.95)
    # centre of mass at (13.5, 13.5) and ink within a ~20 px box
    m = X.reshape(-1, 28, 28)
    r = np.arange(28)
    tot = m.sum((1, 2))
    cx, cy = (m.sum(1) * r).sum(1) / tot, (m.sum(2) * r).sum(1) / tot
    assert np.abs(cx - 13.5).max() < 0.6 and np.abs(cy - 13.5).max() < 0.6
    rows = (m > 0.3).any(2)
    height = 28 - rows.argmax(1) - rows[:, ::-1].argmax(1)
    assert 16 <= np.median(height) <= 22


def test_load_digits_cache(tmp_path):
    X, y = images.load_digits("test", n=50, seed=7, cache_dir=str(tmp_path))
    assert any(p.suffix == ".npz" for p in tmp_path.iterdir())
    X2, y2 = images.load_digits("test", n=50, seed=7, cache_dir=str(tmp_path))  # from the cache
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    Xtr, _ = images.load_digits("train", n=50, seed=7, cache_dir=str(tmp_path))
    assert not np.array_equal(X, Xtr)  # train and test come from different streams
    with pytest.raises(UserError):
        images.load_digits("valid", cache_dir=str(tmp_path))


@pytest.mark.parametrize("ext", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, ext, dtype):
    a = (np.arange(2 * 3 * 5) * 7 % 256).reshape(2, 3, 5).astype(dtype)
    p = str(tmp_path / ("a.idx" + ext))
    images.write_idx(p, a)
    b = images.read_idx(p)
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    if ext:
        with gzip.open(p, "rb") as f:
            assert f.read(4) == bytes([0, 0, {np.uint8: 8, np.int32: 0x0C, np.float32: 0x0D}[dtype], 3])


def test_idx_errors(tmp_path):
    p = str(tmp_path / "a.idx")
    images.write_idx(p, np.zeros((4, 28, 28), np.uint8))
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[:-10])
    with pytest.raises(UserError, match="truncated.*a.idx"):
        images.read_idx(p)
    open(p, "wb").write(b"\x01\x02" + raw[2:])
    with pytest.raises(UserError, match="magic"):
        images.read_idx(p)
    open(p, "wb").write(raw + b"junk")
    with pytest.raises(UserError, match="a.idx"):
        images.read_idx(p)
    g = str(tmp_path / "b.idx.gz")
    open(g, "wb").write(b"this is not gzip")
    with pytest.raises(UserError, match="b.idx.gz"):
        images.read_idx(g)
    with pytest.raises(UserError, match="not found"):
        images.read_idx(str(tmp_path / "missing.idx"))


def write_fake_mnist(folder, n_train=60, n_test=20, gz=True):
    os.makedirs(folder, exist_ok=True)
    ext = ".gz" if gz else ""
    Xtr, ytr = images.make_digits(n_train, 0)
    Xte, yte = images.make_digits(n_test, 1)
    for prefix, X, y in (("train", Xtr, ytr), ("t10k", Xte, yte)):
        images.write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{ext}"),
                       np.round(X * 255).astype(np.uint8).reshape(-1, 28, 28))
        images.write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{ext}"), y.astype(np.uint8))
    return Xtr, ytr, Xte, yte


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist(tmp_path, gz):
    Xtr, ytr, Xte, yte = write_fake_mnist(str(tmp_path), gz=gz)
    d = images.load_mnist(str(tmp_path))
    assert d["train"][0].shape == (60, 784) and d["test"][0].shape == (20, 784)
    assert np.allclose(d["train"][0], Xtr, atol=1e-6) and np.array_equal(d["test"][1], yte)


def test_load_mnist_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        images.load_mnist(str(tmp_path / "nope"))
    write_fake_mnist(str(tmp_path), gz=False)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(UserError, match="t10k-labels"):
        images.load_mnist(str(tmp_path))
    images.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), np.zeros(19, np.uint8))  # count mismatch
    with pytest.raises(UserError, match="t10k-labels"):
        images.load_mnist(str(tmp_path))
