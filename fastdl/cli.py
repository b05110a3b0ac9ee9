"""The ``fastdl`` command: train, evaluate, info, bench.

User mistakes (bad arguments, missing data, a backend that cannot run) print one clear line to
stderr and exit with status 2, without a traceback; bugs still show their traceback.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import platform
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import FastDLError
from .run_folder import held, out_folder
from .signals import how_stopped, stop_on_sigterm


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= {low}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _seed(text: str) -> int:
    return _int_at_least(text, 0)        # NumPy's generators take no negative seed


def _number(text: str, low: float, low_open: bool, high: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < low or (low_open and value == low) or value >= high:
        rng = f"{'(' if low_open else '['}{low:g}, {high:g})"
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number in {rng}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, 0.0, True)


def _non_negative_float(text: str) -> float:
    return _number(text, 0.0, False)


def _ratio(text: str) -> float:
    return _number(text, 0.0, False, 1.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastdl", description="The network of 'Deep Learning from Scratch' on NumPy, Numba or CuPy.")
    p.add_argument("--version", action="version", version=f"fastdl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on MNIST and save parameters and history")
    t.add_argument("--backend", help="numpy | numba | cupy (default: FASTDL_BACKEND or numpy)")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_float, help="number of epochs")
    length.add_argument("--iters", type=_positive_int, help="number of steps (default 10000, the book's)")
    t.add_argument("--batch-size", type=_positive_int, default=100)
    t.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default 0.1 for SGD, 0.001 for Adam, 0.01 otherwise)")
    # "extend": --hidden 64 --hidden 32 is 64 32 (the default store kept only the last); the
    # book's 50 is filled in after parsing, since extend would add to a default list
    t.add_argument("--hidden", type=_positive_int, nargs="+", action="extend", default=None,
                   help="hidden layer sizes, e.g. --hidden 100 100 (default: 50)")
    t.add_argument("--activation", choices=["relu", "sigmoid"], default="relu")
    t.add_argument("--init", default="0.01", help="weight init std: a number, 'he' or 'xavier' (default 0.01)")
    t.add_argument("--weight-decay", type=_non_negative_float, default=0.0, metavar="LAMBDA",
                   help="weight decay: 0.5 LAMBDA sum W^2 in the loss (the book's chapter 6 uses 0.1)")
    t.add_argument("--dropout", type=_ratio, default=0.0, metavar="RATIO",
                   help="a Dropout layer after each hidden activation, dropping RATIO of the units in training")
    t.add_argument("--batch-norm", action="store_true", help="Batch Normalization before each hidden activation")
    t.add_argument("--train-size", type=_positive_int, default=None, metavar="N",
                   help="train on the first N training images only (the book's overfitting setting: 300)")
    t.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"], default="sgd")
    t.add_argument("--momentum", type=_ratio, default=None,
                   help="the momentum of --optimizer momentum or nesterov (default 0.9)")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--sampling", choices=["shuffle", "replacement"], default="shuffle")
    t.add_argument("--data", help="folder with the MNIST files (default: FASTDL_DATA or the user cache)")
    t.add_argument("--out", default="runs/latest", help="output folder (default runs/latest)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--checkpoint-every", type=_positive_int, default=None,
                   help="write OUT/checkpoint.npz every N steps (a multiple of 100; default: every epoch)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz if it exists")

    e = sub.add_parser("evaluate", help="accuracy of saved parameters on the MNIST test set")
    e.add_argument("params", help="a params.npz written by 'fastdl train' or fastdl.save, or a run's checkpoint.npz")
    e.add_argument("--backend")
    e.add_argument("--data")

    x = sub.add_parser("experiment", help="the book's chapter-6 experiments: overfit, batchnorm")
    x.add_argument("name", choices=["overfit", "batchnorm"],
                   help="overfit: 300 images with/without weight decay and Dropout; batchnorm: figure 6-19")
    x.add_argument("--backend")
    x.add_argument("--data")
    x.add_argument("--seed", type=_seed, default=0)
    x.add_argument("--out", default="runs/chapter6", help="folder for NAME.json and NAME.png (default runs/chapter6)")

    w = sub.add_parser("sweep", help="hyperparameter search on Optuna (the book's section 6.5)",
                       description="Search learning rate and weight decay (the book's space) or any train flag, "
                                   "choosing by accuracy on a held-out 20% of the training images; the study "
                                   "lives in --storage, so reruns continue it and many workers can share it.")
    w.add_argument("--trials", type=_positive_int, default=20, help="the study's total of finished trials (default 20)")
    w.add_argument("--epochs", type=_positive_float, default=50, help="epochs per trial (default 50, the book's)")
    w.add_argument("--backend")
    w.add_argument("--jobs", type=_positive_int, default=1, help="worker processes on this machine (default 1)")
    w.add_argument("--storage", help="a journal file path or a database URL (sqlite:///..., postgresql://...); "
                                     "default OUT/study.log")
    w.add_argument("--study", default="fastdl-sweep", help="the study's name: rerun with it to continue")
    w.add_argument("--search", action="append", default=[], metavar="NAME=RULE",
                   help="searched flag: lr=log:1e-6:1e-2, dropout=float:0:0.5, batch_size=int:50:200, "
                        "optimizer=choice:sgd,adam (default: lr and weight_decay, the book's space)")
    w.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE", help="a fixed train flag, e.g. batch_norm=true")
    w.add_argument("--hidden", type=_positive_int, nargs="+", action="extend", default=None,
                   help="hidden sizes (default: six of 100)")
    w.add_argument("--train-size", type=_positive_int, default=500, help="training images used (default 500, the book's)")
    w.add_argument("--val-fraction", type=_ratio, default=0.2, help="held out for validation (default 0.2)")
    w.add_argument("--pruner", choices=["median", "halving", "none"], default="median")
    w.add_argument("--seed", type=_seed, default=0)
    w.add_argument("--data")
    w.add_argument("--out", default="runs/sweep", help="folder for trials.csv/json, best.json, sweep.png")

    sub.add_parser("info", help="each backend: usable or why not, versions, device, threads")

    b = sub.add_parser("bench", help="run the benchmark suite, or report on saved results")
    b.add_argument("json", nargs="*", help="saved pytest-benchmark JSON file(s) to report on (two: compare)")
    b.add_argument("--out", default="bench/report", help="folder for report.md and the charts")
    b.add_argument("--quick", action="store_true", help="smoke-sized run (FASTDL_BENCH_QUICK=1)")
    b.add_argument("--select", "-k", default=None, help="pytest -k expression to pick benchmarks")
    p.commands = sub.choices            # each command's parser, to report what it does not know
    return p


def cmd_train(args) -> int:
    from .cli_train import train
    return train(args)


def cmd_evaluate(args) -> int:
    from . import datasets, io
    net = io.load(args.params, backend=args.backend)
    if (net.input_size, net.output_size) != (784, 10):     # before MNIST loads
        raise FastDLError(f"{args.params} holds {net}, for {net.input_size} inputs and {net.output_size} classes; "
                          f"MNIST has 784 pixels an image and 10 classes: evaluate it in Python on its own data")
    _, (xt, tt) = datasets.load_mnist(dtype=net.dtype.name, root=args.data)
    acc = net.accuracy(xt, tt)
    print(f"{args.params}: {net}: test_acc {acc:.4f} on {len(xt)} MNIST test images")
    return 0


def cmd_info(args) -> int:
    from .backends import NAMES, backend_status, current_backend_name, get_backend, install_hint
    print(f"fastdl {__version__}, Python {platform.python_version()} on {platform.platform()}")
    env = os.environ.get("FASTDL_BACKEND")
    source = f"FASTDL_BACKEND={env!r}" if env is not None else "FASTDL_BACKEND not set"
    try:
        print(f"current backend: {current_backend_name()} ({source})")
    except FastDLError as exc:
        print(f"current backend: invalid ({exc})")
    for key in NAMES:
        ok, reason = backend_status(key)
        if ok:
            details = get_backend(key).describe()
            extra = "; ".join(f"{k} {v}" for k, v in details.items() if k != "backend")
            print(f"  {key:6s} usable   {extra}")
        else:
            hint = install_hint(key)
            print(f"  {key:6s} unusable {reason}" + (f"; to use it: {hint}" if hint else ""))
    return 0


def cmd_experiment(args) -> int:
    from .backends import get_backend
    from .experiments import run
    backend = get_backend(args.backend)
    with held(out_folder(Path(args.out)), "experiment") as out:
        return run(args.name, backend, args.data, out, args.seed)


def cmd_sweep(args) -> int:
    from .search import sweep
    from .search_space import BOOK_SPACE, check_values, parse_fixed, parse_space
    space, fixed = parse_space(args.search) if args.search else None, parse_fixed(args.fix)
    check_values(space or BOOK_SPACE, fixed)        # fastdl.sweep checks --out once its study opens
    try:
        summary = sweep(trials=args.trials, epochs=args.epochs, backend=args.backend, storage=args.storage,
                        study=args.study, jobs=args.jobs, out=args.out, data=args.data, space=space,
                        fixed=fixed, hidden=args.hidden, train_size=args.train_size,
                        val_fraction=args.val_fraction, seed=args.seed, pruner=args.pruner)
    except KeyboardInterrupt as exc:
        word, status = how_stopped(exc)
        print(f"fastdl sweep: {word}; every finished trial is kept. Run the same command to continue "
              f"(report so far in {args.out})", file=sys.stderr)
        return status
    if summary is None:                     # the report could not be written: sweep() said why
        return 1
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["states"].items()))
    print(f"study {summary['study']!r}: {summary['trials']} trials ({states})")
    if summary["best"]:
        b = summary["best"]
        print(f"best: trial {b['number']}, validation accuracy {b['val_acc']:.4f}, {b['params']}")
        print(f"retrain on the full training set and evaluate on the test set:\n  {b['retrain']}")
    else:
        print("no trial completed; see trials.csv for their errors")
    plot = ", sweep.png" if summary["plot"] else ' (no sweep.png: matplotlib is not installed; pip install "fastdl[plot]")'
    print(f"wrote {Path(args.out) / 'trials.csv'}, trials.json, best.json{plot}")
    return 0


def cmd_bench(args) -> int:
    from .report import run_bench, suite_dir
    if not args.json:
        suite_dir()             # from a wheel: say so before making any folder
    out_folder(Path(args.out))
    return run_bench(args)


def _parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """``parse_args``, but a flag the command does not know is reported by that command's parser
    (its usage, not the top level's) with the closest flags it has: ``--iterations`` -> ``--iters``;
    no command at all shows the help, a mistyped one the closest command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help(sys.stderr)
        parser.exit(2)
    if argv[0][:1] != "-" and argv[0] not in parser.commands:
        near = difflib.get_close_matches(argv[0], parser.commands, n=1, cutoff=0.6)
        parser.error(f"unknown command {argv[0]!r}" + (f" (did you mean {near[0]!r}?)" if near else "") +
                     f"; the commands are {', '.join(parser.commands)}")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.commands[args.command]
        # argparse lists a parser's options nowhere public; _actions has been there since 2.7
        flags = [f for action in command._actions for f in action.option_strings if f.startswith("--")]
        words = []
        for word in unknown:
            near = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.7) if word[:1] == "-" else []
            words.append(word + (f" (did you mean {near[0]}?)" if near else ""))
        command.error(f"unrecognized arguments: {' '.join(words)}; "
                      f"'fastdl {args.command} --help' lists what it takes")
    args.argv = argv                # to repeat the command in messages
    return args


def main(argv=None) -> int:
    args = _parse(build_parser(), argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "info": cmd_info, "bench": cmd_bench,
               "experiment": cmd_experiment, "sweep": cmd_sweep}[args.command]
    try:
        with stop_on_sigterm(), warnings.catch_warnings():     # restores showwarning after
            # a warning in a command's words, not with a line of Python source under it
            warnings.showwarning = lambda message, category, *where, **kw: print(
                f"fastdl {args.command}: warning: {message}", file=sys.stderr, flush=True)
            return handler(args)
    except BrokenPipeError:             # `fastdl info | head -2`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (FastDLError, OSError, ValueError) as exc:      # OSError: a file or folder that failed, named
        msg = str(exc)
        for flag, api in (("backend", "backend"), ("data", "root"), ("out", "out")):     # speak in flags to a CLI user
            if getattr(args, flag, None):
                msg = msg.replace(f"{api}={getattr(args, flag)!r}", f"--{flag} {getattr(args, flag)}")
        print(f"fastdl {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:          # Ctrl-C, or SIGTERM (fastdl.signals)
        word, status = how_stopped(exc)
        print(f"fastdl {args.command}: {word}", file=sys.stderr)
        return status


def run() -> None:
    """The ``fastdl`` command (and ``python -m fastdl``): ``main()``, then a quick exit
    (``helpers.quick_exit``: the interpreter's teardown took 0.12-0.2 s with Numba loaded)."""
    from .helpers import quick_exit
    quick_exit(main())


if __name__ == "__main__":
    run()
