"""NumPy reference backend: every entry of the kernel contract, written to be read.

The contract itself (names, signatures, what each writes, the dtype rule) is the table in
``fastdl/backends/contract.py``; this module is the oracle every other backend is tested against,
kernel by kernel and hook by hook. It declares the fused step too, so NumPy runs the trainer's
whole-step path itself and that path has an oracle in the layer-by-layer one.
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import composed
from .contract import COMPILE_AHEAD, FUSED_STEP, GRAPH_REPLAY
# chapter 6's entries (weight decay, Dropout, Batch Normalization), kept in a module of their own
from .numpy_chapter6 import (axpy_, batchnorm_backward, batchnorm_forward,  # noqa: F401
                             batchnorm_inference, dropout_forward, running_update, scale, sum_squares)

name = "numpy"
xp = np
device = "cpu"
CAPABILITIES = frozenset({FUSED_STEP, GRAPH_REPLAY, COMPILE_AHEAD})
COMPILES = False
READS_BYTES_FASTER = False      # NumPy decodes each block of rows in a pass of its own


def check_usable() -> None:
    """NumPy always runs."""


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


def train_scope():
    """NumPy needs no process settings for training."""
    return contextlib.nullcontext()


def compile_jobs(run, cached: bool = False) -> list:
    """Nothing compiles: no jobs, and no need to run ``run``."""
    return []


def describe() -> dict:
    info = {"backend": name, "device": device, "numpy": np.__version__}
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            info["blas"] = ", ".join(
                f"{_owner(p.get('filepath', ''))}'s {p.get('internal_api')} {p.get('version')} "
                f"({p.get('architecture')}, {p.get('num_threads')} thread{'s' if p.get('num_threads') != 1 else ''})"
                for p in blas)
    except ImportError:
        info["blas"] = "unknown (install threadpoolctl to see)"
    return info


def _owner(path: str) -> str:
    """Which package shipped a loaded library: numpy.libs/... -> 'numpy', scipy.libs/... -> 'scipy'."""
    import re
    m = re.search(r"[/\\](numpy|scipy|torch|sklearn)(?:[./\\]|\.libs)", path)
    return m.group(1) if m else "system"


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
# float32. Their values come from Optimizer.kernel_hyperparameters().

def sgd_update(p, g, lr):
    p -= p.dtype.type(lr) * g


def momentum_update(p, g, v, lr, momentum):
    v *= v.dtype.type(momentum)
    v -= v.dtype.type(lr) * g
    p += v


def nesterov_update(p, g, v, lr, momentum, momentum_sq, lr_ahead):
    # The book's order (Sutskever et al.'s form): the parameters move with the *previous*
    # velocity, then the velocity is updated. PyTorch's SGD(nesterov=True) gives the same steps.
    t = p.dtype.type
    p += t(momentum_sq) * v
    p -= t(lr_ahead) * g
    v *= t(momentum)
    v -= t(lr) * g


def adagrad_update(p, g, h, lr, eps):
    h += g * g
    p -= p.dtype.type(lr) * g / (np.sqrt(h) + p.dtype.type(eps))


def rmsprop_update(p, g, h, lr, decay, one_minus_decay, eps):
    t = p.dtype.type
    h *= t(decay)
    h += t(one_minus_decay) * g * g
    p -= t(lr) * g / (np.sqrt(h) + t(eps))


def adam_update(p, g, m, v, lr_t, one_minus_beta1, one_minus_beta2, eps):
    # lr_t: the step size with Adam's bias correction folded in, as in the book
    t = p.dtype.type
    m += t(one_minus_beta1) * (g - m)
    v += t(one_minus_beta2) * (g * g - v)
    p -= t(lr_t) * m / (np.sqrt(v) + t(eps))


# -- in-place hooks of the fused step (outputs first; see the contract) -------------------------

def decode_bytes_(out, codes, scale):
    # dtype=: the division in out's type (uint8 / float32 scalar promotes differently across NumPy versions)
    np.divide(codes, scale, out=out, dtype=out.dtype)


def gather_rows_(out, src, idx):
    # mode="clip": with the default mode take() buffers `out` (measured here: 29 us against 11 us
    # for 100 MNIST rows); indices are validated before any hook runs, so clipping never happens
    np.take(src, idx, axis=0, out=out, mode="clip")


def matmul_(out, a, b):
    np.matmul(a, b, out=out)


def add_bias_(z, b):
    z += b


def bias_relu_(z, b):
    z += b
    np.maximum(z, z.dtype.type(0), out=z)


def bias_sigmoid_(z, b):
    z += b
    z[...] = sigmoid_forward(z)


def colsum_(out, dy):
    dy.sum(axis=0, out=out)


def relu_grad_colsum_(dh, db, h):
    dh *= h > 0                      # h is the ReLU's output: h > 0 exactly where its input was
    dh.sum(axis=0, out=db)


def sigmoid_grad_colsum_(dh, db, y):
    dh *= y * (y.dtype.type(1) - y)
    dh.sum(axis=0, out=db)


def softmax_xent_(dz, z, t):
    n = z.shape[0]
    rows = np.arange(n)
    np.subtract(z, z.max(axis=1, keepdims=True), out=dz)       # the shifted logits, then exp
    picked = dz[rows, t]
    np.exp(dz, out=dz)
    total = dz.sum(axis=1, keepdims=True)
    loss = (np.log(total[:, 0]) - picked).mean()              # as the kernel: log-sum-exp
    dz /= total
    dz[rows, t] -= 1
    dz /= z.dtype.type(n)
    return np.asarray(loss, dtype=z.dtype)


# -- builders of the fused step: the plain compositions ----------------------------------------

InputLayer = composed.InputLayer
OutputLayer = composed.OutputLayer
make_update = composed.make_update


# -- replaying captured work -----------------------------------------------------------------------

def capture(work):
    """The reference: NumPy runs work as it is called, so replaying it is calling it again."""
    return work
