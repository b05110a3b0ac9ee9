"""``fastdl experiment``: the book's chapter-6 experiments, shrunk (fewer epochs, images and
scales) so that every path of theirs runs here: the runs, a diverging run kept with its curves,
the JSON and the plot. The full-size runs' results are committed in docs/chapter6."""

import importlib.util
import json

import numpy as np
import pytest

from fastdl import experiments
from fastdl.cli import main

PLOTTING = importlib.util.find_spec("matplotlib") is not None


def test_overfit(backend, mnist_root, tmp_path, capsys):
    assert experiments.run("overfit", backend, mnist_root, tmp_path, 0, epochs=(2, 3), test_size=500) == 0
    printed = capsys.readouterr().out
    data = json.loads((tmp_path / "overfit.json").read_text())
    assert data["experiment"] == "overfit" and data["backend"] == backend.name and data["seed"] == 0
    results = data["results"]
    assert list(results) == ["no regularisation", "weight decay 0.1", "Dropout 0.2"]
    for name, epochs in zip(results, (2, 2, 3)):
        r = results[name]
        assert r["epoch"] == [float(e) for e in range(1, epochs + 1)] and r["diverged_at_step"] is None
        assert len(r["train_acc"]) == len(r["test_acc"]) == epochs and r["fast_path"]
        assert all(0 <= a <= 1 for a in r["train_acc"] + r["test_acc"])
        assert f"{name:18s} final train_acc {r['train_acc'][-1]:.3f}" in printed
    assert (tmp_path / "overfit.png").is_file() == PLOTTING


def test_batchnorm_keeps_a_diverging_run_with_its_curves(mnist_root, tmp_path, capsys):
    """At an initial scale of 1 the plain 5x100 network diverges at once (as in the book) while
    Batch Norm trains: the run is kept, with the step it diverged at, and the others go on."""
    from fastdl import get_backend
    experiments.run("batchnorm", get_backend("numpy"), mnist_root, tmp_path, 0, epochs=2, train_size=200, scales=3)
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "batchnorm.json").read_text())["results"]
    assert list(results) == [f"{s:.3g}" for s in np.logspace(0, -4, 3)] == ["1", "0.01", "0.0001"]
    plain, bn = results["1"]["plain"], results["1"]["Batch Norm"]
    assert plain["diverged_at_step"] is not None and bn["diverged_at_step"] is None and len(bn["train_acc"]) == 2
    assert f"plain diverged at step {plain['diverged_at_step']}" in printed
    for scale in ("0.01", "0.0001"):
        assert all(r["diverged_at_step"] is None and len(r["train_acc"]) == 2 for r in results[scale].values())
    assert (tmp_path / "batchnorm.png").is_file() == PLOTTING


def test_the_command_refuses_an_unknown_experiment(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "dropout"])
    assert exit_.value.code == 2 and "overfit" in capsys.readouterr().err


@pytest.mark.parametrize("name,stop_at,kept", [("overfit", 2, ["no regularisation"]), ("batchnorm", 3, ["1"])])
def test_a_stopped_experiment_keeps_the_runs_that_ended(mnist_root, tmp_path, monkeypatch, capsys, name, stop_at, kept):
    """Ctrl-C (or SIGTERM) in the middle of an experiment kept nothing of the minutes before it;
    now each run (for batchnorm each scale, both networks) that ended is written, marked partial."""
    from fastdl import get_backend
    real, calls = experiments._run, [0]

    def run_until(*args):
        calls[0] += 1
        if calls[0] == stop_at:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(experiments, "_run", run_until)
    sizes = dict(epochs=(2, 3), test_size=200) if name == "overfit" else dict(epochs=2, train_size=200, scales=3)
    with pytest.raises(KeyboardInterrupt):
        experiments.run(name, get_backend("numpy"), mnist_root, tmp_path, 0, **sizes)
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["complete"] is False and list(data["results"]) == kept
    unit = "setting" if name == "overfit" else "scale"
    assert f"(partial: 1 {unit} ended before the stop)" in capsys.readouterr().out
    assert (tmp_path / f"{name}.png").is_file() == PLOTTING
