"""The numba backend's chapter-6 loops: Dropout's counter-based mask, Batch Normalization's
column statistics and backward as fused passes, weight decay's sum of squares and axpy, and the
running averages. Conventions as in ``loops`` (outputs first, constants in the data's type)."""

from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from .. import contract
from .loops import jit

_GOLDEN, _MIX1, _MIX2 = np.uint64(contract.GOLDEN), np.uint64(contract.MIX1), np.uint64(contract.MIX2)
_S27, _S30, _S31, _S40 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(40)


@jit
def mix64(z):
    """splitmix64's finaliser, in wrapping uint64 arithmetic"""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@jit
def dropout(y, mask, x, ratio, key):
    """mask = (mix64(key + GOLDEN (i + 1)) >> 40) / 2^24 > ratio for flat index i; y = x mask"""
    n, m = x.shape
    if y.shape != x.shape or mask.shape != x.shape:
        raise ShapeError("dropout: y and mask must have x's shape")
    inv = 1.0 / 16777216.0
    zero = x.dtype.type(0)
    for r in range(n):
        for j in range(m):
            u = np.float64(mix64(key + _GOLDEN * np.uint64(r * m + j + 1)) >> _S40) * inv
            keep = u > ratio
            mask[r, j] = keep
            y[r, j] = x[r, j] if keep else zero * x[r, j]


@jit
def batchnorm_train(y, xn, std, mean, var, x, gamma, beta, eps):
    """per column: mean, var = mean((x - mean)^2), std = sqrt(var + eps), xn = (x - mean) / std,
    y = gamma xn + beta; three passes over the rows, each vectorised across the columns"""
    n, m = x.shape
    if (y.shape != x.shape or xn.shape != x.shape or std.shape[0] != m or mean.shape[0] != m
            or var.shape[0] != m or gamma.shape[0] != m or beta.shape[0] != m):
        raise ShapeError("batchnorm_train: y and xn must have x's shape; std, mean, var, gamma, beta its width")
    mean[:] = 0
    var[:] = 0
    for r in range(n):
        for j in range(m):
            mean[j] += x[r, j]
    for j in range(m):
        mean[j] = mean[j] / n
    for r in range(n):
        for j in range(m):
            d = x[r, j] - mean[j]
            xn[r, j] = d
            var[j] += d * d
    for j in range(m):
        var[j] = var[j] / n
        std[j] = np.sqrt(var[j] + eps)
    for r in range(n):
        for j in range(m):
            v = xn[r, j] / std[j]
            xn[r, j] = v
            y[r, j] = gamma[j] * v + beta[j]


@jit
def batchnorm_inference(y, x, gamma, beta, mean, var, eps):
    """y = gamma (x - mean) / sqrt(var + eps) + beta"""
    n, m = x.shape
    if y.shape != x.shape or gamma.shape[0] != m or beta.shape[0] != m or mean.shape[0] != m or var.shape[0] != m:
        raise ShapeError("batchnorm_inference: y must have x's shape; gamma, beta, mean, var its width")
    for r in range(n):
        for j in range(m):
            y[r, j] = gamma[j] * ((x[r, j] - mean[j]) / np.sqrt(var[j] + eps)) + beta[j]


@jit
def batchnorm_backward(dx, dgamma, dbeta, dy, xn, std, gamma):
    """dbeta = sum dy, dgamma = sum dy xn, dx = gamma / std (dy - (dbeta + xn dgamma) / N)"""
    n, m = dy.shape
    if (dx.shape != dy.shape or xn.shape != dy.shape or dgamma.shape[0] != m or dbeta.shape[0] != m
            or std.shape[0] != m or gamma.shape[0] != m):
        raise ShapeError("batchnorm_backward: dx and xn must have dy's shape; dgamma, dbeta, std, gamma its width")
    dgamma[:] = 0
    dbeta[:] = 0
    for r in range(n):
        for j in range(m):
            dbeta[j] += dy[r, j]
            dgamma[j] += dy[r, j] * xn[r, j]
    nn = dy.dtype.type(n)
    for r in range(n):
        for j in range(m):
            dx[r, j] = (gamma[j] / std[j]) * (dy[r, j] - (dbeta[j] + xn[r, j] * dgamma[j]) / nn)


@jit
def sum_squares(a):
    """sum a^2 over a flat array, accumulated in float64"""
    s = 0.0
    for i in range(a.size):
        s += a[i] * a[i]
    return s


@jit
def axpy(y, x, a):
    """y += a x, flat"""
    if x.size != y.size:
        raise ShapeError("axpy: x must have y's size")
    for i in range(y.size):
        y[i] += a * x[i]


@jit
def running(avg, x, momentum, one_minus_momentum):
    """avg = momentum avg + (1 - momentum) x, flat"""
    if x.size != avg.size:
        raise ShapeError("running: x must have avg's size")
    for i in range(avg.size):
        avg[i] = momentum * avg[i] + one_minus_momentum * x[i]
