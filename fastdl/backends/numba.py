"""Numba backend: the kernel contract as JIT-compiled CPU loops, plus a fused training step.

Choices, each measured on the book's shapes (see bench/):
* GEMMs stay in BLAS (NumPy's ``@`` / ``np.matmul(out=)``): hand-written loops, even ones that
  skip MNIST's zero pixels, measured slower at 100x784x50. Everything *between* GEMMs is a
  single fused ``@njit`` pass: bias + ReLU,
  softmax + cross-entropy + its gradient, activation backward + the bias-gradient column sum,
  the optimizer updates.
* The trainer's fast path is ``fastdl.fused.compile_train_step`` over the in-place kernels at the
  end of this module: preallocated buffers, rows gathered straight from the training set (as
  bytes and divided back when the data is k/255, as scaled MNIST is: see
  ``fastdl.fused.byte_codes`` and bench's ``test_gather_batch``), BLAS for the GEMMs and one
  fused pass between them; no allocation per step. The layer-by-layer path
  remains and must agree with it (tests/test_fused.py).
* Loops are serial: at these sizes (100 x 50) a parallel region costs more than it saves on
  2 cores. BLAS never runs inside a Numba loop, so the two thread pools never compete.
* Constants are made in the array's type (``x.dtype.type(1)``): a bare ``1`` next to a float32
  promotes the whole expression to float64 in Numba, which halves the SIMD width.
* Compiled code is cached on disk (``cache=True``); set ``FASTDL_NUMBA_CACHE=0`` to turn that off.
  float32 and float64 each compile once; hyperparameters are cast to the array dtype inside.
* Threads: ``FASTDL_NUM_THREADS`` (default: all cores) sets Numba's threads and BLAS's.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit

from . import numpy as _ref

name = "numba"
xp = np
device = "cpu"

CACHE = os.environ.get("FASTDL_NUMBA_CACHE", "1").strip() not in ("0", "false", "no", "off")

asarray = _ref.asarray
to_numpy = _ref.to_numpy
synchronize = _ref.synchronize
is_backend_array = _ref.is_backend_array
_as_indices = _ref._as_indices


def _threads() -> int:
    value = os.environ.get("FASTDL_NUM_THREADS", "").strip()
    if not value:
        return numba.config.NUMBA_NUM_THREADS
    n = int(value)
    if n < 1:
        raise ValueError(f"FASTDL_NUM_THREADS={value!r} must be a positive integer")
    return min(n, numba.config.NUMBA_NUM_THREADS)


def check_usable() -> None:
    n = _threads()
    numba.set_num_threads(n)
    if os.environ.get("FASTDL_NUM_THREADS", "").strip():
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(n, user_api="blas")
        except ImportError:
            pass


def describe() -> dict:
    info = _ref.describe()
    info.update(backend=name, numba=numba.__version__, threads=numba.get_num_threads(),
                disk_cache="on" if CACHE else "off", compiled=compiled_status())
    return info


def compiled_status() -> str:
    """How many of the JIT kernels have compiled code loaded in this process."""
    done = sum(1 for f in _JITTED if f.signatures)
    return f"{done}/{len(_JITTED)} kernels compiled"


# error_model="numpy": a float division by zero gives inf/nan as in NumPy, instead of a Python
# exception whose check in every iteration keeps LLVM from vectorising the loop.
jit = njit(cache=CACHE, nogil=True, error_model="numpy")


# -- in-place building blocks (also used by the fused step) ------------------------------------

@jit
def _add_bias(z, b):
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            z[i, j] += b[j]


@jit
def _bias_relu(z, b):
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            if v > 0:
                z[i, j] = v
            else:
                z[i, j] = 0


@jit
def _bias_sigmoid(z, b):
    n, m = z.shape
    one = z.dtype.type(1)
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            e = np.exp(-abs(v))
            z[i, j] = one / (one + e) if v >= 0 else e / (one + e)


@jit
def _colsum(dy, out):
    n, m = dy.shape
    out[:] = 0
    for i in range(n):
        for j in range(m):
            out[j] += dy[i, j]


@jit
def _relu_grad_colsum(dh, h, db):
    """dh *= (h > 0); db = column sums of dh. h is the ReLU *output* (h > 0 iff input > 0)."""
    n, m = dh.shape
    zero = dh.dtype.type(0)
    db[:] = 0
    for i in range(n):
        for j in range(m):
            v = dh[i, j] if h[i, j] > 0 else zero
            dh[i, j] = v
            db[j] += v


@jit
def _sigmoid_grad_colsum(dh, y, db):
    n, m = dh.shape
    one = dh.dtype.type(1)
    db[:] = 0
    for i in range(n):
        for j in range(m):
            v = dh[i, j] * y[i, j] * (one - y[i, j])
            dh[i, j] = v
            db[j] += v


# Summing a row may be reassociated (fastmath "reassoc"), which lets LLVM vectorise the float64
# sum of exp() as NumPy's pairwise sum is vectorised; nothing else about the arithmetic changes.
@njit(cache=CACHE, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _softmax_rows(z, t, out, grad):
    """One pass per row: returns the mean loss (float64 accumulator) and writes softmax(z) into
    ``out``, or, with ``grad``, (softmax(z) - onehot(t)) / N."""
    n, c = z.shape
    scale = 1.0 / n if grad else 1.0
    total = 0.0
    for i in range(n):
        mx = z[i, 0]
        for j in range(1, c):
            mx = max(mx, z[i, j])
        for j in range(c):
            out[i, j] = np.exp(z[i, j] - mx)
        s = 0.0
        for j in range(c):
            s += out[i, j]
        total += math.log(s) - (z[i, t[i]] - mx)
        inv = out.dtype.type(scale / s)      # the sums in float64, the scaling in the data's type
        for j in range(c):
            out[i, j] *= inv
        if grad:
            out[i, t[i]] -= scale
    return total / n


@jit
def _softmax_grad(probs, t, dz):
    n, c = probs.shape
    inv_n = probs.dtype.type(1.0 / n)          # in the data's type: no float64 promotion
    for i in range(n):
        for j in range(c):
            dz[i, j] = probs[i, j] * inv_n
        dz[i, t[i]] -= inv_n


@jit
def _gather_rows(src, idx, dst):
    d = src.shape[1]
    for r in range(idx.shape[0]):
        k = idx[r]
        for j in range(d):
            dst[r, j] = src[k, j]


@jit
def _gather_decoded_rows(codes, idx, scale, dst):
    d = codes.shape[1]
    for r in range(idx.shape[0]):
        k = idx[r]
        for j in range(d):
            dst[r, j] = dst.dtype.type(codes[k, j]) / scale     # a division, as when the data was scaled


@jit
def _gather(src, idx, dst):
    for r in range(idx.shape[0]):
        dst[r] = src[idx[r]]


# -- the contract ------------------------------------------------------------------------------

def affine_forward(x, W, b):
    y = x @ W
    _add_bias(y, b)
    return y


def affine_backward(dy, x, W, need_dx=True):
    dx = dy @ W.T if need_dx else None
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    _colsum(dy, db)
    return dx, x.T @ dy, db


@jit
def _relu_forward(x, y, mask):
    n, m = x.shape
    zero = x.dtype.type(0)
    for i in range(n):
        for j in range(m):
            v = x[i, j]
            pos = v > 0
            mask[i, j] = pos
            y[i, j] = v if pos else zero


def relu_forward(x):
    y = np.empty_like(x)
    mask = np.empty(x.shape, dtype=np.bool_)
    _relu_forward(x, y, mask)
    return y, mask


@jit
def _relu_backward(dy, mask, dx):
    n, m = dy.shape
    zero = dy.dtype.type(0)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dy[i, j] if mask[i, j] else zero


def relu_backward(dy, mask):
    dx = np.empty_like(dy)
    _relu_backward(dy, mask, dx)
    return dx


def sigmoid_forward(x):
    y = x.copy()
    _bias_sigmoid(y, np.zeros(x.shape[1], dtype=x.dtype))
    return y


@jit
def _sigmoid_backward(dy, y, dx):
    n, m = dy.shape
    one = dy.dtype.type(1)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dy[i, j] * y[i, j] * (one - y[i, j])


def sigmoid_backward(dy, y):
    dx = np.empty_like(dy)
    _sigmoid_backward(dy, y, dx)
    return dx


def softmax_cross_entropy_forward(z, t):
    probs = np.empty_like(z)
    loss = _softmax_rows(z, np.ascontiguousarray(_as_indices(t)), probs, False)
    return z.dtype.type(loss), probs


def softmax_cross_entropy_backward(probs, t):
    dz = np.empty_like(probs)
    _softmax_grad(probs, np.ascontiguousarray(_as_indices(t)), dz)
    return dz


# -- fused kernels (equal to the compositions in the NumPy backend) ----------------------------

def affine_relu_forward(x, W, b):
    y = x @ W
    _bias_relu(y, b)
    return y, y > 0


def affine_sigmoid_forward(x, W, b):
    y = x @ W
    _bias_sigmoid(y, b)
    return y


def relu_backward_colsum(dy, mask):
    dx = dy.copy()
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    _relu_grad_colsum(dx, mask, db)           # compiles for a bool mask: no conversion pass
    return dx, db


def sigmoid_backward_colsum(dy, y):
    dx = dy.copy()
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    _sigmoid_grad_colsum(dx, y, db)
    return dx, db


def softmax_cross_entropy(z, t):
    dz = np.empty_like(z)
    loss = _softmax_rows(z, np.ascontiguousarray(_as_indices(t)), dz, True)
    return z.dtype.type(loss), dz


# -- optimizer updates (in place, one pass each; arrays are flattened views) --------------------

@jit
def _sgd(p, g, lr):
    for i in range(p.size):
        p[i] -= lr * g[i]


@jit
def _momentum(p, g, v, lr, mu):
    for i in range(p.size):
        v[i] = mu * v[i] - lr * g[i]
        p[i] += v[i]


@jit
def _nesterov(p, g, v, lr, mu):
    one = p.dtype.type(1)
    for i in range(p.size):
        v[i] = mu * v[i] - lr * g[i]
        p[i] += mu * mu * v[i] - (one + mu) * lr * g[i]


@jit
def _adagrad(p, g, h, lr, eps):
    for i in range(p.size):
        h[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def _rmsprop(p, g, h, lr, decay, eps):
    one = p.dtype.type(1)
    for i in range(p.size):
        h[i] = decay * h[i] + (one - decay) * g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def _adam(p, g, m, v, lr_t, b1, b2, eps):
    one = p.dtype.type(1)
    for i in range(p.size):
        m[i] += (one - b1) * (g[i] - m[i])
        v[i] += (one - b2) * (g[i] * g[i] - v[i])
        p[i] -= lr_t * m[i] / (np.sqrt(v[i]) + eps)


def _flat(*arrays):
    return [a.reshape(-1) for a in arrays]


def _scalars(p, *values):
    """Hyperparameters in the parameter dtype: float32 math stays float32, one compile per dtype."""
    t = p.dtype.type
    return [t(v) for v in values]


def sgd_update(p, g, lr):
    _sgd(*_flat(p, g), *_scalars(p, lr))


def momentum_update(p, g, v, lr, momentum):
    _momentum(*_flat(p, g, v), *_scalars(p, lr, momentum))


def nesterov_update(p, g, v, lr, momentum):
    _nesterov(*_flat(p, g, v), *_scalars(p, lr, momentum))


def adagrad_update(p, g, h, lr, eps):
    _adagrad(*_flat(p, g, h), *_scalars(p, lr, eps))


def rmsprop_update(p, g, h, lr, decay, eps):
    _rmsprop(*_flat(p, g, h), *_scalars(p, lr, decay, eps))


def adam_update(p, g, m, v, lr, beta1, beta2, eps, step):
    lr_t = lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    _adam(*_flat(p, g, m, v), *_scalars(p, lr_t, beta1, beta2, eps))


# -- in-place kernels of the fused training step (see fastdl/fused.py) -------------------------

from ..fused import compile_train_step  # noqa: E402,F401  (the trainer's fast path)


def gather_rows_(out, src, idx):
    if src.ndim == 2:
        _gather_rows(src, idx, out)
    else:
        _gather(src, idx, out)


def gather_decoded_rows_(out, codes, idx, scale):
    _gather_decoded_rows(codes, idx, out.dtype.type(scale), out)


# One call per step for the whole parameter set (typed lists of flat views, built once).

@jit
def _sgd_all(P, G, lr):
    for a in range(len(P)):
        p, g = P[a], G[a]
        for i in range(p.size):
            p[i] -= lr * g[i]


@jit
def _momentum_all(P, G, V, lr, mu):
    for a in range(len(P)):
        p, g, v = P[a], G[a], V[a]
        for i in range(p.size):
            v[i] = mu * v[i] - lr * g[i]
            p[i] += v[i]


@jit
def _adam_all(P, G, M, V, lr_t, b1, b2, eps):
    for a in range(len(P)):
        p, g, m, v = P[a], G[a], M[a], V[a]
        one = p.dtype.type(1)
        for i in range(p.size):
            m[i] += (one - b1) * (g[i] - m[i])
            v[i] += (one - b2) * (g[i] * g[i] - v[i])
            p[i] -= lr_t * m[i] / (np.sqrt(v[i]) + eps)


def fused_update(optimizer, params, grads):
    """update() doing optimizer.update(params, grads) in one JIT call, for SGD, Momentum and Adam;
    None for the others (they keep one call per parameter). Reads the hyperparameters at every
    call, so changing ``optimizer.lr`` between steps works."""
    from numba.typed import List
    kind = type(optimizer).__name__
    if kind not in ("SGD", "Momentum", "Adam"):
        return None
    keys = list(params)
    dt = params[keys[0]].dtype.type
    flat = lambda arrays: List([a.reshape(-1) for a in arrays])
    P, G = flat(params[k] for k in keys), flat(grads[k] for k in keys)
    states = [flat(optimizer._state_for(k, params[k], np)[i] for k in keys) for i in range(len(optimizer.state_names))]

    def update():
        optimizer.step += 1
        if kind == "SGD":
            _sgd_all(P, G, dt(optimizer.lr))
        elif kind == "Momentum":
            _momentum_all(P, G, states[0], dt(optimizer.lr), dt(optimizer.momentum))
        else:
            o = optimizer
            lr_t = o.lr * math.sqrt(1.0 - o.beta2 ** o.step) / (1.0 - o.beta1 ** o.step)
            _adam_all(P, G, states[0], states[1], dt(lr_t), dt(o.beta1), dt(o.beta2), dt(o.eps))

    return update


def add_bias_(z, b):
    _add_bias(z, b)


def bias_relu_(z, b):
    _bias_relu(z, b)


def bias_sigmoid_(z, b):
    _bias_sigmoid(z, b)


def colsum_(out, dy):
    _colsum(dy, out)


def relu_grad_colsum_(dh, h, db):
    _relu_grad_colsum(dh, h, db)


def sigmoid_grad_colsum_(dh, y, db):
    _sigmoid_grad_colsum(dh, y, db)


def softmax_xent_(dz, z, t):
    return _softmax_rows(z, t, dz, True)


import sys as _sys  # noqa: E402
_this = _sys.modules[__name__]
_JITTED = [v for v in list(globals().values()) if isinstance(v, numba.core.registry.CPUDispatcher)]
