"""The fused step's builders as plain compositions of the contract's hooks, for any backend.

NumPy's and CuPy's ``InputLayer``, ``OutputLayer`` and ``make_update`` are these; numba replaces
the first two and the update with kernels of its own (``fastdl.backends.numba.step``), which the
tests hold to these. Every method only calls hooks of the backend it was built for, into buffers
made at construction: nothing is allocated per step beyond what those hooks allocate.
"""

from __future__ import annotations

from ..images import ByteImages
from .contract import ACTIVATIONS


def _act(bk, activation):
    forward, grad = ACTIVATIONS[activation]          # KeyError: the caller passed a bad name
    return getattr(bk, forward), (getattr(bk, grad) if grad else None)


class InputLayer:
    """The first layer, ``y = act(x_train[idx] @ W + b)``: the batch's rows are gathered into a
    buffer made once, which the backward GEMM ``dW = x.T @ dz`` reads again. ByteImages' rows are
    gathered as bytes and decoded into that buffer (a quarter of the random reads)."""

    def __init__(self, bk, W, b, dW, x_train, batch_size: int, activation: str):
        self.bk, self.W, self.b, self.dW = bk, W, b, dW
        self.act = _act(bk, activation)[0]
        self.X = bk.xp.empty((batch_size, W.shape[0]), dtype=W.dtype)
        self.x = self.X
        self.byte_coded = isinstance(x_train, ByteImages)
        if self.byte_coded:
            self.src, self.scale = x_train.codes, x_train.scale_as(W.dtype)
            self.U = bk.xp.empty((batch_size, W.shape[0]), dtype=bk.xp.uint8)
        else:
            self.src = x_train

    def forward(self, idx, y):
        n = idx.shape[0]
        self.x = self.X if n == self.X.shape[0] else self.X[:n]     # a new view for a partial batch only
        if self.byte_coded:
            u = self.U if n == self.U.shape[0] else self.U[:n]
            self.bk.gather_rows_(u, self.src, idx)
            self.bk.decode_bytes_(self.x, u, self.scale)
        else:
            self.bk.gather_rows_(self.x, self.src, idx)
        self.bk.matmul_(y, self.x, self.W)
        self.act(y, self.b)

    def backward(self, dz):
        """dW = x.T @ dz for the rows of the last forward (dz: the gradient before the activation)."""
        self.bk.matmul_(self.dW, self.x.T, dz)


class OutputLayer:
    """The last layer and the loss, forward and backward, and the backward of the hidden
    activation below it: from its output h to dh, the gradient before that activation."""

    def __init__(self, bk, W, b, dW, db, batch_size: int, activation: str):
        self.bk, self.W, self.b, self.dW, self.db = bk, W, b, dW, db
        self.act_grad = _act(bk, activation)[1]
        shape = (batch_size, W.shape[1])
        self.Z, self.DZ = bk.xp.empty(shape, dtype=W.dtype), bk.xp.empty(shape, dtype=W.dtype)

    def forward_backward(self, dh, db_h, h, t):
        bk, n = self.bk, h.shape[0]
        z, dz = (self.Z, self.DZ) if n == self.Z.shape[0] else (self.Z[:n], self.DZ[:n])
        bk.matmul_(z, h, self.W)
        bk.add_bias_(z, self.b)
        loss = bk.softmax_xent_(dz, z, t)
        bk.colsum_(self.db, dz)
        bk.matmul_(self.dW, h.T, dz)
        bk.matmul_(dh, dz, self.W.T)
        if self.act_grad is None:                 # "identity": dh is the gradient of h itself
            bk.colsum_(db_h, dh)
        else:
            self.act_grad(dh, db_h, h)
        return loss


def make_update(bk, optimizer, params, grads):
    """One update of every parameter: the optimizer's per-parameter kernels, the arrays checked
    once (they are the step's own) instead of at every step."""
    return optimizer.bind(params, grads, bk)
