import json
import subprocess
import sys

from fastdl.cli import main


def fastdl_cmd(*args, env=None):
    import os
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "fastdl.cli", *args], capture_output=True, text=True, env=e)


def test_train_writes_params_history_and_evaluates(mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--iters", "300", "--hidden", "30", "--data", str(mnist_root), "--out", str(out),
               "--no-progress", "--seed", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "epoch" in printed and "test_acc" in printed
    h = json.loads((out / "history.json").read_text())
    for key in ("train_acc", "test_acc", "final_test_acc", "seconds", "backend", "dtype"):
        assert key in h
    # the per-epoch curves survive, paired with their epochs
    assert len(h["epoch"]) == len(h["train_acc"]) == len(h["test_acc"]) >= 1
    assert h["final_test_acc"] == h["test_acc"][-1]
    assert h["backend"] == "numpy" and h["dtype"] == "float32" and h["final_test_acc"] > 0.8
    assert (out / "params.npz").is_file()
    assert main(["evaluate", str(out / "params.npz"), "--data", str(mnist_root)]) == 0
    assert f"test_acc {h['final_test_acc']:.4f}" in capsys.readouterr().out


def test_unknown_backend_is_one_clear_line_without_traceback():
    r = fastdl_cmd("train", "--backend", "pytroch", "--iters", "1")
    assert r.returncode == 2
    assert "unknown backend 'pytroch'" in r.stderr and "Traceback" not in r.stderr


def test_env_backend_error_names_the_variable():
    r = fastdl_cmd("train", "--iters", "1", env={"FASTDL_BACKEND": "pytorch"})
    assert r.returncode == 2 and "FASTDL_BACKEND='pytorch'" in r.stderr and "Traceback" not in r.stderr


def test_missing_data_is_a_clear_error(tmp_path):
    r = fastdl_cmd("evaluate", str(tmp_path / "missing.npz"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_bad_argument_is_rejected_by_the_parser():
    r = fastdl_cmd("train", "--batch-size", "0")
    assert r.returncode == 2 and "must be >= 1" in r.stderr


def test_info_lists_every_backend():
    r = fastdl_cmd("info")
    assert r.returncode == 0
    for name in ("numpy", "numba", "cupy"):
        assert f"  {name}" in r.stdout
    assert "numpy  usable" in r.stdout


def test_resume_continues_a_killed_run(mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--hidden", "20", "--data", str(mnist_root), "--out", str(out), "--no-progress",
              "--checkpoint-every", "100"]
    assert main(common + ["--iters", "200"]) == 0           # stands in for a run that stopped at 200
    capsys.readouterr()
    assert main(common + ["--iters", "300", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    h = json.loads((out / "history.json").read_text())
    assert h["steps"] == 300 and len(h["loss"]) == 300


def test_chapter6_flags_and_the_books_overfitting_setting(mnist_root, tmp_path, capsys):
    out = tmp_path / "run6"
    rc = main(["train", "--iters", "30", "--hidden", "20", "20", "--batch-norm", "--dropout", "0.2",
               "--weight-decay", "0.1", "--train-size", "300", "--data", str(mnist_root), "--out", str(out),
               "--no-progress"])
    assert rc == 0
    h = json.loads((out / "history.json").read_text())
    assert h["network"]["batch_norm"] is True and h["network"]["dropout"] == 0.2 and h["network"]["weight_decay"] == 0.1
    assert h["epoch_step"][0] == 3                         # 300 images, batch 100: 3 steps an epoch
    assert main(["evaluate", str(out / "params.npz"), "--data", str(mnist_root)]) == 0
