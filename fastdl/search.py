"""Hyperparameter search on Optuna (the book's section 6.5): ``fastdl sweep`` and ``fastdl.sweep``.

The book searches learning rate and weight decay at random for its 6-layer network on 500
training images, choosing by accuracy on 20% of them held out; the test set is never used to
choose. Here the same default space runs as an Optuna study, whose trials live in a shared
storage: a journal file (``OUT/study.log``, the default) or any database URL Optuna takes
(``sqlite:///sweep.db``, ``postgresql://...``), so ``--jobs N`` worker processes on one machine,
or the same command on many machines pointed at one ``--storage``, fill one study. ``--trials``
is the study's total: rerunning the command continues it (after Ctrl-C too) up to that number.

Each trial reports its validation accuracy at every epoch; the pruner (median by default) stops
hopeless ones. A trial that diverges or fails is recorded with its error and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import numpy as np

from .errors import FastDLError
from .search_storage import make_study, open_study, optuna_module, storage_for
from .images import ByteImages
from .run_folder import out_folder
from .search_space import BOOK_SPACE, build, check_values, suggest
from .search_stop import Stop, ignore_ctrl_c, stop_at_once
from .signals import Terminated, how_stopped
from .validate import check_seed

BOOK = {"hidden": [100] * 6, "train_size": 500, "val_fraction": 0.2, "epochs": 50, "batch_size": 100}
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@contextlib.contextmanager
def _quiet(optuna):
    """Optuna's INFO line per trial, and its WARNING with a traceback per failed trial, would
    drown the sweep's own lines (``trial_line``; trials.csv keeps each error); the caller's
    verbosity (Optuna's setting is process-wide) comes back afterwards."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def split(x, t, train_size, val_fraction, seed):
    """The first ``train_size`` training images, shuffled by ``seed``, ``val_fraction`` held out
    (ByteImages stay bytes)."""
    rows = lambda index: x.subset(index) if isinstance(x, ByteImages) else x[index]
    x, t = rows(slice(train_size)), t[:train_size]
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(len(x) * val_fraction)))
    val, train = perm[:n_val], perm[n_val:]
    return (rows(train), t[train]), (rows(val), t[val])


def objective(cfg, data, stop):
    """One trial: train on the split's training part, report validation accuracy per epoch
    (``stop``: a ``search_stop.Stop``, which may abandon the trial at an epoch end)."""
    from .trainer import Trainer
    optuna = optuna_module()
    (x, t), (xv, tv) = data

    def run(trial):
        p = {**cfg["fixed"], **suggest(trial, cfg["space"])}
        net, opt, batch = build(p, cfg["hidden"], cfg["backend"], cfg["seed"])
        curve = []

        def report(tr, rec):
            curve.append(rec["test_acc"])                    # the validation split, passed as test data
            stop.epoch_end(trial, curve)
            trial.report(rec["test_acc"], len(curve))
            if trial.should_prune():
                trial.set_user_attr("val_acc", curve)
                raise optuna.TrialPruned()
        tr = Trainer(net, opt, x, t, xv, tv, epochs=cfg["epochs"], batch_size=batch,
                     seed=cfg["seed"], progress=False, evaluate_train=False, callbacks=[report])
        try:
            tr.fit()
        except optuna.TrialPruned:
            raise
        except Exception as exc:                             # recorded with its error; the sweep goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            trial.set_user_attr("val_acc", curve)
            raise
        trial.set_user_attr("val_acc", curve)
        return curve[-1]
    return run


def finished(study) -> int:
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


def trial_line(study, trial) -> None:
    """One line as each trial ends (an Optuna callback; --jobs workers each print their own)."""
    curve = trial.user_attrs.get("val_acc") or []
    if trial.state.name == "COMPLETE":
        how = ""
    elif trial.state.name == "PRUNED":
        how = f" (pruned after {len(curve)} epoch{'s' * (len(curve) != 1)})"
    else:                                   # the error's first sentence: trials.csv has it whole
        how = f" (failed: {trial.user_attrs.get('error', 'no error recorded').split('. ')[0]})"
    acc = f"validation accuracy {curve[-1]:.4f}" if curve else "no validation accuracy"
    params = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in trial.params.items())
    print(f"trial {trial.number}: {acc}{how}; {params}", flush=True)


def worker(cfg, n_trials: int, say: bool = False, relayed: bool = False):
    """One process's share of the study (run in a spawned process for --jobs > 1, ``relayed``:
    its signals come through the parent); returns what a signal that stopped it early calls for
    raising (``Stop.exception``), else None."""
    from . import datasets
    from .backends import get_backend
    with Stop(say, relayed=relayed) as stop:
        cfg = dict(cfg, backend=get_backend(cfg["backend"]))
        # the test set is never used here; bytes: a quarter of the memory in every worker process
        (x, t), _ = datasets.load_mnist(root=cfg["data"], as_bytes=True)
        data = split(x, t, cfg["train_size"], cfg["val_fraction"], cfg["seed"])
        study = make_study(cfg, storage_for(cfg["storage"], Path(cfg["out"])))
        told = [stop.callback] + ([trial_line] if cfg["progress"] else [])
        try:
            study.optimize(objective(cfg, data, stop), n_trials=n_trials, catch=(Exception,), gc_after_trial=False,
                           callbacks=told)
        except Terminated:
            if not stop.abandon:        # a second signal: at once, as it came
                raise
    return stop.exception()


def sweep(*, trials: int = 20, epochs: float = BOOK["epochs"], backend=None, storage=None, study="fastdl-sweep",
          jobs: int = 1, out="runs/sweep", data=None, space=None, fixed=None, hidden=None,
          train_size: int = BOOK["train_size"], val_fraction: float = BOOK["val_fraction"], seed: int = 0,
          pruner: str = "median", startup: int = 5, progress: bool = True) -> dict:
    """Run (or continue) the study until it holds ``trials`` finished trials; write the report
    into ``out`` and return its summary (see ``fastdl.search_report``). ``progress``: a line as
    the sweep starts and as each trial ends."""
    from . import search_report
    from .backends import get_backend
    optuna = optuna_module()
    for name, value, ok in (("trials", trials, isinstance(trials, int) and trials >= 1),
                            ("jobs", jobs, isinstance(jobs, int) and jobs >= 1),
                            ("epochs", epochs, isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0),
                            ("val_fraction", val_fraction, 0 < val_fraction < 1),
                            ("pruner", pruner, pruner in ("median", "halving", "none"))):
        if not ok:
            raise ValueError(f"{name}={value!r} is not valid (trials, jobs: positive integers; epochs: a positive "
                             f"number; val_fraction in (0, 1); pruner: median, halving or none)")
    seed = check_seed(seed)
    if seed is None:
        raise ValueError("seed=None: a sweep needs a fixed seed (its workers derive theirs from it)")
    check_values(dict(BOOK_SPACE if space is None else space), dict(fixed or {}))
    out = Path(out)
    cfg = {"backend": get_backend(backend).name, "storage": storage, "study": study, "out": str(out), "data": data,
           "space": dict(BOOK_SPACE if space is None else space), "fixed": dict(fixed or {}),
           "hidden": list(BOOK["hidden"] if hidden is None else hidden), "epochs": epochs,
           "train_size": int(train_size), "val_fraction": float(val_fraction), "seed": int(seed),
           "pruner": pruner, "startup": int(startup), "worker_seed": int(seed), "progress": bool(progress)}
    overlap = set(cfg["space"]) & set(cfg["fixed"])
    if overlap:
        raise ValueError(f"{sorted(overlap)} are both searched and fixed; choose one")
    # out checked before any trial runs (the report goes there at the end), and after the study
    # opens, so a refused storage makes no folder, unless the study's own journal lives there
    where = f"out={str(out)!r}"
    if storage is None:
        out_folder(out, where)
    with _quiet(optuna):
        done = finished(open_study(cfg, out))
        remaining = max(0, trials - done)
        if storage is not None:
            out_folder(out, where)
        if progress:
            workers = f" in {min(jobs, remaining)} worker processes" if jobs > 1 and remaining > 1 else ""
            print(f"study {study!r}: {done} of {trials} trials finished" +
                  (f"; running {remaining} more{workers}" if remaining else "; none to run") +
                  f" ({cfg['epochs']:g} epochs each on {cfg['backend']})", flush=True)
        stopped = None
        try:
            if remaining and jobs == 1:
                stopped = worker(cfg, remaining, say=True)
            elif remaining:
                stopped = _in_processes(cfg, remaining, jobs)
        finally:                                   # Ctrl-C included: every finished trial is reported
            try:
                summary = search_report.write(make_study(cfg, storage_for(storage, out)), cfg, out)
            except Exception as exc:               # never hide the interrupt or error behind the report
                print(f"fastdl sweep: the report could not be written ({type(exc).__name__}: {exc})",
                      file=sys.stderr)
                summary = None
    if stopped is not None:
        raise stopped
    return summary


def _worker_process(cfg, n_trials: int) -> None:
    """A --jobs worker process: ``worker``, ending quietly (no traceback) with the status a shell
    expects when stopped by Ctrl-C or SIGTERM; the parent says what happened."""
    ignore_ctrl_c()                     # the parent passes it on (search_stop)
    try:
        with _quiet(optuna_module()):
            stopped = worker(cfg, n_trials, relayed=True)
    except KeyboardInterrupt as exc:
        stopped = exc
    if stopped is not None:
        sys.exit(how_stopped(stopped)[1])


def _in_processes(cfg, remaining: int, jobs: int):
    """``jobs`` worker processes share the study; each gets its share of the trials and of the
    cores (its backend's threads and BLAS's), so they do not oversubscribe the machine. Returns as
    ``worker`` does."""
    import multiprocessing as mp
    jobs = min(jobs, remaining)
    shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    saved = {k: os.environ.get(k) for k in ("FASTDL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                            "MKL_NUM_THREADS")}
    ctx = mp.get_context("spawn")
    procs = []
    try:
        os.environ.update({k: threads for k in saved})         # the children start with these
        for i, share in enumerate(shares):
            p = ctx.Process(target=_worker_process, args=(dict(cfg, worker_seed=cfg["seed"] * 1000 + i), share))
            p.start()
            procs.append(p)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with Stop(say=True, forward=procs) as stop:
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:          # the parent's second signal: every worker stops now
            for p in procs:
                stop_at_once(p)
            for p in procs:
                p.join()
            raise
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad and not stop.requested:
        raise FastDLError(f"{len(bad)} of {jobs} sweep workers failed (exit codes {bad}); the finished trials are kept")
    return stop.exception()
