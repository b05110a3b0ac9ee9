"""History.load: a run's history.json back as the History that wrote it, and anything out of place
in the file refused naming the field, before a History is made."""

import json
from dataclasses import asdict

import pytest

import fastdl
from fastdl.errors import FileFormatError
from fastdl.optimizers import SGD
from toy_data import blobs


@pytest.fixture(scope="module")
def record():
    """What ``fastdl train`` writes as history.json: the history and the run's settings."""
    x, t = blobs(250)
    net = fastdl.TwoLayerNet(8, 16, 3, seed=0)
    tr = fastdl.Trainer(net, SGD(lr=0.1), x, t, x[:50], t[:50], iterations=7, batch_size=100, seed=0, progress=False)
    h = tr.fit()
    r = h.to_dict()
    r.update({"network": net.config(), "optimizer": tr.optimizer.config(), "fastdl": fastdl.__version__})
    return h, r


def write(tmp_path, record, **changes):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({**record, **changes}))
    return path


def test_a_written_history_loads_as_the_one_that_wrote_it(record, tmp_path):
    h, r = record
    loaded = fastdl.History.load(write(tmp_path, r))
    assert asdict(loaded) == asdict(h)
    assert loaded.steps == 7 and len(loaded.loss) == 7 and loaded.epoch == [1.0, 2.0, 2.333333]
    older = {k: v for k, v in r.items() if k != "compile_seconds"}       # written before it was recorded
    assert fastdl.History.load(write(tmp_path, older)).compile_seconds == 0.0


def test_a_loaded_history_plots(record, tmp_path):
    pytest.importorskip("matplotlib")
    fig = fastdl.History.load(write(tmp_path, record[1])).plot()
    assert len(fig.axes) == 2 and fig.axes[0].lines[0].get_ydata().size == 7


@pytest.mark.parametrize("changes,words", [
    (dict(loss=[1.0, "2"]), "loss is not a list of finite numbers"),
    (dict(loss=[1.0]), "loss holds 1 values for 7 steps"),
    (dict(steps=-1), "steps is -1; expected an integer >= 0"),
    (dict(batch_size=0), "batch_size is 0; expected an integer >= 1"),
    (dict(seed="0"), "seed is '0'; expected an integer >= 0, or null"),
    (dict(backend=3), "backend is 3; expected a string"),
    (dict(epoch="1"), "epoch is not a list of numbers"),
    (dict(epoch_step=[3, 6, 99]), "epoch_step is not a list of integers in [0, 7]"),
    (dict(epoch_step=[3, 6]), "epoch_step holds 2 values; epoch holds 3"),
    (dict(test_acc=[0.5, 1.5, 0.5]), "test_acc is not a list of numbers in [0, 1]"),
    (dict(train_acc=[0.5]), "train_acc holds 1 values; expected 3 (one an evaluation) or none"),
    (dict(seconds=-1.0), "seconds is -1.0; expected a number of seconds >= 0"),
    (dict(train_seconds=True), "train_seconds is True"),
])
def test_a_damaged_history_is_refused_naming_the_field(record, tmp_path, changes, words):
    with pytest.raises(FileFormatError, match=r"history\.json: ") as err:
        fastdl.History.load(write(tmp_path, record[1], **changes))
    assert words in str(err.value)


def test_what_is_not_a_history_is_refused_saying_so(record, tmp_path):
    path = tmp_path / "history.json"
    for text, words in (("{not json", "not a history.json"), ("[1, 2]", "a JSON list, not an object"),
                        (json.dumps({"backend": "numpy"}), "it lacks dtype, device")):
        path.write_text(text)
        with pytest.raises(FileFormatError, match=words):
            fastdl.History.load(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")                     # curves.png given by mistake
    with pytest.raises(FileFormatError, match="not a history.json"):
        fastdl.History.load(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        fastdl.History.load(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="give the file inside it"):           # the run's folder
        fastdl.History.load(tmp_path)
    nan_loss = json.dumps({**record[1], "loss": [float("nan")] * 7})      # Python's json writes NaN
    path.write_text(nan_loss)
    with pytest.raises(FileFormatError, match="finite"):
        fastdl.History.load(path)
