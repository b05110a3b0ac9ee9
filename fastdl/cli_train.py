"""``fastdl train``: train on MNIST, report each epoch, write params.npz, history.json,
checkpoint.npz and curves.png into ``--out``.

Speaks to a command-line user in flags: a mistake is one line naming the flag, Ctrl-C says which
checkpoint was kept and the exact command that continues, and a JIT backend's one-off compile is
announced and timed apart from training.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path

from . import __version__, checkpoints, curves, warmup
from .run_folder import held, out_folder
from .errors import FastDLError, FileFormatError
from .signals import how_stopped


def _default_lr(optimizer: str) -> float:
    return {"sgd": 0.1, "adam": 0.001}.get(optimizer, 0.01)


def epochs_text(e: float) -> str:
    """16.666667 -> '16.67', 1.0 -> '1', 0.001667 -> '0.0017' (a short run is not '0' epochs)."""
    return f"{e:.2f}".rstrip("0").rstrip(".") if e >= 0.01 or e == 0 else f"{e:.2g}"


def train(args) -> int:
    out = Path(args.out)
    # helper processes: one, started first, imports matplotlib for curves.png beside the run; one
    # takes half of a first run's compile where there is one (fastdl.curves, fastdl.warmup)
    # hold: the --out folder's lock, once the folder is made, released after the plot is drawn
    with contextlib.ExitStack() as hold, curves.Helper(out / "curves.png") as plot, warmup.Sharing() as sharing:
        sharing.start(args.backend)     # where a first run is likely: importing while this does
        return _train(args, out, plot, sharing, hold)


def _train(args, out: Path, plot: curves.Helper, sharing: warmup.Sharing, hold: contextlib.ExitStack) -> int:
    from . import datasets, helpers, networks, optimizers, trainer
    from .backends import get_backend

    lr = args.lr if args.lr is not None else _default_lr(args.optimizer)
    try:                                 # the optimizer says what it takes (a momentum for SGD, say)
        opt = optimizers.get_optimizer(args.optimizer, lr=lr,
                                       **({} if args.momentum is None else {"momentum": args.momentum}))
    except TypeError as exc:
        raise FastDLError(f"--optimizer {args.optimizer} with --momentum: {exc}") from None
    # MNIST is read and checked (file reads and SHA-256, outside the GIL) while this thread
    # imports the backend, whose error, if any, still comes first. As bytes: a quarter of
    # float's memory, the same numbers (fastdl.images).
    mnist = helpers.Beside(lambda: datasets.load_mnist(dtype=args.dtype, root=args.data, as_bytes=True))
    backend = get_backend(args.backend)
    hold.enter_context(held(out_folder(out), "train"))        # one run a folder at a time
    init = args.init
    try:
        init = float(init)
    except ValueError:
        pass
    (x, t), (xt, tt) = mnist.result()
    if args.train_size is not None:
        x, t = x.subset(slice(args.train_size)), t[:args.train_size]
    if args.batch_size > len(x):
        raise FastDLError(f"--batch-size {args.batch_size} is larger than the training set ({len(x)} images); "
                          f"use at most {len(x)}")
    if args.checkpoint_every is not None and args.checkpoint_every % 100:
        raise FastDLError(f"--checkpoint-every {args.checkpoint_every} must be a multiple of 100 (the losses are "
                          f"checked every 100 steps, and only checked points are saved)")
    net = networks.MultiLayerNet(784, args.hidden or [50], 10, activation=args.activation, weight_init_std=init,
                                 weight_decay=args.weight_decay, dropout=args.dropout, batch_norm=args.batch_norm,
                                 dtype=args.dtype, backend=backend, seed=args.seed)
    length = {"epochs": args.epochs} if args.epochs is not None else {"iterations": args.iters or 10_000}

    def report(tr, rec):
        parts = [f"epoch {epochs_text(rec['epoch'])}", f"step {rec['step']}", f"loss {rec['loss']:.4f}"]
        if rec["train_acc"] is not None:
            parts.append(f"train_acc {rec['train_acc']:.4f}")
        if rec["test_acc"] is not None:
            parts.append(f"test_acc {rec['test_acc']:.4f}")
        line = "  ".join(parts)
        if tr.progress:
            from tqdm.auto import tqdm
            tqdm.write(line)
        else:
            print(line, flush=True)

    ckpt = out / "checkpoint.npz"
    # a bar only on a terminal (tqdm would turn itself off anyway; not importing it saves ~0.05 s)
    bar = not args.no_progress and sys.stderr.isatty()
    tr = trainer.Trainer(net, opt, x, t, xt, tt, batch_size=args.batch_size, sampling=args.sampling,
                         seed=args.seed, progress=bar, callbacks=[report],
                         checkpoint=ckpt, checkpoint_every=args.checkpoint_every, **length)
    del x, xt  # the trainer holds what it needs; keep peak memory down
    resumed = args.resume and ckpt.is_file()
    if resumed:                      # checked before a compile, which a refused checkpoint would waste
        try:
            tr.resume(ckpt)
        except FileFormatError as exc:
            why = str(exc)
            again = ("; rerun with that run's flags, or" if checkpoints.REBUILD in why else "; rerun")
            why = why.replace(f"; {checkpoints.REBUILD}", "")          # a trainer, to a Python user
            raise FastDLError(f"--resume: {why}{again} without --resume (or with another --out) to start afresh") from None
    if backend.COMPILES:
        # a first run says it compiles; later runs, which load from the disk cache, do not
        print(f"{backend.name} kernels:", end=" ", flush=True)
        announce = lambda n: n and print(f"compiling {n} (once; cached on disk)...", end=" ", flush=True)
        seconds = tr.warm_up(sharing, announce)
        print(f"ready in {seconds:.2f} s" + (f" ({sharing.helper_jobs} of {sharing.jobs} compiled in a helper "
                                             f"process)" if sharing.helper_jobs else ""), flush=True)
    print(f"training {net} with {opt}: batch {tr.batch_size}, {tr.total_steps} step{'s' if tr.total_steps > 1 else ''} "
          f"({epochs_text(tr.total_steps / tr.steps_per_epoch)} epochs of {tr.steps_per_epoch} steps), "
          f"{args.sampling} sampling, seed {args.seed}", flush=True)
    if resumed:
        print(f"resumed from {ckpt} at step {tr.step}", flush=True)
    elif args.resume:
        print(f"--resume: no checkpoint at {ckpt}; starting from scratch", flush=True)
    try:
        tr.fit()
    except KeyboardInterrupt as exc:          # Ctrl-C, or SIGTERM (fastdl.signals)
        word, status = how_stopped(exc)
        if tr.stopped_between_steps and tr.step == tr.total_steps:     # in the last step: the run is whole
            _report(_save(out, tr), out, plot)
            print(f"fastdl train: {word} in the run's last step; the run is complete and its results are "
                  f"written", file=sys.stderr)
            return status
        print(f"fastdl train: {word} at step {tr.step}; {_kept(args, tr, ckpt)}", file=sys.stderr)
        return status
    except OSError as exc:                    # a write that failed (a full disk, say) stops the run
        raise FastDLError(f"{exc}; the run stopped at step {tr.step}: {_kept(args, tr, ckpt, False)}") from None
    record = _save(out, tr)
    del tr, net         # the training data, freed before the wait for the plot
    _report(record, out, plot)
    return 0


def _kept(args, tr, ckpt: Path, at_stop: bool = True) -> str:
    """What a stopped run leaves to continue from, and the command that does. ``at_stop``: the
    trainer wrote its checkpoint where it stopped, if it stopped between two steps (not where a
    write failed)."""
    from . import io
    if not tr.checkpoint_written:
        return "no checkpoint was written yet"
    again = shlex.join(["fastdl", *args.argv] + ([] if args.resume else ["--resume"]))
    # written at the stop (Trainer.fit), or the last one before (a second Ctrl-C, a failed write)
    written = at_stop and tr.stopped_between_steps
    step = tr.step if written else io.read_arrays(ckpt, io.CHECKPOINT_FORMAT)[1]["step"]
    return f"the checkpoint {ckpt} (step {step}) is {'written' if written else 'kept'}; continue with:\n  {again}"


def _save(out: Path, tr) -> dict:
    """A finished run's params.npz and history.json; the record written."""
    import numpy as np

    from . import io
    h = tr.history
    io.save(tr.network, out / "params.npz")
    record = h.to_dict()
    record.update({"seconds": h.seconds, "fast_path": tr.fast_path, "network": tr.network.config(),
                   "optimizer": tr.optimizer.config(), "fastdl": __version__, "numpy": np.__version__})
    io.atomic_write_bytes(out / "history.json", json.dumps(record, indent=1).encode())
    return record


def _report(r: dict, out: Path, plot: curves.Helper) -> None:
    """curves.png drawn, and the lines that say what the run did and wrote."""
    png, why_not = plot.finish(r)
    print(f"done in {r['seconds']:.2f} s ({r['train_seconds']:.2f} s in training steps"
          + (f", after {r['compile_seconds']:.2f} s compiling" if r["compile_seconds"] else "") + "): "
          f"train_acc {r['train_acc'][-1]:.4f}, test_acc {r['test_acc'][-1]:.4f}")
    print(f"wrote {out / 'params.npz'}, {out / 'history.json'}, {out / 'checkpoint.npz'}"
          + (f", {png}" if png else f" ({why_not})"))

