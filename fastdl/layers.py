"""Layers with the book's interface: ``forward(x)``, ``backward(dout)``, parameters and grads.

A layer holds state (its parameters, their gradients, and what backward needs from forward) and
delegates all arithmetic to its backend's pure kernels, so the same layer object code runs on
every backend.

``forward``/``backward`` are the public, checked entry points: they validate shape, dtype and
finiteness on the host (same errors on every backend) and accept host arrays. Networks call the
unchecked ``_forward``/``_backward`` with arrays already on the backend, after validating once.
"""

from __future__ import annotations

import numpy as np

from .backends import get_backend
from .backends.contract import dropout_key
from .errors import ShapeError
from .validate import check_features, check_labels, check_seed, host_view


class _Layer:
    backend = None

    def _checked(self, a, what: str, n_features=None, like=None):
        """``a`` checked, on the backend, in the layer's dtype: its parameters' (Affine, Batch
        Norm), else its last forward output's (a backward's ``dout``), else ``a``'s own. Cast
        here, on every backend alike: NumPy would promote a float32 layer's product with float64
        input to float64, which numba's and cupy's kernels (one dtype a call) refuse."""
        host = host_view(a, self.backend, what)
        dtype = self._dtype() if like is None else (like.dtype if like.dtype.kind == "f" else None)
        check_features(host, n_features, what, dtype)
        if like is not None and tuple(host.shape) != tuple(like.shape):
            raise ShapeError(f"{what} has shape {tuple(host.shape)}; expected {tuple(like.shape)}, "
                             f"the shape of this layer's last forward output")
        a = a if self.backend.is_backend_array(a) else self.backend.asarray(host)
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)

    def _dtype(self):
        return None                 # a layer without parameters computes in its input's dtype

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join([*self._traits(), f'backend={self.backend.name!r}'])})"

    def _traits(self) -> list:
        return []                   # what sets this layer apart from another of its kind

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

    def _dtype(self):
        return self.W.dtype

    def _traits(self):
        return [f"{self.W.shape[0]}x{self.W.shape[1]}", f"dtype={self.W.dtype}"] + ([] if self.need_dx else ["need_dx=False"])

    def _forward(self, x, train=False):
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

    def _forward(self, x, train=False):
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

    def _forward(self, x, train=False):
        self.out = self.backend.sigmoid_forward(x)
        return self.out

    def backward(self, dout):
        self._need_forward("out")
        return self._backward(self._checked(dout, "dout", like=self.out))

    def _backward(self, dout):
        return self.backend.sigmoid_backward(dout, self.out)


class Dropout(_Layer):
    """The book's Dropout: in training each element is kept where its uniform number exceeds
    ``dropout_ratio``, and at inference every output is scaled by ``1 - dropout_ratio`` (the
    book's convention: no rescaling in training). The numbers come from the contract's
    counter-based generator (``seed``, this layer's call count, the element's index), so the
    masks are the same on every backend, and a checkpoint that saves ``calls`` resumes exactly."""

    def __init__(self, dropout_ratio: float = 0.5, backend=None, seed: int | None = None):
        self.backend = get_backend(backend)
        if not (isinstance(dropout_ratio, (int, float, np.floating)) and 0 <= dropout_ratio < 1):
            raise ValueError(f"dropout_ratio={dropout_ratio!r} must be a number in [0, 1)")
        self.ratio = float(dropout_ratio)
        self.seed = int(np.random.SeedSequence(check_seed(seed)).generate_state(1, np.uint64)[0])
        self.calls = 0
        self.mask = None

    def _traits(self):
        return [f"dropout_ratio={self.ratio:g}"]

    def forward(self, x, train_flg: bool = True):
        return self._forward(self._checked(x, "x"), train_flg)

    def _forward(self, x, train=False):
        if not train:
            return self.backend.scale(x, 1.0 - self.ratio)
        y, self.mask = self.backend.dropout_forward(x, self.ratio, dropout_key(self.seed, self.calls))
        self.calls += 1
        return y

    def backward(self, dout):
        self._need_forward("mask")
        return self._backward(self._checked(dout, "dout", like=self.mask))

    def _backward(self, dout):
        return self.backend.relu_backward(dout, self.mask)       # the same masked pass as ReLU's


class BatchNormalization(_Layer):
    """The book's Batch Normalization: in training, each column normalised by the batch's mean and
    variance, then ``gamma * xn + beta``, and the running averages updated (``momentum``); at
    inference the running averages are used. ``gamma``/``beta`` are parameters (the network's
    ``gamma1``, ``beta1``, ...); the running averages are saved with the network."""

    EPS = 1e-6              # the book's 10e-7

    def __init__(self, gamma, beta, momentum: float = 0.9, running_mean=None, running_var=None, backend=None):
        self.backend = bk = get_backend(backend)
        if not (isinstance(momentum, (int, float, np.floating)) and 0 <= momentum < 1):
            raise ValueError(f"momentum={momentum!r} must be a number in [0, 1)")
        self.gamma, self.beta, self.momentum = gamma, beta, float(momentum)
        zeros = lambda: bk.xp.zeros(gamma.shape, dtype=gamma.dtype)
        self.running_mean = zeros() if running_mean is None else running_mean
        self.running_var = zeros() if running_var is None else running_var
        self.xn = self.std = self.dgamma = self.dbeta = None

    def _n_in(self):
        return self.gamma.shape[0]

    def _dtype(self):
        return self.gamma.dtype

    def _traits(self):
        return [str(self.gamma.shape[0]), f"momentum={self.momentum:g}", f"dtype={self.gamma.dtype}"]

    def forward(self, x, train_flg: bool = True):
        return self._forward(self._checked(x, "x", self._n_in()), train_flg)

    def _forward(self, x, train=False):
        bk = self.backend
        if not train:
            return bk.batchnorm_inference(x, self.gamma, self.beta, self.running_mean, self.running_var, self.EPS)
        y, self.xn, self.std, mean, var = bk.batchnorm_forward(x, self.gamma, self.beta, self.EPS)
        bk.running_update(self.running_mean, mean, self.momentum, 1.0 - self.momentum)
        bk.running_update(self.running_var, var, self.momentum, 1.0 - self.momentum)
        return y

    def backward(self, dout):
        self._need_forward("xn")
        return self._backward(self._checked(dout, "dout", like=self.xn))

    def _backward(self, dout):
        dx, self.dgamma, self.dbeta = self.backend.batchnorm_backward(dout, self.xn, self.std, self.gamma)
        return dx


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
