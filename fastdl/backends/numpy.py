"""NumPy reference backend: the kernel contract, written to be read.

Conventions shared by every backend (this module is the specification the others are tested
against):

* Shapes: x (N, D), W (D, M), b (M,); labels t are int class indices (N,) or one-hot rows (N, C).
  The label form is decided by rank (1-D = indices, 2-D = one-hot), never by comparing sizes.
  Label *values* are validated on the host before a kernel sees them (``fastdl.validate``).
* Kernels are pure: they never modify their inputs and return what backward needs.
  The exceptions are the optimizer updates (``*_update``), which update parameters and state in
  place by design; their names say so.
* dtype rule: float32 in -> float32 out, float64 in -> float64 out.

Kernels
    affine_forward(x, W, b)                  -> y                  y = x @ W + b
    affine_backward(dy, x, W, need_dx=True)  -> dx, dW, db         dx is None when not needed
    relu_forward(x)                          -> y, mask
    relu_backward(dy, mask)                  -> dx
    sigmoid_forward(x)                       -> y                  stable for any finite x
    sigmoid_backward(dy, y)                  -> dx                 dy * y * (1 - y)
    softmax_cross_entropy_forward(z, t)      -> loss, probs        log-sum-exp; mean over batch
    softmax_cross_entropy_backward(probs, t) -> dz                 (probs - onehot(t)) / N
    <opt>_update(param, grad, *state, **hyper)                     in place, for the six optimizers
"""

from __future__ import annotations

import math

import numpy as np

name = "numpy"
xp = np
device = "cpu"


# -- arrays ------------------------------------------------------------------------------------

def asarray(a, dtype=None):
    """A C-contiguous NumPy array (no copy when ``a`` already is one of ``dtype``)."""
    return np.ascontiguousarray(a, dtype=dtype)


def to_numpy(a):
    return np.asarray(a)


def synchronize():
    """CPU work is synchronous; kept so timing code is the same on every backend."""


def is_backend_array(a) -> bool:
    return isinstance(a, np.ndarray)


def describe() -> dict:
    info = {"backend": name, "device": device, "numpy": np.__version__}
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            info["blas"] = ", ".join(
                f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, {p.get('num_threads')} threads)"
                for p in blas)
    except ImportError:
        info["blas"] = "unknown (install threadpoolctl to see)"
    return info


def _as_indices(t):
    """int class indices from either label form (one-hot rows were validated as one-hot)."""
    return t.argmax(axis=1) if t.ndim == 2 else t


# -- Affine ------------------------------------------------------------------------------------

def affine_forward(x, W, b):
    return x @ W + b


def affine_backward(dy, x, W, need_dx=True):
    # The first layer's input gradient is never used in training; skipping it saves a GEMM.
    dx = dy @ W.T if need_dx else None
    return dx, x.T @ dy, dy.sum(axis=0)


# -- ReLU --------------------------------------------------------------------------------------

def relu_forward(x):
    mask = x > 0  # the gradient at exactly 0 is taken as 0, as in the book
    return np.maximum(x, x.dtype.type(0)), mask


def relu_backward(dy, mask):
    return dy * mask


# -- Sigmoid -----------------------------------------------------------------------------------

def sigmoid_forward(x):
    # exp(-|x|) never overflows; the two branches are the same function rearranged.
    e = np.exp(-np.abs(x))
    one = x.dtype.type(1)
    return np.where(x >= 0, one / (one + e), e / (one + e))


def sigmoid_backward(dy, y):
    return dy * y * (y.dtype.type(1) - y)


# -- Softmax with cross-entropy ----------------------------------------------------------------

def softmax_cross_entropy_forward(z, t):
    # loss_i = logsumexp(z_i) - z_i[t_i]: exact even when the true class has probability ~0,
    # unlike the book's -log(p + 1e-7), whose gradient is wrong for confident mistakes.
    idx = _as_indices(t)
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    probs = e / total
    rows = np.arange(z.shape[0])
    loss = (np.log(total[:, 0]) - shifted[rows, idx]).mean()
    return loss, probs


def softmax_cross_entropy_backward(probs, t):
    idx = _as_indices(t)
    n = probs.shape[0]
    dz = probs.copy()
    dz[np.arange(n), idx] -= 1
    dz /= probs.dtype.type(n)
    return dz


# -- optimizer updates (in place) --------------------------------------------------------------
# Hyperparameters arrive as Python floats and are cast to the parameter dtype so float32 stays
# float32. `step` is the 1-based update count (Adam's bias correction).

def sgd_update(p, g, lr):
    p -= p.dtype.type(lr) * g


def momentum_update(p, g, v, lr, momentum):
    v *= v.dtype.type(momentum)
    v -= v.dtype.type(lr) * g
    p += v


def nesterov_update(p, g, v, lr, momentum):
    # The book's formulation (Sutskever et al.) of Nesterov's accelerated gradient.
    mu, lr = p.dtype.type(momentum), p.dtype.type(lr)
    v *= mu
    v -= lr * g
    p += mu * mu * v
    p -= (1 + mu) * lr * g


def adagrad_update(p, g, h, lr, eps):
    h += g * g
    p -= p.dtype.type(lr) * g / (np.sqrt(h) + p.dtype.type(eps))


def rmsprop_update(p, g, h, lr, decay, eps):
    d = p.dtype.type(decay)
    h *= d
    h += (1 - d) * g * g
    p -= p.dtype.type(lr) * g / (np.sqrt(h) + p.dtype.type(eps))


def adam_step_size(lr, beta1, beta2, step) -> float:
    """Adam's bias correction folded into the step size, as in the book's (and Kingma & Ba's)
    form; every backend's Adam uses this."""
    return lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, step):
    lr_t = adam_step_size(lr, beta1, beta2, step)
    b1, b2 = p.dtype.type(beta1), p.dtype.type(beta2)
    m += (1 - b1) * (g - m)
    v += (1 - b2) * (g * g - v)
    p -= p.dtype.type(lr_t) * m / (np.sqrt(v) + p.dtype.type(eps))


# -- fused kernels -----------------------------------------------------------------------------
# Here they are the plain compositions: the definitions the fused versions of the other backends
# must equal within the dtype's tolerance. `db` is the column sum of `dx`: the bias gradient of
# the Affine layer that produced the activation's input.

def affine_relu_forward(x, W, b):
    return relu_forward(affine_forward(x, W, b))


def affine_sigmoid_forward(x, W, b):
    return sigmoid_forward(affine_forward(x, W, b))


def relu_backward_colsum(dy, mask):
    dx = relu_backward(dy, mask)
    return dx, dx.sum(axis=0)


def sigmoid_backward_colsum(dy, y):
    dx = sigmoid_backward(dy, y)
    return dx, dx.sum(axis=0)


def softmax_cross_entropy(z, t):
    """Forward and backward at once: (loss, dz)."""
    loss, probs = softmax_cross_entropy_forward(z, t)
    return loss, softmax_cross_entropy_backward(probs, t)
