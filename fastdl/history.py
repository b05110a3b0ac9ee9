"""What a training run records: its settings, every step's loss, each evaluation's accuracies
and its timings (``Trainer.fit`` fills it; ``fastdl train`` writes it as history.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
