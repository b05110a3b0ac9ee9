"""The book's chapter-6 experiments, on any backend: ``fastdl experiment overfit`` and
``fastdl experiment batchnorm``.

* ``overfit`` (the book's section 6.4): a 7-layer network (784-100x6-10) on the first 300
  training images, SGD lr 0.01, batch 100, three ways: as is and with weight decay 0.1 (201
  epochs), with Dropout 0.2 (301 epochs) (the book's values). The book shows train accuracy reaching ~1.0 while test
  accuracy stalls far below, and both regularisers narrowing that gap.
* ``batchnorm`` (figure 6-19): a 5x100 network on the first 1000 training images, SGD lr 0.01,
  batch 100, 20 epochs, for 16 initial weight scales from 1 to 1e-4, with and without Batch Norm.
  The book shows Batch Norm learning faster at almost every scale, and learning at scales where
  the plain network does not learn at all.

Each writes ``<name>.json`` (every curve) and ``<name>.png`` into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import datasets, networks, optimizers
from .curves import agg_figure
from .errors import DivergenceError
from .io import atomic_write_bytes
from .trainer import Trainer


def _run(net, x, t, xt, tt, epochs, seed):
    """One training run; a run whose loss leaves the finite numbers (the plain network at large
    initial scales does, as the book's) is kept with its curves so far and the step it diverged."""
    tr = Trainer(net, optimizers.SGD(lr=0.01), x, t, xt, tt, epochs=epochs, batch_size=100, seed=seed,
                 progress=False, sampling="replacement")
    diverged = None
    try:
        h = tr.fit()
    except DivergenceError as exc:
        h, diverged = tr.history, exc.step
    return {"epoch": h.epoch, "train_acc": h.train_acc, "test_acc": h.test_acc, "fast_path": tr.fast_path,
            "diverged_at_step": diverged}


def _final(r, key="train_acc"):
    return f"{r[key][-1]:.3f}" if r["diverged_at_step"] is None else f"diverged at step {r['diverged_at_step']}"


def overfit(backend, root, seed: int = 0, train_size: int = 300, epochs=(201, 301), test_size=None,
            out: dict | None = None) -> dict:
    """``epochs``: without and with Dropout (the book's 201 and 301); ``test_size``: the first
    that many test images (all by default); ``out``: the dict to fill, a run at a time (what an
    interrupted experiment keeps)."""
    (x, t), (xt, tt) = datasets.load_mnist(root=root)
    x, t, xt, tt = x[:train_size], t[:train_size], xt[:test_size], tt[:test_size]
    settings = {"no regularisation": ({}, epochs[0]), "weight decay 0.1": ({"weight_decay": 0.1}, epochs[0]),
                "Dropout 0.2": ({"dropout": 0.2}, epochs[1])}
    out = {} if out is None else out
    for name, (kw, epochs) in settings.items():
        net = networks.MultiLayerNet(784, [100] * 6, 10, backend=backend, seed=seed, **kw)
        out[name] = _run(net, x, t, xt, tt, epochs, seed)
        r = out[name]
        print(f"{name:18s} final train_acc {_final(r)}  test_acc {_final(r, 'test_acc')}", flush=True)
    return out


def batchnorm(backend, root, seed: int = 0, epochs: int = 20, train_size: int = 1000, scales: int = 16,
              out: dict | None = None) -> dict:
    """``scales`` initial weight scales, log-spaced from 1 to 1e-4 (the book's 16); ``out``: the
    dict to fill, a scale (both networks) at a time."""
    (x, t), (xt, tt) = datasets.load_mnist(root=root)
    x, t = x[:train_size], t[:train_size]
    out = {} if out is None else out
    for scale in np.logspace(0, -4, num=scales):
        key = f"{scale:.3g}"
        r = {}
        for name, bn in (("Batch Norm", True), ("plain", False)):
            net = networks.MultiLayerNet(784, [100] * 5, 10, weight_init_std=float(scale), batch_norm=bn,
                                         backend=backend, seed=seed)
            r[name] = _run(net, x, t, xt[:1000], tt[:1000], epochs, seed)
        out[key] = r
        print(f"init std {key:>8s}: final train_acc  Batch Norm {_final(r['Batch Norm'])}  "
              f"plain {_final(r['plain'])}", flush=True)
    return out


def _plot(name, results, path: Path):
    rows = 1 if name == "overfit" else -(-len(results) // 4)
    try:
        fig = agg_figure(figsize=(4.2 * len(results), 3.4) if name == "overfit" else (12, 2.5 * rows))
    except ImportError:
        return None
    if name == "overfit":
        axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
        for ax, (setting, r) in zip(axes, results.items()):
            ax.plot(r["epoch"], r["train_acc"], label="train")
            ax.plot(r["epoch"], r["test_acc"], ls="--", label="test")
            ax.set_title(setting); ax.set_xlabel("epoch"); ax.legend(loc="lower right")
        axes[0].set_ylabel("accuracy")
    else:
        axes = fig.subplots(rows, 4, sharex=True, sharey=True, squeeze=False)
        for ax, (scale, r) in zip(axes.flat, results.items()):
            ax.plot(r["Batch Norm"]["epoch"], r["Batch Norm"]["train_acc"], label="Batch Norm")
            ax.plot(r["plain"]["epoch"], r["plain"]["train_acc"], ls="--", label="plain")
            ax.set_title(f"W init std {scale}", fontsize=9)
        for ax in list(axes.flat)[len(results):]:
            ax.set_visible(False)
        axes[0, 0].legend(fontsize=8)
        fig.supxlabel("epoch"); fig.supylabel("train accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def run(name: str, backend, root, out: Path, seed: int = 0, **sizes) -> int:
    """Experiment ``name`` at the book's sizes (``sizes``: the experiment's own keywords, to
    shrink it), its curves and plot into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        {"overfit": overfit, "batchnorm": batchnorm}[name](backend, root, seed, out=results, **sizes)
    except KeyboardInterrupt:           # Ctrl-C, SIGTERM: the runs that ended are kept, marked partial
        if results:
            _write(name, backend, seed, results, out, complete=False)
        raise
    _write(name, backend, seed, results, out, complete=True)
    return 0


def _write(name, backend, seed, results, out: Path, complete: bool) -> None:
    atomic_write_bytes(out / f"{name}.json", json.dumps({"experiment": name, "backend": backend.name, "seed": seed,
                                                          "complete": complete, "results": results}, indent=1).encode())
    png = _plot(name, results, out / f"{name}.png")
    print(f"wrote {out / (name + '.json')}" + (f", {png}" if png else " (install matplotlib for the plot)") +
          ("" if complete else f" (partial: {len(results)} {'setting' if name == 'overfit' else 'scale'}"
                               f"{'s' * (len(results) != 1)} ended before the stop)"), flush=True)
