"""``fastdl train`` means what the API means (hypothesis): random combinations of its flags run
through the command, and the same run built with the Python API from the flags' documented
meanings (README, ``fastdl train --help``) gives the same losses, accuracies and parameters."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdl
from fastdl.backends import backend_status
from fastdl.cli import main

DEFAULT_LR = {"sgd": 0.1, "adam": 0.001}        # README: 0.1 for SGD, 0.001 for Adam, 0.01 otherwise
OPTIMIZERS = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad",
              "rmsprop": "RMSprop", "adam": "Adam"}


@st.composite
def flag_sets(draw):
    opt = draw(st.sampled_from(sorted(OPTIMIZERS)))
    f = dict(
        backend=draw(st.sampled_from(["numpy", "numba"])),
        hidden=draw(st.lists(st.integers(1, 30), min_size=0, max_size=2)),   # [] leaves the flag out: 50
        activation=draw(st.sampled_from([None, "relu", "sigmoid"])),
        init=draw(st.sampled_from([None, "0.01", "0.1", "he", "xavier"])),
        weight_decay=draw(st.sampled_from([None, 0.0, 0.1])), dropout=draw(st.sampled_from([None, 0.2])),
        batch_norm=draw(st.booleans()), optimizer=None if opt == "sgd" and draw(st.booleans()) else opt,
        momentum=draw(st.sampled_from([None, 0.5])) if opt in ("momentum", "nesterov") else None,
        lr=draw(st.sampled_from([None, 0.05])), dtype=draw(st.sampled_from([None, "float64"])),
        seed=draw(st.sampled_from([None, 3])), sampling=draw(st.sampled_from([None, "replacement"])),
        train_size=draw(st.integers(20, 300)))
    f["batch_size"] = draw(st.sampled_from([None, draw(st.integers(1, f["train_size"]))]))
    f["length"] = draw(st.sampled_from([("--iters", draw(st.integers(1, 25))),
                                        ("--epochs", draw(st.sampled_from([0.5, 1.0, 1.5])))]))
    return f


def command(f, data, out) -> list[str]:
    argv = ["train", "--data", str(data), "--out", str(out), "--no-progress", "--train-size", str(f["train_size"]),
            "--backend", f["backend"], f["length"][0], str(f["length"][1])]
    if f["hidden"]:
        argv += ["--hidden", *map(str, f["hidden"])]
    for flag in ("activation", "init", "weight_decay", "dropout", "optimizer", "momentum", "lr", "dtype", "seed",
                 "sampling", "batch_size"):
        if f[flag] is not None:
            argv += [f"--{flag.replace('_', '-')}", str(f[flag])]
    return argv + (["--batch-norm"] if f["batch_norm"] else [])


def api_run(f, data):
    """The run the flags describe, built from their documented meanings and defaults."""
    dtype = f["dtype"] or "float32"
    (x, t), (xt, tt) = fastdl.datasets.load_mnist(root=data, dtype=dtype, download=False)
    x, t = x[:f["train_size"]], t[:f["train_size"]]
    init = f["init"] or "0.01"
    net = fastdl.MultiLayerNet(784, f["hidden"] or [50], 10, activation=f["activation"] or "relu",
                               weight_init_std=float(init) if init[0].isdigit() else init,
                               weight_decay=f["weight_decay"] or 0.0, dropout=f["dropout"] or 0.0,
                               batch_norm=f["batch_norm"], dtype=dtype, backend=f["backend"], seed=f["seed"] or 0)
    name = f["optimizer"] or "sgd"
    hyper = {"lr": f["lr"] or DEFAULT_LR.get(name, 0.01)}
    if f["momentum"] is not None:
        hyper["momentum"] = f["momentum"]
    opt = fastdl.optimizers.get_optimizer(OPTIMIZERS[name], **hyper)
    length = {"iterations" if f["length"][0] == "--iters" else "epochs": f["length"][1]}
    tr = fastdl.Trainer(net, opt, x, t, xt, tt, batch_size=f["batch_size"] or min(100, f["train_size"]),
                        sampling=f["sampling"] or "shuffle", seed=f["seed"] or 0, progress=False, **length)
    return tr.fit(), net


@settings(max_examples=max(5, settings.default.max_examples // 10),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(f=flag_sets())
def test_train_flags_mean_what_the_api_means(mnist_root, capsys, f):
    if not backend_status(f["backend"])[0]:
        pytest.skip(f"backend {f['backend']!r} unavailable: {backend_status(f['backend'])[1]}")
    with tempfile.TemporaryDirectory() as out, np.errstate(all="ignore"):
        if f["batch_size"] is None and f["train_size"] < 100:
            # the default batch of 100 is refused where the training set is smaller, and said so
            assert main(command(f, mnist_root, out)) == 2
            assert "larger than the training set" in capsys.readouterr().err
            return
        assert main(command(f, mnist_root, out)) == 0, capsys.readouterr().err
        capsys.readouterr()
        record = json.loads((Path(out) / "history.json").read_text())
        saved = fastdl.load(Path(out) / "params.npz", backend="numpy").params_numpy()
    h, net = api_run(f, mnist_root)
    assert record["network"] == net.config() and record["steps"] == h.steps
    assert record["loss"] == h.loss and record["train_acc"] == h.train_acc and record["test_acc"] == h.test_acc
    for k, v in net.params_numpy().items():
        np.testing.assert_array_equal(saved[k], v, err_msg=k)
