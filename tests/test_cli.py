import importlib.util
import json
import subprocess

import numpy as np
import pytest
import sys

from fastdl.backends import backend_status
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
    if importlib.util.find_spec("matplotlib"):
        assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"{out / 'curves.png'}" in printed
    assert main(["evaluate", str(out / "params.npz"), "--data", str(mnist_root)]) == 0
    assert f"test_acc {h['final_test_acc']:.4f}" in capsys.readouterr().out


def test_the_main_job_on_each_accelerated_backend(accelerated, mnist_root, tmp_path, capsys):
    """``fastdl train --backend numba|cupy`` end to end (bytes, fused step, on cupy CUDA graphs),
    then ``fastdl evaluate`` on the same backend gives the run's final accuracy."""
    out = tmp_path / "run"
    assert main(["train", "--backend", accelerated.name, "--iters", "1200", "--data", str(mnist_root),
                 "--out", str(out), "--no-progress", "--seed", "1"]) == 0
    h = json.loads((out / "history.json").read_text())
    assert h["backend"] == accelerated.name and h["final_test_acc"] > 0.85
    # the compile is timed apart from the steps, and the printed line says the recorded figures
    printed = capsys.readouterr().out
    assert h["compile_seconds"] > 0 and 0 < h["train_seconds"] <= h["seconds"]
    assert f"ready in {h['compile_seconds']:.2f} s" in printed
    assert f"after {h['compile_seconds']:.2f} s compiling" in printed
    assert main(["evaluate", str(out / "params.npz"), "--data", str(mnist_root), "--backend", accelerated.name]) == 0
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


@pytest.mark.parametrize("command", ["train", "experiment", "sweep"])
def test_a_negative_seed_is_refused_naming_the_flag(command):
    r = fastdl_cmd(command, "--seed", "-1")
    assert r.returncode == 2 and "argument --seed: '-1' must be >= 0" in r.stderr and "Traceback" not in r.stderr


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


def test_resume_goes_on_with_another_backend(mnist_root, tmp_path, capsys, accelerated):
    out = tmp_path / "run"
    common = ["train", "--hidden", "20", "--data", str(mnist_root), "--out", str(out), "--no-progress",
              "--checkpoint-every", "100"]
    assert main([*common, "--iters", "200", "--backend", "numpy"]) == 0
    capsys.readouterr()
    assert main([*common, "--iters", "300", "--resume", "--backend", accelerated.name]) == 0
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


def test_mistakes_are_one_line_in_flags(mnist_root, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    cases = [(["--out", str(tmp_path / "afile")], "that is a file, not a folder"),
             (["--out", str(tmp_path / "afile" / "sub")], "cannot create that folder"),
             (["--batch-size", "70000"], "--batch-size 70000 is larger than the training set (60000 images)"),
             (["--checkpoint-every", "150"], "--checkpoint-every 150 must be a multiple of 100")]
    for extra, words in cases:
        rc = main(["train", "--data", str(mnist_root), "--out", str(tmp_path / "run"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and "Traceback" not in err, (extra, err)
    rc = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")])
    assert rc == 2 and f"(from --data {tmp_path / 'missing'}) does not exist" in capsys.readouterr().err
    for flag in ("--lr", "--epochs"):
        with pytest.raises(SystemExit) as exit_:
            main(["train", flag, "inf"])
        assert exit_.value.code == 2 and "must be a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("name, status, word", [("SIGINT", 130, "interrupted"),
                                                ("SIGTERM", 143, "terminated (SIGTERM)")])
def test_a_signal_stops_after_the_running_step_and_checkpoints_every_step_done(mnist_root, tmp_path, name, status,
                                                                                word):
    """Ctrl-C, or SIGTERM (a scheduler's stop, kill, timeout) mid-run: the run stops between two
    steps, writes a checkpoint holding exactly the steps done (not the last one due), names it
    and the resume command, and exits 128 + the signal's number; not a silent death."""
    import re
    import signal
    if not hasattr(signal, name) or sys.platform == "win32":
        pytest.skip(f"no {name} to send on this platform")
    sig = getattr(signal, name)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastdl", "train", "--backend", "numpy", "--iters", "1000000", "--hidden", "10",
           "--data", str(mnist_root), "--out", str(out), "--no-progress"]
    # SIGINT as a terminal leaves it (a script's background job, CI's, starts with it ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:            # the second epoch's line: mid-run, past a checkpoint
            if line.startswith("epoch 2 "):
                break
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err[-2000:]
    step = int(re.search(rf"fastdl train: {re.escape(word)} at step (\d+);", err).group(1))
    assert f"(step {step}) is written; continue with:" in err and "--resume" in err and "Traceback" not in err
    import fastdl

    def like_the_run(iterations):             # the command's defaults
        net = fastdl.MultiLayerNet(784, [10], 10, weight_init_std=0.01, seed=0)
        return fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), *fastdl.datasets.load_mnist(root=mnist_root)[0],
                              iterations=iterations, seed=0, progress=False)
    resumed = like_the_run(1_000_000).resume(out / "checkpoint.npz")
    assert resumed.step == step >= 1200
    straight = like_the_run(step)
    straight.fit()
    for k, v in straight.network.params_numpy().items():     # every step done, bit for bit
        np.testing.assert_array_equal(resumed.network.params_numpy()[k], v, err_msg=k)


def test_interrupt_names_the_checkpoint_and_the_resume_command(mnist_root, tmp_path, capsys, monkeypatch):
    import fastdl
    out = tmp_path / "run"
    args = ["train", "--iters", "1200", "--hidden", "10", "--data", str(mnist_root), "--out", str(out),
            "--no-progress", "--checkpoint-every", "100"]
    real = fastdl.trainer.Trainer._evaluate

    def interrupt(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(fastdl.trainer.Trainer, "_evaluate", interrupt)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 600" in err and "(step 500) is kept" in err
    assert "fastdl train " + " ".join(args[1:]) + " --resume" in err.replace("'", "")
    capsys.readouterr()
    assert main(["evaluate", str(out / "checkpoint.npz"), "--data", str(mnist_root)]) == 0   # no params.npz yet
    assert f"{out / 'checkpoint.npz'}: MultiLayerNet(784-10-10" in capsys.readouterr().out
    monkeypatch.setattr(fastdl.trainer.Trainer, "_evaluate", real)
    assert main(args + ["--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert main([*args[:-5], "--out", str(tmp_path / "fresh"), "--no-progress", "--resume"]) == 0
    assert "no checkpoint at" in capsys.readouterr().out


def test_a_failed_write_stops_the_run_in_one_line_naming_what_is_kept(mnist_root, tmp_path, capsys, monkeypatch):
    """A full disk at a checkpoint: what failed, where the run stopped, the checkpoint kept and the
    command that continues (it was a traceback); any other command's failed file, one line too."""
    import errno
    import fastdl.checkpoints
    import fastdl.cli
    import fastdl.trainer
    out = tmp_path / "run"
    args = ["train", "--iters", "500", "--hidden", "10", "--data", str(mnist_root), "--out", str(out),
            "--no-progress", "--checkpoint-every", "100"]
    real, calls = fastdl.checkpoints.write_arrays, []

    def full_disk(path, *rest):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device")
        return real(path, *rest)
    monkeypatch.setattr(fastdl.checkpoints, "write_arrays", full_disk)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastdl train: error: [Errno 28] cannot write") and "Traceback" not in err
    assert "the run stopped at step 300" in err and "(step 200) is kept" in err and "--resume" in err
    monkeypatch.setattr(fastdl.checkpoints, "write_arrays", real)
    assert main(args + ["--resume"]) == 0 and "resumed from" in capsys.readouterr().out
    # the write at a stop fails: the checkpoint before it is the one kept, not "written"
    calls.clear()
    monkeypatch.setattr(fastdl.checkpoints, "write_arrays", full_disk)

    def ctrl_c_at_200(self, signals):              # as Ctrl-C during step 200 would ask
        if self.step >= 200 and signals.pending is None:
            signals.pending = KeyboardInterrupt()
        return signals.pending is not None
    monkeypatch.setattr(fastdl.trainer.Trainer, "_stopping", ctrl_c_at_200)
    assert main([*args[:-5], "--out", str(tmp_path / "stop"), "--no-progress", "--checkpoint-every", "100"]) == 2
    err = capsys.readouterr().err          # writes: step 100, 200, then the stop's (the third) fails
    assert "the run stopped at step 200" in err and "(step 200) is kept" in err, err

    def unreadable(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "params.npz"))
    monkeypatch.setattr(fastdl.cli, "cmd_evaluate", unreadable)
    assert main(["evaluate", str(tmp_path / "params.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastdl evaluate: error: [Errno 13] Permission denied: ") and "Traceback" not in err


def test_small_things_a_user_sees(tmp_path):
    import os
    import fastdl
    from fastdl.cli_train import epochs_text
    assert [epochs_text(e) for e in (16.666667, 1.0, 0.833333, 1 / 600)] == ["16.67", "1", "0.83", "0.0017"]
    r = subprocess.run(f"{sys.executable} -m fastdl info | head -1", shell=True, capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-W", "error", "-m", "fastdl.perceptron"], capture_output=True, text=True)
    assert r.returncode == 0 and "RuntimeWarning" not in r.stderr
    old = os.umask(0o022)
    try:
        path = fastdl.save(fastdl.TwoLayerNet(4, 3, 2), tmp_path / "p.npz")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert main(["evaluate", str(tmp_path)]) == 2


def test_the_command_exits_quickly_yet_runs_exit_handlers_and_keeps_its_status(tmp_path):
    """``run()`` skips the interpreter's teardown: handlers registered with atexit still run,
    output written without a newline still arrives, the status is main()'s, and a non-daemon
    thread still running is waited for as usual."""
    prog = ("import atexit, sys, threading, time\n"
            "atexit.register(lambda: print('handler ran', end=''))\n"
            "if sys.argv[1] == 'thread':\n"
            "    threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
            "sys.argv = ['fastdl', *sys.argv[2:]]\n"
            "from fastdl.cli import run\n"
            "run()\n")
    r = subprocess.run([sys.executable, "-c", prog, "-", "info"], capture_output=True, text=True)
    assert r.returncode == 0 and "fastdl" in r.stdout and r.stdout.endswith("handler ran")
    r = subprocess.run([sys.executable, "-c", prog, "-", "train", "--backend", "nosuch"], capture_output=True, text=True)
    assert r.returncode == 2 and "nosuch" in r.stderr and r.stdout.endswith("handler ran")
    r = subprocess.run([sys.executable, "-c", prog, "thread", "info"], capture_output=True, text=True)
    assert r.returncode == 0 and "thread done" in r.stdout and r.stdout.endswith("handler ran")
    r = subprocess.run([sys.executable, "-m", "fastdl", "train", "--backend", "nosuch"], capture_output=True, text=True)
    assert r.returncode == 2 and "--backend nosuch" in r.stderr


def test_a_helper_process_imports_this_fastdl_whatever_its_working_folder(tmp_path):
    """``fastdl train``'s helpers run this fastdl, not one that sits in the working folder."""
    from fastdl import helpers
    (tmp_path / "fastdl").mkdir()
    (tmp_path / "fastdl" / "__init__.py").write_text("raise SystemExit('the wrong fastdl')\n")
    proc = helpers.spawn("fastdl.perceptron", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"AND" in out


def test_ending_a_helper_stops_it_and_closes_its_pipes():
    """Left to the garbage collector, each pipe held a descriptor (ResourceWarning under -X dev)."""
    from fastdl import helpers
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"unsent")          # buffered: closing must not fail on it
    helpers.end(proc)
    assert proc.returncode is not None
    assert proc.stdin.closed and proc.stdout.closed and proc.stderr.closed
    helpers.end(proc)                    # twice is harmless
    helpers.end(None)


def test_work_beside_the_run_returns_its_value_or_raises_its_error():
    """helpers.Beside: what fastdl train reads MNIST with while it imports the backend."""
    import threading
    from fastdl import helpers
    from fastdl.errors import DatasetError
    import gc
    import weakref

    import numpy as np
    started = threading.Event()
    work = helpers.Beside(lambda: (started.set(), threading.current_thread().name)[1])
    assert started.wait(10)
    assert work.result() == "fastdl-beside"                                          # its own thread
    held = helpers.Beside(lambda: np.zeros(3))
    value = held.result()
    ref = weakref.ref(value)
    del value
    gc.collect()
    assert ref() is None                     # handed over: the caller's del frees it (fastdl train's data)

    def fails():
        raise DatasetError("no MNIST here")
    with pytest.raises(DatasetError, match="no MNIST here"):
        helpers.Beside(fails).result()


def test_missing_data_is_one_clear_line_and_a_bad_backend_still_comes_first(tmp_path):
    """MNIST loads beside the backend's import: its error is the same line as before, and a bad
    backend's error still wins."""
    empty = tmp_path / "nothing"
    empty.mkdir()
    r = fastdl_cmd("train", "--backend", "numpy", "--iters", "1", "--data", str(empty), "--out", str(tmp_path / "o"),
                   env={"FASTDL_MNIST_MIRRORS": "http://127.0.0.1:9/"})   # refused at once
    assert r.returncode != 0 and "Traceback" not in r.stderr and str(empty) in r.stderr
    r = fastdl_cmd("train", "--backend", "pytroch", "--iters", "1", "--data", str(empty), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown backend 'pytroch'" in r.stderr and "Traceback" not in r.stderr


def test_train_without_a_terminal_prints_epoch_lines_and_never_imports_tqdm(mnist_root, tmp_path):
    """stderr a pipe (a log file, a job scheduler): no bar, so tqdm is not even imported."""
    code = ("import sys; from fastdl.cli import main; rc = main(sys.argv[1:]); "
            "print('tqdm loaded' if 'tqdm' in sys.modules else 'no tqdm'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "train", "--backend", "numpy", "--iters", "600", "--hidden", "20",
                        "--data", str(mnist_root), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "no tqdm" in r.stdout and "epoch 1  step 600" in r.stdout


@pytest.mark.parametrize("command", [["train", "--iters", "1"], ["experiment", "overfit"], ["sweep", "--trials", "1"],
                                     ["bench", "--quick", "-k", "nothing"]])
def test_an_out_that_is_a_file_is_one_line_for_every_command(tmp_path, capsys, command):
    """experiment, sweep and bench ended in a FileExistsError traceback."""
    afile = tmp_path / "params.npz"
    afile.write_bytes(b"kept")
    assert main([*command, "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert "that is a file, not a folder" in err and "Traceback" not in err
    assert afile.read_bytes() == b"kept"


@pytest.mark.parametrize("flags,sizes", [([], [50]), (["--hidden", "8", "6"], [8, 6]),
                                         (["--hidden", "8", "--hidden", "6"], [8, 6])])
def test_hidden_sizes_given_once_or_flag_by_flag(mnist_root, tmp_path, flags, sizes):
    """A repeated --hidden kept only its last value (argparse's default action)."""
    out = tmp_path / "run"
    assert main(["train", "--iters", "1", "--train-size", "200", *flags, "--data", str(mnist_root),
                 "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "history.json").read_text())["network"]["hidden_sizes"] == sizes


def test_momentum_is_for_the_optimizers_that_have_one(mnist_root, tmp_path, capsys):
    rc = main(["train", "--momentum", "0.5", "--data", str(mnist_root), "--out", str(tmp_path / "a")])
    assert rc == 2 and "--optimizer sgd with --momentum: SGD takes no momentum" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    out = tmp_path / "b"
    assert main(["train", "--optimizer", "nesterov", "--momentum", "0.5", "--iters", "100", "--hidden", "10",
                 "--data", str(mnist_root), "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "history.json").read_text())["optimizer"]["momentum"] == 0.5
    with pytest.raises(SystemExit):
        main(["train", "--optimizer", "momentum", "--momentum", "1.0"])
    assert "--momentum" in capsys.readouterr().err


def test_resume_with_other_settings_says_how_to_go_on(mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--iters", "200", "--data", str(mnist_root), "--out", str(out), "--no-progress"]
    assert main([*base, "--hidden", "10"]) == 0
    capsys.readouterr()
    compiles = ["--backend", "numba"] if backend_status("numba")[0] else []
    assert main([*base, "--hidden", "20", "--resume", *compiles]) == 2
    out_, err = capsys.readouterr()
    assert "checkpoint architecture differs from this trainer's: hidden_sizes [10] in the checkpoint, [20] here" in err
    assert "rerun with that run's flags, or without --resume" in err and "Traceback" not in err
    assert "kernels" not in out_        # refused before numba compiled anything for the new width
    (out / "checkpoint.npz").write_bytes(b"not a zip")
    assert main([*base, "--hidden", "10", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "not a fastdl checkpoint file" in err and "; rerun without --resume" in err


@pytest.mark.parametrize("args,words", [
    (["--iters", "abc"], "'abc' is not an integer"), (["--batch-size", "0"], "'0' must be >= 1"),
    (["--lr", "fast"], "'fast' is not a number"), (["--dropout", "1"], "--dropout"),
])
def test_flag_values_are_checked_by_the_parser_with_the_flag_named(capsys, args, words):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err and args[0] in err and "Traceback" not in err


def test_a_benchmark_selection_that_matches_nothing_says_so(tmp_path, capsys):
    """It said 'the benchmark run failed (pytest exit 5)'."""
    assert main(["bench", "--quick", "-k", "no_benchmark_is_called_this", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "no benchmark matches --select 'no_benchmark_is_called_this'" in err and "--collect-only" in err


def test_evaluate_refuses_a_network_not_made_for_mnist(tmp_path, capsys):
    """It said 'x has shape (10000, 784); expected (N, 4)', after loading MNIST."""
    import fastdl
    fastdl.save(fastdl.TwoLayerNet(4, 5, 3, seed=0), tmp_path / "small.npz")
    assert main(["evaluate", str(tmp_path / "small.npz"), "--data", str(tmp_path / "no-mnist-needed")]) == 2
    err = capsys.readouterr().err
    assert "for 4 inputs and 3 classes; MNIST has 784 pixels an image and 10 classes" in err


@pytest.mark.parametrize("argv,words", [
    (["train", "--iterations", "1200"], "unrecognized arguments: --iterations (did you mean --iters?) 1200"),
    (["train", "--num-epochs=3", "--foo"], "--num-epochs=3 (did you mean --epochs?) --foo;"),
    (["evaluate", "p.npz", "--data-dir", "d"], "--data-dir (did you mean --data?) d"),
    (["info", "extra"], "unrecognized arguments: extra;"),
])
def test_an_unknown_flag_is_named_by_its_command_with_the_closest_it_takes(capsys, argv, words):
    """The top-level parser reported it with the top-level usage (`fastdl [-h] [--version] ...`)
    and no hint, so `--iterations` from the Python API's name got nothing but an error."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err
    assert f"usage: fastdl {argv[0]}" in err and f"fastdl {argv[0]}: error:" in err
    assert f"'fastdl {argv[0]} --help' lists what it takes" in err


@pytest.mark.parametrize("command", ["train", "evaluate", "experiment", "sweep", "info", "bench"])
def test_every_commands_help_prints_as_written(capsys, command):
    """argparse formats help strings with % but not a description: sweep's said '20%%'."""
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"usage: fastdl {command}" in out and "%%" not in out and "%(" not in out


def test_a_second_run_into_a_folder_in_use_is_refused_until_the_first_ends(mnist_root, tmp_path, capsys):
    """Two `fastdl train` into one --out (the default runs/latest, from two terminals) mixed their
    params, history and checkpoint. The lock is the OS's: held by another process here, it goes
    with that process, however it ends."""
    import time
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from fastdl.run_folder import held, out_folder\n"
                               "with held(out_folder(Path(sys.argv[1])), 'train'):\n"
                               "    print('held', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        base = ["--data", str(mnist_root), "--out", str(out)]
        assert main(["train", "--iters", "100", "--no-progress", *base]) == 2
        err = capsys.readouterr().err
        assert f"--out {out}: another run is writing there now (fastdl train, process {holder.pid})" in err
        assert main(["experiment", "overfit", *base]) == 2
        assert "another run is writing there now" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [".fastdl.lock"]        # nothing of the refused runs
    finally:
        holder.kill()                                # no chance to unlock: the OS does it
        holder.wait()
    for _ in range(50):                              # the kernel lets go as the process is reaped
        if main(["train", "--iters", "100", "--no-progress", *base]) == 0:
            break
        time.sleep(0.1)
    else:
        pytest.fail(capsys.readouterr().err)
    assert (out / "params.npz").is_file()


def test_a_folder_whose_file_system_has_no_locks_runs_unguarded(tmp_path, monkeypatch):
    """Only 'held by another process' refuses a run; a file system without locks (ENOLCK on some
    network mounts) must not read as one."""
    import errno
    from fastdl import run_folder
    fcntl = pytest.importorskip("fcntl", reason="POSIX locks")

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with run_folder.held(run_folder.out_folder(tmp_path / "nfs"), "train") as out:
        assert out == tmp_path / "nfs"
    monkeypatch.undo()
    (tmp_path / "odd" / run_folder.LOCK).mkdir(parents=True)      # a lock file that cannot be opened
    with run_folder.held(tmp_path / "odd", "train") as out:
        assert out == tmp_path / "odd"


@pytest.mark.parametrize("argv,words", [
    ([], "train               train on MNIST"),                    # the whole help, with each command's line
    (["trian"], "unknown command 'trian' (did you mean 'train'?); the commands are train, evaluate,"),
    (["xyz"], "unknown command 'xyz'; the commands are train,"),
])
def test_no_command_shows_the_help_and_a_mistyped_one_the_closest(capsys, argv, words):
    """They printed argparse's 'the following arguments are required: command' and 'invalid
    choice' with the usage alone."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_a_signal_in_the_runs_last_step_still_writes_its_results(mnist_root, tmp_path, monkeypatch, capsys):
    """SIGTERM landing in the last step: the run is whole (its last evaluation done), so its
    params, history and plot are written, where it said to --resume a run that had nothing left."""
    import signal
    from fastdl.trainer import Trainer
    if sys.platform == "win32":
        pytest.skip("no SIGTERM to raise on this platform")
    real = Trainer._run_block

    def last_step_signalled(self, epoch_idx, n, losses, stop):
        done = real(self, epoch_idx, n, losses, stop)
        if self.step + done == self.total_steps:
            signal.raise_signal(signal.SIGTERM)
        return done
    monkeypatch.setattr(Trainer, "_run_block", last_step_signalled)
    out = tmp_path / "run"
    status = main(["train", "--iters", "250", "--hidden", "10", "--data", str(mnist_root), "--out", str(out),
                   "--no-progress"])
    printed, err = capsys.readouterr()
    assert status == 128 + signal.SIGTERM
    assert "fastdl train: terminated (SIGTERM) in the run's last step; the run is complete and its results are written" in err
    history = json.loads((out / "history.json").read_text())
    assert history["steps"] == 250 and history["epoch_step"][-1] == 250 and (out / "params.npz").is_file()
    assert "done in" in printed and "--resume" not in err
