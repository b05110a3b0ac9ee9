"""Numba's first layer of the fused step, split across its threads.

``InputLayer`` splits the first layer across Numba's threads by input feature: thread p gathers
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
(``images.byte_codes``) its rows are kept and gathered as uint8 codes, divided back while
gathering: the same floats, a quarter of the memory traffic. Byte-coded layers read only the
non-zero codes instead of gathering rows for a GEMM: the parallel function then calls
``nonzero_layer``'s body, parts cut at whole words.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ...errors import DTypeError, ShapeError
from ...images import ByteImages, byte_codes
from ..contract import ACT_CODES
from . import by_address, gather, loops, nonzero_layer, threads, variants
from .blas import gemm
from .by_address import call
from .loops import jit, jit_parallel
from .step import cuts, integers, made

_gather_part = loops.inner(gather.gather_part)


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
        if _gather_part(X, src[:, k0:k1], idx, scale, ahead) != 0:
            return 1
        out = z if p == 0 else Zbuf[p * n * N:(p + 1) * n * N].reshape((n, N))
        return 0 if gemm(out, X, W[k0:k1]) else 1
    # A name of its own per activation: a body is found by its symbol's name (by_address), and
    # two activations' bodies of one name, compiled in two processes and loaded from the disk
    # cache into a third, had the very same symbol: the layer ran the other activation's body.
    # (its __name__ stays: ahead.COMPILE_SECONDS knows the job by it)
    split_body.__qualname__ = "split_body_" + next(k for k, v in ACT_CODES.items() if v == act)
    return made(split_body, loops.jit_body)


def split_layer(parallel: bool = True):
    """``_split_layer``, one build per value however it is passed (``functools.cache`` keys
    ``split_layer()`` and ``split_layer(True)`` apart)."""
    return _split_layer(bool(parallel))


@functools.cache
def _split_layer(parallel: bool):
    """The first layer's forward and backward: one parallel function for both (each parallel
    function compiles a gufunc of its own) and for every activation, its parts on Numba's threads
    calling ``body`` (a ``split_body``) by address. ``parallel=False``: the same code as a serial
    function (its ``prange`` a ``range``), for one part where a launch costs more than a split
    saves (``threads.splits``)."""

    def split_layer(body, backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz, status):
        if body == 0:                  # no compiled body: only while ahead.compile_jobs records
            return
        n = z.shape[0]
        parts = cut.shape[0] - 1
        # idx must give one row per row of z, within the batch size the buffers were made for
        bad = idx.shape[0] != n or n * cut[parts] > Xbuf.shape[0] or cut.shape[0] < 2 or status.shape[0] < parts
        todo = 0 if bad else parts
        # each part's outcome in its own slot: a reduction across the threads compiles more code
        for p in prange(todo):
            status[p] = call(body, (np.int64(p), backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz))
        failed = 1 if bad else 0
        for p in range(todo):
            failed += status[p]
        if not (failed or backward):
            failed += call(body, (np.int64(-1), backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz))
        if failed:
            raise ShapeError("split_layer: idx, z or a part's GEMM do not fit the layer (more rows than its batch?)")
    if not parallel:        # a name of its own: Numba's disk cache keys code by name and types, not by
        split_layer.__qualname__ += "_serial"      # parallel=, and would hand back the parallel one
    return made(split_layer, jit_parallel if parallel else jit)


class InputLayer:
    """The contract's ``InputLayer``, split across Numba's threads (see the module's notes).
    Outside ``train_scope()`` it runs as one part (BLAS is not pinned there)."""

    def __init__(self, bk, W, b, dW, x_train, batch_size: int, activation: str, byte_coded: bool = True):
        K, N = W.shape
        self.W, self.b, self.dW, self.batch_size = W, b, dW, batch_size
        parallel = threads.splits(batch_size * K * N, "gemm")
        self._run = split_layer(parallel)
        if x_train.shape[1] != K:          # the gather reads K bytes or floats per row, unchecked
            raise ShapeError(f"x_train has {x_train.shape[1]} features per row; W has {K} rows")
        if isinstance(x_train, ByteImages):
            coded = x_train.codes, x_train.scale
        else:
            coded = byte_codes(x_train, np) if byte_coded else None
        self.byte_coded = coded is not None
        # byte codes: over the non-zero codes (nonzero_layer), its parts cut at whole words of 8
        # codes; else the gather and GEMM (split_body)
        self.nonzero = self.byte_coded and N >= 1 and K < 2**31
        cut = nonzero_layer.word_cuts if self.nonzero else cuts
        self.cut = cut(K, threads.split_parts(K) if parallel else 1)
        self.one_cut = cut(K, 1)
        self._cut = self.one_cut
        self.src, scale = coded if coded is not None else (x_train, 1)
        self.scale = W.dtype.type(scale)
        # part p: its features; on the non-zero path the codes' table and a wide layer's lists
        self.X = np.empty(max(batch_size * K, nonzero_layer.room(K, N) if self.nonzero else 0), dtype=W.dtype)
        if self.nonzero:                # no features gathered: the codes' values instead
            self.X[:nonzero_layer.TABLE] = nonzero_layer.table(self.scale, W.dtype)
        self.Z = np.empty((len(self.cut) - 1) * batch_size * N, dtype=W.dtype)   # partial z's
        self._idx = np.zeros(0, dtype=np.int64)      # the last forward's rows (backward passes them on)
        self._status = np.zeros(len(self.cut) - 1, dtype=np.int64)    # each part's outcome
        z = np.empty((0, N), dtype=W.dtype)           # what y and dz must be like (by_address.fits)
        example = (np.int64(0), False, z, self.X, self.Z, self.src, self._idx, self.scale, gather.PREFETCH_AHEAD,
                   self.cut, W, b, dW, z)
        code = ACT_CODES[activation]
        self._body = by_address.Body(nonzero_layer.body(code, N) if self.nonzero else split_body(code), example)

    def forward(self, idx, y):
        if not by_address.fits(idx, np.int64, 1):
            idx = _as_rows(idx)
        if not by_address.fits(y, self.W.dtype, 2):
            return self._through_copy(idx, y)
        if idx.shape[0] > self.batch_size:     # X may be longer than batch x K (nonzero_layer's table)
            raise ShapeError(f"InputLayer: {idx.shape[0]} rows; the layer was made for at most {self.batch_size}")
        self._cut = self.cut if threads.active() else self.one_cut
        self._idx = idx                 # backward passes it again
        with threads.REGION:
            self._run(self._body.target, False, y, self.X, self.Z, self.src, idx, self.scale, gather.PREFETCH_AHEAD,
                      self._cut, self.W, self.b, self.dW, y, self._status)

    def backward(self, dz):
        if not by_address.fits(dz, self.W.dtype, 2):
            dz = _layer_array(dz, self.W.dtype, "dz").copy()
        with threads.REGION:
            self._run(self._body.target, True, dz, self.X, self.Z, self.src, self._idx, self.scale, 0, self._cut,
                      self.W, self.b, self.dW, dz, self._status)      # the rows of the last forward

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
    """Row indices as the compiled body takes them: a C-contiguous int64 copy of a 1-D integer
    array (unsigned 64-bit ones refused, as ``step.integers`` says why)."""
    idx = integers(np.asarray(idx), "InputLayer: idx")
    if idx.ndim != 1:
        raise ShapeError(f"InputLayer: idx must be 1-D (one row index per row of y), not {idx.ndim}-D")
    return np.array(idx, dtype=np.int64, order="C")         # a copy: writeable, aligned, C-contiguous
