"""A first run's compile shared with a helper process (fastdl.warmup, compile_jobs)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastdl import helpers, networks, optimizers, warmup
from fastdl.backends import backend_status, get_backend
from fastdl.images import ByteImages

needs_numba = pytest.mark.skipif(not backend_status("numba")[0], reason=f"numba unavailable: {backend_status('numba')[1]}")


def small_run(backend, optimizer="sgd", activation="relu"):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (300, 784), dtype=np.uint8)
    codes.flags.writeable = False                # as MNIST loads: read-only bytes
    x = ByteImages(codes, 255)
    t = rng.integers(0, 10, 300).astype(np.uint8)
    net = networks.MultiLayerNet(784, [20], 10, activation=activation, backend=backend, seed=0)
    opt = optimizers.get_optimizer(optimizer, lr=0.01)
    return net, opt, warmup.sample(x, t, ByteImages(codes[:200], 255), t[:200], 50), 50


# -- the protocol, against stand-in helpers -----------------------------------------------------

def fake_helper(script):
    """A helper process speaking the protocol as ``script`` (Python reading stdin) says."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)


def jobs_and_log(n, seconds=0.0):
    import time
    ran = []
    return [(f"job{i}", (lambda i=i: (time.sleep(seconds), ran.append(i)))) for i in range(n)], ran


def sharing_with(proc):
    s = warmup.Sharing()
    s.proc = proc
    return s


def test_each_job_runs_once_split_between_the_two():
    jobs, ran = jobs_and_log(8, seconds=0.1)
    obedient = f"""
        import sys, time
        sys.stdin.readline()                          # the spec
        print("jobs {warmup.digest(jobs)}", flush=True)
        for line in sys.stdin:
            time.sleep(0.05)                          # compiling
            print("done", line.split()[1], flush=True)
    """
    with sharing_with(fake_helper(obedient)) as s:
        s._share(jobs, {"spec": 1})
    assert s.helper_jobs >= 1 and len(ran) >= 1
    assert len(ran) + s.helper_jobs == 8 and len(set(ran)) == len(ran)
    assert ran == sorted(ran) and ran[0] == 0         # each takes the next job nobody has, from the front


def test_a_helper_that_learned_other_jobs_leaves_them_all_here():
    jobs, ran = jobs_and_log(5)
    with sharing_with(fake_helper('import sys; sys.stdin.readline(); print("jobs 0123456789abcdef", flush=True); sys.stdin.read()')) as s:
        s._share(jobs, {})
    assert ran == list(range(5)) and s.helper_jobs == 0


def test_a_helper_that_dies_mid_job_does_not_hang_the_run():
    jobs, ran = jobs_and_log(6, seconds=0.1)
    dying = f"""
        import sys, os
        sys.stdin.readline()
        print("jobs {warmup.digest(jobs)}", flush=True)
        sys.stdin.readline()                          # take ...
        os._exit(1)
    """
    with sharing_with(fake_helper(dying)) as s:
        s._share(jobs, {})
    assert s.helper_jobs == 0 and len(set(ran)) == len(ran) == 5   # what it took is left to the warm-up proper


def test_a_spec_the_helper_cannot_be_sent_leaves_the_jobs_here_saying_so_in_one_line(capsys):
    """A fault of ours in the spec (a value JSON cannot hold, as a NumPy float32 scale once was):
    every job still runs here, and stderr says why in one line instead of a thread's traceback."""
    jobs, ran = jobs_and_log(4)
    with sharing_with(fake_helper("import sys; sys.stdin.read()")) as s:
        s._share(jobs, {"scale": np.float32(255)})
    assert ran == list(range(4)) and s.helper_jobs == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compile helper was not used (TypeError" in err and "Traceback" not in err


# -- compile_jobs and the helper on numba, each in a process with its own empty cache -------------------

FIRST_RUN = """
import json, sys
from fastdl import warmup
with warmup.Sharing() as s:
    s.start("numba")                 # as fastdl train: before the backend loads, where a first run is likely
    early = s.proc is not None and "numba" not in sys.modules
    sys.path.insert(0, {tests!r})
    from test_warmup import small_run
    from fastdl.backends import get_backend
    bk = get_backend("numba")
    net, opt, data, B = small_run(bk, {optimizer!r}, {activation!r})
    names = [n for n, _ in bk.compile_jobs(lambda: warmup.warm_up(net, opt, data, B))]
    announced = []
    s.warm_up(net, opt, data, B, announce=announced.append)
    left = bk.compile_jobs(lambda: warmup.warm_up(net, opt, data, B))
print(json.dumps({{"early": early, "names": names, "announced": announced, "jobs": s.jobs, "helper_jobs": s.helper_jobs, "left": len(left),
                  "helper_started": s.proc is not None, "helper_ended": s.proc is None or s.proc.poll() is not None}}))
"""


def run_fresh(tmp_path, optimizer="sgd", activation="relu"):
    import os
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTDL_NUMBA_CACHE="1")
    code = FIRST_RUN.format(tests=str(__import__("pathlib").Path(__file__).parent), optimizer=optimizer,
                            activation=activation)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


@needs_numba
@pytest.mark.skipif(helpers.spare_cores() < 1, reason="one core: no helper process is started")
def test_a_first_run_shares_its_compile_and_a_second_compiles_nothing(tmp_path):
    first = run_fresh(tmp_path)
    assert first["early"]                                  # a new cache: the helper starts before numba loads
    assert first["jobs"] == len(first["names"]) >= 4 and first["announced"] == [first["jobs"]]
    # byte codes of a layer of 20: the first layer over the non-zero codes, not the gather and GEMM
    assert all(any(k in n for n in first["names"]) for k in ("nonzero_body", "split_layer", "update_parts"))
    assert not any("split_body" in n for n in first["names"])
    from fastdl.backends.numba.ahead import COMPILE_SECONDS
    base = lambda n: n.split("(")[0].split(".")[-1].split("_relu")[0]       # split_body_relu: split_body's job
    cost = [COMPILE_SECONDS.get(base(n), 0.0) for n in first["names"]]
    assert cost == sorted(cost, reverse=True)                                            # longest first
    assert sum(c > 0 for c in cost) >= 4                  # the table knows the run's long jobs by name
    assert 1 <= first["helper_jobs"] < first["jobs"]       # both compiled some
    assert first["left"] == 0 and first["helper_started"] and first["helper_ended"]   # all cached; helper gone
    again = run_fresh(tmp_path)                            # a warm cache: nothing to share
    assert again["names"] == [] and again["jobs"] == 0 and not again["helper_started"] and not again["early"]
    assert again["announced"] == [0]                       # what `fastdl train` says: nothing compiles
    adam = run_fresh(tmp_path, "adam")                     # only what differs compiles
    assert not adam["early"] and adam["helper_started"]    # not guessed: started once the jobs are known
    assert len(adam["names"]) == 1 and "update_parts" in adam["names"][0]
    # another activation: its first layer's body and its last layer; the first layer's parallel
    # function is cached and runs in the dry run, given no body (address 0), and computes nothing
    sigmoid = run_fresh(tmp_path, "adam", "sigmoid")
    assert sorted(n.split("(")[0].split(".")[-1] for n in sigmoid["names"]) == [
        "nonzero_body_sigmoid_20", "output_layer"]
    assert sigmoid["left"] == 0


@needs_numba
def test_every_compile_time_is_known_by_the_name_of_a_function_the_backend_compiles():
    """A renamed kernel would leave its figure unused and the list in no useful order."""
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: plain functions, nothing compiles")
    from fastdl.backends.numba import ahead, first_layer, loops, nonzero_layer, step
    first_layer.split_body(0), first_layer.split_layer(), step.output_layer(0), step.update_parts("sgd_update")
    nonzero_layer.body(0, 50)
    built = step.MADE + [v for v in vars(loops).values() if hasattr(v, "py_func")]
    names = {f.py_func.__name__ for f in built}
    assert set(ahead.COMPILE_SECONDS) <= names, set(ahead.COMPILE_SECONDS) - names


@needs_numba
def test_a_dry_run_computes_nothing_and_compiles_nothing():
    bk = get_backend("numba")
    net, opt, data, B = small_run(bk)
    before = {k: v.copy() for k, v in net.params.items()}
    calls = []
    jobs = bk.compile_jobs(lambda: calls.append(warmup.warm_up(net, opt, data, B)))
    assert calls                                          # run() ran; the network given was never touched
    assert all(np.array_equal(before[k], v) for k, v in net.params.items())
    for name, job in jobs:
        assert name.startswith("fastdl.backends.numba.") and callable(job)


def test_numpy_has_no_jobs_and_its_helper_leaves(tmp_path):
    bk = get_backend("numpy")
    calls = []
    assert bk.compile_jobs(lambda: calls.append(1)) == [] and calls == []
    announced = []
    with warmup.Sharing() as s:
        net, opt, data, B = small_run(bk)
        seconds = s.warm_up(net, opt, data, B, announce=announced.append)
    assert seconds > 0 and s.jobs == 0 and (s.proc is None or s.proc.poll() is not None)
    assert announced == [0]


@needs_numba
def test_under_disable_jit_nothing_is_recorded(monkeypatch):
    import numba
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    calls = []
    assert get_backend("numba").compile_jobs(lambda: calls.append(1)) == [] and calls == []


def test_the_spec_rebuilds_the_same_types():
    bk = get_backend("numpy")
    net, opt, data, B = small_run(bk, "adam")
    s = json.loads(json.dumps(warmup.spec(net, opt, data, B)))
    net2, opt2, data2, B2 = warmup.from_spec(s, bk)
    assert net2.config() == net.config() and opt2.config() == opt.config() and B2 == B
    for a, b in zip(data, data2):
        a_arr, b_arr = (a.codes, b.codes) if isinstance(a, ByteImages) else (a, b)
        assert type(a) is type(b) and a_arr.shape == b_arr.shape and a_arr.dtype == b_arr.dtype
        assert a_arr.flags.writeable == b_arr.flags.writeable


def test_a_warm_up_that_diverges_still_evaluates(monkeypatch):
    """Two steps at a learning rate that overflows raise no DivergenceError from the warm-up (the
    run itself reports it), and the evaluation the warm-up compiles still runs."""
    from fastdl import trainer
    net, _, data, B = small_run(get_backend("numpy"))
    evaluate, seen = trainer.Trainer._evaluate, []
    monkeypatch.setattr(trainer.Trainer, "_evaluate", lambda self: (seen.append(self.step), evaluate(self)))
    warmup.warm_up(net, optimizers.get_optimizer("sgd", lr=1e38), data, B)
    assert seen


def test_the_fused_steps_functions_compile_at_their_own_llvm_level(monkeypatch):
    """The fused step's compiled functions compile at ``step.OPT_LEVEL`` (their callees inside
    them) unless the user set NUMBA_OPT; Numba's setting is back as it was after, also when a
    compile fails."""
    pytest.importorskip("numba")
    import numba
    from numba.core.dispatcher import Dispatcher

    from fastdl.backends.numba import first_layer, step
    if numba.config.DISABLE_JIT:
        pytest.skip("nothing compiles under NUMBA_DISABLE_JIT")
    monkeypatch.delenv("NUMBA_OPT", raising=False)
    before = int(numba.config.OPT)
    seen = []

    def fake_compile(self, sig):
        seen.append(int(numba.config.OPT))
        raise RuntimeError("stop here")
    monkeypatch.setattr(Dispatcher, "compile", fake_compile)
    for f in (first_layer.split_body(0), first_layer.split_layer(), step.output_layer(1), step.update_parts("sgd_update")):
        with pytest.raises(RuntimeError, match="stop here"):
            f.compile(("any",))
        assert int(numba.config.OPT) == before
    assert seen == [step.OPT_LEVEL] * 4
    monkeypatch.setenv("NUMBA_OPT", str(before))        # a user's own setting is kept
    with pytest.raises(RuntimeError, match="stop here"):
        step.output_layer(1).compile(("any",))
    assert seen[-1] == before


CALLEES = """
import json, sys
sys.path.insert(0, {tests!r})
from test_warmup import small_run
from fastdl import warmup
from fastdl.backends import get_backend
from fastdl.backends.numba import gather, loops, updates
bk = get_backend("numba")
net, opt, data, B = small_run(bk)
warmup.warm_up(net, opt, data, B)
fs = {{"softmax_rows": loops.softmax_rows, "colsum": loops.colsum, "gather_part": gather.gather_part, "sgd": updates.sgd}}
print(json.dumps({{k: [len(f.signatures), len(loops.inner(f).signatures)] for k, f in fs.items()}}))
"""


@needs_numba
def test_the_fused_steps_callees_compile_without_pythons_entry_points():
    """The step's compiled functions call twins of the loops (``loops.inner``), which Numba
    compiles without the entry points a Python caller needs; the public loops themselves are not
    compiled by a run that calls none of them from Python (compile cost, see ``loops.inner``)."""
    import os

    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("nothing compiles under NUMBA_DISABLE_JIT")
    env = dict(os.environ, FASTDL_NUMBA_CACHE="0")      # compiled here, not loaded: every callee shows
    code = CALLEES.format(tests=str(__import__("pathlib").Path(__file__).parent))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    compiled = json.loads(r.stdout.splitlines()[-1])
    # (byte codes: the first layer reads the non-zero codes in place and gathers no rows)
    assert compiled == {"softmax_rows": [0, 1], "colsum": [0, 1], "gather_part": [0, 0], "sgd": [0, 1]}, compiled


def test_a_helper_started_early_and_not_needed_is_ended(monkeypatch):
    """Where the guess was wrong (nothing to compile), the early helper goes unused and is ended."""
    monkeypatch.setattr(warmup, "compile_likely", lambda name: True)
    with warmup.Sharing() as s:
        s.start("numpy")
        assert s.proc is not None or helpers.spare_cores() < 1
        net, opt, data, B = small_run(get_backend("numpy"))
        s.warm_up(net, opt, data, B)
        assert s.jobs == 0 and (s.proc is None or s.proc.poll() is not None)


@needs_numba
@pytest.mark.skipif(helpers.spare_cores() < 1, reason="one core: no helper process is started")
@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="finds processes through /proc")
def test_a_run_that_fails_after_starting_its_helper_leaves_no_process(tmp_path, mnist_root, monkeypatch):
    """The early helper starts before the run checks its flags against the data: a run refused
    then (a batch larger than its training set) leaves no helper behind (the run ends it, and
    the end of its input would too)."""
    import os
    import time
    import uuid
    mark = uuid.uuid4().hex
    for k, v in {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FASTDL_NUMBA_CACHE": "1", "NUMBA_DISABLE_JIT": "0",
                 "FASTDL_TEST_MARK": mark}.items():
        monkeypatch.setenv(k, v)
    from fastdl import backends
    assert backends.compile_likely("numba")               # so the run starts its helper first
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "fastdl", "train", "--backend", "numba", "--data", str(mnist_root),
                        "--train-size", "10", "--batch-size", "100", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0 and "--batch-size 100 is larger than the training set" in r.stderr

    def marked():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if f"FASTDL_TEST_MARK={mark}".encode() in f.read():
                        found.append(pid)
            except OSError:
                pass
        return found
    deadline = time.time() + 10
    while marked() and time.time() < deadline:
        time.sleep(0.1)
    assert marked() == []
