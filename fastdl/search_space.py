"""What a sweep searches: ``--search`` and ``--fix`` parsed, checked before a study starts, and
turned into each trial's network, optimizer and batch size (``fastdl.search`` runs the study).

A value no trial could use (a batch of 0, an unknown optimizer, a momentum for SGD) is refused
with the flag that gave it: each trial would otherwise fail alike, recorded as an error while
the study went on.
"""

from __future__ import annotations

import math

BOOK_SPACE = {"lr": ("log", 1e-6, 1e-2), "weight_decay": ("log", 1e-8, 1e-4)}
# A trial's values where a name is neither searched nor fixed (``search_report`` spells them out
# in the retrain command, where `fastdl train`'s own defaults differ)
TRIAL_DEFAULTS = {"lr": 0.01, "optimizer": "sgd", "init": "relu"}
# What a trial may set, searched or fixed (the flags of `fastdl train` that shape a run)
KNOWN = {"lr": float, "weight_decay": float, "dropout": float, "batch_size": int, "momentum": float,
         "optimizer": str, "activation": str, "batch_norm": bool, "init": str}


def parse_space(specs) -> dict:
    """``name=log:LOW:HIGH``, ``name=float:LOW:HIGH``, ``name=int:LOW:HIGH``, ``name=choice:A,B``."""
    space = {}
    for spec in specs:
        name, _, rule = spec.partition("=")
        kind, _, rest = rule.partition(":")
        if name not in KNOWN or kind not in ("log", "float", "int", "choice") or not rest:
            raise ValueError(f"--search {spec!r}: use NAME=log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH or "
                             f"choice:A,B,... with NAME one of {', '.join(KNOWN)}")
        if kind == "choice":
            space[name] = ("choice", *rest.split(","))
        else:
            try:
                lo, hi = (float(v) for v in rest.split(":"))
            except ValueError:                  # not numbers, or not two of them
                raise ValueError(f"--search {spec!r}: LOW and HIGH must be two numbers, as in "
                                 f"{name}={kind}:{'1e-4:1e-1' if kind == 'log' else '1:4'}") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and (kind != "log" or lo > 0)):
                raise ValueError(f"--search {spec!r}: LOW < HIGH, finite (and positive for log)")
            space[name] = (kind, lo, hi)
    return space


def parse_fixed(specs) -> dict:
    fixed = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        if name not in KNOWN or not value:
            raise ValueError(f"--fix {spec!r}: use NAME=VALUE with NAME one of {', '.join(KNOWN)}")
        kind = KNOWN[name]
        try:
            fixed[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise ValueError(f"--fix {spec!r}: {name} takes {'an integer' if kind is int else 'a number'}") from None
    return fixed


def suggest(trial, space):
    out = {}
    for name, (kind, *args) in space.items():
        if kind == "choice":
            out[name] = trial.suggest_categorical(name, list(args))
        elif kind == "int":
            out[name] = trial.suggest_int(name, int(args[0]), int(args[1]))
        else:
            out[name] = trial.suggest_float(name, args[0], args[1], log=kind == "log")
    return out


def build(p: dict, hidden, backend, seed):
    """A trial's network, optimizer and batch size (None: the Trainer's) from its values ``p``."""
    from . import networks, optimizers
    from .validate import positive_int
    p = {**TRIAL_DEFAULTS, **p}
    init = p["init"]
    try:
        init = float(init)
    except ValueError:
        pass
    net = networks.MultiLayerNet(784, hidden, 10, activation=p.get("activation", "relu"), weight_init_std=init,
                                 weight_decay=p.get("weight_decay", 0.0), dropout=p.get("dropout", 0.0),
                                 batch_norm=p.get("batch_norm", False), backend=backend, seed=seed)
    extra = {"momentum": p["momentum"]} if "momentum" in p else {}
    opt = optimizers.get_optimizer(p["optimizer"], lr=p["lr"], **extra)
    batch = p.get("batch_size")
    return net, opt, None if batch is None else positive_int(batch, "batch_size")


def check_values(space: dict, fixed: dict) -> None:
    """Every fixed value, and each searched one at both ends of its range (every choice), builds
    a trial: a value no trial could use is refused before the study starts, not in every trial."""
    ends = {name: args if kind == "choice" else [int(a) for a in args] if kind == "int" else args
            for name, (kind, *args) in space.items()}
    base = {**fixed, **{name: values[0] for name, values in ends.items()}}   # the others at one end
    edges = [("--fix", name, v) for name, v in fixed.items()]
    edges += [("--search", name, v) for name, values in ends.items() for v in values]
    for flag, name, v in edges:
        try:
            build({**base, name: v}, [1], "numpy", 0)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{flag} {name}: {v!r} cannot be used ({exc})") from None
