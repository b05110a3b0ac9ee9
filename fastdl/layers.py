"""Layers with the book's interface: ``forward(x)``, ``backward(dout)``, parameters and grads.

A layer holds state (its parameters, their gradients, and what backward needs from forward) and
delegates all arithmetic to its backend's pure kernels, so the same layer object code runs on
every backend. Arrays are expected on the layer's backend already (use ``backend.asarray``).
"""

from __future__ import annotations

from .backends import get_backend
from .validate import check_labels, host_view


class Affine:
    """y = x @ W + b. ``need_dx=False`` skips the input gradient (the network's first layer)."""

    def __init__(self, W, b, backend=None, need_dx: bool = True):
        self.backend = get_backend(backend)
        self.W = W
        self.b = b
        self.need_dx = need_dx
        self.x = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.x = x
        return self.backend.affine_forward(x, self.W, self.b)

    def backward(self, dout):
        dx, self.dW, self.db = self.backend.affine_backward(dout, self.x, self.W, need_dx=self.need_dx)
        return dx


class Relu:
    def __init__(self, backend=None):
        self.backend = get_backend(backend)
        self.mask = None

    def forward(self, x):
        y, self.mask = self.backend.relu_forward(x)
        return y

    def backward(self, dout):
        return self.backend.relu_backward(dout, self.mask)


class Sigmoid:
    def __init__(self, backend=None):
        self.backend = get_backend(backend)
        self.out = None

    def forward(self, x):
        self.out = self.backend.sigmoid_forward(x)
        return self.out

    def backward(self, dout):
        return self.backend.sigmoid_backward(dout, self.out)


class SoftmaxWithLoss:
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
        check_labels(host_view(t, self.backend, "t"), x.shape[1], x.shape[0])
        return self.forward_unchecked(x, t)

    def forward_unchecked(self, x, t):
        self.t = t
        self.loss, self.probs = self.backend.softmax_cross_entropy_forward(x, t)
        return self.loss

    def backward(self, dout=1):
        dz = self.backend.softmax_cross_entropy_backward(self.probs, self.t)
        return dz if dout == 1 else dz * dout
