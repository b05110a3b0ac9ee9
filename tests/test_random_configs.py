"""Every option at once (hypothesis): random networks and runs trained by the Trainer on each
backend, fused step and layer path, against NumPy's layer path. The other tests vary one option
at a time; a bug that only shows in a combination (Batch Norm with Dropout and one-hot labels at
a batch of 1, say) is what this looks for. Drawn: depth and widths, activation, Batch Norm,
Dropout, weight decay, optimizer and learning rate, dtype, data (Gaussian or pixels, which numba
keeps as byte codes), label form, batch size, sampling, steps, a test set or none. The same
runs stopped at a random step, saved and resumed must equal the run uninterrupted, bit for bit."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdl
from conftest import backend_params
from fastdl.backends import backend_status

OPTIMIZERS = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]
ADAPTIVE = {"AdaGrad", "RMSprop", "Adam"}


@st.composite
def runs(draw):
    bn = draw(st.booleans())
    # float32 Batch Norm is compared in tests/test_chapter6.py, on networks of sensible sizes: on
    # the degenerate ones drawn here (one input, layers of width one or two, mostly-zero pixels)
    # its normalisation cancels most of float32's digits, and float64 is what can be compared.
    dtype = "float64" if bn else draw(st.sampled_from(["float32", "float64"]))
    n = draw(st.integers(2 if bn else 1, 90))
    opt = draw(st.sampled_from(OPTIMIZERS))
    # AdaGrad, RMSprop and Adam divide a gradient by its own size: with their eps of 1e-7, a
    # gradient near 1e-7 (a cancellation, a unit Dropout left one row) moves its weight by up to
    # ~lr in a way the summation order decides. A larger eps keeps such steps far below the
    # tolerance and real steps adaptive.
    eps = 1e-3 if opt in ADAPTIVE else None
    # Batch Norm over rows that are all the same divides their (zero) deviations by sqrt(1e-7):
    # residue times 3162 at each such layer. Distinct rows (shuffled batches of two or more) keep
    # that to layers whose input rows are all zero, where it reaches only the bias before it.
    sampling = "shuffle" if bn else draw(st.sampled_from(["shuffle", "replacement"]))
    return dict(
        dtype=dtype, bn=bn, opt=opt, eps=eps, n=n, batch=draw(st.integers(2 if bn else 1, n)),
        d=draw(st.integers(1, 30)), classes=draw(st.integers(2, 12)),
        hidden=draw(st.lists(st.integers(1, 20), max_size=3)),
        activation=draw(st.sampled_from(["relu", "sigmoid"])),
        dropout=draw(st.sampled_from([0.0, 0.3, 0.6])), decay=draw(st.sampled_from([0.0, 0.01, 0.1])),
        lr=draw(st.floats(1e-3, 0.1)), pixels=draw(st.booleans()), onehot=draw(st.booleans()),
        sampling=sampling, steps=draw(st.integers(1, 8)),
        test_set=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def trainer(c, backend, fast, steps=None):
    """A Trainer of the run ``c`` on ``backend`` (``steps``: other than the run's)."""
    rng = np.random.default_rng(c["seed"])
    shape = (c["n"], c["d"])
    if c["pixels"]:         # MNIST-like: k/255, mostly zeros
        x = (rng.integers(0, 256, shape) * (rng.random(shape) < 0.3) / 255).astype(c["dtype"])
    else:
        x = rng.standard_normal(shape).astype(c["dtype"])
    t = rng.integers(0, c["classes"], c["n"])
    if c["onehot"]:
        t = np.eye(c["classes"], dtype=np.int64)[t]
    held_out = max(1, c["n"] // 2)
    xt, tt = (x[:held_out], t[:held_out]) if c["test_set"] else (None, None)
    net = fastdl.MultiLayerNet(c["d"], c["hidden"], c["classes"], activation=c["activation"],
                               weight_decay=c["decay"], dropout=c["dropout"], batch_norm=c["bn"],
                               dtype=c["dtype"], backend=backend, seed=c["seed"])
    opt = fastdl.optimizers.get_optimizer(c["opt"], lr=c["lr"], **({"eps": c["eps"]} if c["eps"] else {}))
    tr = fastdl.Trainer(net, opt, x, t, xt, tt, iterations=steps or c["steps"], batch_size=c["batch"],
                        sampling=c["sampling"], seed=c["seed"], progress=False, fast_path=fast, explosion=None)
    assert tr.fast_path is fast
    return tr


def train(c, backend, fast):
    """Losses, parameters and buffers after the run ``c`` on ``backend``."""
    tr = trainer(c, backend, fast)
    h = tr.fit()
    assert len(h.loss) == c["steps"]
    return np.array(h.loss), tr.network.params_numpy(), tr.network.buffers_numpy()


def compared(c, name: str) -> bool:
    """All but what Batch Norm makes meaningless: the bias before it, whose gradient is zero in
    exact arithmetic (the normalisation subtracts it), so that training only moves it by
    rounding residue, and the running mean, which carries that bias. The loss and everything
    else do not depend on either in training."""
    return not (c["bn"] and (name.startswith("running_mean")
                             or name[0] == "b" and name[1:].isdigit() and int(name[1:]) <= len(c["hidden"])))


def check_against_numpy(backend, c):
    with np.errstate(all="ignore"):         # an lr that overflows a sigmoid is the same on both
        want = train(c, "numpy", fast=False)
        for fast in (True, False):
            got = train(c, backend, fast)
            tol = dict(rtol=1e-3, atol=1e-4) if c["dtype"] == "float32" else dict(rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(got[0], want[0], **tol, err_msg=f"losses (fast path {fast})")
            assert got[1].keys() == want[1].keys() and got[2].keys() == want[2].keys()
            for group, g, w in (("parameter", got[1], want[1]), ("buffer", got[2], want[2])):
                for k in w:
                    if compared(c, k):
                            np.testing.assert_allclose(g[k], w[k], **tol, err_msg=f"{group} {k} (fast path {fast})")


# A quarter of the profile's count (conftest.py): each example trains three networks.
EXAMPLES = settings(max_examples=settings.default.max_examples // 4,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", backend_params())
@EXAMPLES
@given(c=runs())
def test_random_runs_equal_numpys_layer_path(name, c):
    """NumPy's own fused step is in the list: it is the oracle of the others' fused steps (and
    cupy's on a GPU; the CUDA code runs in the emulated GPU's tests here)."""
    ok, reason = backend_status(name)
    if not ok:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    check_against_numpy(name, c)


@EXAMPLES
@given(c=runs())
def test_random_runs_on_the_emulated_gpu_equal_numpys_layer_path(emu, c):
    check_against_numpy(emu, c)


def check_resume(backend, c, stop, fast):
    c = dict(c, steps=max(c["steps"], 2))
    stop = min(stop, c["steps"] - 1)
    with np.errstate(all="ignore"), tempfile.TemporaryDirectory() as folder:
        whole = trainer(c, backend, fast)
        h_whole = whole.fit()
        first = trainer(c, backend, fast, steps=stop)
        first.fit()
        first.save_checkpoint(Path(folder) / "c.npz")
        second = trainer(c, backend, fast).resume(Path(folder) / "c.npz")
        assert second.step == stop
        h = second.fit()
    np.testing.assert_array_equal(h.loss, h_whole.loss)
    for got, want in ((second.network.params_numpy(), whole.network.params_numpy()),
                      (second.network.buffers_numpy(), whole.network.buffers_numpy())):
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("name", backend_params())
@EXAMPLES
@given(c=runs(), stop=st.integers(1, 7), fast=st.booleans())
def test_random_runs_stopped_and_resumed_equal_the_run_bit_for_bit(name, c, stop, fast):
    """A checkpoint holds all a run needs: the parameters, the optimizer's state, Batch Norm's
    running averages, the Dropout and sampling generators, the epoch's batch order and place."""
    ok, reason = backend_status(name)
    if not ok:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    check_resume(name, c, stop, fast)


@EXAMPLES
@given(c=runs(), stop=st.integers(1, 7), fast=st.booleans())
def test_random_runs_on_the_emulated_gpu_stopped_and_resumed_equal_the_run(emu, c, stop, fast):
    check_resume(emu, c, stop, fast)


@EXAMPLES
@given(c=runs(), stop=st.integers(1, 7), pair=st.sampled_from([(a, b) for a in ("numpy", "numba", "emu")
                                                              for b in ("numpy", "numba", "emu") if a != b]))
def test_files_written_on_one_backend_go_on_on_another(emu, c, stop, pair):
    """A checkpoint taken on one backend resumes on another (the run then equals NumPy's
    uninterrupted run within the tolerance), and a parameter file loads there exactly."""
    if "numba" in pair and not backend_status("numba")[0]:
        pytest.skip(f"backend 'numba' unavailable: {backend_status('numba')[1]}")
    on = {"numpy": "numpy", "numba": "numba", "emu": emu}
    c = dict(c, steps=max(c["steps"], 2))
    stop = min(stop, c["steps"] - 1)
    with np.errstate(all="ignore"), tempfile.TemporaryDirectory() as folder:
        whole = trainer(c, "numpy", False)
        h_whole = whole.fit()
        first = trainer(c, on[pair[0]], True, steps=stop)
        first.fit()
        first.save_checkpoint(Path(folder) / "c.npz")
        loaded = fastdl.load(fastdl.save(first.network, Path(folder) / "p.npz"), backend=on[pair[1]])
        second = trainer(c, on[pair[1]], True).resume(Path(folder) / "c.npz")
        h = second.fit()
    assert loaded.backend is second.backend
    for k, v in first.network.params_numpy().items():
        np.testing.assert_array_equal(loaded.params_numpy()[k], v, err_msg=k)
    tol = dict(rtol=1e-3, atol=1e-4) if c["dtype"] == "float32" else dict(rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(h.loss, h_whole.loss, **tol)
    for k, v in whole.network.params_numpy().items():
        if compared(c, k):
            np.testing.assert_allclose(second.network.params_numpy()[k], v, **tol, err_msg=k)
