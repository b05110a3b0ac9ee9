"""The numba backend's own policy: how it splits work across its threads, and when. (Its numbers
are tested against NumPy's with every other backend's, in test_kernels and test_hooks.)"""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import load_or_skip, tol
from test_hooks import pixels, same
from test_kernels import rand


@pytest.fixture
def nb():
    return load_or_skip("numba")


@pytest.fixture
def threads(nb):
    from fastdl.backends.numba import threads
    if not threads.scipy_blas():
        pytest.skip("SciPy shares NumPy's BLAS here (or threadpoolctl is missing): numba never splits")
    return threads


@pytest.mark.parametrize("parts", [1, 2, 3, 5])
@pytest.mark.parametrize("data", ["gaussian", "pixels"])
def test_split_input_layer_equals_numpy(nb, ref, threads, dtype, data, parts, monkeypatch):
    """The first layer split into 1, 2, 3 (uneven) or 5 parts by input feature, from float rows
    or byte codes, for each activation and a full and a partial batch."""
    monkeypatch.setattr(threads, "SPLIT_PARTS", parts)
    x = rand((300, 23), dtype, 0) if data == "gaussian" else pixels((300, 23), dtype)
    W, b = rand((23, 7), dtype, 1), rand(7, dtype, 2)
    rng = np.random.default_rng(3)
    for act in ("identity", "relu", "sigmoid"):
        layers = [B.InputLayer(B, W, b, np.zeros_like(W), x, 40, act) for B in (nb, ref)]
        assert len(layers[0].cut) - 1 == parts
        assert layers[0].byte_coded is (data == "pixels")
        for n in (40, 13):
            idx, dz = rng.integers(0, 300, n), rand((n, 7), dtype, n)
            out = []
            for layer in layers:
                y = np.full((n, 7), np.nan, dtype)
                with nb.train_scope():
                    layer.forward(idx, y)
                    layer.backward(dz)
                out.append((y, layer.dW.copy()))
            same(out[0][0], out[1][0], dtype, 23)
            same(out[0][1], out[1][1], dtype, n)


def test_training_repeats_bit_for_bit_at_a_given_number_of_parts(nb, threads, monkeypatch):
    """A run is deterministic: the parts' partial sums are added in a fixed order after the join
    and BLAS is single-threaded inside them, so the same number of parts (FASTDL_NUM_THREADS)
    gives the same numbers every time. Another number of parts adds in another order: the same
    numbers within float32 rounding (not bit for bit, as README says), but for a ReLU unit that a
    rounding difference puts on the other side of 0 for one sample: its weights then move apart by
    about that sample's step (here unit 32 at step ~45 over the non-zero codes: 3e-5)."""
    import fastdl
    x, t = pixels((1000, 784), np.float32), np.random.default_rng(0).integers(0, 10, 1000)

    def train(parts):
        monkeypatch.setattr(threads, "SPLIT_PARTS", parts)
        net = fastdl.TwoLayerNet(784, 50, 10, backend="numba", seed=0)
        h = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, iterations=100, seed=0, progress=False,
                           evaluate_train=False).fit()
        return np.array(h.loss), net.params_numpy()
    (loss2, p2), (again, q2), (loss1, p1) = train(2), train(2), train(1)
    assert np.array_equal(loss2, again) and all(np.array_equal(p2[k], q2[k]) for k in p2)
    np.testing.assert_allclose(loss1, loss2, rtol=1e-5)
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-4, atol=1e-4)


def test_outside_training_nothing_splits(nb, threads):
    """BLAS is pinned only inside train_scope(), so only there may a GEMM split across threads."""
    assert threads.parts(10_000) == 1 and not threads.active()
    with nb.train_scope():
        assert threads.active() and threads.parts(10_000) == threads.split_parts(10_000) > 1
    assert threads.parts(10_000) == 1


@pytest.mark.parametrize("shape", [(7, 5, 3), (300, 120, 130), (130, 120, 301), (1, 64, 33)],
                         ids=["small", "rows", "columns", "one-row"])
@pytest.mark.parametrize("transposed", [False, True], ids=["a", "a.T"])
def test_matmul_split_by_rows_or_columns(nb, threads, dtype, shape, transposed, monkeypatch):
    """The step's GEMM hook split by output rows, or by columns where out is wider than tall
    (threshold lowered so a test-sized GEMM splits), with the transposed operands the step
    passes; each split is the one taken."""
    from fastdl.backends.numba import loops, step
    monkeypatch.setattr(step, "SMALL_GEMM", 1000)
    calls = []
    real = loops.split_dot
    monkeypatch.setattr(loops, "split_dot", lambda *args: (calls.append(args[-1]), real(*args))[1])
    m, k, n = shape
    a = rand((k, m), dtype, 0).T if transposed else rand((m, k), dtype, 0)
    bt = rand((n, k), dtype, 1)
    out = np.full((m, n), np.nan, dtype=dtype)
    with nb.train_scope():
        nb.matmul_(out, a, bt.T)
    np.testing.assert_allclose(out, a @ bt.T, **tol(dtype, k))
    assert calls == ([] if m * k * n < 1000 else [n > m])


def test_layer_path_gemm_routes(nb, threads, monkeypatch):
    """In training, tall forward products (evaluation) split across Numba's threads and a batch's
    stay on NumPy's BLAS; outside training nothing splits. All equal NumPy's a @ b."""
    from fastdl.backends.numba import loops, step
    calls = []
    real = loops.split_dot
    monkeypatch.setattr(loops, "split_dot", lambda out, a, *r: (calls.append(a.shape[0]), real(out, a, *r))[1])
    monkeypatch.setattr(step, "SMALL_GEMM", 1000)
    for m in (step.TALL_ROWS, step.TALL_ROWS + 37, 100):
        a, b = rand((m, 60), np.float32, 0), rand((60, 30), np.float32, 1)
        with nb.train_scope():
            np.testing.assert_allclose(step.forward_gemm(a, b), a @ b, **tol(np.float32, 60))
        np.testing.assert_allclose(step.forward_gemm(a, b), a @ b, **tol(np.float32, 60))
    assert calls == [step.TALL_ROWS, step.TALL_ROWS + 37]


def test_num_threads_setting_is_honoured(nb):
    """FASTDL_NUM_THREADS=1: one Numba thread, and the fused step's input layer in one part."""
    code = ("import fastdl, numba, numpy as np; bk = fastdl.get_backend('numba'); "
            "W = np.zeros((30, 4), np.float32); "
            "layer = bk.InputLayer(bk, W, np.zeros(4, np.float32), W.copy(), np.zeros((5, 30), np.float32), 5, 'relu'); "
            "print(numba.get_num_threads(), len(layer.cut) - 1)")
    env = dict(os.environ, FASTDL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_bad_num_threads_setting_says_what_to_do():
    code = "import fastdl; fastdl.get_backend('numba')"
    env = dict(os.environ, FASTDL_NUM_THREADS="two")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "FASTDL_NUM_THREADS='two' must be a positive integer" in out.stderr
    assert "pip install" not in out.stderr         # it said to install numba, which is there
    info = subprocess.run([sys.executable, "-m", "fastdl", "info"], env=env, capture_output=True, text=True)
    numba_line = next(line for line in info.stdout.splitlines() if line.strip().startswith("numba"))
    assert "unusable ValueError: FASTDL_NUM_THREADS='two'" in numba_line and "pip install" not in numba_line


def test_info_reports_compiled_kernels_and_prefetch(nb):
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: the loops run as plain Python, nothing compiles")
    nb.relu_forward(np.ones((2, 2), np.float32))
    info = nb.describe()
    assert "kernels in this process" in info["compiled"] and not info["compiled"].startswith("0 of")
    assert info["prefetch"] == "off" or "rows ahead" in info["prefetch"]
    assert info["threading_layer"].split()[0] in ("omp", "tbb", "workqueue")


TWO_THREADS = """
import sys, threading, numpy as np, fastdl, numba
rng = np.random.default_rng(0)
x, t = rng.random((1000, 784)).astype(np.float32), rng.integers(0, 10, 1000)
def run(i, out):
    net = fastdl.TwoLayerNet(784, 50, 10, backend="numba", seed=i)
    h = fastdl.Trainer(net, fastdl.optimizers.Adam(lr=0.001), x, t, iterations=300, seed=i, progress=False).fit()
    out[i] = (h.loss, net.params_numpy())
alone, together = {}, {}
for i in range(3):
    run(i, alone)
threads = [threading.Thread(target=run, args=(i, together)) for i in range(3)]
[th.start() for th in threads]
[th.join() for th in threads]
same = all(alone[i][0] == together[i][0] and all(np.array_equal(alone[i][1][k], together[i][1][k]) for k in alone[i][1])
           for i in range(3))
print(numba.threading_layer(), "same" if same else "DIFFERENT")
"""


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_trainers_in_several_threads_run_as_they_run_alone(nb, layer):
    """Three trainers in three Python threads at once: with Numba's workqueue threading layer (what
    Numba uses where neither OpenMP nor TBB is found) two parallel launches at once aborted the
    whole process; now they take turns, and each run's numbers are those it gives alone."""
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: no parallel launches, and six runs in plain Python take minutes")
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    r = subprocess.run([sys.executable, "-c", TWO_THREADS], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "same", r.stdout
    if layer == "workqueue":
        assert r.stdout.split()[0] == "workqueue"


def test_a_scope_left_in_one_thread_keeps_the_pin_for_another_still_inside(nb, threads):
    """Trainers in two threads: the first to finish must not unpin SciPy's BLAS under the other
    (its split GEMMs would then fight BLAS's own threads for the cores); the last to finish
    restores it. (Here a helper thread enters first and leaves first.)"""
    import threading
    lib = threads.scipy_blas()[0]
    before = lib.num_threads
    inside, leave, left = threading.Event(), threading.Event(), threading.Event()

    def first():
        with nb.train_scope():
            inside.set()
            leave.wait(30)
        left.set()
    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(30)
    with nb.train_scope():
        leave.set()
        assert left.wait(30)
        assert lib.num_threads == 1 and threads.active()     # the first one left; this one is inside
    worker.join(30)
    assert lib.num_threads == before and not threads.active()


def test_a_trainer_in_another_thread_pins_blas_too(nb, threads):
    """threadpoolctl lets only the first thread that set OpenBLAS's count set it again (here the
    main thread, as a user's own threadpoolctl call would make it): a trainer in a worker thread
    must pin SciPy's BLAS all the same, and restore it after."""
    import threading
    lib = threads.scipy_blas()[0]
    before = lib.num_threads
    lib.set_num_threads(before)                 # the main thread now controls it, for threadpoolctl
    seen = []

    def worker():
        with nb.train_scope():
            seen.append(lib.num_threads)
        seen.append(lib.num_threads)
    th = threading.Thread(target=worker)
    th.start()
    th.join(30)
    assert seen == [1, before]


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_the_thread_cap_holds_every_blas_while_training_and_is_restored(nb, threads, monkeypatch, where):
    """FASTDL_NUM_THREADS caps every BLAS (NumPy's too) inside train_scope, from whichever thread
    the trainer runs in (threadpoolctl would ignore a worker thread's limit), and restores it."""
    import threading
    from threadpoolctl import ThreadpoolController
    blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    if max(lib.num_threads for lib in blas) < 2:
        pytest.skip("every BLAS here runs one thread already: no cap to see")
    monkeypatch.setenv("FASTDL_NUM_THREADS", "1")
    before = [lib.num_threads for lib in blas]
    for lib in blas:
        lib.set_num_threads(lib.num_threads)     # the main thread controls them, for threadpoolctl
    seen = []

    def train():
        with nb.train_scope():
            seen.append([lib.num_threads for lib in blas])
    if where == "main thread":
        train()
    else:
        th = threading.Thread(target=train)
        th.start()
        th.join(30)
    assert seen == [[1] * len(blas)]
    assert [lib.num_threads for lib in blas] == before


LAUNCH_POLICY = """
import json, numpy as np, fastdl
from fastdl.backends.numba import first_layer, step, threads
rng = np.random.default_rng(0)
x, t = rng.random((600, 784)).astype(np.float32), rng.integers(0, 10, 600)
out = {"layer": threads.threading_layer()}
builds = lambda parallel: (first_layer.split_layer(parallel), step.update_parts("sgd_update", parallel))
for hidden, batch in (([50], 100), ([1000], 256)):
    before = {p: [len(f.signatures) for f in builds(p)] for p in (False, True)}
    net = fastdl.MultiLayerNet(784, hidden, 10, backend="numba", seed=0)
    h = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, iterations=5, batch_size=batch, seed=0,
                       progress=False).fit()
    ran = {p: [len(f.signatures) > b for f, b in zip(builds(p), before[p])] for p in (False, True)}
    out[str(hidden[0])] = {"serial": ran[False], "parallel": ran[True], "loss": h.loss,
                           "W1": net.params_numpy()["W1"].tolist()}
print(json.dumps(out))
"""


def _policy_run(**env):
    r = subprocess.run([sys.executable, "-c", LAUNCH_POLICY], capture_output=True, text=True,
                       env=dict(os.environ, **env), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return __import__("json").loads(r.stdout)


def test_on_the_workqueue_layer_small_layers_run_in_the_calling_thread(nb, threads):
    """A parallel launch costs ~70 us on Numba's workqueue layer (~2 us on OpenMP): the book's
    first layer and update run there as serial functions, one part, with the numbers that one
    part gives on OpenMP; the 784-1000-10 network's layer still splits."""
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: nothing runs in parallel")
    queue = _policy_run(NUMBA_THREADING_LAYER="workqueue")
    assert queue["layer"] == "workqueue"
    assert queue["50"]["serial"] == [True, True] and queue["50"]["parallel"] == [False, False]
    assert queue["1000"]["parallel"] == [True, True]        # the first layer and the update split
    one_part = _policy_run(NUMBA_THREADING_LAYER="default", FASTDL_NUM_THREADS="1")
    assert one_part["layer"] != "workqueue" and one_part["50"]["parallel"] == [True, True]
    assert queue["50"]["loss"] == one_part["50"]["loss"] and queue["50"]["W1"] == one_part["50"]["W1"]


def test_loading_the_backend_keeps_a_thread_count_the_caller_chose(nb):
    """Without FASTDL_NUM_THREADS, loading the backend leaves Numba's count as the caller set it
    (training still runs on all cores: train_scope sets its own and restores the caller's)."""
    code = ("import numba; numba.set_num_threads(1); import fastdl; bk = fastdl.get_backend('numba')\n"
            "before = numba.get_num_threads()\n"
            "with bk.train_scope(): inside = numba.get_num_threads()\n"
            "print(before, inside, numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS)")
    env = {k: v for k, v in os.environ.items() if k != "FASTDL_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    before, inside, after, every = out.stdout.split()
    assert (before, inside, after) == ("1", every, "1")
