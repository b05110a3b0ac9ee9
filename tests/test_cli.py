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
    for key in ("train_acc", "test_acc", "seconds", "backend", "dtype"):
        assert key in h
    assert h["backend"] == "numpy" and h["dtype"] == "float32" and h["test_acc"] > 0.8
    assert (out / "params.npz").is_file()
    assert main(["evaluate", str(out / "params.npz"), "--data", str(mnist_root)]) == 0
    assert f"test_acc {h['test_acc']:.4f}" in capsys.readouterr().out


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
