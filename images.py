"""
images.py -- 28x28 digit images for the GSN: procedural MNIST-like digits (the default, no download)
and real MNIST from its IDX files.

Images are flat float32 rows of 784 = 28x28 pixels in [0, 1] (0 = background, like MNIST), and int64
labels 0-9; both sources give the same shapes.

  1. make_digits / load_digits   procedural digits: strokes -> distance field -> MNIST-like placement
  2. write_idx / read_idx        the IDX file format
  3. load_mnist                  the four MNIST files of a folder

Imports common.py only.
"""
import gzip
import os
import struct

import numpy as np
import torch

import common
from common import UserError

# -----------------------------------------------------------------------------
# 1. Procedural MNIST-like digits
#
# Each digit is a skeleton of strokes (lines, elliptic arcs, quadratic Bezier curves) in a box about
# 0.6 wide and 1 tall (x right, y DOWN, like image rows), with jittered parameters and 1-3 variants
# per class (1 with/without flag, open/closed 4, 7 with/without bar, ...). A random slant (shear),
# rotation, aspect change and a smooth sinusoidal wobble vary the shape; the strokes are then drawn
# as a distance field (anti-aliased, width 1.6-3.4 px), slightly blurred, and placed like MNIST
# (LeCun et al.): the longer side of the ink scaled to 20 px, centre of mass at pixel (13.5, 13.5).
# Everything is vectorised over the images of one variant, so 70k images take seconds, not minutes.

def _line(p0, p1):
    """Straight stroke between (n, 2) points -> (n, 2, 2) polyline."""
    return np.stack([p0, p1], axis=1)


def _poly(*pts):
    """Polyline through (n, 2) points -> (n, k, 2)."""
    return np.stack(pts, axis=1)


def _arc(cx, cy, rx, ry, a0, a1, k=12):
    """Elliptic arc from angle a0 to a1 (degrees; y is down, so +90 is the bottom) -> (n, k+1, 2)."""
    t = np.linspace(0.0, 1.0, k + 1)
    a = np.deg2rad(a0[:, None] + (a1 - a0)[:, None] * t)
    return np.stack([cx[:, None] + rx[:, None] * np.cos(a), cy[:, None] + ry[:, None] * np.sin(a)], -1)


def _bezier(p0, p1, p2, k=8):
    """Quadratic Bezier curve with control point p1 -> (n, k+1, 2)."""
    t = np.linspace(0.0, 1.0, k + 1)[None, :, None]
    return (1 - t) ** 2 * p0[:, None] + 2 * (1 - t) * t * p1[:, None] + t ** 2 * p2[:, None]


def _skeleton(digit, variant, n, rng):
    """The strokes of one digit variant for n samples: a list of (n, k, 2) polylines."""
    J = lambda v, s=0.03: v + s * rng.standard_normal(n)   # a jittered scalar parameter, (n,)
    P = lambda x, y, s=0.03: np.stack([J(x, s), J(y, s)], 1)  # a jittered point, (n, 2)
    if digit == 0:
        a0 = J(-90, 20)
        return [_arc(J(0, .01), J(.5, .01), J(.3, .05), J(.48, .02), a0, a0 + J(365, 12), 20)]
    if digit == 1:
        top, bot = P(.04, 0), P(-.02, 1)
        s = [_line(top, bot)]
        if variant >= 1:
            s.append(_line(P(-.17, .2, .04), top))            # the flag
        if variant == 2:
            s.append(_line(P(-.16, 1, .02), P(.16, 1, .02)))  # the base
        return s
    if digit == 2:
        arc = _arc(J(0), J(.3), J(.28), J(.28), J(195, 15), J(385, 12), 10)
        end, corner = arc[:, -1], P(-.3, 1)
        s = [arc, _bezier(end, P(.05, .72, .06), corner), _line(corner, P(.33, 1, .04))]
        if variant == 1:  # a small loop at the bottom-left corner
            s[1] = _bezier(end, P(-.1, .8, .05), corner)
        return s
    if digit == 3:
        up = _arc(J(0), J(.26), J(.24), J(.24), J(200, 12), J(445, 8), 12)
        mid = up[:, -1]
        lo = _arc(mid[:, 0], mid[:, 1] + .26 + J(0, .02), J(.28), J(.26), np.full(n, -90.0), J(155, 12), 12)
        return [up, lo]
    if digit == 4:
        if variant == 0:  # closed 4: the diagonal meets the vertical at the top
            top = P(.15, 0)
            return [_poly(top, P(-.3, .65), P(.32, .65)), _line(top, P(.15, 1))]
        return [_poly(P(-.25, 0), P(-.28, .6), P(.3, .6)), _line(P(.18, .05), P(.18, 1))]  # open 4
    if digit == 5:
        corner = P(-.18, 0)
        neck = P(-.22, .45)
        belly = _arc(J(0), J(.7), J(.28), J(.28), J(-130, 8), J(150, 12), 12)
        return [_line(P(.28, 0), corner), _line(corner, neck), _bezier(neck, P(-.2, .47, .01), belly[:, 0], 2), belly]
    if digit == 6:
        a0 = J(180, 10)
        loop = _arc(J(0), J(.72), J(.27), J(.27), a0, a0 + 360, 16)
        return [_bezier(P(.22, 0), P(-.3, .2, .05), loop[:, 0]), loop]
    if digit == 7:
        corner = P(.3, 0)
        s = [_poly(P(-.3, 0), corner, P(-.05, 1, .06))]
        if variant == 1:
            s.append(_line(P(-.08, .5), P(.22, .5)))  # the crossing bar
        return s
    if digit == 8:
        a0 = J(90, 15)
        return [_arc(J(0), J(.25), J(.21), J(.23), a0, a0 + 360, 16),
                _arc(J(0), J(.72), J(.27), J(.27), a0 - 180, a0 + 180, 16)]
    if digit == 9:
        a0 = J(0, 10)
        loop = _arc(J(0), J(.27), J(.26), J(.26), a0, a0 + 360, 16)
        start = loop[:, 0]
        if variant == 0:
            return [loop, _line(start, P(.12, 1, .05))]
        return [loop, _bezier(start, P(.25, .75, .05), P(-.05, 1, .05))]  # curved stem
    raise ValueError(digit)


_VARIANTS = [1, 3, 2, 1, 2, 1, 1, 2, 1, 2]   # shape variants per digit class


def _render(a, b, width, chunk=256):
    """Anti-aliased strokes: intensity = clip(width/2 + 1/2 - distance to nearest segment, 0, 1).
    a, b: (n, S, 2) segment end points in pixel coordinates (x = column, y = row); width: (n,)."""
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)            # (784, 2)
    out = []
    for i in range(0, len(a), chunk):                                     # chunked: (c, S, 784) temps
        A, B = torch.from_numpy(a[i:i + chunk]).float(), torch.from_numpy(b[i:i + chunk]).float()
        AB = B - A
        L2 = (AB * AB).sum(-1).clamp_min(1e-6)                            # (c, S)
        GA_x = grid[None, None, :, 0] - A[..., 0:1]                       # (c, S, 784)
        GA_y = grid[None, None, :, 1] - A[..., 1:2]
        t = ((GA_x * AB[..., 0:1] + GA_y * AB[..., 1:2]) / L2[..., None]).clamp_(0, 1)
        d2 = (GA_x - t * AB[..., 0:1]) ** 2 + (GA_y - t * AB[..., 1:2]) ** 2
        d = d2.min(1).values.sqrt_()                                      # (c, 784)
        w = torch.from_numpy(width[i:i + chunk]).float()[:, None]
        out.append((w / 2 + 0.5 - d).clamp_(0, 1))
    return torch.cat(out)


def _shift(img, dx, dy):
    """Translate (n, 784) images by sub-pixel (dx, dy) with bilinear interpolation (zeros outside)."""
    n = img.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -torch.as_tensor(dx, dtype=torch.float32) * 2 / 28   # grid coords are [-1, 1]
    theta[:, 1, 2] = -torch.as_tensor(dy, dtype=torch.float32) * 2 / 28
    g = torch.nn.functional.affine_grid(theta, (n, 1, 28, 28), align_corners=False)
    return torch.nn.functional.grid_sample(img.view(n, 1, 28, 28), g, align_corners=False).view(n, 784)


def _center_of_mass(img):
    """(n, 784) -> column and row of the intensity centre of mass, each (n,)."""
    m = img.view(-1, 28, 28)
    tot = m.sum((1, 2)).clamp_min(1e-6)
    r = torch.arange(28.0)
    return (m.sum(1) * r).sum(1) / tot, (m.sum(2) * r).sum(1) / tot


def make_digits(n, seed=0):
    """n procedural MNIST-like digits, deterministic from seed -> (X (n, 784) float32 in [0, 1]
    quantised to k/255 like MNIST's bytes, y (n,) int64)."""
    if n < 0:
        raise UserError(f"number of images must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    variant = np.array([rng.integers(0, _VARIANTS[d]) for d in y], dtype=np.int64) if n else np.zeros(0, np.int64)
    X = torch.zeros(n, 784)
    for d in range(10):
        for v in range(_VARIANTS[d]):
            idx = np.nonzero((y == d) & (variant == v))[0]
            m = len(idx)
            if m == 0:
                continue
            strokes = _skeleton(d, v, m, rng)
            a = np.concatenate([s[:, :-1] for s in strokes], 1)           # (m, S, 2) segment starts
            b = np.concatenate([s[:, 1:] for s in strokes], 1)            # (m, S, 2) segment ends
            pts = np.concatenate([a, b], 1)
            # shape variation: aspect, slant (shear; MNIST leans right on average), rotation, wobble
            aspect = rng.uniform(0.75, 1.25, m)
            slant = np.clip(rng.normal(0.15, 0.2, m), -0.35, 0.6)
            rot = np.deg2rad(rng.normal(0, 6, m))
            amp, freq, phase = rng.uniform(0, 0.04, (2, m)), rng.uniform(0.5, 1.5, (2, m)), rng.uniform(0, 2 * np.pi, (2, m))

            def warp(p):
                x, yy = p[..., 0] * aspect[:, None], p[..., 1] - 0.5
                x = x - slant[:, None] * yy                               # y is down: top goes right
                c, s = np.cos(rot)[:, None], np.sin(rot)[:, None]
                x, yy = c * x - s * yy, s * x + c * yy
                x = x + amp[0][:, None] * np.sin(2 * np.pi * freq[0][:, None] * yy + phase[0][:, None])
                yy = yy + amp[1][:, None] * np.sin(2 * np.pi * freq[1][:, None] * x + phase[1][:, None])
                return np.stack([x, yy], -1)

            a, b, pts = warp(a), warp(b), warp(pts)
            width = rng.uniform(1.6, 3.4, m)
            # MNIST placement: the ink's longer side -> 20 px (skeleton extent + stroke width), and the
            # length-weighted centroid of the strokes at (13.5, 13.5) (refined on the image below)
            lo, hi = pts.min(1), pts.max(1)                               # (m, 2)
            scale = (20 - width) / np.maximum((hi - lo).max(1), 1e-3)
            seg_len = np.linalg.norm(b - a, axis=-1)                      # (m, S)
            centroid = ((a + b) / 2 * seg_len[..., None]).sum(1) / seg_len.sum(1, keepdims=True)
            a = (a - centroid[:, None]) * scale[:, None, None] + 13.5
            b = (b - centroid[:, None]) * scale[:, None, None] + 13.5
            X[idx] = _render(a, b, width)
    if n:
        # slight blur (3x3 binomial kernel mixed with the sharp image), then MNIST's exact-0 background
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).view(1, 1, 3, 3)
        blurred = torch.nn.functional.conv2d(X.view(n, 1, 28, 28), k, padding=1).view(n, 784)
        X = 0.5 * X + 0.5 * blurred
        cx, cy = _center_of_mass(X)                                       # exact centring of mass
        X = _shift(X, 13.5 - cx, 13.5 - cy)
        X = X / X.max(1, keepdim=True).values.clamp_min(1e-6)            # MNIST strokes reach 1.0
        X[X < 0.08] = 0
    X = (X.clamp(0, 1) * 255).round() / 255                               # MNIST stores bytes
    return X.numpy().astype(np.float32), y.astype(np.int64)


_SPLIT_IDS = {"train": 0, "test": 1}
_SPLIT_SIZES = {"train": 60000, "test": 10000}


def load_digits(split="train", n=None, seed=0, cache_dir=None):
    """The procedural digit set: 'train' (60k) or 'test' (10k), from disjoint random streams of the
    same seed. Cached as .npz (uint8, like MNIST) under cache_dir (default: .cache/ beside this file)."""
    if split not in _SPLIT_IDS:
        raise UserError(f"unknown split {split!r} (train or test)")
    n = _SPLIT_SIZES[split] if n is None else n
    if n <= 0:
        raise UserError(f"number of images must be > 0, got {n}")
    cache_dir = cache_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
    path = os.path.join(cache_dir, f"digits-v1-{split}-{n}-seed{seed}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path) as f:
                return f["X"].astype(np.float32) / 255, f["y"].astype(np.int64)
        except Exception:
            pass  # a damaged cache file is simply regenerated
    # SeedSequence([seed, split]) gives independent streams: train and test never share an image
    X, y = make_digits(n, np.random.SeedSequence([seed, _SPLIT_IDS[split]]))
    # atomic: a concurrent reader (or a run after a crash) never sees half a file
    common.atomic_write(path, lambda f: np.savez_compressed(f, X=np.round(X * 255).astype(np.uint8),
                                                            y=y.astype(np.uint8)), binary=True)
    return X, y


# -----------------------------------------------------------------------------
# 2. IDX files (the MNIST format, http://yann.lecun.com/exdb/mnist/): big-endian header
#   magic = 0x00 0x00 <dtype code> <ndim>, then ndim uint32 sizes, then the raw array.

_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open(path, mode):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


def write_idx(path, array):
    """Write a numpy array as an IDX file (gzipped when path ends in .gz)."""
    array = np.asarray(array)
    code = {np.dtype(t).kind + str(np.dtype(t).itemsize): c for c, t in _IDX_DTYPES.items()}.get(
        array.dtype.kind + str(array.dtype.itemsize))
    if code is None:
        raise UserError(f"IDX cannot store dtype {array.dtype}")
    with _open(path, "wb") as f:
        f.write(bytes([0, 0, code, array.ndim]))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(_IDX_DTYPES[code]).tobytes())


def read_idx(path):
    """Read an IDX file (gzipped when path ends in .gz), validating the header and the size."""
    if not os.path.isfile(path):
        raise UserError(f"IDX file not found: {path}")
    try:
        with _open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip: bad magic, CRC error, truncated stream
        raise UserError(f"corrupt IDX file {path}: {e}")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise UserError(f"corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}")
    ndim, dtype = raw[3], _IDX_DTYPES[raw[2]]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"truncated IDX file {path}: header cut short")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "corrupt"
        raise UserError(f"{kind} IDX file {path}: {len(raw)} bytes, header {shape} needs {expected}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder, stem):
    """MNIST files come as train-images-idx3-ubyte, train-images.idx3-ubyte, or either + .gz."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for ext in ("", ".gz"):
            p = os.path.join(folder, name + ext)
            if os.path.isfile(p):
                return p
    raise UserError(f"MNIST file {stem}[.gz] not found in {folder}")


# -----------------------------------------------------------------------------
# 3. Real MNIST

def load_mnist(folder):
    """Real MNIST from its four IDX files -> {'train': (X, y), 'test': (X, y)}, X (n, 784) float32
    in [0, 1] (bytes / 255), y (n,) int64."""
    if not os.path.isdir(folder):
        raise UserError(f"MNIST folder not found: {folder}")
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ipath, lpath = _find_idx(folder, f"{prefix}-images-idx3-ubyte"), _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(ipath), read_idx(lpath)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise UserError(f"{ipath}: expected uint8 images of shape (n, 28, 28), got {images.dtype} {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
            raise UserError(f"{lpath}: expected {len(images)} uint8 labels, got {labels.dtype} {labels.shape}")
        if labels.size and labels.max() > 9:
            raise UserError(f"{lpath}: label {labels.max()} out of range 0-9")
        out[split] = (images.reshape(len(images), 784).astype(np.float32) / 255, labels.astype(np.int64))
    return out
