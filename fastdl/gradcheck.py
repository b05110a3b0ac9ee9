"""Numerical gradients and a checker with explicit tolerances.

Use float64 networks: in float32 central differences carry ~1e-3 relative noise, so a check
there proves little. The relative error reported per parameter is
``||analytic - numeric|| / max(||analytic|| + ||numeric||, tiny)``.
"""

from __future__ import annotations

import numpy as np


def numerical_gradient(f, x, h: float = 1e-4):
    """Central difference of scalar ``f()`` with respect to every element of array ``x``.

    ``x`` is perturbed in place and each element restored afterwards, exactly (the original value
    is written back, not recomputed), so ``x`` is unchanged when this returns.
    """
    host = np.asarray(x) if isinstance(x, np.ndarray) else None
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        old = x[idx].copy() if host is None else host[idx]
        x[idx] = old + h
        fp = float(f())
        x[idx] = old - h
        fm = float(f())
        x[idx] = old
        grad[idx] = (fp - fm) / (2 * h)
    return grad


def numerical_gradient_of_network(network, x, t, h: float | None = None) -> dict:
    """Numerical gradient of the training-mode loss for each parameter (host float64 arrays).

    Every evaluation sees the same Dropout masks (their call counters are held where they are
    now) and Batch Norm's running averages are put back afterwards, so the network is as it was."""
    if h is None:
        h = 1e-5 if network.dtype == np.float64 else 1e-2
    state, buffers = network.dropout_state(), {k: v.copy() for k, v in network.buffers.items()}

    def loss():
        network.set_dropout_state(state)
        return network._loss(x, t, train=True)

    grads = {k: numerical_gradient(loss, p, h) for k, p in network.params.items()}
    network.set_dropout_state(state)
    for k, v in buffers.items():
        network.buffers[k][...] = v
    return grads


def relative_error(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / denom)


def gradient_check(network, x, t, h: float | None = None) -> dict[str, float]:
    """Relative error between backprop and numerical gradients, per parameter name.

    Expect <= 1e-6 in float64 (typically 1e-9 or less). Keep ``x`` small (a few rows): every
    parameter element costs two forward passes.
    """
    state = network.dropout_state()
    analytic = {k: network.backend.to_numpy(v) for k, v in network.gradient(x, t).items()}
    network.set_dropout_state(state)          # the numerical side sees the same Dropout masks
    numeric = network.numerical_gradient(x, t, h)
    return {k: relative_error(analytic[k], numeric[k]) for k in network.params}
