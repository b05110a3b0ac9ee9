"""The book's chapter 2-4 functions, on any backend: activations, losses, numerical gradient.

Each takes a 1-D sample or a 2-D batch (rows = samples) of the current backend (or ``backend=``)
and returns an array of the same backend and dtype. Host NumPy input is accepted and moved.
Where the usual notes go wrong, these do not: ``softmax`` subtracts the row maximum,
``relu`` is element-wise, ``sigmoid`` never overflows, and ``cross_entropy_error`` is computed
from log-probabilities so a probability of exactly 0 gives a large finite loss, never inf/NaN.
"""

from __future__ import annotations

import numpy as np

from .backends import get_backend
from .errors import ShapeError
from .gradcheck import numerical_gradient as _numerical_gradient
from .validate import check_labels, host_view

__all__ = ["step_function", "sigmoid", "relu", "softmax", "mean_squared_error",
           "cross_entropy_error", "numerical_gradient"]


def _prep(a, backend):
    bk = get_backend(backend)
    if not bk.is_backend_array(a):
        a = np.asarray(a)
        if a.dtype.kind not in "f":
            a = a.astype(np.float64)
        a = bk.asarray(a).reshape(a.shape)    # a Python number stays 0-d, as in the book
    return bk, a


def _as_2d(bk, a):
    return a.reshape(1, -1) if a.ndim == 1 else a


def step_function(x, backend=None):
    """1 where x > 0, else 0, in x's shape and dtype."""
    bk, x = _prep(x, backend)
    return (x > 0).astype(x.dtype)


def sigmoid(x, backend=None):
    bk, x = _prep(x, backend)
    return bk.sigmoid_forward(x.reshape(1, -1)).reshape(x.shape)


def relu(x, backend=None):
    """Element-wise max(x, 0) (not the maximum of the whole array)."""
    bk, x = _prep(x, backend)
    return bk.relu_forward(x.reshape(1, -1))[0].reshape(x.shape)


def softmax(a, backend=None):
    """exp(a - max) / sum exp(a - max) over the last axis, for any rank: finite for inputs like
    [1010, 1000, 990]."""
    bk, a = _prep(a, backend)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ShapeError(f"softmax of shape {tuple(a.shape)}: it normalises over the last axis, which needs at "
                         f"least one class (one score per class)")
    xp = bk.xp
    e = xp.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mean_squared_error(y, t, backend=None):
    """0.5 * sum((y - t)^2) per sample, averaged over a batch."""
    bk, y = _prep(y, backend)
    _, t = _prep(t, bk)
    if tuple(y.shape) != tuple(t.shape):
        raise ShapeError(f"y has shape {tuple(y.shape)} and t {tuple(t.shape)}; mean_squared_error compares them "
                         f"element by element, so give t as one-hot rows of y's shape")
    y2, t2 = _as_2d(bk, y), _as_2d(bk, t).astype(y.dtype)
    return 0.5 * ((y2 - t2) ** 2).sum() / y2.shape[0]


def cross_entropy_error(y, t, backend=None):
    """Mean cross-entropy of probabilities ``y`` against int labels or one-hot rows ``t``.

    The label form is decided by rank: ``t`` with the same rank as ``y`` is one-hot, one rank less
    is class indices. A probability of exactly 0 for the true class gives -log(tiny), a large
    finite number, instead of inf.
    """
    bk, y = _prep(y, backend)
    y2 = _as_2d(bk, y)
    t_host = host_view(t, bk, "t")
    if t_host.ndim == y.ndim:                     # one-hot rows, the shape of y
        if t_host.shape != y.shape:
            raise ShapeError(f"t has shape {t_host.shape}; one-hot labels must have y's shape {y.shape}")
        t_host = t_host.reshape(y2.shape)
    elif t_host.ndim == y.ndim - 1:               # class indices, one per row of y
        t_host = t_host.reshape(-1)
    else:
        raise ShapeError(f"t has shape {t_host.shape}; for y of shape {y.shape} give one-hot rows of that shape "
                         f"or one class index per row")
    idx = bk.asarray(check_labels(t_host, y2.shape[1], y2.shape[0], "t"))
    xp = bk.xp
    tiny = np.finfo(y.dtype).tiny
    p = y2[xp.arange(y2.shape[0]), idx]
    return -xp.log(xp.maximum(p, tiny)).sum() / y2.shape[0]


def numerical_gradient(f, x, h: float = 1e-4):
    """Central difference of scalar ``f(x)`` at ``x``; ``x`` is restored after each perturbation.
    Integer input, a list or a Python number is differentiated on a float64 copy: perturbing an
    integer array by h would round the perturbation away, and a list has no element to perturb in
    place. A float array is perturbed in place (a network's parameters, as in the book)."""
    if not hasattr(x, "dtype") or x.dtype.kind != "f":
        x = np.array(x, dtype=np.float64)
    return _numerical_gradient(lambda: f(x), x, h)
