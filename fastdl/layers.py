"""Layers with the book's interface: ``forward(x)``, ``backward(dout)``, parameters and grads.

A layer holds state (its parameters, their gradients, and what backward needs from forward) and
delegates all arithmetic to its backend's pure kernels, so the same layer object code runs on
every backend.

``forward``/``backward`` are the public, checked entry points: they validate shape, dtype and
finiteness on the host (same errors on every backend) and accept host arrays. Networks call the
unchecked ``_forward``/``_backward`` with arrays already on the backend, after validating once.
"""

from __future__ import annotations

from .backends import get_backend
from .errors import ShapeError
from .validate import check_features, check_labels, host_view


class _Layer:
    backend = None

    def _checked(self, a, what: str, n_features=None, like=None):
        host = host_view(a, self.backend, what)
        check_features(host, n_features, what)
        if like is not None and tuple(host.shape) != tuple(like.shape):
            raise ShapeError(f"{what} has shape {tuple(host.shape)}; expected {tuple(like.shape)}, "
                             f"the shape of this layer's last forward output")
        return a if self.backend.is_backend_array(a) else self.backend.asarray(host)

    def _need_forward(self, attr):
        if getattr(self, attr) is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")

    def forward(self, x):
        return self._forward(self._checked(x, "x", self._n_in()))

    def _n_in(self):
        return None


class Affine(_Layer):
    """y = x @ W + b. ``need_dx=False`` skips the input gradient (the network's first layer)."""

    def __init__(self, W, b, backend=None, need_dx: bool = True):
        self.backend = get_backend(backend)
        self.W = W
        self.b = b
        self.need_dx = need_dx
        self.x = None
        self.dW = None
        self.db = None

    def _n_in(self):
        return self.W.shape[0]

    def _forward(self, x):
        self.x = x
        return self.backend.affine_forward(x, self.W, self.b)

    def backward(self, dout):
        self._need_forward("x")
        n = self.x.shape[0]
        dout = self._checked(dout, "dout", self.W.shape[1])
        if dout.shape[0] != n:
            raise ShapeError(f"dout has {dout.shape[0]} rows; the last forward had {n}")
        return self._backward(dout)

    def _backward(self, dout):
        dx, self.dW, self.db = self.backend.affine_backward(dout, self.x, self.W, need_dx=self.need_dx)
        return dx


class Relu(_Layer):
    def __init__(self, backend=None):
        self.backend = get_backend(backend)
        self.mask = None

    def _forward(self, x):
        y, self.mask = self.backend.relu_forward(x)
        return y

    def backward(self, dout):
        self._need_forward("mask")
        return self._backward(self._checked(dout, "dout", like=self.mask))

    def _backward(self, dout):
        return self.backend.relu_backward(dout, self.mask)


class Sigmoid(_Layer):
    def __init__(self, backend=None):
        self.backend = get_backend(backend)
        self.out = None

    def _forward(self, x):
        self.out = self.backend.sigmoid_forward(x)
        return self.out

    def backward(self, dout):
        self._need_forward("out")
        return self._backward(self._checked(dout, "dout", like=self.out))

    def _backward(self, dout):
        return self.backend.sigmoid_backward(dout, self.out)


class SoftmaxWithLoss(_Layer):
    """Softmax and mean cross-entropy in one layer; ``backward()`` needs no argument.

    ``forward`` validates the labels on the host (range, integrality, one-hot-ness) so that a bad
    label raises the same error on every backend; the trainer, which validated its labels once,
    calls ``forward_unchecked`` instead.
    """

    def __init__(self, backend=None):
        self.backend = get_backend(backend)
        self.probs = None
        self.t = None
        self.loss = None

    def forward(self, x, t):
        x = self._checked(x, "x")
        idx = check_labels(host_view(t, self.backend, "t"), x.shape[1], x.shape[0])
        return self.forward_unchecked(x, self.backend.asarray(idx))

    def forward_unchecked(self, x, t):
        self.t = t
        self.loss, self.probs = self.backend.softmax_cross_entropy_forward(x, t)
        return self.loss

    def backward(self, dout=1):
        self._need_forward("probs")
        dz = self.backend.softmax_cross_entropy_backward(self.probs, self.t)
        return dz if dout == 1 else dz * dout
