"""What a training run records: its settings, every step's loss, each evaluation's accuracies
and its timings (``Trainer.fit`` fills it; ``fastdl train`` writes it as history.json)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from .errors import FileFormatError
from .io import named_file
from .validate import json_number


@dataclass(repr=False)
class History:
    backend: str
    dtype: str
    device: str
    batch_size: int
    sampling: str
    seed: int | None
    steps: int = 0
    loss: list = field(default_factory=list)          # one float per step
    epoch: list = field(default_factory=list)         # epochs completed at each evaluation (may be fractional at the end)
    epoch_step: list = field(default_factory=list)    # step count at each evaluation
    train_acc: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    seconds: float = 0.0                               # wall time of fit(), evaluation included, compile not
    train_seconds: float = 0.0                         # wall time of the steps alone
    compile_seconds: float = 0.0                       # this process's compile before the first step (warm_up)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["final_train_acc"] = self.train_acc[-1] if self.train_acc else None
        d["final_test_acc"] = self.test_acc[-1] if self.test_acc else None
        return d

    @classmethod
    def load(cls, path) -> "History":
        """A run's history.json (what ``fastdl train`` writes) back as a History, to plot or to
        compare runs; the run's other settings in that file (network, optimizer) are not kept.
        JSON only; the whole file is checked first, and anything out of place is refused naming
        the field (FileFormatError)."""
        path = named_file(path, "history.json")
        try:
            d = json.loads(path.read_bytes())
        except (UnicodeDecodeError, ValueError) as exc:       # JSONDecodeError is a ValueError
            raise FileFormatError(f"{path}: not a history.json ({exc})") from None
        where = f"{path}:"
        if not isinstance(d, dict):
            raise FileFormatError(f"{where} not a history.json (it holds a JSON {type(d).__name__}, not an object)")
        d.setdefault("compile_seconds", 0.0)        # older files lack it
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise FileFormatError(f"{where} not a history.json: it lacks {', '.join(missing)}")
        for name in ("backend", "dtype", "device", "sampling"):
            if not isinstance(d[name], str):
                raise FileFormatError(f"{where} {name} is {d[name]!r}; expected a string")
        for name, low in (("batch_size", 1), ("steps", 0), ("seed", 0)):
            if not (name == "seed" and d[name] is None) and not (json_number(d[name], whole=True) and d[name] >= low):
                raise FileFormatError(f"{where} {name} is {d[name]!r}; expected an integer >= {low}"
                                      + (", or null" if name == "seed" else ""))
        if not (isinstance(d["loss"], list) and all(json_number(v) for v in d["loss"])):
            raise FileFormatError(f"{where} loss is not a list of finite numbers")
        if len(d["loss"]) != d["steps"]:
            raise FileFormatError(f"{where} loss holds {len(d['loss'])} values for {d['steps']} steps; expected one a step")
        try:
            check_curves(d, d["steps"])
        except ValueError as exc:
            raise FileFormatError(f"{where} {exc}") from None
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def plot(self, path=None):
        """The curves ``fastdl train`` writes as curves.png (loss per step, accuracy per
        evaluation) as a matplotlib Figure (Jupyter shows it, as any figure, once pyplot is
        imported there), written to ``path`` (a PNG) too if given. Needs matplotlib
        (``pip install "fastdl[plot]"``); changes no matplotlib setting of the caller's."""
        from .curves import draw, figure
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ImportError('History.plot needs matplotlib: pip install "fastdl[plot]"') from None
        record = self.to_dict()
        return figure(record) if path is None else draw(record, path, keep=True)

    def __repr__(self) -> str:
        """A line, not the 10,000 losses of a run (a notebook shows the value fit() returns)."""
        last = lambda values, fmt: format(values[-1], fmt) if values else "-"
        return (f"History({self.backend}/{self.dtype}, {self.steps} steps of batch {self.batch_size}, "
                f"{len(self.epoch)} evaluations; loss {last(self.loss, '.4f')}, train_acc "
                f"{last(self.train_acc, '.4f')}, test_acc {last(self.test_acc, '.4f')}; {self.seconds:.2f} s)")


def check_curves(d: dict, steps: int) -> None:
    """A saved run's evaluations and timings (history.json, a checkpoint's history) checked
    before any is used: ``epoch`` and ``epoch_step`` (at most ``steps``) as long as each other,
    each accuracy in [0, 1] and as long, or empty (none taken), times finite and >= 0.
    ValueError naming the field."""
    def numbers(name, high, whole=False):
        v = d[name]
        if not (isinstance(v, list) and all(json_number(x, whole) and 0 <= x <= high for x in v)):
            kind = "integers" if whole else "numbers"
            raise ValueError(f"{name} is not a list of {kind} in [0, {high:g}]")
        return v
    n = len(numbers("epoch", math.inf))
    if len(numbers("epoch_step", steps, whole=True)) != n:
        raise ValueError(f"epoch_step holds {len(d['epoch_step'])} values; epoch holds {n}")
    for name in ("train_acc", "test_acc"):
        if len(numbers(name, 1.0)) not in (0, n):
            raise ValueError(f"{name} holds {len(d[name])} values; expected {n} (one an evaluation) or none")
    for name in ("seconds", "train_seconds", "compile_seconds"):
        if name in d and not (json_number(d[name]) and d[name] >= 0):
            raise ValueError(f"{name} is {d[name]!r}; expected a number of seconds >= 0")
