"""Blocks of training steps captured once and replayed: a CUDA graph per block on cupy.

At the book's batch of 100 a GPU step is a dozen kernels of a few microseconds each, and
launching them from Python costs more than running them. A backend that declares the
``graph_replay`` capability records what a piece of work launches (``capture(work)``; on cupy a
CUDA graph, with cuBLAS's GEMMs in it) and replays it with one launch. The trainer runs its steps
between two sync points as one block, so a block of ``sync_every`` full batches is one replay:

* the block's batch indices go into one device buffer (a copy per block) that the captured steps
  read, and each step's loss into its slot of the trainer's loss buffer;
* the first block runs uncaptured (kernels compiled, cuBLAS and the optimizer's state made), the
  second is captured, and every later one replays it; a block that is shorter or ends in a
  partial batch runs uncaptured;
* the optimizer's kernel scalars are baked into the graph, so only optimizers that declare them
  the same from step to step (``Optimizer.steady_scalars``: not Adam, whose step size changes)
  are replayed, and a changed hyperparameter (``optimizer.lr = ...``) captures the block again;
  Python-side bookkeeping (``optimizer.step``) is advanced here, since a replay runs no Python.

A capture that fails (work that allocates or waits on the host cannot be captured) leaves the
run uncaptured, with the reason in ``Replay.note``; the numbers are the same either way (the same
kernels in the same order, tested against the uncaptured step).
"""

from __future__ import annotations

import warnings


class Replay:
    """``run(epoch_idx, pos, losses) -> bool``: the steps ``pos .. pos + k - 1`` of the epoch
    (full batches of ``batch_size``), losses into ``losses[:k]``; False when the caller must run
    them one by one (the first block, or after a failed capture)."""

    def __init__(self, bk, step, optimizer, batch_size: int, k: int, losses):
        self.bk, self.step, self.optimizer, self.B, self.k, self.losses = bk, step, optimizer, batch_size, k, losses
        self.idx = bk.xp.empty(k * batch_size, dtype=bk.xp.int64)
        self.views = [self.idx[j * batch_size:(j + 1) * batch_size] for j in range(k)]
        self.replay = None
        self.captured_with = None       # the optimizer's kernel scalars in the captured graph
        self.warm = False
        self.note = None                # why blocks stopped being replayed, if they did
        self.replays = 0

    def _work(self):
        for j, idx in enumerate(self.views):
            self.losses[j] = self.step(idx)

    def run(self, epoch_idx, pos: int) -> bool:
        if self.note is not None:
            return False
        if not self.warm:               # compile and allocate everything outside any capture
            self.warm = True
            return False
        opt = self.optimizer
        before, scalars = opt.step, opt.kernel_hyperparameters()
        self.idx[...] = epoch_idx[pos * self.B:(pos + self.k) * self.B]
        if self.replay is None or scalars != self.captured_with:
            try:
                self.replay = self.bk.capture(self._work)
            except Exception as exc:            # noqa: BLE001 (any failure: run uncaptured, say why)
                opt.step = before
                self.replay = None
                self.note = f"capturing a block of steps failed ({type(exc).__name__}: {exc}); training runs uncaptured"
                warnings.warn(self.note, RuntimeWarning, stacklevel=3)
                return False
            self.captured_with = scalars
        opt.step = before                       # capturing ran the step's Python k times; a replay none
        self.replay()
        opt.step = before + self.k
        self.replays += 1
        return True
