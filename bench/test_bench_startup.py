"""What a user waits for before and around the training loop: a JIT backend's first ``fit()``
(compile cache off, empty, warm) and the whole ``fastdl train`` process (wall time, its loop's
share, peak memory), each contender in a fresh interpreter, interleaved round by round; and what
a warm numba run cannot skip, against its loop."""

import importlib.util
import json
import statistics
import subprocess
import sys
import time

import memory
import pytest

from conftest import QUICK, ROUNDS, machine_info
from fastdl.backends import backend_status

STEPS = 20 if QUICK else 10_000

# A Trainer's first fit() of the book's network in a fresh interpreter: it compiles (or loads) what
# the run needs (its warm-up, History.compile_seconds), then trains `steps` steps. Prints the
# seconds of that first fit() and of its compile.
_FIRST_FIT = """
import sys, time, json
import fastdl
from fastdl.optimizers import SGD
backend, steps = sys.argv[1], int(sys.argv[2])
(x, t), (xt, tt) = fastdl.datasets.load_mnist()
net = fastdl.TwoLayerNet(784, 50, 10, backend=backend, seed=0)
tr = fastdl.Trainer(net, SGD(lr=0.1), x, t, xt, tt, iterations=steps, batch_size=100, seed=0,
                    progress=False, evaluate_train=False)
t0 = time.perf_counter()
h = tr.fit()
print(json.dumps({"first_fit_s": time.perf_counter() - t0, "compile_s": h.compile_seconds}))
"""

# `fastdl train` in a fresh interpreter, reporting its own peak RSS (VmHWM, not ru_maxrss: on Linux
# ru_maxrss survives exec and can report the forking parent's size).
# Printed by an exit handler: the command ends without unwinding a finally block
# (fastdl.helpers.quick_exit) but runs exit handlers.
_PEAK = ("import atexit, sys\n"
         "atexit.register(lambda: print('PEAK_RSS_KB', [l.split()[1] for l in open('/proc/self/status')\n"
         "                                              if l.startswith('VmHWM')][0], file=sys.{stream}, flush=True))\n")
_TRAIN = (_PEAK.format(stream="stderr") + "import runpy\n"
          "sys.argv = ['fastdl'] + sys.argv[1:]\n"
          "runpy.run_module('fastdl', run_name='__main__')\n")


# What every warm `fastdl train --backend numba` does besides its steps and cannot skip, and
# nothing else: the interpreter, the imports, MNIST read beside the backend's import (as `fastdl
# train` reads it), the run's kernels from the warm disk cache, and the evaluations at its epoch
# ends (train and test accuracy, as the trainer runs them). No checkpoint, result file or plot: a
# lower bound of the time around the loop.
_UNAVOIDABLE = """
import sys
import fastdl
from fastdl import helpers
from fastdl.optimizers import SGD
evaluations = int(sys.argv[1])
mnist = helpers.Beside(lambda: fastdl.datasets.load_mnist(as_bytes=True))
bk = fastdl.get_backend("numba")
(x, t), (xt, tt) = mnist.result()
net = fastdl.TwoLayerNet(784, 50, 10, backend=bk, seed=0)
tr = fastdl.Trainer(net, SGD(lr=0.1), x, t, xt, tt, iterations=1, progress=False)
tr.warm_up()
with bk.train_scope():
    for _ in range(evaluations):
        tr._evaluate()              # what fit() runs at an epoch's end: train and test accuracy
helpers.quick_exit(0)           # as `fastdl train` ends: without the interpreter's teardown
"""


def _env(cache: str | None, folder) -> dict:
    """The environment of a contender: numba's compile cache off (None), or in ``folder``."""
    import os
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    if cache is None:
        env["FASTDL_NUMBA_CACHE"] = "0"
    else:
        env["FASTDL_NUMBA_CACHE"] = "1"
        env["NUMBA_CACHE_DIR"] = str(folder)
    return env


def _contenders():
    """name -> (backend, cache state): numpy, and numba with its cache off, empty and warm."""
    out = {"numpy": ("numpy", None)}
    if backend_status("numba")[0]:
        out.update({"numba-cache-off": ("numba", None), "numba-cache-empty": ("numba", "empty"),
                    "numba-cache-warm": ("numba", "warm")})
    return out


def _folder(tmp_path, state, round_no):
    # an empty cache is a fresh folder every round; the warm one is shared (filled before timing)
    return tmp_path / (f"empty-{round_no}" if state == "empty" else "warm")


def _interleaved(benchmark, contenders, run) -> dict:
    """The warm cache filled (untimed), then ``run(backend, cache state, round)`` for every
    contender once per round, round after round; name -> its results in round order."""
    if "numba-cache-warm" in contenders:
        run("numba", "warm", 0)
    results = {k: [] for k in contenders}

    def rounds():
        for i in range(ROUNDS if QUICK else max(ROUNDS, 3)):
            for name, (backend, state) in contenders.items():
                results[name].append(run(backend, state, i))

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    return results


def _record(benchmark, info, results):
    benchmark.extra_info.update(machine_info(), **info, rounds_s=results, backend="interleaved", dtype="float32")
    print("\n" + ", ".join(f"{k} {v:.3f}" for k, v in info.items()))


def test_first_fit(benchmark, tmp_path, mnist):           # mnist: skips where it is missing
    """A Trainer's first fit() (the book's network, STEPS steps): numba with its compile cache
    off, empty and warm, beside NumPy's, interleaved; compile time is what numba adds."""
    if not backend_status("numba")[0]:
        pytest.skip(f"numba unavailable: {backend_status('numba')[1]}")
    contenders = _contenders()
    benchmark.group = f"first fit() of 784-50-10, {STEPS} steps, fresh process"
    compile_s = {k: [] for k in contenders}
    name_of = {c: k for k, c in contenders.items()}

    def run(backend, state, round_no):
        r = subprocess.run([sys.executable, "-c", _FIRST_FIT, backend, str(STEPS)], capture_output=True,
                           text=True, env=_env(state, _folder(tmp_path, state, round_no)))
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        compile_s[name_of[backend, state]].append(out["compile_s"])
        return out["first_fit_s"]

    times = _interleaved(benchmark, contenders, run)
    if "numba-cache-warm" in compile_s:
        del compile_s["numba-cache-warm"][0]        # the untimed run that filled the cache
    info = {f"median_s_{k}": statistics.median(v) for k, v in times.items()}
    info.update({f"median_s_compile_{k}": statistics.median(v) for k, v in compile_s.items() if v})
    for k in contenders:
        if k != "numpy":
            info[f"ratio_{k}_over_numpy"] = statistics.median(a / b for a, b in zip(times[k], times["numpy"]))
    _record(benchmark, info, times)


def _plot_helper_peak_mb(out) -> float:
    """Peak RSS of the plotting helper drawing a run's curves (it lives as long as the run); 0
    where matplotlib is not installed (`fastdl train` then draws nothing)."""
    if importlib.util.find_spec("matplotlib") is None:
        return 0.0
    code = _PEAK.format(stream="stdout") + "import runpy\nrunpy.run_module('fastdl.curves', run_name='__main__')\n"
    r = subprocess.run([sys.executable, "-c", code, str(out / "curves-again.png")], capture_output=True,
                       text=True, input=(out / "history.json").read_text())
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.split()[-1]) / 1024


# The compile helper's work on a first run (python -m fastdl.warmup), all of it: the network,
# optimizer and data types of a spec, every compile job of the warm-up. Prints its peak RSS (KB).
_COMPILE_ALL = _PEAK.format(stream="stdout") + """
import json
import fastdl
from fastdl import warmup
bk = fastdl.get_backend("numba")
net, opt, data, batch = warmup.from_spec(json.load(sys.stdin), bk)
for _, job in bk.compile_jobs(lambda: warmup.warm_up(net, opt, data, batch)):
    job()
"""


def _compile_helper_peak_mb(folder) -> float:
    """Peak RSS of a process doing all of the compile helper's work for `fastdl train`'s default run
    in an empty cache (the helper itself does about half of it: an upper bound)."""
    from fastdl import datasets, networks, optimizers, warmup
    (x, t), (xt, tt) = datasets.load_mnist(as_bytes=True)
    net = networks.MultiLayerNet(784, [50], 10, seed=0)
    spec = warmup.spec(net, optimizers.get_optimizer("sgd", lr=0.1), warmup.sample(x, t, xt, tt, 100), 100)
    r = subprocess.run([sys.executable, "-c", _COMPILE_ALL], capture_output=True, text=True,
                       input=json.dumps(spec), env=_env("empty", folder))
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.split()[-1]) / 1024


def test_fastdl_train_process(benchmark, tmp_path, mnist):   # mnist: skips where it is missing
    """The whole `fastdl train` (the book's run: imports, loading MNIST, compiling, 10,000 steps,
    17 evaluations, writing the results and the plot), numpy and numba (cache off, empty, warm),
    interleaved: wall time, the training loop's share of it and the process's peak RSS, plus
    that of its plotting helper (fastdl.curves), which runs beside it, and on a first numba run
    that of its compile helper (fastdl.warmup; bounded from above by one doing all its jobs).
    After the timed rounds, one more run of each is sampled as a whole process tree
    (``memory.run``: the largest sums of RSS and of PSS its processes held at one time; untimed,
    as sampling takes CPU). Targets: numba with an empty cache no slower than numpy; warm, at
    most 1.6x its own loop; peak memory at most 400 MB (numba) and 300 MB (numpy), the helpers'
    included."""
    contenders = _contenders()
    benchmark.group = f"fastdl train, whole process, {STEPS} steps"

    def command(backend):
        return [sys.executable, "-c", _TRAIN, "train", "--backend", backend, "--no-progress",
                "--iters", str(STEPS), "--out", str(tmp_path / "out")]

    def run(backend, state, round_no):
        out = tmp_path / "out"
        t0 = time.perf_counter()
        r = subprocess.run(command(backend), capture_output=True, text=True,
                           env=_env(state, _folder(tmp_path, state, round_no)))
        wall = time.perf_counter() - t0
        assert r.returncode == 0, r.stderr[-2000:]
        h = json.loads((out / "history.json").read_text())
        return {"wall_s": wall, "loop_s": h["train_seconds"], "compile_s": h["compile_seconds"],
                "peak_rss_mb": int(r.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024}

    rows = _interleaved(benchmark, contenders, run)
    helper_mb = _plot_helper_peak_mb(tmp_path / "out")
    med = lambda name, key: statistics.median(r[key] for r in rows[name])
    info = {"peak_rss_mb_plot_helper": helper_mb}
    if "numba-cache-empty" in contenders:
        compile_mb = _compile_helper_peak_mb(tmp_path / "compile-helper-cache")
        info["peak_rss_mb_compile_helper_all_jobs"] = compile_mb
        info["median_mb_peak_rss_numba-cache-empty_with_both_helpers"] = (
            med("numba-cache-empty", "peak_rss_mb") + helper_mb + compile_mb)
    if memory.available():
        for name, (backend, state) in contenders.items():
            r, tree = memory.run(command(backend), env=_env(state, _folder(tmp_path, state, "sampled")))
            assert r.returncode == 0, r.stderr[-2000:]
            info.update({f"{key}_{name}": v for key, v in tree.items()})
    for name in contenders:
        for key in ("wall_s", "loop_s", "compile_s"):
            info[f"median_s_{key[:-2]}_{name}"] = med(name, key)
        info[f"median_mb_peak_rss_{name}"] = med(name, "peak_rss_mb")
        info[f"median_mb_peak_rss_{name}_with_plot_helper"] = med(name, "peak_rss_mb") + helper_mb
        info[f"ratio_wall_over_loop_{name}"] = statistics.median(r["wall_s"] / r["loop_s"] for r in rows[name])
        if name != "numpy":
            info[f"ratio_wall_{name}_over_numpy"] = statistics.median(
                a["wall_s"] / b["wall_s"] for a, b in zip(rows[name], rows["numpy"]))
    _record(benchmark, info, rows)


def test_what_a_warm_run_cannot_skip(benchmark, tmp_path, mnist):   # mnist: skips where it is missing
    """The warm target (a whole `fastdl train --backend numba` at most 1.6x its own loop) leaves
    0.6x the loop for everything else. Interleaved in fresh interpreters: the warm `fastdl train`
    itself, and a process doing only what that run cannot skip (``_UNAVOIDABLE``: interpreter,
    imports, MNIST, the cached kernels, the epoch ends' evaluations), and the same without the
    evaluations (the start alone). Reports each over the run's loop, round by round: past 0.6, no
    work on the rest of what surrounds the loop (checkpoints, results, the plot) reaches the
    target; only a faster start or evaluation can."""
    if not backend_status("numba")[0]:
        pytest.skip(f"numba unavailable: {backend_status('numba')[1]}")
    benchmark.group = f"a warm numba run: what it cannot skip, {STEPS} steps"
    evaluations = -(-STEPS // 600)                 # the book's run: an evaluation at each epoch's end
    env = _env("warm", tmp_path / "warm")
    train = [sys.executable, "-c", _TRAIN, "train", "--backend", "numba", "--no-progress",
             "--iters", str(STEPS), "--out", str(tmp_path / "out")]
    floor = [sys.executable, "-c", _UNAVOIDABLE, str(evaluations)]
    start = [sys.executable, "-c", _UNAVOIDABLE, "0"]

    def timed(cmd) -> float:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        return time.perf_counter() - t0

    timed(train)                                   # fills the warm cache, untimed
    rows = {"train": [], "loop": [], "unavoidable": [], "start": []}

    def rounds():
        for _ in range(ROUNDS if QUICK else max(ROUNDS, 3)):
            rows["train"].append(timed(train))
            rows["loop"].append(json.loads((tmp_path / "out" / "history.json").read_text())["train_seconds"])
            rows["unavoidable"].append(timed(floor))
            rows["start"].append(timed(start))

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    info = {f"median_s_{k}": statistics.median(v) for k, v in rows.items()}
    info["evaluations"] = evaluations
    info["ratio_wall_over_loop"] = statistics.median(a / b for a, b in zip(rows["train"], rows["loop"]))
    info["ratio_unavoidable_over_loop"] = statistics.median(a / b for a, b in zip(rows["unavoidable"], rows["loop"]))
    info["ratio_start_over_loop"] = statistics.median(a / b for a, b in zip(rows["start"], rows["loop"]))
    info["ratio_unavoidable_over_wall"] = statistics.median(a / b for a, b in zip(rows["unavoidable"], rows["train"]))
    _record(benchmark, info, rows)
