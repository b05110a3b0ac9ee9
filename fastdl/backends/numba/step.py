"""Numba's builders of the fused step (the first layer's is ``first_layer``) and its GEMM routing.

* ``OutputLayer``: the last layer (thin GEMMs: 10 classes), the loss and the hidden activation's
  backward in one call.
* ``make_update``: every parameter in one parallel call, part p of each parameter's rows on
  thread p, cut as ``InputLayer`` cuts W1.
* ``matmul_``: small GEMMs (the book's 100x50x10) in the calling thread, large ones split by
  output rows or, where out is wider than tall, by columns; ``forward_gemm``: the layer path's
  tall forward products (evaluation) split alike, so evaluating during training never wakes
  NumPy's BLAS pool, whose spinning workers slowed the next steps by a third (timed ad hoc). A
  batch's forward and the whole layer-path backward stay on NumPy's threaded BLAS: mixing the
  two pools inside one step made them spin against each other (an affine_backward 4x slower,
  timed ad hoc).
"""

from __future__ import annotations

import contextlib
import functools
import os

import numba
import numpy as np
from numba import prange
from numba.core.compiler_lock import global_compiler_lock
from numba.core.dispatcher import Dispatcher

from ...errors import DTypeError
from .. import composed
from ..contract import ACT_CODES
from . import cache, loops, threads, variants
from .blas import gemm
from .loops import jit, jit_parallel

SMALL_GEMM = 1 << 22          # multiply-adds; a 256x1000x1000 layer is 64x above, 100x50x10 100x below
TALL_ROWS = 1024              # forward products at least this tall are evaluation or prediction


MADE = []                     # the compiled functions built per activation or optimizer, so far

# LLVM's optimisation passes for the functions below (and their callees, which compile inside
# them) at level 1 where Numba's default is 3: the same speed (the fused step's loop, its gather,
# softmax and sigmoid timed interleaved against -O3), their compile 4.4-4.6 -> 4.2 s of CPU and a
# first run's compile 2.87-3.33 -> 2.70-2.94 s (four interleaved pairs; all timed ad hoc). Not for
# the layer path's loops: Dropout's ran 20% slower at 1. A user's own NUMBA_OPT is kept.
OPT_LEVEL = 1


@contextlib.contextmanager
def llvm_level(level: int):
    """Numba's optimisation level set to ``level`` inside the block. Numba reads it each time it
    optimises; its compiler lock keeps any other thread's compile from running meanwhile."""
    with global_compiler_lock:
        before = numba.config.OPT
        numba.config.OPT = type(before)(level)
        try:
            yield
        finally:
            numba.config.OPT = before


def made(pyfunc, decorator):
    """Compile-on-call ``pyfunc``, cached in the backend's folder, compiled at ``OPT_LEVEL``."""
    with cache.ours():
        f = decorator(pyfunc)
    if isinstance(f, Dispatcher):           # not under NUMBA_DISABLE_JIT
        def compile(sig):                    # the class's, looked up at each call (ahead.py swaps it)
            if "NUMBA_OPT" in os.environ:
                return type(f).compile(f, sig)
            with llvm_level(OPT_LEVEL):
                return type(f).compile(f, sig)
        f.compile = compile
    MADE.append(f)
    return f


def integers(a, what: str):
    """Indices or labels as the loops take them: an integer array (anything else would fail to
    compile, with a Numba typing error). Unsigned 64-bit ones are refused: NumPy's take refuses
    them before NumPy 2 and wraps those past int64's range since, so no answer is the reference's
    on both. Labels may be cast first (``labels``)."""
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu" and a.dtype != np.uint64:
        return a
    got = getattr(a, "dtype", type(a).__name__)
    raise DTypeError(f"{what} must be an array of integers (int64 or a narrower integer type), not {got}: "
                     "pass class or row indices as an int64 array")


def labels(t):
    """Class labels as the loops take them: unsigned 64-bit ones cast to int64 (one past int64's
    range wraps to a negative label, which the loops' range check refuses as NumPy's indexing does)."""
    if isinstance(t, np.ndarray) and t.dtype == np.uint64:
        t = t.astype(np.int64)
    return integers(t, "labels")


def cuts(n: int, parts: int) -> np.ndarray:
    """Bounds of ``parts`` contiguous near-equal slices of range(n)."""
    return np.array([n * p // parts for p in range(parts + 1)], dtype=np.int64)


def matmul_(out, a, b):
    """out = a @ b by ``blas.gemm``; what it cannot describe (mixed or integer dtypes, views
    without a unit stride, a column-major out, k = 0) and mismatched shapes go to NumPy's matmul,
    which computes or raises as the reference does."""
    if not (out.dtype == a.dtype == b.dtype and out.dtype.char in "fd" and out.ndim == a.ndim == b.ndim == 2):
        np.matmul(a, b, out=out)
        return
    m, n = a.shape[0], b.shape[1]
    # Row parts each pack all of b for BLAS, column parts all of a: split so that the copy every
    # part repeats is the smaller (256 x 1000 @ 1000 x 1000 by columns: 2.7-2.9 ms against 3.0-3.1
    # by rows; 256 x 4096 @ 4096 x 4096: 47 against 54 ms, timed ad hoc)
    cols = n > m
    side = n if cols else m
    work = m * a.shape[1] * n
    parts = threads.parts(side) if work >= SMALL_GEMM and threads.splits(work, "gemm") else 1
    if parts == 1:
        done = loops.dot(out, a, b)
    else:
        with threads.REGION:
            done = loops.split_dot(out, a, b, cuts(side, parts), cols)
    if not done:
        np.matmul(a, b, out=out)


def forward_gemm(a, b):
    """x @ W for the layer path's forward kernels (see the module's notes)."""
    m = a.shape[0]
    if (m < TALL_ROWS or not threads.active() or a.dtype != b.dtype or a.dtype.char not in "fd"
            or a.size == 0 or b.size == 0
            or not (a.flags.c_contiguous or a.flags.f_contiguous)
            or not (b.flags.c_contiguous or b.flags.f_contiguous)):
        return a @ b
    out = np.empty((m, b.shape[1]), dtype=a.dtype)
    matmul_(out, a, b)             # small ones too: NumPy's BLAS pool would wake and spin
    return out


# -- the last layer and the loss ---------------------------------------------------------------------

_softmax_rows, _colsum = loops.inner(loops.softmax_rows), loops.inner(loops.colsum)    # (see loops.inner)


@functools.cache
def output_layer(act: int):
    """The last layer, loss and hidden activation's backward for activation code ``act``."""
    grad_colsum = variants.GRAD_COLSUMS[act]

    def output_layer(dW, db, dh, db_h, z, dz, h, W, b, t):
        """z = h @ W + b; dz = softmax'(z); dW = h.T dz; db = sum dz; dh = act'(dz @ W.T);
        db_h = sum dh. Returns the mean loss."""
        if not gemm(z, h, W):
            raise ValueError("output_layer: h @ W could not run (shapes or layouts)")
        loops.add_bias(z, b)          # compiled anyway: evaluation calls it
        loss = _softmax_rows(dz, z, t, True)
        _colsum(db, dz)
        if not (gemm(dW, h.T, dz) and gemm(dh, dz, W.T)):
            raise ValueError("output_layer: a backward GEMM could not run (shapes or layouts)")
        grad_colsum(dh, db_h, h)
        return loss
    return made(output_layer, jit)


class OutputLayer:
    """The contract's ``OutputLayer`` as one compiled call."""

    def __init__(self, bk, W, b, dW, db, batch_size: int, activation: str):
        self.W, self.b, self.dW, self.db = W, b, dW, db
        self._run = output_layer(ACT_CODES[activation])
        self.Z = np.empty((batch_size, W.shape[1]), dtype=W.dtype)
        self.DZ = np.empty_like(self.Z)

    def forward_backward(self, dh, db_h, h, t):
        n = h.shape[0]
        z, dz = (self.Z, self.DZ) if n == self.Z.shape[0] else (self.Z[:n], self.DZ[:n])
        return self.W.dtype.type(self._run(self.dW, self.db, dh, db_h, z, dz, h, self.W, self.b, labels(t)))


# -- every parameter's update in one parallel call -----------------------------------------------------

def update_parts(kernel: str, parallel: bool = True):
    """``_update_parts``, one build per kernel and value (see ``first_layer.split_layer``)."""
    return _update_parts(kernel, bool(parallel))


@functools.cache
def _update_parts(kernel: str, parallel: bool):
    """Every parameter's update by the contract's kernel ``kernel`` in one parallel call
    (``parallel=False``: the same code as a serial function, as ``first_layer.split_layer``)."""
    update = variants.UPDATES[kernel]

    def update_parts(P, G, S0, S1, h, cut):
        """Part p of each parameter on thread p (cut[a]: parameter a's flat bounds). P, G, S0, S1:
        tuples of flat arrays, one per parameter; h: the kernel's scalars."""
        for part in prange(cut.shape[1] - 1):
            for a in range(len(P)):
                lo, hi = cut[a, part], cut[a, part + 1]
                update(P[a][lo:hi], G[a][lo:hi], S0[a][lo:hi], S1[a][lo:hi], h)
    if not parallel:        # a name of its own for the disk cache (see first_layer.split_layer)
        update_parts.__qualname__ += "_serial"
    return made(update_parts, jit_parallel if parallel else jit)


def make_update(bk, optimizer, params, grads):
    """The contract's ``make_update``: one parallel call for the book's six update kernels (known
    by ``optimizer.kernel``); any other kernel keeps one call per parameter. Reads the
    hyperparameters at every call, so changing ``optimizer.lr`` between steps works."""
    if optimizer.kernel not in variants.UPDATES or any(not isinstance(p, np.ndarray) for p in params.values()):
        return composed.make_update(bk, optimizer, params, grads)      # (which refuses numbers)
    held = optimizer._checked(params, grads, bk)       # shapes and dtypes match: the loops trust it
    keys = list(params)
    arrays = [a for k in keys for a in (params[k], grads[k], *held[k])]
    dt = params[keys[0]].dtype
    if any(not a.flags.c_contiguous or a.dtype != dt for a in arrays):
        return composed.make_update(bk, optimizer, params, grads)      # flat views would be copies
    parallel = threads.splits(sum(p.size for p in params.values()), "update")
    run = update_parts(optimizer.kernel, parallel)
    parts = threads.split_parts(params[keys[0]].shape[0]) if parallel else 1
    # Tuples of flat views: a call unboxes them in ~1 us; typed Lists took ~3 us more (ad hoc).
    flat = lambda arrays: tuple(a.reshape(-1) for a in arrays)
    P, G = flat(params[k] for k in keys), flat(grads[k] for k in keys)
    states = [flat(held[k][i] for k in keys) for i in range(len(optimizer.state_names))]
    while len(states) < 2:
        states.append(flat(np.empty(0, dtype=dt) for k in keys))    # unused slots: empty slices
    cut = np.stack([cuts(params[k].shape[0], parts) * (params[k].size // max(params[k].shape[0], 1))
                    for k in keys])
    h = np.zeros(4, dtype=dt)

    def update():
        optimizer.step += 1
        values = tuple(optimizer.kernel_hyperparameters().values())
        h[:len(values)] = values
        with threads.REGION:
            run(P, G, states[0], states[1], h, cut)

    return update
