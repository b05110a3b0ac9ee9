"""The numba backend's loops: small pure ``@njit`` functions, one formula each, outputs first.

* Constants are made in the array's type (``x.dtype.type(1)``): a bare ``1`` next to a float32
  promotes the whole expression to float64 in Numba, which halves the SIMD width.
* ``error_model="numpy"``: a float division by zero gives inf/nan as in NumPy, instead of a
  Python exception whose check in every iteration keeps LLVM from vectorising the loop.
* No bounds checks per element: each function checks once that its arrays fit together (and
  that labels are in range) and raises ``ShapeError`` / ``LabelError`` otherwise, so that a
  mistaken call through the backend module cannot read or write outside an array; indices it
  gathers by are clipped into range, as NumPy's reference ``take(mode="clip")`` does. Those
  checks cost a few comparisons per call (labels: one per row), nothing per element.
* Compiled code is cached on disk (``FASTDL_NUMBA_CACHE=0`` turns that off); float32 and float64
  each compile once, hyperparameters arrive cast to the array's type.
"""

from __future__ import annotations

import functools
import math
import types

import numpy as np
from numba import njit, prange

from ...errors import LabelError, ShapeError
from .. import numba_cache
from . import cache, vmath
from .blas import gemm


CACHE = numba_cache.cache_on() and numba_cache.writable(cache.FOLDER)
jit = njit(cache=CACHE, nogil=True, error_model="numpy")
# A row's sum may be reassociated, which lets LLVM vectorise the float64 sum of exp() as NumPy's
# pairwise sum is vectorised; nothing else about the arithmetic changes.
jit_reassoc = njit(cache=CACHE, nogil=True, error_model="numpy", fastmath={"reassoc"})
jit_parallel = njit(cache=CACHE, nogil=True, error_model="numpy", parallel=True)



CALLEE = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}     # see inner()
# What runs only by address from a parallel loop (``by_address``): no entry points either, 0.06-0.07 s
# less compile a body (timed ad hoc, -O1)
jit_body = njit(cache=CACHE, nogil=True, error_model="numpy", **CALLEE)


@functools.cache                    # one twin per function, whichever module asks for it
def inner(f):
    """``f``'s twin for calls from compiled code only: the same Python function and options,
    compiled without the entry points a Python or C caller needs. Numba makes both for every
    function it compiles, callees included, and unboxing each array argument is much of a small
    loop's code: the fused step's callees take twins (with the other savings in
    docs/architecture.md, a first run's compile jobs took 3.19-3.42 s of CPU instead of
    3.54-3.93; timed ad hoc). The machine code inlined into the caller is the same. A name of
    its own: Numba's disk cache keys code by name and types, not by options, and would hand one
    the other's code."""
    py = getattr(f, "py_func", None)
    if py is None:                  # NUMBA_DISABLE_JIT: f is the Python function itself
        return f
    twin = types.FunctionType(py.__code__, py.__globals__, py.__name__, py.__defaults__, py.__closure__)
    twin.__qualname__, twin.__module__, twin.__doc__ = py.__qualname__ + "_inner", py.__module__, py.__doc__
    options = {k: v for k, v in f.targetoptions.items() if k != "nopython"}      # njit's already
    with cache.ours():
        return njit(**CALLEE, **options)(twin)


# -- elementwise, in place ---------------------------------------------------------------------

@jit
def add_bias(z, b):
    """z += b"""
    n, m = z.shape
    if b.shape[0] != m:
        raise ShapeError("add_bias: b's length differs from z's width")
    for i in range(n):
        for j in range(m):
            z[i, j] += b[j]


@jit
def bias_relu(z, b):
    """z = max(z + b, 0)"""
    n, m = z.shape
    if b.shape[0] != m:
        raise ShapeError("bias_relu: b's length differs from z's width")
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            z[i, j] = v if v > 0 else 0


@jit
def bias_sigmoid(z, b):
    """z = sigmoid(z + b), from exp(-|v|), which never overflows"""
    n, m = z.shape
    if b.shape[0] != m:
        raise ShapeError("bias_sigmoid: b's length differs from z's width")
    one = z.dtype.type(1)
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            e = vmath.exp(-abs(v))
            z[i, j] = one / (one + e) if v >= 0 else e / (one + e)


@jit
def colsum(out, dy):
    """out = dy.sum(0)"""
    n, m = dy.shape
    if out.shape[0] != m:
        raise ShapeError("colsum: out's length differs from dy's width")
    out[:] = 0
    for i in range(n):
        for j in range(m):
            out[j] += dy[i, j]


@jit
def relu_grad_colsum(dh, db, h):
    """dh *= (h > 0); db = dh.sum(0). h: the ReLU's output, or its boolean mask."""
    n, m = dh.shape
    if db.shape[0] != m or h.shape != dh.shape:
        raise ShapeError("relu_grad_colsum: h must have dh's shape and db dh's width")
    zero = dh.dtype.type(0)
    db[:] = 0
    for i in range(n):
        for j in range(m):
            v = dh[i, j] if h[i, j] > 0 else zero
            dh[i, j] = v
            db[j] += v


@jit
def sigmoid_grad_colsum(dh, db, y):
    """dh *= y (1 - y); db = dh.sum(0)"""
    n, m = dh.shape
    if db.shape[0] != m or y.shape != dh.shape:
        raise ShapeError("sigmoid_grad_colsum: y must have dh's shape and db dh's width")
    one = dh.dtype.type(1)
    db[:] = 0
    for i in range(n):
        for j in range(m):
            v = dh[i, j] * y[i, j] * (one - y[i, j])
            dh[i, j] = v
            db[j] += v


@jit
def relu_forward(y, mask, x):
    """y = max(x, 0); mask = x > 0"""
    n, m = x.shape
    if y.shape != x.shape or mask.shape != x.shape:
        raise ShapeError("relu_forward: y and mask must have x's shape")
    zero = x.dtype.type(0)
    for i in range(n):
        for j in range(m):
            v = x[i, j]
            pos = v > 0
            mask[i, j] = pos
            y[i, j] = v if pos else zero


@jit
def relu_backward(dx, dy, mask):
    """dx = dy * mask"""
    n, m = dy.shape
    if dx.shape != dy.shape or mask.shape != dy.shape:
        raise ShapeError("relu_backward: dx and mask must have dy's shape")
    zero = dy.dtype.type(0)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dy[i, j] if mask[i, j] else zero


@jit
def sigmoid_backward(dx, dy, y):
    """dx = dy * y * (1 - y)"""
    n, m = dy.shape
    if dx.shape != dy.shape or y.shape != dy.shape:
        raise ShapeError("sigmoid_backward: dx and y must have dy's shape")
    one = dy.dtype.type(1)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dy[i, j] * y[i, j] * (one - y[i, j])


# -- softmax with cross-entropy ------------------------------------------------------------------

@jit_reassoc
def softmax_rows(out, z, t, grad):
    """out = softmax(z), or with ``grad`` (softmax(z) - onehot(t)) / N; returns the mean loss
    mean(logsumexp(z) - z[t]), one pass per row, sums in float64, scaling in the data's type."""
    n, c = z.shape
    if out.shape != z.shape or t.shape[0] != n or c < 1:
        raise ShapeError("softmax: out must have z's shape, z a class, and t one label per row of z")
    for i in range(n):                      # every label before anything is written
        if t[i] < 0 or t[i] >= c:
            raise LabelError("softmax: a label is outside 0 .. classes - 1")
    scale = 1.0 / n if grad else 1.0
    total = 0.0
    for i in range(n):
        mx = z[i, 0]
        for j in range(1, c):
            mx = vmath.maxnum(mx, z[i, j])
        for j in range(c):
            out[i, j] = vmath.exp(z[i, j] - mx)
        s = 0.0
        for j in range(c):
            s += out[i, j]
        total += math.log(s) - (z[i, t[i]] - mx)
        inv = out.dtype.type(scale / s)
        for j in range(c):
            out[i, j] *= inv
        if grad:
            out[i, t[i]] -= scale
    return total / n


@jit
def softmax_grad(dz, probs, t):
    """dz = (probs - onehot(t)) / N"""
    n, c = probs.shape
    if dz.shape != probs.shape or t.shape[0] != n or c < 1:
        raise ShapeError("softmax: out must have z's shape, z a class, and t one label per row of z")
    for i in range(n):                      # every label before anything is written
        if t[i] < 0 or t[i] >= c:
            raise LabelError("softmax: a label is outside 0 .. classes - 1")
    inv_n = probs.dtype.type(1.0 / n)
    for i in range(n):
        for j in range(c):
            dz[i, j] = probs[i, j] * inv_n
        dz[i, t[i]] -= inv_n


# -- gathers -------------------------------------------------------------------------------------

@jit
def gather_rows(out, src, idx):
    """out[r, :] = src[idx[r] clipped into range, :]"""
    d, rows = src.shape[1], src.shape[0]
    if out.shape[0] != idx.shape[0] or out.shape[1] != d or (rows == 0 and idx.shape[0] > 0):
        raise ShapeError("gather_rows: out must be (len(idx), src's width), and src not empty")
    first, last = np.int64(0), np.int64(rows - 1)
    for r in range(idx.shape[0]):
        k = vmath.clamp(np.int64(idx[r]), first, last)      # clipped, as NumPy's take(mode="clip")
        for j in range(d):
            out[r, j] = src[k, j]


# -- GEMMs (SciPy's BLAS, called by blas.gemm) ------------------------------------------------------

@jit
def dot(out, a, b):
    """out = a @ b, BLAS in the calling thread; False (nothing written) where gemm cannot"""
    return gemm(out, a, b)


@jit_parallel
def split_dot(out, a, b, cut, cols):
    """out = a @ b, output rows [cut[p], cut[p+1]) on thread p (columns with ``cols``), each
    calling BLAS; False where a part could not (the caller redoes the whole product)"""
    failed = 0
    for p in prange(cut.shape[0] - 1):
        s0, s1 = cut[p], cut[p + 1]
        if cols:
            failed += 0 if gemm(out[:, s0:s1], a, b[:, s0:s1]) else 1
        else:
            failed += 0 if gemm(out[s0:s1], a[s0:s1], b) else 1
    return failed == 0

