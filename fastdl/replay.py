"""Blocks of training steps captured once and replayed: a CUDA graph per block on cupy.

At the book's batch of 100 a GPU step is a dozen kernels of a few microseconds each, and
launching them from Python costs more than running them. A backend that declares the
``graph_replay`` capability records what a piece of work launches (``capture(work)``; on cupy a
CUDA graph, with cuBLAS's GEMMs in it) and replays it with one launch. The trainer runs its steps
between two sync points as one block (``sync_every`` steps, fewer where an epoch ends first), so
a block of full batches is one replay:

* the block's batch indices go into one device buffer (a copy per block) that the captured steps
  read, and each step's loss into its slot of the trainer's loss buffer;
* the first block runs uncaptured (kernels compiled, cuBLAS and the optimizer's state made); then
  each block length is captured once (a run has one or two: ``sync_every`` and what is left at an
  epoch's end) and replayed from then on; a block that ends in a partial batch runs uncaptured;
* the optimizer's kernel scalars are baked into the graph, except those it declares to change
  from step to step (``Optimizer.step_scalars``: Adam's bias-corrected step size): those are
  computed on the host for the block's steps, copied into a device buffer before each replay,
  and the captured update of step j reads slot j (``Optimizer.scalar_source``). A changed
  hyperparameter (``optimizer.lr = ...``) captures the block again. Python-side bookkeeping
  (``optimizer.step``) is advanced here, since a replay runs no Python.

A capture that fails (work that allocates or waits on the host cannot be captured) leaves the
run uncaptured, with the reason in ``Replay.note``; the numbers are the same either way (the same
kernels in the same order, tested against the uncaptured step).
"""

from __future__ import annotations

import warnings

import numpy as np

from .backends.contract import GRAPH_REPLAY


def for_run(bk, step, optimizer, batch_size: int, k: int, losses):
    """(a ``Replay`` of a run's blocks, None) where the backend and the fused ``step`` allow
    it, else (None, why not); (None, None) for a run without a fused step."""
    if step is None:
        return None, None
    if GRAPH_REPLAY not in bk.CAPABILITIES:
        return None, f"backend {bk.name!r} replays nothing"
    why = step.uncapturable or (None if optimizer.step_scalars is not None else
                                f"{type(optimizer).__name__} does not declare which of its kernel scalars "
                                f"change from step to step (Optimizer.step_scalars)")
    return (None, why) if why else (Replay(bk, step, optimizer, batch_size, k, losses), None)


class Replay:
    """``run(epoch_idx, pos, n) -> bool``: the steps ``pos .. pos + n - 1`` of the epoch (full
    batches of ``batch_size``, ``n`` at most ``k``), losses into ``losses[:n]``; False when the
    caller must run them one by one (the first block, or after a failed capture)."""

    def __init__(self, bk, step, optimizer, batch_size: int, k: int, losses):
        self.bk, self.step, self.optimizer, self.B, self.losses = bk, step, optimizer, batch_size, losses
        self.idx = bk.xp.empty(k * batch_size, dtype=bk.xp.int64)
        # the per-step scalars of the block's steps, in the parameters' dtype, one slot per step
        self.scalars = {name: bk.xp.empty(k, dtype=losses.dtype) for name in optimizer.step_scalars}
        self.views = [self.idx[j * batch_size:(j + 1) * batch_size] for j in range(k)]
        self.graphs = {}                # block length -> (replay, the optimizer's scalars baked in)
        self.warm = False
        self.note = None                # why blocks stopped being replayed, if they did
        self.replays = 0

    def _work(self, n: int):
        for j in range(n):
            self.losses[j] = self.step(self.views[j])

    def run(self, epoch_idx, pos: int, n: int) -> bool:
        if self.note is not None:
            return False
        if not self.warm:               # compile and allocate everything outside any capture
            self.warm = True
            return False
        opt = self.optimizer
        before = opt.step
        baked = {k: v for k, v in opt.kernel_hyperparameters().items() if k not in self.scalars}
        self.idx[:n * self.B] = epoch_idx[pos * self.B:(pos + n) * self.B]
        self._fill_step_scalars(n)
        # the update of the block's j-th step reads its scalars from slot j (opt.step counts it)
        opt.scalar_source = lambda: {k: _slot(buf, opt.step - before - 1) for k, buf in self.scalars.items()}
        try:
            if n not in self.graphs or self.graphs[n][1] != baked:
                try:
                    self.graphs[n] = self.bk.capture(lambda: self._work(n)), baked
                except Exception as exc:        # noqa: BLE001 (any failure: run uncaptured, say why)
                    opt.step = before
                    self.graphs.clear()
                    self.note = (f"capturing a block of steps failed ({type(exc).__name__}: {exc}); "
                                 f"training runs uncaptured")
                    warnings.warn(self.note, RuntimeWarning, stacklevel=3)
                    return False
            opt.step = before                   # capturing ran the step's Python n times; a replay none
            self.graphs[n][0]()
        finally:
            opt.scalar_source = None
        opt.step = before + n
        self.replays += 1
        return True

    def _fill_step_scalars(self, n: int) -> None:
        """The optimizer's per-step scalars for steps step+1 .. step+n, into their device slots."""
        if not self.scalars:
            return
        opt, before = self.optimizer, self.optimizer.step
        values = {k: [] for k in self.scalars}
        try:
            for j in range(n):
                opt.step = before + j + 1
                h = opt.kernel_hyperparameters()
                for k in values:
                    values[k].append(h[k])
        finally:
            opt.step = before
        for k, buf in self.scalars.items():
            buf[:n] = self.bk.asarray(np.asarray(values[k], dtype=buf.dtype))


def _slot(buf, j: int):
    """Element j of a device buffer as a 0-d view (the kernel reads it when it runs; an integer
    index would give NumPy's copy, a scalar)."""
    return buf[j:j + 1].reshape(())
