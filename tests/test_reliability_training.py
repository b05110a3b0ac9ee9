"""The reliability catalogue, training and state: divergence that the losses alone do not show, values
that overflow on the way in, hyperparameters and paths checked at construction, compressed .npz
members, and FASTDL_NUM_THREADS in every thread that trains. Each case is recorded in
docs/reliability.md."""

import threading
import zipfile

import numpy as np
import pytest

import fastdl
from fastdl import errors as E
from fastdl.optimizers import SGD
from reliability import record

RNG = np.random.default_rng(0)
X = RNG.standard_normal((300, 6)).astype(np.float32)
T = RNG.integers(0, 4, 300)


def net(bk, **kw):
    return fastdl.TwoLayerNet(6, 5, 4, backend=bk, seed=0, **kw)


def expect(area, case, backend, exc_type, words, call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - classified below
        ok = isinstance(exc, exc_type) and words in str(exc)
        record(area, case, backend.name, exc_type.__name__, type(exc).__name__, ok)
        assert ok, f"{case}: {type(exc).__name__}: {exc}"
        return exc
    record(area, case, backend.name, exc_type.__name__, "no error (silent result)", False)
    pytest.fail(f"{case}: no error")


@pytest.mark.parametrize("steps,sync", [(1, 100), (6, 1), (6, 6)])
def test_non_finite_parameters_after_the_last_update_are_divergence(backend, steps, sync):
    """The loss is computed before the update, so a run that blows up on its last step shows it
    only in the parameters: detected, and finite parameters restored."""
    n = net(backend)
    tr = fastdl.Trainer(n, SGD(lr=1e39), X, T, iterations=steps, batch_size=50, sync_every=sync, progress=False,
                        seed=0, explosion=None)
    expect("Divergence", f"non-finite weights after the last update (iterations={steps}, sync_every={sync})",
           backend, E.DivergenceError, "diverged", tr.fit)
    assert all(np.isfinite(v).all() for v in n.params_numpy().values())


def test_an_exploding_but_finite_run_is_divergence(backend):
    """A loss that grows 1e5-fold while every number stays finite (SGD lr=1 on inputs scaled by
    100) is stopped by the default rule, at the same step every time and on every backend."""
    for _ in range(2):
        n = net(backend)
        tr = fastdl.Trainer(n, SGD(lr=1.0), X * 100, T, epochs=4, batch_size=50, progress=False, seed=0,
                            sync_every=1)
        exc = expect("Divergence", "exploding but finite (lr=1, inputs x100)", backend, E.DivergenceError,
                     "exploded", tr.fit)
        assert exc.step == 4
        assert all(np.isfinite(v).all() for v in n.params_numpy().values())


def test_float64_values_beyond_float32_range_are_refused(backend):
    big = X.astype(np.float64)
    big[3, 2] = 1e300
    expect("Values that overflow on the way in", "float64 1e300 into a float32 network (predict)", backend,
           E.NonFiniteError, "beyond float32's range", lambda: net(backend).predict(big))
    expect("Values that overflow on the way in", "float64 1e300 into a float32 network (Trainer)", backend,
           E.NonFiniteError, "x_train holds", lambda: fastdl.Trainer(net(backend), SGD(0.1), big, T, iterations=1))


@pytest.mark.parametrize("case,kw,words", [
    ("epochs=inf", dict(epochs=float("inf")), "positive finite number"),
    ("explosion=0.5", dict(iterations=1, explosion=0.5), "above 1"),
    ("sync_every=2.5", dict(iterations=1, sync_every=2.5), "positive integer"),
    ("iterations=1e4", dict(iterations=1e4), "a float: write 10000"),
])
def test_trainer_arguments_are_checked_at_construction(backend, case, kw, words):
    expect("Hyperparameters at construction", f"Trainer {case}", backend, ValueError, words,
           lambda: fastdl.Trainer(net(backend), SGD(0.1), X, T, progress=False, **kw))


@pytest.mark.parametrize("case,exc_type,words,call", [
    ("TwoLayerNet weight_init_std=-1", ValueError, "must be a positive finite number, 'he' or 'xavier'",
     lambda bk: fastdl.TwoLayerNet(6, 5, 4, weight_init_std=-1, backend=bk)),
    ("MultiLayerNet without sizes", TypeError, "needs input_size, hidden_sizes",
     lambda bk: fastdl.MultiLayerNet(6, backend=bk)),
    ("Dropout ratio 1.0", ValueError, "dropout_ratio=1.0 must be a number in [0, 1)",
     lambda bk: fastdl.Dropout(1.0, backend=bk)),
    ("BatchNormalization momentum 1.5", ValueError, "momentum=1.5 must be a number in [0, 1)",
     lambda bk: fastdl.BatchNormalization(np.ones(3, np.float32), np.zeros(3, np.float32), momentum=1.5, backend=bk)),
    ("an optimizer given integer parameters", E.DTypeError, "optimizers update float32 or float64 arrays",
     lambda bk: SGD(0.1).update({"w": bk.asarray(np.zeros(3, np.int64))}, {"w": bk.asarray(np.zeros(3, np.int64))})),
    ("a number's gradient of 3 values", E.ShapeError, "its parameter is a number",
     lambda bk: SGD(0.1).update({"w": 1.0}, {"w": np.zeros(3)})),
])
def test_layers_networks_and_optimizers_refuse_what_they_cannot_use(backend, case, exc_type, words, call):
    expect("Hyperparameters at construction", case, backend, exc_type, words, lambda: call(backend))


@pytest.mark.parametrize("seed", [-1, 2.5, True, "7"])
def test_seeds_are_checked_where_they_are_given(backend, seed):
    """NumPy's own message ("expected non-negative integer") named no argument."""
    from fastdl.compat import shuffle_dataset
    from fastdl.layers import Dropout
    for what, call in (("Trainer", lambda: fastdl.Trainer(net(backend), SGD(0.1), X, T, iterations=1, seed=seed)),
                       ("TwoLayerNet", lambda: fastdl.TwoLayerNet(6, 5, 4, backend=backend, seed=seed)),
                       ("Dropout", lambda: Dropout(0.5, backend=backend, seed=seed)),
                       ("shuffle_dataset", lambda: shuffle_dataset(X, T, seed))):
        expect("Hyperparameters at construction", f"{what} seed={seed!r}", backend, ValueError,
               f"seed={seed!r} must be an integer >= 0", call)


@pytest.mark.parametrize("callbacks,words", [([print, 1], "which is not callable"), (5, "must be a list of functions")])
def test_callbacks_are_checked_at_construction(backend, callbacks, words):
    """Not at the first epoch's end, after a first stretch of training."""
    expect("Hyperparameters at construction", f"Trainer callbacks={callbacks!r}", backend, TypeError, words,
           lambda: fastdl.Trainer(net(backend), SGD(0.1), X, T, iterations=1, callbacks=callbacks))


@pytest.mark.parametrize("what,args,words", [
    ("optimizer='sgd'", lambda bk: (net(bk), "sgd"), "is not a fastdl optimizer"),
    ("network=None", lambda bk: (None, SGD(0.1)), "is not a fastdl network"),
])
def test_a_trainer_is_given_a_fastdl_network_and_optimizer(backend, what, args, words):
    """Anything else failed deep inside, with an AttributeError."""
    expect("Hyperparameters at construction", f"Trainer {what}", backend, TypeError, words,
           lambda: fastdl.Trainer(*args(backend), X, T, iterations=1))


@pytest.mark.parametrize("make", [lambda: fastdl.optimizers.Adam(0.01), lambda: fastdl.optimizers.Momentum(0.1)],
                         ids=["adam", "momentum"])
def test_an_optimizer_with_another_networks_state_is_refused(backend, make):
    """Its moments (and Adam's step count) carried over to the second network of the same shapes
    without a word: the same run gave another result with a reused optimizer than with a new one.
    The network it trained may go on with it; an optimizer without state (SGD) may move on."""
    opt, first = make(), net(backend)
    fastdl.Trainer(first, opt, X, T, iterations=3, progress=False).fit()
    state = {k: v.copy() for k, v in opt.state[opt.state_names[0]].items()}
    second = net(backend)
    expect("Hyperparameters at construction", f"Trainer with a {type(opt).__name__} of another network", backend,
           ValueError, "has taken 3 steps training another network", lambda: fastdl.Trainer(second, opt, X, T, iterations=1))
    assert opt.step == 3 and all((opt.state[opt.state_names[0]][k] == v).all() for k, v in state.items())
    fastdl.Trainer(first, opt, X, T, iterations=3, progress=False).fit()        # the same network goes on
    assert opt.step == 6
    del first                                                # gone: its state is still not the second's
    with pytest.raises(ValueError, match="another network"):
        fastdl.Trainer(second, opt, X, T, iterations=1)
    sgd = SGD(0.1)
    for _ in range(2):
        fastdl.Trainer(net(backend), sgd, X, T, iterations=2, progress=False).fit()


def test_resuming_from_a_folder_names_the_checkpoint_file(tmp_path):
    tr = fastdl.Trainer(net("numpy"), SGD(0.1), X, T, iterations=1)
    expect("Hyperparameters at construction", "Trainer.resume(a folder)", fastdl.get_backend("numpy"),
           FileNotFoundError, str(tmp_path / "checkpoint.npz"), lambda: tr.resume(tmp_path))


@pytest.mark.parametrize("kw,exc_type,words", [
    (dict(dtype="float16"), E.DTypeError, "dtype float16 is not supported"),
    (dict(backend="nope"), E.UnknownBackendError, "unknown backend 'nope'"),
])
def test_loading_with_a_bad_argument_blames_the_argument_not_the_file(tmp_path, kw, exc_type, words):
    """Both were reported as a FileFormatError, 'manifest architecture ... is not usable'."""
    path = fastdl.io.save(net("numpy"), tmp_path / "p.npz")
    exc = expect("Hyperparameters at construction", f"io.load({', '.join(f'{k}={v!r}' for k, v in kw.items())})",
                 fastdl.get_backend("numpy"), exc_type, words, lambda: fastdl.io.load(path, **kw))
    assert not isinstance(exc, E.FileFormatError)


def test_saving_onto_a_folder_is_refused_before_writing_anything(tmp_path):
    """The temporary file of an atomic write sits beside the target: for a folder, in its parent."""
    target = tmp_path / "runs"
    target.mkdir()
    expect("Hyperparameters at construction", "io.save onto an existing folder", fastdl.get_backend("numpy"),
           IsADirectoryError, "is a folder", lambda: fastdl.io.save(net("numpy"), target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and not any(target.iterdir())


SET_PARAMS_CASES = [
    ("a NaN weight", lambda p: dict(p, W2=np.where(np.arange(20).reshape(5, 4) == 7, np.nan, p["W2"])),
     E.NonFiniteError, "1 non-finite value"),
    ("float64 1e300 into float32", lambda p: dict(p, W2=np.full((5, 4), 1e300)), E.NonFiniteError, "range"),
    ("a bias of the wrong shape", lambda p: dict(p, b2=np.zeros(3)), E.ShapeError, "expects (4,)"),
    ("complex values", lambda p: dict(p, W2=p["W2"].astype(complex)), E.DTypeError, "real numbers"),
    ("text", lambda p: dict(p, W2="0.5"), E.DTypeError, "real numbers"),
    ("a list of arrays", lambda p: list(p.values()), TypeError, "dict of arrays"),
]


@pytest.mark.parametrize("case,make,exc_type,words", SET_PARAMS_CASES, ids=[c[0] for c in SET_PARAMS_CASES])
def test_set_params_checks_every_value_before_copying_any(backend, case, make, exc_type, words):
    """W1 and b1 come first and are valid: a refused call must not have copied them."""
    n = net(backend)
    before = n.params_numpy()
    new = {k: v + 1 for k, v in before.items()}
    expect("Values that overflow on the way in", f"set_params with {case} (after two good ones)", backend,
           exc_type, words, lambda: n.set_params(make(new)))
    for k, v in n.params_numpy().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def bn_net(bk):
    return fastdl.MultiLayerNet(6, [5, 3], 4, batch_norm=True, dropout=0.3, backend=bk, seed=0)


# running_mean1 comes first and is valid in each: a refused call must not have copied it
SET_BUFFERS_CASES = [
    ("a NaN running mean", lambda b: dict(b, running_mean2=np.array([0.0, np.nan, 0.0])), E.NonFiniteError,
     "buffer running_mean2 holds 1 non-finite"),
    ("a negative running variance", lambda b: dict(b, running_var2=np.array([1.0, -0.5, 1.0])), ValueError,
     "negative variance"),
    ("a running variance of the wrong shape", lambda b: dict(b, running_var2=np.ones(5)), E.ShapeError,
     "buffer running_var2 has shape (5,)"),
    ("a missing buffer", lambda b: {k: v for k, v in b.items() if k != "running_var2"}, ValueError,
     "buffer names differ"),
    ("text", lambda b: dict(b, running_var2="1"), E.DTypeError, "real numbers"),
    ("a list", lambda b: list(b.values()), TypeError, "dict of arrays"),
]


@pytest.mark.parametrize("case,make,exc_type,words", SET_BUFFERS_CASES, ids=[c[0] for c in SET_BUFFERS_CASES])
def test_set_buffers_checks_every_value_before_copying_any(backend, case, make, exc_type, words):
    n = bn_net(backend)
    before = n.buffers_numpy()
    new = {k: v + 2 for k, v in before.items()}
    expect("Values that overflow on the way in", f"set_buffers with {case} (after a good one)", backend,
           exc_type, words, lambda: n.set_buffers(make(new)))
    for k, v in n.buffers_numpy().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    n.set_buffers(new)                       # and good ones are taken
    assert all(np.array_equal(n.buffers_numpy()[k], new[k].astype(np.float32)) for k in new)


@pytest.mark.parametrize("state", [[[1, 2]], [[1, 2], [3, 4], [5, 6]], [[1, -2], [3, 4]], [[1, 2.5], [3, 4]],
                                   [[1, 2], [3]], [[1, True], [3, 4]], "ab", 5])
def test_set_dropout_state_checks_the_whole_state_first(backend, state):
    """Two Dropout layers: a state for one or three, a negative or non-integer counter, a pair of
    one, or no list at all is refused, and neither layer's state changes."""
    n = bn_net(backend)
    before = n.dropout_state()
    expect("Values that overflow on the way in", f"set_dropout_state({state!r})", backend, ValueError,
           "does not fit this network's 2 Dropout layer(s)", lambda: n.set_dropout_state(state))
    assert n.dropout_state() == before
    n.set_dropout_state([[7, 1], [np.uint64(2**63), 0]])
    assert n.dropout_state() == [[7, 1], [2**63, 0]]


def test_set_params_casts_numbers_to_the_network_dtype(backend):
    n = net(backend)
    n.set_params({k: np.ones(v.shape, dtype=np.int64) for k, v in n.params.items()})
    for v in n.params.values():
        assert v.dtype == np.float32
        assert (backend.to_numpy(v) == 1).all()


def test_a_checkpoint_path_that_is_a_folder_is_refused(backend, tmp_path):
    expect("Hyperparameters at construction", "checkpoint= an existing folder", backend, ValueError, "is a folder",
           lambda: fastdl.Trainer(net(backend), SGD(0.1), X, T, iterations=1, checkpoint=tmp_path))


def test_compressed_npz_members_are_refused_before_inflating(tmp_path):
    good = fastdl.save(net("numpy"), tmp_path / "good.npz")
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    exc_type = E.FileFormatError
    try:
        fastdl.load(bomb)
        ok = False
    except exc_type as exc:
        ok = "is compressed" in str(exc)
    record("Files", "a .npz with compressed members (could inflate past its size)", "numpy", "FileFormatError",
           "FileFormatError" if ok else "accepted", ok)
    assert ok


def test_num_threads_holds_in_every_thread_that_trains(monkeypatch):
    nb = pytest.importorskip("fastdl.backends.numba")
    import numba
    monkeypatch.setenv("FASTDL_NUM_THREADS", "1")
    seen = []

    def run():
        tr = fastdl.Trainer(net("numba"), SGD(0.1), X, T, iterations=2, batch_size=50, progress=False,
                            callbacks=[lambda trainer, rec: seen.append(numba.get_num_threads())])
        tr.fit()
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    ok = seen and all(n == 1 for n in seen)
    record("Threads", "FASTDL_NUM_THREADS=1 in a training thread other than the main one", "numba", "1 thread",
           f"{seen[0] if seen else None} threads", bool(ok))
    assert ok, seen
    del nb


CHILD = """
import sys, numpy as np, fastdl
from fastdl.optimizers import Momentum
bk = fastdl.get_backend(sys.argv[1])
case = sys.argv[2]
opt = Momentum(0.1)
a = {"W1": bk.asarray(np.ones((4, 3), np.float32))}
try:
    if case == "optimizer reused for a network of other shapes":
        opt.update(a, {"W1": bk.asarray(np.ones((4, 3), np.float32))}, bk)
        b = {"W1": bk.asarray(np.ones((400, 300), np.float32))}
        opt.update(b, {"W1": bk.asarray(np.ones((400, 300), np.float32))}, bk)
    else:
        opt.update(a, {"W1": bk.asarray(np.ones((40, 30), np.float32))}, bk)
except fastdl.ShapeError as exc:
    print("refused:", exc)
    sys.exit(3)
"""


@pytest.mark.parametrize("case", ["optimizer reused for a network of other shapes", "gradient larger than its parameter"])
def test_kernel_bound_mistakes_never_crash_the_process(backend, case):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", CHILD, backend.name, case], capture_output=True, text=True, timeout=300)
    ok = r.returncode == 3 and "refused:" in r.stdout
    record("Memory safety (subprocess)", case, backend.name, "clean ShapeError, exit 3", f"exit {r.returncode}", ok)
    assert ok, (r.returncode, r.stdout[-500:], r.stderr[-1500:])


BOMBS = """
import os, resource, sys, zipfile
import numpy as np, fastdl
from fastdl import datasets
kind, path = sys.argv[1], sys.argv[2]
vm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")][0] * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), resource.RLIM_INFINITY))   # 64 MB to spare
try:
    if kind == "npz":
        fastdl.load(path)
    else:
        datasets.load_mnist(root=path, download=False)
except fastdl.FileFormatError as exc:
    print("refused:", exc)
    sys.exit(3)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="uses /proc and RLIMIT_AS (Linux)")
@pytest.mark.parametrize("kind", ["npz", "idx"])
def test_refused_bombs_stay_within_a_few_megabytes(tmp_path, kind):
    """A 2 GB array squeezed into a small compressed .npz, and a 10 GB (sparse) uncompressed IDX
    file: each refused under a memory limit of the interpreter's size plus 64 MB."""
    import subprocess
    import sys
    if kind == "npz":
        path = tmp_path / "bomb.npz"
        good = fastdl.save(fastdl.TwoLayerNet(4, 3, 2), tmp_path / "good.npz")
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info))
            header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
            header["shape"] = (1 << 29,)
            with dst.open("W9.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                chunk = bytes(1 << 24)
                for _ in range(128):
                    f.write(chunk)
    else:
        path = tmp_path / "mnist"
        path.mkdir()
        with open(path / "train-images-idx3-ubyte", "wb") as f:
            f.truncate(10 << 30)
    r = subprocess.run([sys.executable, "-c", BOMBS, kind, str(path)], capture_output=True, text=True, timeout=300)
    ok = r.returncode == 3
    record("No memory bombs", f"{'a compressed .npz inflating to 2 GB' if kind == 'npz' else 'a 10 GB uncompressed IDX file'}"
           " under a memory limit of +64 MB", "numpy", "FileFormatError, no MemoryError", f"exit {r.returncode}", ok)
    assert ok, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
