"""Evaluation's first layer over ByteImages from their non-zero pixels only (``ScoreLayer``).

81% of MNIST's pixels are zero, and a run's evaluations read the same 70,000 images at every
epoch. A layer built with ``reuse=True`` (the trainer's) lists the set's non-zero pixels once
(``csr_rows``: compressed sparse rows, column as uint16 and code as uint8, 3 bytes a pixel: 31 MB
for MNIST's 70,000 images beside their 55 MB of codes), and each call sums only those rows of W
(``sparse_rows``). On 60,000 MNIST images, 784 -> 48 to 256 outputs, two threads, it took about
half the dense product's time, float32 and float64 alike (17.7 ms against 32.7 ms for NumPy's
GEMM at 48; timed ad hoc). The dense layer is kept where that does not hold: a set denser than
``MAX_DENSITY`` (the measured break-even was ~35% non-zero), outputs wider than ``MAX_OUTPUTS``
(not measured beyond), or a layer built to be used once (listing costs about one dense pass).

How the loop is written matters more than its arithmetic (each timed ad hoc): Numba gives every
array view a reference count, so ``W[k]`` taken per pixel cost twice the loop (atomic increments);
indexing ``W[k, j]`` does not. Summing four pixels' rows per pass over the accumulator breaks
the chain of stores and reloads through it (3.9 -> 1.9 ns a pixel at 8 outputs). LLVM's
vectorised loop handles widths in whole vectors and the rest one by one, so W is copied into a
buffer whose width is rounded up to ``LANES`` (zero columns): 50 outputs ran 4.9 ns a pixel,
56 padded ones 3.9.

Rows are split across Python threads, each running the compiled loop without the GIL: a
``prange`` loop compiled in 0.7 s on a first run against 0.25 s for the plain loop, and a block
of ``ROWS`` rows takes milliseconds against ~0.1 ms for starting a thread.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from ...images import ByteImages
from .. import composed
from ..contract import ACT_CODES
from . import step, threads, variants
from .loops import jit
from .step import _made

ROWS = 8192                   # rows per call: thread starts stay ~1% of a call
DENSE_ROWS = 1024             # rows per call of the dense path: its buffers stay in the cache
LANES = 8                     # W's buffer width is a multiple of this (one AVX2 vector of float32)
MAX_DENSITY = 0.25            # the largest share of non-zero pixels listed (break-even ~0.35)
MAX_OUTPUTS = 256             # the widest layer measured faster sparse


@jit
def csr_rows(ptr, col, val, codes, words) -> int:
    """Fill ptr (N+1), col and val (at least nnz + D each) with codes' non-zero entries row by
    row; returns how many there were, or -1 where col and val are too short (codes changed
    since they were counted). ``words``: each row's first 8 * words.shape[1] codes as uint64,
    so that eight zero pixels are skipped at once (61% of MNIST's words: 34 -> 20 ms for its
    60,000 images, timed ad hoc). Each position of a word read is written and only a non-zero
    one is kept (no branch per pixel), so the arrays need D entries past the last one."""
    n, d = codes.shape
    w8 = words.shape[1]
    q = 0
    ptr[0] = 0
    for i in range(n):
        if q + d > col.shape[0] or q + d > val.shape[0]:
            return -1
        for w in range(w8):
            if words[i, w] != 0:
                for k in range(8 * w, 8 * w + 8):
                    v = codes[i, k]
                    col[q] = k
                    val[q] = v
                    q += v != 0
        for k in range(8 * w8, d):
            v = codes[i, k]
            col[q] = k
            val[q] = v
            q += v != 0
        ptr[i + 1] = q
    return q


def as_words(codes: np.ndarray) -> np.ndarray:
    """codes (N, D) uint8 read as (N, D // 8) uint64 where their rows allow it, else (N, 0)."""
    n, d = codes.shape
    if codes.flags.c_contiguous and d % 8 == 0:
        return codes.view(np.uint64)
    return np.zeros((n, 0), dtype=np.uint64)


@functools.cache
def sparse_rows(act: int):
    """The sparse first layer for activation code ``act`` (one compiled function per code)."""
    bias_act = variants.BIAS_ACTS[act]

    def sparse_rows(y, lo, hi, start, ptr, col, val, lut, W, b):
        """y[r] = act(sum over row start + r's non-zeros q of lut[val[q]] W[col[q]] + b) for r in
        [lo, hi); W may be wider than y (zero columns). Four rows of W per pass."""
        m, width = y.shape[1], W.shape[1]
        acc = np.empty(width, dtype=W.dtype)
        for r in range(lo, hi):
            for j in range(width):
                acc[j] = 0
            q, q1 = ptr[start + r], ptr[start + r + 1]
            while q + 4 <= q1:
                k0, k1, k2, k3 = np.intp(col[q]), np.intp(col[q + 1]), np.intp(col[q + 2]), np.intp(col[q + 3])
                v0, v1, v2, v3 = lut[val[q]], lut[val[q + 1]], lut[val[q + 2]], lut[val[q + 3]]
                for j in range(width):
                    acc[j] += (v0 * W[k0, j] + v1 * W[k1, j]) + (v2 * W[k2, j] + v3 * W[k3, j])
                q += 4
            while q < q1:
                k0, v0 = np.intp(col[q]), lut[val[q]]
                for j in range(width):
                    acc[j] += v0 * W[k0, j]
                q += 1
            for j in range(m):
                y[r, j] = acc[j]
        bias_act(y[lo:hi], b)
    return _made(sparse_rows, jit)


def listed(x: ByteImages, outputs: int, reuse: bool) -> bool:
    """Whether a ScoreLayer for ``outputs`` over ``x`` lists its non-zero pixels (module notes)."""
    n, d = x.codes.shape
    if not reuse or outputs > MAX_OUTPUTS or d > np.iinfo(np.uint16).max + 1 or n * d == 0:
        return False
    return np.count_nonzero(x.codes) <= MAX_DENSITY * n * d


class ScoreLayer:
    """The contract's ``ScoreLayer``: from the set's non-zero pixels where ``listed`` says so, else
    dense through the step's ``InputLayer`` (its split GEMM; nothing more to compile)."""

    def __init__(self, bk, x, activation: str, outputs: int, reuse: bool = False):
        self.bk, self.x, self.activation, self.listed = bk, x, activation, listed(x, outputs, reuse)
        n, d = x.codes.shape
        self.shape, self.dtype, self.outputs = (n, d), x.dtype, outputs
        if not self.listed:
            self.rows, self.input = min(DENSE_ROWS, n), None
            self.order = np.arange(n)                        # rows of the set, sliced per block
            return
        self.rows = min(ROWS, n)
        codes = x.codes
        nnz = int(np.count_nonzero(codes))
        # zeros: rows the kernel leaves unwritten (it stops early when the codes changed since they
        # were counted; the warm-up's recorder runs nothing) are empty, whatever it returns
        self.ptr = np.zeros(n + 1, dtype=np.int64)
        col, val = np.empty(nnz + d, dtype=np.uint16), np.empty(nnz + d, dtype=np.uint8)
        if csr_rows(self.ptr, col, val, codes, as_words(codes)) < 0:
            raise RuntimeError("ByteImages' codes changed while numba's ScoreLayer listed them; build it again")
        self.col, self.val = col, val
        self.lut = np.divide(np.arange(256, dtype=np.uint8), x.scale_as(x.dtype), dtype=x.dtype)  # as decoded
        self.W = np.zeros((d, -(-outputs // LANES) * LANES), dtype=x.dtype)       # zero columns past W's
        self._run = sparse_rows(ACT_CODES[activation])

    def forward(self, y, start, W, b):
        start, n = composed.check_block(y, start, W, b, self.shape, self.outputs, self.rows, self.dtype)
        if not self.listed:
            if self.input is None or self.input.W is not W or self.input.b is not b:   # bound to W and b
                self.input = step.InputLayer(self.bk, W, b, np.empty_like(W), self.x, self.rows, self.activation)
            self.input.forward(self.order[start:start + n], y)
            return
        self.W[:, :self.outputs] = W                              # the parameters as they are now
        args = (start, self.ptr, self.col, self.val, self.lut, self.W, b)
        parts = min(threads.configured_threads() if threads.active() else 1, n)
        cut = [n * p // parts for p in range(parts + 1)]
        failed = []

        def part(lo, hi):
            try:
                self._run(y, lo, hi, *args)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                failed.append(exc)
        others = [threading.Thread(target=part, args=(lo, hi), daemon=True) for lo, hi in zip(cut[1:-1], cut[2:])]
        for t in others:
            t.start()
        part(cut[0], cut[1])
        for t in others:
            t.join()
        if failed:
            raise failed[0]
