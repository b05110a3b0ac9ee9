"""curves.png of a training run (loss per step, accuracy per epoch), drawn by a helper process.

Importing matplotlib and drawing take about 0.7 s, half of the book's training loop on numba.
``fastdl train`` starts the helper first (``Helper``): it imports matplotlib on another core
while the run imports its backend and loads MNIST, then waits, and once the run ends only the
drawing itself remains. The helper runs niced, so it never slows the training steps, and it
holds no data of the run but the curves it is sent.

Run as ``python -m fastdl.curves PATH`` it is that helper: it reads one JSON record (the run's
history) on stdin and writes PATH, or exits at once with status 3 when matplotlib is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from . import helpers

MISSING = 3                  # the helper's exit status when matplotlib is not installed
TIMEOUT = 120                # seconds the run waits for its plot before giving up on it
DPI = 100


def draw(record: dict, path, keep: bool = False):
    """Write the curves of ``record`` (a ``History.to_dict()``) to ``path``, atomically; return
    the path, or with ``keep`` the figure."""
    fig = figure(record)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return fig if keep else path


def agg_figure(**kw):
    """A matplotlib ``Figure(**kw)`` drawn by Agg, made without pyplot: no process-wide backend
    switch (``matplotlib.use``) and no figure kept open, so a caller's notebook or window backend
    is left as it was. Every plot fastdl writes is made this way."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def figure(record: dict):
    """The figure ``draw`` writes."""
    fig = agg_figure(figsize=(10, 4))
    a, b = fig.subplots(1, 2)
    # margins fixed for this size and font: tight_layout measured every label for 38 ms, a
    # quarter of the drawing (timed ad hoc); these leave room for tick labels of up to six digits,
    # past which matplotlib writes an exponent above the axis instead
    fig.subplots_adjust(left=0.085, right=0.98, bottom=0.12, top=0.92, wspace=0.25)
    loss = record["loss"]
    a.plot(range(1, len(loss) + 1), loss, lw=0.5)
    a.set_xlabel("step"); a.set_ylabel("loss"); a.set_title(f"loss ({record['backend']}, {record['dtype']})")
    if record["train_acc"]:
        b.plot(record["epoch"], record["train_acc"], marker="o", label="train")
    if record["test_acc"]:
        b.plot(record["epoch"], record["test_acc"], marker="s", ls="--", label="test")
    accs = record["train_acc"] + record["test_acc"]
    if accs:                             # where the curves live, not 0-1 (they sit near 0.9-0.98)
        lo, hi = min(accs), max(accs)
        pad = max(0.005, 0.1 * (hi - lo))
        b.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    b.set_xlabel("epoch"); b.set_ylabel("accuracy"); b.set_title("accuracy")
    if accs:
        b.legend()
    return fig


class Helper(helpers.Owner):
    """The plotting helper of one run: ``Helper(path)`` starts it, ``finish(record)`` has it draw
    and says how that went; leaving the ``with`` block ends it in any case (an error or Ctrl-C
    in the run leaves no process behind)."""

    def __init__(self, path):
        self.path = Path(path)
        self.proc = None
        if importlib.util.find_spec("matplotlib") is None or helpers.spare_cores() < 1:
            return
        self.proc = helpers.spawn("fastdl.curves", str(self.path), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)   # None: finish() draws here instead

    def finish(self, record: dict) -> tuple[Path | None, str]:
        """Draw ``record``. Returns (the file, "") when written, (None, why) when not."""
        if self.proc is None:
            if importlib.util.find_spec("matplotlib") is None:
                return None, 'install matplotlib (pip install "fastdl[plot]") for curves.png'
            try:
                return draw(record, self.path), ""
            except Exception as exc:  # noqa: BLE001 - the run's results are saved; say why its plot is not
                return None, f"{self.path} not drawn: {type(exc).__name__}: {exc}"
        try:
            _, err = self.proc.communicate(json.dumps(record).encode(), timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.close()
            return None, f"{self.path} not drawn: the plotting process took over {TIMEOUT} s and was stopped"
        if self.proc.returncode == 0:
            return self.path, ""
        if self.proc.returncode == MISSING:
            return None, 'install matplotlib (pip install "fastdl[plot]") for curves.png'
        lines = err.decode(errors="replace").strip().splitlines()
        return None, f"{self.path} not drawn: {lines[-1] if lines else f'exit status {self.proc.returncode}'}"



def _helper(path: str) -> int:
    if hasattr(os, "nice"):
        os.nice(10)             # it waits on the run, never the other way round
    try:
        for module in ("matplotlib.figure", "matplotlib.backends.backend_agg"):   # what draw() needs
            importlib.import_module(module)
    except ImportError:
        return MISSING
    data = sys.stdin.buffer.read()
    if not data:                # the run ended without results (an error, Ctrl-C)
        return 0
    draw(json.loads(data), path)
    return 0


if __name__ == "__main__":
    helpers.quick_exit(_helper(sys.argv[1]))
