"""The numba backend's loops: small pure ``@njit`` functions, one formula each, outputs first.

* Constants are made in the array's type (``x.dtype.type(1)``): a bare ``1`` next to a float32
  promotes the whole expression to float64 in Numba, which halves the SIMD width.
* ``error_model="numpy"``: a float division by zero gives inf/nan as in NumPy, instead of a
  Python exception whose check in every iteration keeps LLVM from vectorising the loop.
* No bounds checks: callers pass shapes the contract promises (validated on the host).
* Compiled code is cached on disk (``FASTDL_NUMBA_CACHE=0`` turns that off); float32 and float64
  each compile once, hyperparameters arrive cast to the array's type.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import njit, prange

from . import vmath
from .blas import gemm


CACHE = os.environ.get("FASTDL_NUMBA_CACHE", "1").strip() not in ("0", "false", "no", "off")
jit = njit(cache=CACHE, nogil=True, error_model="numpy")
# A row's sum may be reassociated, which lets LLVM vectorise the float64 sum of exp() as NumPy's
# pairwise sum is vectorised; nothing else about the arithmetic changes.
jit_reassoc = njit(cache=CACHE, nogil=True, error_model="numpy", fastmath={"reassoc"})
jit_parallel = njit(cache=CACHE, nogil=True, error_model="numpy", parallel=True)


# -- elementwise, in place ---------------------------------------------------------------------

@jit
def add_bias(z, b):
    """z += b"""
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            z[i, j] += b[j]


@jit
def bias_relu(z, b):
    """z = max(z + b, 0)"""
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            z[i, j] = v if v > 0 else 0


@jit
def bias_sigmoid(z, b):
    """z = sigmoid(z + b), from exp(-|v|), which never overflows"""
    n, m = z.shape
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
    out[:] = 0
    for i in range(n):
        for j in range(m):
            out[j] += dy[i, j]


@jit
def relu_grad_colsum(dh, db, h):
    """dh *= (h > 0); db = dh.sum(0). h: the ReLU's output, or its boolean mask."""
    n, m = dh.shape
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
    zero = dy.dtype.type(0)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dy[i, j] if mask[i, j] else zero


@jit
def sigmoid_backward(dx, dy, y):
    """dx = dy * y * (1 - y)"""
    n, m = dy.shape
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
    inv_n = probs.dtype.type(1.0 / n)
    for i in range(n):
        for j in range(c):
            dz[i, j] = probs[i, j] * inv_n
        dz[i, t[i]] -= inv_n


# -- gathers -------------------------------------------------------------------------------------

@jit
def gather_rows(out, src, idx):
    """out[r, :] = src[idx[r], :]"""
    d = src.shape[1]
    for r in range(idx.shape[0]):
        k = idx[r]
        for j in range(d):
            out[r, j] = src[k, j]


@jit
def gather(out, src, idx):
    """out[r] = src[idx[r]]"""
    for r in range(idx.shape[0]):
        out[r] = src[idx[r]]


# -- optimizer updates, on flat arrays (the book's formulas) --------------------------------------

@jit
def sgd(p, g, lr):
    """p -= lr g"""
    for i in range(p.size):
        p[i] -= lr * g[i]


@jit
def momentum(p, g, v, lr, mu):
    """v = mu v - lr g; p += v"""
    for i in range(p.size):
        v[i] = mu * v[i] - lr * g[i]
        p[i] += v[i]


@jit
def nesterov(p, g, v, lr, mu, mu_sq, lr_ahead):
    """p += mu_sq v; p -= lr_ahead g; v = mu v - lr g (the book's order: p moves with the old v)"""
    for i in range(p.size):
        p[i] += mu_sq * v[i]
        p[i] -= lr_ahead * g[i]
        v[i] = mu * v[i] - lr * g[i]


@jit
def adagrad(p, g, h, lr, eps):
    """h += g^2; p -= lr g / (sqrt(h) + eps)"""
    for i in range(p.size):
        h[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def rmsprop(p, g, h, lr, decay, one_minus_decay, eps):
    """h = decay h + (1 - decay) g^2; p -= lr g / (sqrt(h) + eps)"""
    for i in range(p.size):
        h[i] = decay * h[i] + one_minus_decay * g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def adam(p, g, m, v, lr_t, one_minus_b1, one_minus_b2, eps):
    """m += (1 - b1)(g - m); v += (1 - b2)(g^2 - v); p -= lr_t m / (sqrt(v) + eps)"""
    for i in range(p.size):
        m[i] += one_minus_b1 * (g[i] - m[i])
        v[i] += one_minus_b2 * (g[i] * g[i] - v[i])
        p[i] -= lr_t * m[i] / (np.sqrt(v[i]) + eps)


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

