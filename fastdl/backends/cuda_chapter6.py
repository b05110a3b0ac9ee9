"""The cupy backend's chapter-6 entries: weight decay's sum of squares and scaling, Dropout's
counter-hashed mask, Batch Normalization forward (training and inference) and backward
(kernels/chapter6.cu). Each returns new arrays, as the layers expect.

Built around the array module and the backend's kernel lookup and launcher it is given
(``Chapter6(cupy, kernel, launch)``), like ``cuda_graphs``, so the CPU emulator of the tests can
hand it its own stand-ins.
"""

from __future__ import annotations

import math

import numpy as np


def _columns(m):
    return (math.ceil(m / 32),), (32, 8)      # one (32 x 8) block per 32 columns


class Chapter6:
    """The contract's chapter-6 entries as methods; the backend module binds them by name."""

    def __init__(self, cp, kernel, launch):
        self.cp, self.kernel, self.launch = cp, kernel, launch

    def sum_squares(self, a):
        return (a * a).sum()                   # CuPy's reduction; a 0-d device array

    def scale(self, x, s):
        return x * x.dtype.type(s)

    def dropout_forward(self, x, ratio, key):
        cp = self.cp
        x = cp.ascontiguousarray(x)
        y, mask = cp.empty_like(x), cp.empty(x.shape, dtype=cp.bool_)
        self.launch("dropout", x.dtype, x.size, y, mask, x, float(ratio), np.uint64(key), np.int64(x.size))
        return y, mask

    def batchnorm_forward(self, x, gamma, beta, eps):
        cp = self.cp
        x = cp.ascontiguousarray(x)
        n, m = x.shape
        y, xn = cp.empty_like(x), cp.empty_like(x)
        sd, mean, var = (cp.empty(m, dtype=x.dtype) for _ in range(3))
        self.kernel("batchnorm_train", x.dtype)(*_columns(m), (y, xn, sd, mean, var, x, gamma, beta,
                                                               x.dtype.type(eps), np.int64(n), np.int32(m)))
        return y, xn, sd, mean, var

    def batchnorm_inference(self, x, gamma, beta, mean, var, eps):
        cp = self.cp
        x = cp.ascontiguousarray(x)
        n, m = x.shape
        y = cp.empty_like(x)
        self.launch("batchnorm_inference", x.dtype, n * m, y, x, gamma, beta, mean, var, x.dtype.type(eps),
                    np.int64(n), np.int32(m))
        return y

    def batchnorm_backward(self, dy, xn, std, gamma):
        cp = self.cp
        dy = cp.ascontiguousarray(dy)
        n, m = dy.shape
        dx, dgamma, dbeta = cp.empty_like(dy), cp.empty(m, dtype=dy.dtype), cp.empty(m, dtype=dy.dtype)
        self.kernel("batchnorm_backward", dy.dtype)(*_columns(m), (dx, dgamma, dbeta, dy, xn, std, gamma,
                                                                  np.int64(n), np.int32(m)))
        return dx, dgamma, dbeta
