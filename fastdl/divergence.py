"""What counts as a diverged run, checked at the trainer's sync points.

A run has diverged when a loss is not finite; when the parameters are no longer finite after
the updates (a step's loss is computed before its update, so the last update shows only in the
parameters); or, with ``explosion`` set, when a loss rises above ``explosion`` times the run's
first one, or a weight passes the square root of the dtype's largest number (one more product
would overflow).
"""

from __future__ import annotations

import numpy as np

from .errors import DivergenceError


def find(losses: np.ndarray, first_step: int, first_loss: float, explosion: float | None,
         params: dict, dtype, step: int):
    """(what went wrong, at which step) or None. ``losses``: the host's float64 losses of steps
    ``first_step + 1 ..``; ``first_loss``: the run's first loss; ``step``: the step count now."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        return f"the loss became {losses[bad[0]]}", first_step + int(bad[0]) + 1
    if explosion is not None:
        big = np.flatnonzero(losses > explosion * max(abs(first_loss), 1e-6))
        if big.size:
            return (f"the loss exploded to {losses[big[0]]:.4g} (it started at {first_loss:.4g}; the limit is "
                    f"explosion={explosion:g} times that)"), first_step + int(big[0]) + 1
    # two reductions per parameter, no full-size temporary (abs() would make one each sync)
    ends = [(float(p.max()), float(p.min())) for p in params.values()]
    if not all(np.isfinite(hi) and np.isfinite(lo) for hi, lo in ends):
        return "the parameters became non-finite", step
    worst = max(max(hi, -lo) for hi, lo in ends)
    if explosion is not None and worst > np.sqrt(np.finfo(dtype).max):
        return f"a weight reached {worst:.3g}, near the end of {np.dtype(dtype).name}'s range", step
    return None


def error(what: str, at: int, lr: float, kept: int, checkpoint=None) -> DivergenceError:
    """The error a diverged run stops with: what happened and where, the step whose parameters the
    network keeps, the last good checkpoint if the run wrote one, and a smaller learning rate."""
    where = f"; the last good checkpoint is {checkpoint}" if checkpoint is not None else ""
    return DivergenceError(
        f"training diverged: {what} at step {at} (lr={lr}). The network keeps its parameters from step "
        f"{kept}, the last checked good point{where}. Try a smaller learning rate (e.g. lr={lr / 10:g}).", step=at)
