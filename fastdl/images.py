"""Images kept as bytes until a backend reads them, and the data checks every input goes through.

MNIST's pixels scaled to [0, 1] are ``k / 255``. A float32 copy of the training set takes 188 MB;
its bytes take 47 MB. ``ByteImages`` holds the bytes and the scale, and every backend turns them
into the very floats ``codes / scale`` gives (the same numbers as a float array made by
dividing) only where it reads them: the trainer's step a batch at a time (numba while it
gathers the rows, NumPy and CuPy with ``decode_bytes_``), and evaluation a block of rows at a
time through the same first layer. ``load_mnist(as_bytes=True)`` returns them; ``fastdl train``
uses them.

Anything else that reads one gets the floats: ``np.asarray(images)`` or ``images[rows]``.
"""

from __future__ import annotations

import math

import numpy as np

from .backends.contract import FUSED_STEP
from .errors import DTypeError, ShapeError
from .validate import as_float_dtype, check_features, host_view


class ByteImages:
    """``codes`` (uint8, shape (N, D)) standing for ``codes / scale`` in ``dtype``."""

    def __init__(self, codes, scale=255, dtype="float32"):
        if not (hasattr(codes, "dtype") and hasattr(codes, "shape")):
            codes = np.asarray(codes)
        if codes.dtype != np.uint8:
            raise DTypeError(f"ByteImages codes have dtype {codes.dtype}; expected uint8 (one byte per pixel). "
                             f"Pass float pixels as a plain array instead")
        if codes.ndim != 2:
            raise ShapeError(f"ByteImages codes have shape {tuple(codes.shape)}; expected (N, D): "
                             f"flatten images with codes.reshape(len(codes), -1)")
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) \
                or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"ByteImages scale={scale!r} must be a positive finite number (255 for pixels in [0, 1])")
        dt = as_float_dtype(dtype)
        if 255 / scale > float(np.finfo(dt).max):
            raise ValueError(f"ByteImages scale={scale!r} is so small that 255 / scale overflows {dt.name}; "
                             f"use a scale of at least {255 / float(np.finfo(dt).max):.3g}")
        self.codes = codes if codes.flags.c_contiguous else codes.copy()    # kernels read rows whole
        self.scale = scale
        self.dtype = dt

    @property
    def shape(self) -> tuple:
        return tuple(self.codes.shape)

    ndim = 2

    def __len__(self) -> int:
        return self.codes.shape[0]

    def __repr__(self) -> str:
        return f"ByteImages({self.shape[0]}x{self.shape[1]} bytes / {self.scale:g} as {self.dtype.name})"

    def __getitem__(self, index):
        """The floats of ``codes[index]`` (a new array, on the codes' device)."""
        return self.codes[index].astype(self.dtype) / self.dtype.type(self.scale)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)

    def subset(self, index) -> "ByteImages":
        """The rows ``codes[index]`` still as bytes (``images[index]`` gives their floats)."""
        return ByteImages(self.codes[index], self.scale, self.dtype)

    def on(self, backend, dtype) -> "ByteImages":
        """The same images with the codes on ``backend`` (moved once; no copy where they are
        already there), decoded to ``dtype``."""
        codes = self.codes if backend.is_backend_array(self.codes) else backend.asarray(self.codes)
        return ByteImages(codes, self.scale, dtype)

    def scale_as(self, dtype):
        """The scale as a ``dtype`` scalar, as the kernels divide by it."""
        return np.dtype(dtype).type(self.scale)


def held_as_bytes(x, backend):
    """Data on ``backend`` (what ``backend_input`` gives) as ByteImages where the backend reads
    them faster (``READS_BYTES_FASTER``) and the floats are k/255 (or whole numbers 0..255): the
    very same numbers, a quarter of the memory. Anything else as it is."""
    if not backend.READS_BYTES_FASTER or isinstance(x, ByteImages):
        return x
    coded = byte_codes(x, backend.xp)
    return x if coded is None else ByteImages(coded[0], float(coded[1]), x.dtype)


def backend_input(x, backend, n_features: int, dtype, what: str = "x"):
    """Training or evaluation data checked once and moved to ``backend`` once: a float array in
    ``dtype``, or ByteImages with their codes there (decoded where read)."""
    if isinstance(x, ByteImages):
        if FUSED_STEP not in backend.CAPABILITIES:      # its InputLayer is what reads them
            raise ValueError(f"backend {backend.name!r} cannot read ByteImages (it has no {FUSED_STEP!r} "
                             f"capability); pass their floats instead: np.asarray(images)")
        if x.shape[0] == 0:
            raise ShapeError(f"{what} has shape {x.shape}: an empty set; pass at least one row")
        if x.shape[1] != n_features:
            raise ShapeError(f"{what} has shape {x.shape}; expected (N, {n_features}): "
                             f"the network's input size is {n_features}")
        return x.on(backend, dtype)
    host = host_view(x, backend, what)
    check_features(host, n_features, what, dtype, bytes_ok=FUSED_STEP in backend.CAPABILITIES)
    return backend.asarray(x if backend.is_backend_array(x) else host, dtype=dtype)


def byte_codes(x, xp, chunk: int = 512):
    """``(codes, scale)`` with ``codes`` uint8 and ``codes / scale == x`` exactly, or None.

    MNIST pixels scaled to [0, 1] are ``k / 255``: kept as one byte per value instead of four, the
    random rows a step gathers come from a 47 MB table instead of a 188 MB one (fewer cache misses,
    a quarter of the memory traffic), and dividing by the scale while gathering gives back the very
    same floats. Checked value by value, a block of rows at a time (no full-size temporary);
    anything else (other data, NaN, negatives) gets None and the plain gather."""
    if x.ndim != 2 or x.dtype.kind != "f" or x.size == 0:
        return None
    codes = xp.empty(x.shape, dtype=xp.uint8)
    for scale in (255, 1):
        s = x.dtype.type(scale)
        for lo in range(0, x.shape[0], chunk):
            block = x[lo:lo + chunk]
            c = xp.rint(block * s)
            if not (float(c.min()) >= 0 and float(c.max()) <= 255):
                break
            c = c.astype(xp.uint8)
            if not bool(xp.array_equal(c.astype(x.dtype) / s, block)):
                break
            codes[lo:lo + chunk] = c
        else:
            return codes, s
    return None
