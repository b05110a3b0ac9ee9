"""fastdl sweep on Optuna: a small study on a subset of MNIST, two worker processes on one
storage, pruning, a failing trial recorded, resuming, and the CLI's words."""

import importlib.util
import re
import json
import logging
import os
import sys

import pytest

pytest.importorskip("optuna", reason='Optuna is not installed (pip install "fastdl[sweep]")')

import fastdl  # noqa: E402
from fastdl.cli import main  # noqa: E402
from fastdl.errors import FastDLError  # noqa: E402
from fastdl.search import sweep  # noqa: E402
from fastdl.search_space import parse_space  # noqa: E402

SMALL = dict(hidden=[20], train_size=200, epochs=3, backend="numpy")


def states(out):
    return [t["state"] for t in json.loads((out / "trials.json").read_text())["trials"]]


def test_a_small_sweep_chooses_on_a_validation_split(mnist_root, tmp_path, monkeypatch):
    sizes = []
    real = fastdl.trainer.Trainer

    class Spy(real):
        def __init__(self, net, opt, x, t, x_test=None, t_test=None, **kw):
            sizes.append((len(x), None if x_test is None else len(x_test)))
            super().__init__(net, opt, x, t, x_test, t_test, **kw)
    monkeypatch.setattr(fastdl.trainer, "Trainer", Spy)
    summary = sweep(trials=4, out=tmp_path, data=mnist_root, **SMALL)
    assert summary["trials"] == 4 and summary["best"] is not None
    assert sizes == [(160, 40)] * 4                    # 80/20 of the 200 training images; no test set
    p = summary["best"]["params"]
    assert 1e-6 <= p["lr"] <= 1e-2 and 1e-8 <= p["weight_decay"] <= 1e-4
    assert "--weight-decay" in summary["best"]["retrain"] and "--lr" in summary["best"]["retrain"]
    for name in ("trials.csv", "trials.json", "best.json"):
        assert (tmp_path / name).is_file()
    plotting = importlib.util.find_spec("matplotlib") is not None     # the "plot" extra
    assert (tmp_path / "sweep.png").is_file() == plotting and summary["plot"] == ("sweep.png" if plotting else None)


def test_two_worker_processes_share_one_study(mnist_root, tmp_path):
    storage = tmp_path / "shared.log"
    summary = sweep(trials=4, jobs=2, storage=str(storage), out=tmp_path, data=mnist_root, **SMALL)
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert summary["trials"] == 4 and sorted(t["number"] for t in trials) == [0, 1, 2, 3]
    assert len({(t["param_lr"], t["param_weight_decay"]) for t in trials}) == 4      # distinct suggestions


def test_hopeless_trials_are_pruned(mnist_root, tmp_path, capsys):
    sweep(trials=10, out=tmp_path, data=mnist_root, space=parse_space(["lr=log:1e-4:1"]), startup=2,
          **dict(SMALL, epochs=5))
    assert "PRUNED" in states(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study 'fastdl-sweep': 0 of 10 trials finished; running 10 more (5 epochs each on numpy)"
    said = [line for line in lines if line.startswith("trial ")]       # a line as each trial ends
    assert [int(re.match(r"trial (\d+): ", line).group(1)) for line in said] == list(range(10))
    pruned = [line for line in said if "(pruned after " in line]
    assert len(pruned) == states(tmp_path).count("PRUNED") and all(re.search(r"; lr [\d.e-]+$", p) for p in pruned)


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(mnist_root, tmp_path, capsys):
    records, logged = [], logging.Handler()         # what Optuna logs (its own handler holds a stderr of its own)
    logged.emit = records.append
    logging.getLogger("optuna").addHandler(logged)
    try:
        summary = sweep(trials=3, out=tmp_path, data=mnist_root, fixed={"lr": 1e30},
                        space=parse_space(["weight_decay=log:1e-8:1e-4"]), **SMALL)
    finally:
        logging.getLogger("optuna").removeHandler(logged)
    assert states(tmp_path) == ["FAIL"] * 3 and summary["best"] is None
    errors = [t["error"] for t in json.loads((tmp_path / "trials.json").read_text())["trials"]]
    assert all("DivergenceError" in e for e in errors)
    assert capsys.readouterr().out.count("no validation accuracy (failed: DivergenceError: training diverged") == 3
    assert not records            # Optuna logged a warning with its traceback for each failed trial


def test_a_quiet_sweep_prints_nothing(mnist_root, tmp_path, capsys):
    sweep(trials=1, out=tmp_path, data=mnist_root, progress=False, **SMALL)
    assert capsys.readouterr() == ("", "")


def test_rerunning_continues_the_study(mnist_root, tmp_path):
    sweep(trials=2, out=tmp_path, data=mnist_root, **SMALL)
    first = json.loads((tmp_path / "trials.json").read_text())["trials"]
    sweep(trials=3, out=tmp_path, data=mnist_root, **SMALL)
    again = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert len(again) == 3 and again[:2] == first


def test_the_command_line(mnist_root, tmp_path, capsys):
    rc = main(["sweep", "--trials", "2", "--epochs", "2", "--hidden", "10", "--train-size", "100", "--backend", "numpy",
               "--data", str(mnist_root), "--out", str(tmp_path), "--search", "lr=log:1e-3:1e-1",
               "--fix", "optimizer=adam"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "retrain on the full training set" in printed and "--optimizer adam" in printed
    if importlib.util.find_spec("matplotlib"):       # it names only what it wrote
        assert "best.json, sweep.png" in printed
    else:
        assert 'no sweep.png: matplotlib is not installed; pip install "fastdl[plot]"' in printed
    assert main(["sweep", "--search", "lr=uniform:1:2", "--out", str(tmp_path)]) == 2
    assert "NAME=log:LOW:HIGH" in capsys.readouterr().err


def test_without_optuna_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(FastDLError, match=r'pip install "fastdl\[sweep\]"'):
        sweep(trials=1, out=tmp_path)


@pytest.mark.parametrize("jobs,group", [(1, False), (2, False), (2, True)])
def test_ctrl_c_stops_cleanly_and_keeps_every_finished_trial(mnist_root, tmp_path, jobs, group):
    """SIGINT to the command alone (``kill -INT``, ``timeout -s INT``) or to its whole process
    group (a terminal's Ctrl-C, which reaches the workers too): the running trials finish, the
    workers stop too, each counting one Ctrl-C, and nothing is left running."""
    import re
    import signal
    import subprocess
    import time
    if not hasattr(signal, "SIGINT") or ((jobs > 1 or group) and sys.platform == "win32"):
        pytest.skip("no SIGINT to send on this platform")
    cmd = [sys.executable, "-m", "fastdl", "sweep", "--trials", "100000", "--epochs", "3", "--hidden", "20", "--jobs",
           str(jobs), "--train-size", "200", "--backend", "numpy", "--data", str(mnist_root), "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group)
    journal = tmp_path / "study.log"
    deadline = time.monotonic() + 120
    done = re.compile(r'"state":\s*1\b')
    while time.monotonic() < deadline and (not journal.is_file() or len(done.findall(journal.read_text())) < 2):
        time.sleep(0.2)                               # until two trials have finished (state 1: COMPLETE)
    if group:
        os.killpg(proc.pid, signal.SIGINT)            # its own session: the group is the sweep's alone
    else:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "every finished trial is kept" in err and "Traceback" not in err
    size = journal.stat().st_size
    time.sleep(1.5)                                   # no worker goes on writing to the study
    assert journal.stat().st_size == size and "RUNNING" not in states(tmp_path)
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    assert len(done) >= 2
    summary = sweep(trials=len(done) + 1, out=tmp_path, data=mnist_root, **SMALL)   # and it continues
    assert summary["states"]["COMPLETE"] >= len(done) + 1 - summary["states"].get("FAIL", 0)


def _spawned_children(parent: int) -> list:
    """The pids of ``parent``'s multiprocessing workers (Linux's /proc; not its resource tracker)."""
    import pathlib
    if not pathlib.Path("/proc/self/stat").exists():
        pytest.skip("no /proc to find the worker processes in")
    out = []
    for d in pathlib.Path("/proc").iterdir():
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (d / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(d.name))
    return out


@pytest.mark.parametrize("jobs,group", [(1, False), (2, False), (2, True)])
def test_sigterm_stops_the_sweep_and_its_workers_leaving_no_trial_running(mnist_root, tmp_path, jobs, group):
    """SIGTERM to the command (a scheduler's stop), or to each of its processes (systemd's default,
    Slurm at its time limit: then each worker gets it directly and from the parent; sent here a
    moment apart, so that the two cannot merge into one): it
    ends with status 143 and its message, its worker processes end too (they went on alone
    before), and the trials they were running are abandoned at an epoch end, recorded as failed
    with the reason (not stopped at once by a doubled signal), not left "running" for good.
    Epochs of about half a second (16,000 images, 200-200 hidden units), so that both signals land
    inside one."""
    import re
    import signal
    import subprocess
    import time
    if not hasattr(signal, "SIGTERM") or sys.platform == "win32":
        pytest.skip("no SIGTERM to send on this platform")
    cmd = [sys.executable, "-m", "fastdl", "sweep", "--trials", "100000", "--epochs", "5", "--hidden", "200", "200", "--jobs",
           str(jobs), "--train-size", "20000", "--backend", "numpy", "--data", str(mnist_root), "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "study.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not journal.is_file() or not re.search(r'"state":\s*1\b', journal.read_text())):
        time.sleep(0.1)                               # until a trial has finished (state 1: COMPLETE)
    time.sleep(0.5)                                   # into the next trials' epochs
    if group:       # each process gets it: the workers first, the parent (which passes it on) after
        workers = _spawned_children(proc.pid)
        assert len(workers) == jobs, workers
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)                               # well inside an epoch (~0.5 s each)
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "fastdl sweep: terminated (SIGTERM); every finished trial is kept" in err and "Traceback" not in err
    size = journal.stat().st_size
    time.sleep(1.5)                                   # no worker goes on writing to the study
    assert journal.stat().st_size == size
    left = states(tmp_path)
    assert "RUNNING" not in left and "COMPLETE" in left, left
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert all(t["error"] == "abandoned: the sweep received SIGTERM" for t in trials if t["state"] == "FAIL"), trials


@pytest.mark.parametrize("seed,words", [(-1, "must be an integer >= 0"), (1.5, "must be an integer >= 0"),
                                        (None, "needs a fixed seed")])
def test_a_sweep_seed_is_checked_before_anything_is_written(tmp_path, seed, words):
    with pytest.raises(ValueError, match=words):
        sweep(trials=1, out=tmp_path / "s", seed=seed, **SMALL)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args,words", [
    (["--search", "batch_size=int:0:10"], "--search batch_size: 0 cannot be used"),
    (["--search", "optimizer=choice:sgd,adamw"], "unknown optimizer 'adamw'"),
    (["--search", "dropout=float:0:1"], "--search dropout: 1.0 cannot be used"),
    (["--search", "optimizer=choice:sgd,momentum", "--search", "momentum=float:0.5:0.9"], "SGD takes no momentum"),
    (["--search", "lr=log:1e-6"], "LOW and HIGH must be two numbers"),
    (["--fix", "batch_size=abc"], "batch_size takes an integer"),
    (["--fix", "lr=-1"], "--fix lr: -1.0 cannot be used"),
])
def test_values_no_trial_could_use_are_refused_before_the_study(tmp_path, capsys, args, words):
    """Each trial would have failed alike (recorded as an error, the study going on)."""
    assert main(["sweep", "--trials", "1", "--out", str(tmp_path / "s"), *args]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_search_with_edges_that_build_is_accepted():
    from fastdl.search_space import check_values, parse_fixed
    check_values(parse_space(["optimizer=choice:momentum,nesterov", "momentum=float:0.5:0.99",
                              "init=choice:he,0.01", "batch_size=int:1:256"]), parse_fixed(["batch_norm=true"]))


def test_a_report_that_cannot_be_written_is_said_and_the_command_fails(mnist_root, tmp_path, capsys, monkeypatch):
    from fastdl import search_report

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(search_report, "write", broken)
    rc = main(["sweep", "--trials", "1", "--epochs", "1", "--hidden", "10", "--train-size", "100", "--backend", "numpy",
               "--data", str(mnist_root), "--out", str(tmp_path)])
    assert rc == 1
    assert "the report could not be written (OSError: disk full)" in capsys.readouterr().err


def test_the_retrain_command_reproduces_the_best_trial_and_runs(mnist_root, tmp_path, capsys):
    """Choices, integers and a momentum searched, Batch Norm fixed, the learning rate left out
    (trials use 0.01, where `fastdl train` would default to 0.1 for SGD): the command names every
    value the best trial used, and `fastdl train` takes it as printed."""
    import shlex
    space = parse_space(["optimizer=choice:momentum,nesterov", "momentum=float:0.5:0.8", "batch_size=int:40:60"])
    summary = sweep(trials=3, out=tmp_path, data=mnist_root, space=space, fixed={"batch_norm": True},
                    **dict(SMALL, epochs=1))
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    for t in trials:
        assert t["param_optimizer"] in ("momentum", "nesterov") and 0.5 <= t["param_momentum"] <= 0.8
        assert isinstance(t["param_batch_size"], int) and 40 <= t["param_batch_size"] <= 60
    best = summary["best"]
    argv = shlex.split(best["retrain"])
    for flag, value in (("--lr", "0.01"), ("--optimizer", best["params"]["optimizer"]),
                        ("--momentum", f"{best['params']['momentum']:.6g}"),
                        ("--batch-size", str(best["params"]["batch_size"])), ("--init", "he")):
        assert argv[argv.index(flag) + 1] == value, (flag, best["retrain"])
    assert "--batch-norm" in argv
    out = tmp_path / "retrain"
    assert main([*argv[1:], "--data", str(mnist_root), "--out", str(out), "--no-progress", "--train-size", "300"]) == 0
    used = json.loads((out / "history.json").read_text())["optimizer"]
    assert used["name"].lower() == best["params"]["optimizer"]
    assert used["momentum"] == pytest.approx(best["params"]["momentum"], rel=1e-5) and used["lr"] == 0.01


def test_a_database_url_holds_the_study(mnist_root, tmp_path):
    """--storage with a database URL (SQLite here; PostgreSQL alike): Optuna's RDB storage holds
    the study, a second call continues it, and no journal file is made."""
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    assert sweep(trials=2, storage=url, out=tmp_path / "a", data=mnist_root, **SMALL)["trials"] == 2
    summary = sweep(trials=3, storage=url, out=tmp_path / "b", data=mnist_root, **SMALL)
    assert summary["trials"] == 3 and (tmp_path / "sweep.db").is_file()
    assert not (tmp_path / "a" / "study.log").exists() and not (tmp_path / "b" / "study.log").exists()


@pytest.mark.parametrize("kw,words", [
    (dict(trials=0), "trials=0 is not valid"), (dict(jobs=1.5), "jobs=1.5 is not valid"),
    (dict(epochs=float("nan")), "epochs=nan is not valid"), (dict(val_fraction=1.0), "val_fraction=1.0 is not valid"),
    (dict(pruner="hyperband"), "pruner='hyperband' is not valid"),
    (dict(space={"lr": ("log", 1e-4, 1e-2)}, fixed={"lr": 0.1}), "['lr'] are both searched and fixed"),
    (dict(backend="nunba"), "unknown backend 'nunba'"),
])
def test_sweep_arguments_are_checked_before_anything_is_written(tmp_path, kw, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        sweep(out=tmp_path / "s", **{**SMALL, **kw})
    assert not (tmp_path / "s").exists()


def test_a_sweep_leaves_optunas_verbosity_as_it_found_it(mnist_root, tmp_path):
    """Optuna's verbosity is process-wide: the sweep quiets it while it runs, not for its caller."""
    import optuna
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        sweep(trials=1, out=tmp_path, data=mnist_root, **dict(SMALL, epochs=1))
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


@pytest.mark.parametrize("url, words", [
    ("bogus://x", "in bogus://x: NoSuchModuleError"),                       # a scheme no driver has
    ("postgresql://u:secret@127.0.0.1:1/db", "in postgresql://u:***@127.0.0.1:1/db: "),  # no driver, or no server
    ("sqlite:////nonexistent-folder/x.db", "unable to open database file"),
])
def test_a_storage_that_cannot_be_opened_is_said_in_one_line(tmp_path, capsys, url, words):
    """Before any data loads: what failed, where (the password hidden), and what to check; the
    Python call writes nothing, the command exits 2 without a traceback."""
    pytest.importorskip("sqlalchemy")
    with pytest.raises(FastDLError, match=re.escape(words)) as caught:
        sweep(storage=url, out=tmp_path / "s", data=tmp_path / "no-mnist-needed", **SMALL)
    assert "secret" not in str(caught.value) and "Check the URL" in str(caught.value)
    assert not (tmp_path / "s").exists()
    assert main(["sweep", "--storage", url, "--out", str(tmp_path / "c"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "fastdl sweep: error: cannot open the study" in err and "Traceback" not in err and "secret" not in err
    assert not (tmp_path / "c").exists()               # the command made --out before it opened the study


@pytest.mark.parametrize("text", ["garbage{\n", '{"op_code": 0, "worker_id": "x", "study_name": 5}\n', "[1]\n"])
def test_a_damaged_journal_is_said_in_one_line_and_kept(tmp_path, capsys, text):
    """A journal file that is not one, or damaged: which file, and what to do; the file is left as
    it was (Optuna passed over a bad last line and wrote after it, making it unreadable for good)."""
    journal = tmp_path / "s" / "study.log"
    journal.parent.mkdir()
    journal.write_text(text)
    with pytest.raises(FastDLError, match=r"study\.log: .*Check that the file is a study journal") as caught:
        sweep(out=tmp_path / "s", data=tmp_path / "no-mnist-needed", **SMALL)
    assert "database" not in str(caught.value)
    assert main(["sweep", "--out", str(tmp_path / "s"), "--data", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err and journal.read_text() == text


def test_an_out_that_cannot_be_a_folder_is_refused_before_any_trial(tmp_path, capsys):
    """With the study's journal in it (the default) or in a storage of its own: in Python it was
    found only when the report was written, after every trial had run."""
    (tmp_path / "afile").write_text("")
    for storage in (None, str(tmp_path / "journal.log")):
        with pytest.raises(FastDLError, match=re.escape(f"out={str(tmp_path / 'afile')!r}: that is a file, not a folder")):
            sweep(trials=1, storage=storage, out=tmp_path / "afile", data=tmp_path / "no-mnist-needed", **SMALL)
        argv = ["sweep", "--out", str(tmp_path / "afile"), "--data", str(tmp_path)] + (["--storage", storage] if storage else [])
        assert main(argv) == 2
        assert f"fastdl sweep: error: --out {tmp_path / 'afile'}: that is a file" in capsys.readouterr().err
