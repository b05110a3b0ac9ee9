"""The NumPy reference of chapter 6's kernels: weight decay's sum of squares and scale, Dropout
(a counter-based mask, the same on every backend: ``contract.dropout_uniform``), Batch
Normalization in the book's order, and the in-place running averages and axpy. Part of the
``numpy`` backend, which binds these names; apart only to keep that module short.
"""

from __future__ import annotations

import numpy as np

from . import contract


def sum_squares(a):
    return np.asarray((a * a).sum(), dtype=a.dtype)


def scale(x, s):
    return x * x.dtype.type(s)


def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(contract.MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(contract.MIX2)
    return z ^ (z >> np.uint64(31))


def dropout_forward(x, ratio, key):
    # uniform(key, i) = top 24 bits of mix64(key + GOLDEN (i + 1)) / 2^24 (contract.dropout_uniform);
    # uint64 arithmetic wraps, as the hash wants
    i = np.arange(1, x.size + 1, dtype=np.uint64).reshape(x.shape)
    with np.errstate(over="ignore"):
        u = (_mix64(np.uint64(key) + np.uint64(contract.GOLDEN) * i) >> np.uint64(40)).astype(np.float64) / (1 << 24)
    mask = u > ratio
    return x * mask, mask


def batchnorm_forward(x, gamma, beta, eps):
    # the book's layer, in its order: mean, centred, variance, std, normalised
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc * xc).mean(axis=0)
    std = np.sqrt(var + x.dtype.type(eps))
    xn = xc / std
    return gamma * xn + beta, xn, std, mean, var


def batchnorm_inference(x, gamma, beta, mean, var, eps):
    return gamma * ((x - mean) / np.sqrt(var + x.dtype.type(eps))) + beta


def batchnorm_backward(dy, xn, std, gamma):
    # the book's chain (dxn, dstd, dvar, dmu) folded: the same gradient, one pass fewer
    n = dy.dtype.type(dy.shape[0])
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xn).sum(axis=0)
    dx = (gamma / std) * (dy - (dbeta + xn * dgamma) / n)
    return dx, dgamma, dbeta


def running_update(avg, x, momentum, one_minus_momentum):
    t = avg.dtype.type
    avg *= t(momentum)
    avg += t(one_minus_momentum) * x


def axpy_(y, a, x):
    y += y.dtype.type(a) * x
