"""curves.png: drawn by a helper process that ``fastdl train`` starts first (fastdl.curves)."""

import struct
import subprocess

import pytest

from fastdl import curves

RECORD = {"loss": [2.3, 1.1, 0.7, 0.4], "epoch": [1.0, 2.0], "train_acc": [0.91, 0.95],
          "test_acc": [0.90, 0.94], "backend": "numpy", "dtype": "float32"}


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_helper_draws_the_curves_from_any_working_folder(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)          # it imports fastdl from where this process found it
    path = tmp_path / "curves.png"
    with curves.Helper(path) as helper:
        assert helper.proc is not None
        assert helper.finish(RECORD) == (path, "")
    assert png_size(path) == (1000, 400)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]      # no temporary file left


def test_a_plot_that_cannot_be_written_says_why_and_leaves_nothing(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    path.mkdir()                         # a folder where the file should go
    with curves.Helper(path) as helper:
        png, why = helper.finish(RECORD)
    assert png is None and str(path) in why and "not drawn" in why and "Error" in why
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"] and not any(path.iterdir())


def test_the_helper_ends_with_its_run(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(KeyboardInterrupt):
        with curves.Helper(tmp_path / "curves.png") as helper:
            raise KeyboardInterrupt
    assert helper.proc.poll() is not None
    assert not (tmp_path / "curves.png").exists()


def test_without_matplotlib_in_the_helper_the_run_says_how_to_get_the_plot(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('matplotlib is not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    monkeypatch.setattr(curves.importlib.util, "find_spec", lambda name: object())   # the parent thinks it has one
    with curves.Helper(tmp_path / "curves.png") as helper:
        png, why = helper.finish(RECORD)
    assert helper.proc.returncode == curves.MISSING
    assert png is None and 'pip install "fastdl[plot]"' in why


def test_without_matplotlib_here_no_helper_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(curves.importlib.util, "find_spec", lambda name: None)
    with curves.Helper(tmp_path / "curves.png") as helper:
        assert helper.proc is None
        png, why = helper.finish(RECORD)
    assert png is None and 'pip install "fastdl[plot]"' in why


def test_no_process_to_spare_draws_in_this_one(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")

    def refuse(*a, **k):
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(subprocess, "Popen", refuse)
    path = tmp_path / "curves.png"
    with curves.Helper(path) as helper:
        assert helper.proc is None
        assert helper.finish(RECORD) == (path, "")
    assert png_size(path) == (1000, 400)


def test_a_run_without_accuracies_still_plots_its_loss(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    record = dict(RECORD, epoch=[], train_acc=[], test_acc=[])
    assert curves.draw(record, path) == path and png_size(path) == (1000, 400)


@pytest.mark.parametrize("peak", [2.5, 950_000.0, 3e9])
def test_every_label_lies_inside_the_figure(peak):
    """The margins are fixed (no tight_layout): they must hold the widest tick labels a loss
    curve can have (six digits; matplotlib writes an exponent past that) and the axis labels."""
    pytest.importorskip("matplotlib")
    record = dict(RECORD, loss=[peak, peak / 2, 0.0001, 0.4],
                  epoch=[0.167, 1.0], train_acc=[0.90123, 0.91234], test_acc=[0.93456, 0.97111])
    fig = curves.figure(record)
    fig.canvas.draw()                       # places the axis labels, as saving does
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    for ax in fig.axes:
        shown = lambda axis, lo_hi: [t.label1 for t in axis.get_major_ticks()        # ticks in view only
                                     if min(lo_hi) <= t.get_loc() <= max(lo_hi)]
        texts = ([ax.yaxis.label, ax.xaxis.label, ax.title, ax.yaxis.get_offset_text()]
                 + shown(ax.yaxis, ax.get_ylim()) + shown(ax.xaxis, ax.get_xlim()))
        for text in texts:
            if text.get_text() and text.get_visible():
                box = text.get_window_extent(renderer)
                assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, \
                    f"{text.get_text()!r} at {box} leaves the {width}x{height} figure"


def test_no_plot_of_fastdl_switches_the_callers_matplotlib_backend(tmp_path):
    """A notebook's or a window's backend is process-wide: the run curves, the chapter-6 plots,
    the sweep's and the benchmark report's charts draw on figures of their own (curves.agg_figure)
    and leave it as the caller set it."""
    matplotlib = pytest.importorskip("matplotlib")
    import json
    from fastdl import experiments, report, search_report
    from test_report import fake_run
    before = matplotlib.get_backend()
    matplotlib.use("svg")                        # any backend but Agg, which the plots draw with
    try:
        curve = {"epoch": [1.0, 2.0], "train_acc": [0.5, 0.7], "test_acc": [0.4, 0.6]}
        made = [experiments._plot("overfit", {"a": curve, "b": curve}, tmp_path / "overfit.png"),
                experiments._plot("batchnorm", {"1": {"Batch Norm": curve, "plain": curve}}, tmp_path / "bn.png"),
                search_report._plot([{"state": "COMPLETE", "epochs_run": 2, "param_lr": 1e-3, "param_weight_decay": 1e-6,
                                      "val_acc_curve": [0.3, 0.5], "number": 0}], tmp_path / "sweep.png"),
                curves.draw({"loss": [2.0, 1.0], "backend": "numpy", "dtype": "float32", **curve}, tmp_path / "c.png"),
                *report.charts(json.loads(json.dumps(fake_run())), tmp_path)]
        assert matplotlib.get_backend() == "svg"
        assert len(made) == 6 and all(p is not None and p.stat().st_size > 1000 for p in made)
    finally:
        matplotlib.use(before)


def test_a_history_plots_its_own_curves(tmp_path, monkeypatch):
    """For Python users (a notebook): the figure fastdl train draws, from fit()'s History."""
    pytest.importorskip("matplotlib")
    import sys
    import fastdl
    from toy_data import blobs
    x, t = blobs()
    h = fastdl.Trainer(fastdl.TwoLayerNet(8, 16, 3, seed=0), fastdl.optimizers.SGD(0.1), x, t, x[:60], t[:60],
                       iterations=21, progress=False).fit()
    fig = h.plot()
    loss, acc = fig.axes
    assert list(loss.lines[0].get_ydata()) == h.loss
    assert [list(line.get_ydata()) for line in acc.lines] == [h.train_acc, h.test_acc]
    assert h.plot(tmp_path / "h.png").axes and png_size(tmp_path / "h.png") == (1000, 400)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "fastdl\[plot\]"'):
        h.plot()
