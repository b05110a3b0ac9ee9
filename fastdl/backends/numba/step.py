"""Numba's builders of the fused step and its GEMM routing.

* ``InputLayer`` splits the first layer across Numba's threads by input feature: thread p gathers
  features [k_p, k_p+1) of the batch's rows, multiplies them by W's rows [k_p, k_p+1) into its
  own partial z (thread 0 writes z itself; the others' partials are added after the join), and in
  the backward pass computes exactly those rows of dW, which ``make_update`` has the same thread
  update (the same cuts). Each core keeps its slice of W, of the batch and of dW in its cache
  from step to step; only the 100x50 z and dz cross between cores. Forward and backward are one
  parallel function (``split_layer``): each parallel function compiles a gufunc of its own, and
  the two apart took 0.4 s more of a first run's compile (timed ad hoc). Its threads call the
  work of their part (``split_body``, per activation) by address (``by_address``), so that work
  compiles once, not in both of the parallel function's libraries. BLAS runs single-threaded
  inside (``threads.train_scope``). When the training set is k/255 pixels
  (``composed.byte_codes``) its rows are kept and gathered as uint8 codes, divided back while
  gathering: the same floats, a quarter of the memory traffic.
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

from ...errors import DTypeError, ShapeError
from ...images import ByteImages
from .. import composed
from ..contract import ACT_CODES
from . import by_address, cache, gather, loops, threads, variants
from .blas import gemm
from .by_address import call
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


def _made(pyfunc, decorator):
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
    parts = threads.parts(side) if m * a.shape[1] * n >= SMALL_GEMM else 1
    if not (loops.dot(out, a, b) if parts == 1 else loops.split_dot(out, a, b, cuts(side, parts), cols)):
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


# -- the first layer, split by input feature -------------------------------------------------------

@functools.cache
def split_body(act: int):
    """Part p of the first layer's forward or backward for activation code ``act``, called by
    address from ``split_layer`` (``by_address``: it compiles once, outside the parallel function)."""
    bias_act = variants.BIAS_ACTS[act]

    def split_body(args):
        """Forward: features [cut[p], cut[p+1]) of the batch's rows gathered (into Xbuf) and
        multiplied (into z for part 0, Zbuf for the others). Backward: dW[cut[p]:cut[p+1]] =
        X_p.T @ dz (X_p: its part of the last forward's rows). p = -1, after the forward's parts:
        z += the other parts' partials, then the activation. 1 where the part does not fit."""
        p, backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz = args
        n, N = z.shape
        parts = cut.shape[0] - 1
        if p < 0:
            if b.shape[0] != N or (parts - 1) * n * N > Zbuf.shape[0]:
                return 1
            for q in range(1, parts):
                part = Zbuf[q * n * N:(q + 1) * n * N].reshape((n, N))
                for r in range(n):
                    for j in range(N):
                        z[r, j] += part[r, j]
            bias_act(z, b)
            return 0
        k0, k1 = cut[p], cut[p + 1]
        if not (0 <= k0 <= k1 and n * k1 <= Xbuf.shape[0] and (p + 1) * n * N <= Zbuf.shape[0]):
            return 1
        X = Xbuf[n * k0:n * k1].reshape((n, k1 - k0))
        if backward:
            return 0 if gemm(dW[k0:k1], X.T, dz) else 1
        if gather.gather_part(X, src[:, k0:k1], idx, scale, ahead) != 0:
            return 1
        out = z if p == 0 else Zbuf[p * n * N:(p + 1) * n * N].reshape((n, N))
        return 0 if gemm(out, X, W[k0:k1]) else 1
    return _made(split_body, jit)


@functools.cache
def split_layer():
    """The first layer's forward and backward: one parallel function for both (each parallel
    function compiles a gufunc of its own) and for every activation, its parts on Numba's threads
    calling ``body`` (a ``split_body``) by address."""

    def split_layer(body, backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz):
        if body == 0:                  # no compiled body: only while ahead.compile_jobs records
            return
        n = z.shape[0]
        parts = cut.shape[0] - 1
        # idx must give one row per row of z, within the batch size the buffers were made for
        bad = idx.shape[0] != n or n * cut[parts] > Xbuf.shape[0] or cut.shape[0] < 2
        failed = 1 if bad else 0
        todo = 0 if bad else parts
        for p in prange(todo):
            failed += call(body, (np.int64(p), backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz))
        if not (failed or backward):
            failed += call(body, (np.int64(-1), backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz))
        if failed:
            raise ShapeError("split_layer: idx, z or a part's GEMM do not fit the layer (more rows than its batch?)")
    return _made(split_layer, jit_parallel)


class InputLayer:
    """The contract's ``InputLayer``, split across Numba's threads (see the module's notes).
    Outside ``train_scope()`` it runs as one part (BLAS is not pinned there)."""

    def __init__(self, bk, W, b, dW, x_train, batch_size: int, activation: str, byte_coded: bool = True):
        K, N = W.shape
        self.W, self.b, self.dW = W, b, dW
        self._run = split_layer()
        self.cut = cuts(K, threads.split_parts(K))
        self.one_cut = cuts(K, 1)
        self._cut = self.one_cut
        if x_train.shape[1] != K:          # the gather reads K bytes or floats per row, unchecked
            raise ShapeError(f"x_train has {x_train.shape[1]} features per row; W has {K} rows")
        if isinstance(x_train, ByteImages):
            coded = x_train.codes, x_train.scale
        else:
            coded = composed.byte_codes(x_train, np) if byte_coded else None
        self.byte_coded = coded is not None
        self.src, scale = coded if coded is not None else (x_train, 1)
        self.scale = W.dtype.type(scale)
        self.X = np.empty(batch_size * K, dtype=W.dtype)                         # part p: its features
        self.Z = np.empty((len(self.cut) - 1) * batch_size * N, dtype=W.dtype)   # partial z's
        self._idx = np.zeros(0, dtype=np.int64)      # the last forward's rows (backward passes them on)
        z = np.empty((0, N), dtype=W.dtype)           # what y and dz must be like (by_address.fits)
        self._body = by_address.Body(split_body(ACT_CODES[activation]), (
            np.int64(0), False, z, self.X, self.Z, self.src, self._idx, self.scale, gather.PREFETCH_AHEAD,
            self.cut, W, b, dW, z))

    def forward(self, idx, y):
        if not by_address.fits(idx, np.int64, 1):
            idx = _as_rows(idx)
        if not by_address.fits(y, self.W.dtype, 2):
            return self._through_copy(idx, y)
        self._cut = self.cut if threads.active() else self.one_cut
        self._idx = idx                 # backward passes it again
        self._run(self._body.target, False, y, self.X, self.Z, self.src, idx, self.scale, gather.PREFETCH_AHEAD,
                  self._cut, self.W, self.b, self.dW, y)

    def backward(self, dz):
        if not by_address.fits(dz, self.W.dtype, 2):
            dz = _layer_array(dz, self.W.dtype, "dz").copy()
        self._run(self._body.target, True, dz, self.X, self.Z, self.src, self._idx, self.scale, 0, self._cut,
                  self.W, self.b, self.dW, dz)                    # the rows of the last forward

    def _through_copy(self, idx, y):
        """forward() for a y the compiled body does not take as it is (a strided or read-only
        view): computed into a fresh array, then copied in (which raises where y is read-only)."""
        out = np.empty(_layer_array(y, self.W.dtype, "y").shape, dtype=self.W.dtype)
        self.forward(idx, out)
        y[...] = out


def _layer_array(a, dtype, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise ShapeError(f"InputLayer: {name} must be a 2-D array (batch rows x W's columns)")
    if a.dtype != dtype:
        raise DTypeError(f"InputLayer: {name} is {a.dtype}, the layer's W {dtype}; pass {name} in the layer's dtype")
    return a


def _as_rows(idx) -> np.ndarray:
    """Row indices as the compiled body takes them: C-contiguous int64, cast as NumPy's take()
    casts them (an unsigned index past int64's range wraps to a negative one, clipped to row 0)."""
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise DTypeError(f"InputLayer: idx must be a 1-D array of integer row indices, not {idx.dtype} "
                         f"with {idx.ndim} dimension(s)")
    return np.ascontiguousarray(idx.astype(np.int64, copy=False))


# -- the last layer and the loss ---------------------------------------------------------------------

@functools.cache
def output_layer(act: int):
    """The last layer, loss and hidden activation's backward for activation code ``act``."""
    grad_colsum = variants.GRAD_COLSUMS[act]

    def output_layer(dW, db, dh, db_h, z, dz, h, W, b, t):
        """z = h @ W + b; dz = softmax'(z); dW = h.T dz; db = sum dz; dh = act'(dz @ W.T);
        db_h = sum dh. Returns the mean loss."""
        if not gemm(z, h, W):
            raise ValueError("output_layer: h @ W could not run (shapes or layouts)")
        loops.add_bias(z, b)
        loss = loops.softmax_rows(dz, z, t, True)
        loops.colsum(db, dz)
        if not (gemm(dW, h.T, dz) and gemm(dh, dz, W.T)):
            raise ValueError("output_layer: a backward GEMM could not run (shapes or layouts)")
        grad_colsum(dh, db_h, h)
        return loss
    return _made(output_layer, jit)


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
        return self._run(self.dW, self.db, dh, db_h, z, dz, h, self.W, self.b, t)


# -- every parameter's update in one parallel call -----------------------------------------------------

@functools.cache
def update_parts(kernel: str):
    """Every parameter's update by the contract's kernel ``kernel`` in one parallel call."""
    update = variants.UPDATES[kernel]

    def update_parts(P, G, S0, S1, h, cut):
        """Part p of each parameter on thread p (cut[a]: parameter a's flat bounds). P, G, S0, S1:
        tuples of flat arrays, one per parameter; h: the kernel's scalars."""
        for part in prange(cut.shape[1] - 1):
            for a in range(len(P)):
                lo, hi = cut[a, part], cut[a, part + 1]
                update(P[a][lo:hi], G[a][lo:hi], S0[a][lo:hi], S1[a][lo:hi], h)
    return _made(update_parts, jit_parallel)


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
    run = update_parts(optimizer.kernel)
    parts = threads.split_parts(params[keys[0]].shape[0])
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
        run(P, G, states[0], states[1], h, cut)

    return update
