"""The cupy backend's in-place updates: the six optimizers, Batch Norm's running averages and
weight decay's axpy, one flat CUDA kernel each over a parameter and its state
(kernels/optimizers.cu, kernels/chapter6.cu).

Built around the array module and the backend's kernel launcher it is given
(``Updates(cupy, launch)``), like ``cuda_graphs``, so the CPU emulator of the tests can hand it
its own stand-ins.
"""

from __future__ import annotations

import numpy as np


class Updates:
    """The contract's update entries as methods; the backend module binds them by name."""

    def __init__(self, cp, launch):
        self.cp, self.launch = cp, launch

    def _update(self, base, p, arrays, scalars):
        t = p.dtype.type
        self._flat(base, (p, *arrays), [t(s) for s in scalars])

    def _flat(self, base, arrays, scalars):
        """One kernel over flat arrays of equal size (``arrays[0]`` the parameter). The kernels
        index flat memory, so arrays that are not C-contiguous (a column slice, a Fortran-ordered
        array) go through contiguous copies written back: in place on every layout, never on a
        silent copy, and never past a view's own elements."""
        dense = [self.cp.ascontiguousarray(a) for a in arrays]
        p = dense[0]
        self.launch(base, p.dtype, p.size, *dense, *scalars, np.int64(p.size))
        for a, d in zip(arrays, dense):
            if d is not a:
                a[...] = d

    def sgd_update(self, p, g, lr):
        self._update("sgd", p, (g,), (lr,))

    def momentum_update(self, p, g, v, lr, momentum):
        self._update("momentum", p, (g, v), (lr, momentum))

    def nesterov_update(self, p, g, v, lr, momentum, momentum_sq, lr_ahead):
        self._update("nesterov", p, (g, v), (lr, momentum, momentum_sq, lr_ahead))

    def adagrad_update(self, p, g, h, lr, eps):
        self._update("adagrad", p, (g, h), (lr, eps))

    def rmsprop_update(self, p, g, h, lr, decay, one_minus_decay, eps):
        self._update("rmsprop", p, (g, h), (lr, decay, one_minus_decay, eps))

    def adam_update(self, p, g, m, v, lr_t, one_minus_beta1, one_minus_beta2, eps):
        if isinstance(lr_t, self.cp.ndarray):     # a replayed block's per-step value, read when it runs
            t = p.dtype.type
            self._flat("adam_at", (p, g, m, v), [lr_t, t(one_minus_beta1), t(one_minus_beta2), t(eps)])
            return
        self._update("adam", p, (g, m, v), (lr_t, one_minus_beta1, one_minus_beta2, eps))

    def running_update(self, avg, x, momentum, one_minus_momentum):
        self._update("running", avg, (x,), (momentum, one_minus_momentum))

    def axpy_(self, y, a, x):
        self._update("axpy", y, (x,), (a,))
