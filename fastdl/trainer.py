"""One mini-batch training loop for every backend.

The data is validated once on the host and moved to the backend once. Each step gathers a batch
by index on the backend, runs forward, backward and the update, and writes the loss into a
preallocated array on the backend; losses reach the host only at sync points (every
``sync_every`` steps and at epoch ends), so a GPU never waits on the host per step.

Batches are drawn on the host from ``seed`` with NumPy's generator (one index array per epoch
goes to the backend), so the same seed gives the same batches on every backend.

Epochs are counted exactly: an epoch is ceil(N / batch_size) steps, and evaluation happens at
every true epoch boundary (the book's ``i % (N / batch_size)`` misses boundaries whenever N is
not a multiple of the batch size).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from . import divergence
from .backends.contract import FUSED_STEP
from .fused import compile_train_step
from .history import History
from .images import backend_input, held_as_bytes
from .replay import for_run
from .signals import Deferred
from .validate import check_labels, check_parts, check_run_options, host_view


class Trainer:
    """Mini-batch training of ``network`` with ``optimizer`` on the network's backend.

    ``x_train`` and ``x_test`` are float arrays (N, D), or ``fastdl.ByteImages`` (pixels kept as
    bytes, read a batch or a block at a time; the same numbers).

    Give ``epochs`` or ``iterations`` (not both). ``batch_size`` defaults to 100 (at most the
    training set's size); a larger one given explicitly is refused. ``sampling="shuffle"`` draws a fresh permutation
    per epoch (every sample once); ``"replacement"`` draws each batch independently, as the book.
    ``callbacks`` are called as ``cb(trainer, record)`` after each evaluation. With
    ``checkpoint=path`` the trainer writes a checkpoint at every epoch end (or every
    ``checkpoint_every`` steps) and at the end; ``resume(path)`` continues from one.
    A run that diverges stops with ``DivergenceError`` and the last checked parameters (its
    ``step`` and history stand there too; the optimizer's state stays as the divergence left it): a
    non-finite loss or parameter, or (``explosion``, default 1e4; None turns it off) a loss above
    that many times the run's first loss, or a weight past the square root of the dtype's range.
    ``fast_path=True`` (the default) trains with the backend's fused step (``fastdl.fused``)
    wherever the backend declares one, as all three do; ``False`` runs the layer-by-layer path.
    Where the backend can replay captured work (cupy: CUDA graphs) each block of full steps
    between two sync points runs as one replay (``fastdl.replay``), with the same numbers;
    ``capture_note`` says why a run does not.
    ``stop()`` (from a callback, say) makes ``fit()`` return after the running step; Ctrl-C (and
    SIGTERM under ``fastdl.signals.stop_on_sigterm``) stops it there with KeyboardInterrupt. Every
    step done is counted (``stopped_between_steps``) and in the checkpoint, if there is one:
    ``fit()`` again, or ``resume``, continues as if never stopped. A second Ctrl-C stops at once.
    Where kernels compile on first use (numba, cupy), ``fit()`` first calls ``warm_up()``: every
    kernel the run will call is compiled, or loaded from numba's disk cache, on a copy of the
    network before any step is timed, a first numba compile shared with a helper process where a
    core is spare (``fastdl.warmup``); ``History.compile_seconds`` is its time. ``warm_up=False``
    leaves each kernel to compile at its first call, inside the steps' time.
    """

    def __init__(self, network, optimizer, x_train, t_train, x_test=None, t_test=None, *,
                 epochs: float | None = None, iterations: int | None = None, batch_size: int | None = None,
                 sampling: str = "shuffle", seed: int | None = None, progress: bool = True,
                 evaluate_train: bool = True, sync_every: int = 100, callbacks=(), fast_path: bool = True,
                 checkpoint=None, checkpoint_every: int | None = None, explosion: float | None = 1e4,
                 warm_up: bool = True):
        check_parts(network, optimizer)
        self.network = network
        self.optimizer = optimizer
        self.backend = bk = network.backend
        explicit = batch_size is not None
        batch_size = 100 if batch_size is None else batch_size
        check_run_options(epochs, iterations, batch_size, sampling, sync_every, explosion, checkpoint,
                          checkpoint_every, seed, callbacks)

        # Data is checked once and moved to the backend once, in the network's dtype (ByteImages
        # stay bytes there, and k/255 floats become bytes where that is faster: fastdl.images).
        self.x_train = held_as_bytes(backend_input(x_train, bk, network.input_size, network.dtype, "x_train"), bk)
        self.n_train = self.x_train.shape[0]
        t_idx = check_labels(host_view(t_train, bk, "t_train"), network.output_size, self.n_train, "t_train")
        if batch_size > self.n_train and explicit:     # the default (100) shrinks to a small set
            raise ValueError(f"batch_size={batch_size} is larger than the training set ({self.n_train} samples); "
                             f"use at most {self.n_train}")
        self.batch_size = int(min(batch_size, self.n_train))
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = int(iterations) if iterations is not None else max(1, round(epochs * self.steps_per_epoch))

        self.t_train = bk.asarray(t_idx)
        self.x_test = self.t_test = None
        if (x_test is None) != (t_test is None):
            raise ValueError("give both x_test and t_test, or neither")
        if x_test is not None:
            self.x_test = held_as_bytes(backend_input(x_test, bk, network.input_size, network.dtype, "x_test"), bk)
            tt = check_labels(host_view(t_test, bk, "t_test"), network.output_size, self.x_test.shape[0], "t_test")
            self.t_test = bk.asarray(tt)

        optimizer.claim(network)          # last of the checks: a refused trainer changes nothing
        self.sampling = sampling
        self.seed = None if seed is None else int(seed)      # checked above; np.int64 -> int
        self.rng = np.random.default_rng(seed)
        self.progress = progress
        self.evaluate_train = evaluate_train
        self.sync_every = int(sync_every)
        self.callbacks = list(callbacks)
        self.step = 0
        self._epoch_host = None          # this epoch's batch indices (host), and the position in it
        self._pos = 0
        self.checkpoint = checkpoint
        self.explosion = None if explosion is None else float(explosion)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_written = False        # whether it wrote (or resumed from) its own checkpoint
        self.stopped_between_steps = self._stop_asked = False    # the last fit() ended early; stop() asks it to
        self._fingerprint = None               # of the training data, once a checkpoint needs it
        # A backend that declares the fused step gets it: the same numbers as the layer-by-layer
        # path (tests hold it to that) with every intermediate preallocated.
        self._fused = None
        self.capture_note = None         # why fit() replays no captured blocks, if it does not
        if fast_path and FUSED_STEP in bk.CAPABILITIES:
            self._fused = compile_train_step(network, optimizer, self.batch_size, self.x_train, self.t_train)
        self.fast_path = self._fused is not None
        self.history = History(backend=bk.name, dtype=network.dtype.name, device=bk.device,
                               batch_size=self.batch_size, sampling=sampling, seed=seed)
        self._warm = not (warm_up and bk.COMPILES)      # whether fit() may start without warm_up()

    def __repr__(self) -> str:
        test = f", {self.x_test.shape[0]} test rows" if self.x_test is not None else ""
        return (f"Trainer({self.network!r}, {self.optimizer!r}, {self.n_train} training rows{test}, batch "
                f"{self.batch_size}, step {self.step} of {self.total_steps})")

    def warm_up(self, sharing=None, announce=None) -> float:
        """Compile (or load) every kernel this run calls, before anything is timed; its seconds
        are added to ``History.compile_seconds`` and returned. ``sharing``: a
        ``fastdl.warmup.Sharing`` already started (``fastdl train`` starts its helper before it
        loads anything); ``announce(n)``: told how many kernels compile (``Sharing.warm_up``);
        by default, with ``progress`` on, a first compile says so on stderr, as the bar would."""
        from .warmup import for_trainer
        seconds = for_trainer(self, sharing, announce)
        self.history.compile_seconds += seconds
        self._warm = True
        return seconds

    # -- batches ---------------------------------------------------------------------------------

    def _epoch_indices(self) -> np.ndarray:
        """Host indices for one epoch: steps_per_epoch batches back to back."""
        if self.sampling == "shuffle":
            return self.rng.permutation(self.n_train)
        return self.rng.integers(0, self.n_train, size=self.steps_per_epoch * self.batch_size)

    # -- the loop --------------------------------------------------------------------------------

    def _evaluate(self) -> None:
        net, h = self.network, self.history
        train = net._accuracy(self.x_train, self.t_train) if self.evaluate_train else None
        test = net._accuracy(self.x_test, self.t_test) if self.x_test is not None else None
        # appended after both are known: an evaluation cut short leaves the history whole
        h.epoch.append(round(self.step / self.steps_per_epoch, 6))
        h.epoch_step.append(self.step)
        if train is not None:
            h.train_acc.append(train)
        if test is not None:
            h.test_acc.append(test)
        record = {"epoch": h.epoch[-1], "step": self.step, "loss": h.loss[-1] if h.loss else None,
                  "train_acc": train, "test_acc": test}
        for cb in self.callbacks:
            cb(self, record)

    def _sync(self, losses, done: int, snapshot) -> dict:
        """Pull the losses of the last ``done`` steps to the host; stop on divergence, with the
        parameters of the last checked point restored."""
        host = self.backend.to_numpy(losses[:done]).astype(np.float64)
        first = self.history.loss[0] if self.history.loss else float(host[0])
        found = divergence.find(host, self.step - done, first, self.explosion, self.network.params,
                                self.network.dtype, self.step)
        if found:
            self.network._copy_params(snapshot)
            # the trainer stands where its network and history do (a checkpoint saved now is whole)
            self.step, self._pos = self.step - done, self._pos - done
            raise divergence.error(*found, self.optimizer.lr, self.step,
                                   self.checkpoint if self.checkpoint_written else None)
        self.history.loss.extend(host.tolist())
        for k, v in self.network.params.items():   # into the same buffers: no allocation per sync
            snapshot[k][...] = v
        return snapshot

    def _checkpoint_due(self) -> bool:
        if not self.checkpoint:
            return False
        if self.step == self.total_steps:
            return True
        if self.checkpoint_every is None:
            return self._pos == self.steps_per_epoch                  # at epoch ends
        return self.step % self.checkpoint_every == 0

    def fit(self) -> History:
        """Train until ``total_steps`` (continuing from a resumed checkpoint, if any)."""
        if not self._warm:
            self.warm_up()
        bk, net, h = self.backend, self.network, self.history
        xp = bk.xp
        spe = self.steps_per_epoch
        block = min(self.sync_every, spe)          # the most steps between two sync points
        losses = xp.empty(block, dtype=net.dtype)
        snapshot = {k: v.copy() for k, v in net.params.items()}
        bar = self._progress_bar()
        t_start = time.perf_counter()
        train_time = 0.0
        self.stopped_between_steps = self._stop_asked = False
        self._replay, self.capture_note = for_run(bk, self._fused, self.optimizer, self.batch_size, block, losses)
        # A diverging run overflows on the way to NaN; we detect that ourselves and raise
        # DivergenceError, so NumPy's RuntimeWarnings would only add noise.
        try:
            # train_scope: the process settings the backend's training needs (numba: its BLAS
            # single-threaded under its own threads), restored when fit() returns. Deferred: a
            # signal stops the run between two steps, every step done counted (class docstring).
            with np.errstate(over="ignore", invalid="ignore"), bk.train_scope(), Deferred() as stop:
                while self.step < self.total_steps:
                    if self._epoch_host is None or self._pos >= spe:
                        self._epoch_host = self._epoch_indices()
                        self._pos = 0
                    epoch_idx = bk.asarray(self._epoch_host)         # one transfer per epoch
                    end = min(spe, self._pos + self.total_steps - self.step)
                    t0 = time.perf_counter()
                    while self._pos < end and not self._stopping(stop):    # blocks between two sync points
                        done = self._run_block(epoch_idx, min(self.sync_every, end - self._pos), losses, stop)
                        self.step += done
                        self._pos += done
                        bk.synchronize()
                        train_time += time.perf_counter() - t0
                        snapshot = self._sync(losses, done, snapshot)
                        if bar is not None:
                            bar.update(self.step - bar.n)
                            bar.set_postfix(loss=f"{h.loss[-1]:.4f}")
                        if self._pos < spe and self._checkpoint_due():
                            self.save_checkpoint(self.checkpoint)
                        t0 = time.perf_counter()
                    if self._pos == spe or self.step == self.total_steps:
                        self._evaluate()             # _pos stays at spe: the next pass draws a new epoch
                        if self._checkpoint_due():
                            self.save_checkpoint(self.checkpoint)
                        if bar is not None and h.test_acc:
                            bar.set_postfix(loss=f"{h.loss[-1]:.4f}", test_acc=f"{h.test_acc[-1]:.4f}")
                    if self._stopping(stop):            # stop() or a signal: here, every step done kept
                        self.stopped_between_steps = True
                        if self.checkpoint:
                            self.save_checkpoint(self.checkpoint)
                        stop.raise_if_asked()
                        break
        finally:
            if bar is not None:
                bar.close()
            h.steps = self.step
            h.train_seconds += train_time
            h.seconds += time.perf_counter() - t_start
        return h

    def _run_block(self, epoch_idx, n: int, losses, stop) -> int:
        """Steps _pos .. _pos + n - 1 of this epoch, their losses into losses[:n]: one replay of
        a captured block where it can (``fastdl.replay``), else step by step, ending early where
        a signal or ``stop()`` asks. Returns how many steps ran."""
        B, pos = self.batch_size, self._pos
        full = (pos + n) * B <= epoch_idx.shape[0]           # no partial batch at the epoch's end
        if self._replay is not None and full and self._replay.run(epoch_idx, pos, n):
            return n
        for j in range(n):
            idx = epoch_idx[(pos + j) * B:(pos + j + 1) * B]
            if self._fused is not None:
                losses[j] = self._fused(idx)
            else:
                losses[j] = self.network.train_step(self.x_train[idx], self.t_train[idx], self.optimizer)
            if self._stopping(stop):
                return j + 1
        return n

    def stop(self) -> None:
        """Ask ``fit()`` to return after the running step (a callback's early stop, or another
        thread's): every step done is counted and checkpointed; ``fit()`` again goes on from there."""
        self._stop_asked = True

    def _stopping(self, signals) -> bool:
        return self._stop_asked or signals.pending is not None

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self, path) -> None:
        """Atomically write everything needed to continue exactly: parameters, optimizer state,
        RNG state, this epoch's batch order and position, the step and the history so far."""
        from .checkpoints import save_checkpoint
        save_checkpoint(self, path)

    def resume(self, path) -> "Trainer":
        """Load a checkpoint written by a trainer of the same network and optimizer; ``fit()``
        then continues where it stopped. On NumPy with a fixed seed the result is bit for bit the
        uninterrupted run's."""
        from .checkpoints import load_checkpoint
        load_checkpoint(self, path)
        return self

    def _progress_bar(self):
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        return tqdm(total=self.total_steps, initial=self.step, unit="step", disable=None, file=sys.stderr,
                    desc=f"train [{self.backend.name}]", dynamic_ncols=True)
