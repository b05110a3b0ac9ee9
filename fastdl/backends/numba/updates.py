"""The numba backend's optimizer updates: the book's six formulas, one pass each over a parameter
and its state as flat arrays (``_update`` in the backend module makes them flat; the fused step's
``update_parts`` hands each thread its part). Conventions as in ``loops``: outputs first,
hyperparameters cast to the array's type by the caller, sizes checked once per call."""

from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from .loops import jit


@jit
def sgd(p, g, lr):
    """p -= lr g"""
    if g.size != p.size:
        raise ShapeError("sgd: g must have p's size")
    for i in range(p.size):
        p[i] -= lr * g[i]


@jit
def momentum(p, g, v, lr, mu):
    """v = mu v - lr g; p += v"""
    if g.size != p.size or v.size != p.size:
        raise ShapeError("momentum: g and v must have p's size")
    for i in range(p.size):
        v[i] = mu * v[i] - lr * g[i]
        p[i] += v[i]


@jit
def nesterov(p, g, v, lr, mu, mu_sq, lr_ahead):
    """p += mu_sq v; p -= lr_ahead g; v = mu v - lr g (the book's order: p moves with the old v)"""
    if g.size != p.size or v.size != p.size:
        raise ShapeError("nesterov: g and v must have p's size")
    for i in range(p.size):
        p[i] += mu_sq * v[i]
        p[i] -= lr_ahead * g[i]
        v[i] = mu * v[i] - lr * g[i]


@jit
def adagrad(p, g, h, lr, eps):
    """h += g^2; p -= lr g / (sqrt(h) + eps)"""
    if g.size != p.size or h.size != p.size:
        raise ShapeError("adagrad: g and h must have p's size")
    for i in range(p.size):
        h[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def rmsprop(p, g, h, lr, decay, one_minus_decay, eps):
    """h = decay h + (1 - decay) g^2; p -= lr g / (sqrt(h) + eps)"""
    if g.size != p.size or h.size != p.size:
        raise ShapeError("rmsprop: g and h must have p's size")
    for i in range(p.size):
        h[i] = decay * h[i] + one_minus_decay * g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def adam(p, g, m, v, lr_t, one_minus_b1, one_minus_b2, eps):
    """m += (1 - b1)(g - m); v += (1 - b2)(g^2 - v); p -= lr_t m / (sqrt(v) + eps)"""
    if g.size != p.size or m.size != p.size or v.size != p.size:
        raise ShapeError("adam: g, m and v must have p's size")
    for i in range(p.size):
        m[i] += one_minus_b1 * (g[i] - m[i])
        v[i] += one_minus_b2 * (g[i] * g[i] - v[i])
        p[i] -= lr_t * m[i] / (np.sqrt(v[i]) + eps)
