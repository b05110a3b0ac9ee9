"""Numba-specific checks: end-to-end agreement with NumPy on real MNIST, JIT bookkeeping."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl.backends import backend_status

ok, why = backend_status("numba")
pytestmark = pytest.mark.skipif(not ok, reason=f"numba backend unavailable: {why}")


def _train(backend, x, t, xt, tt, dtype, **kw):
    net = fastdl.TwoLayerNet(784, 50, 10, backend=backend, dtype=dtype, seed=0)
    h = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, xt, tt, batch_size=100, seed=0,
                       progress=False, **kw).fit()
    return h


def test_one_epoch_accuracy_matches_numpy(mnist):
    (x, t), (xt, tt) = mnist
    a = _train("numba", x, t, xt, tt, "float32", epochs=1)
    b = _train("numpy", x, t, xt, tt, "float32", epochs=1)
    assert abs(a.test_acc[-1] - b.test_acc[-1]) <= 0.003
    assert a.test_acc[-1] > 0.9


def test_float64_loss_curve_matches_numpy(mnist):
    (x, t), _ = mnist
    a = _train("numba", x[:20000], t[:20000], None, None, "float64", iterations=100)
    b = _train("numpy", x[:20000], t[:20000], None, None, "float64", iterations=100)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)


def test_trainer_picks_the_fused_path():
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    net = fastdl.TwoLayerNet(4, 3, 2, backend="numba")
    assert fastdl.Trainer(net, fastdl.optimizers.SGD(0.1), x, np.arange(30) % 2, iterations=1).fast_path


def test_info_reports_compiled_kernels():
    bk = fastdl.get_backend("numba")
    bk.relu_forward(np.ones((2, 2), np.float32))
    assert "kernels compiled" in bk.describe()["compiled"]
    assert not bk.describe()["compiled"].startswith("0/")


def test_num_threads_setting_is_honoured():
    """FASTDL_NUM_THREADS=1: one Numba thread, and the fused step's input layer in one part."""
    code = ("import fastdl, numba, numpy as np; bk = fastdl.get_backend('numba'); "
            "W = np.zeros((30, 4), np.float32); "
            "layer = bk.InputLayer(bk, W, np.zeros(4, np.float32), W.copy(), np.zeros((5, 30), np.float32), 5, 'relu'); "
            "print(numba.get_num_threads(), len(layer.cut) - 1)")
    env = dict(os.environ, FASTDL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_no_recompiles_in_the_loop():
    """After the first steps, more steps (including an epoch's partial last batch) add no new
    compiled signatures; float64 adds its own once."""
    bk = fastdl.get_backend("numba")
    rng = np.random.default_rng(0)

    def run(dtype, steps):
        x = rng.standard_normal((250, 12)).astype(dtype)
        net = fastdl.TwoLayerNet(12, 8, 3, backend="numba", dtype=dtype, seed=0)
        fastdl.Trainer(net, fastdl.optimizers.Adam(0.01), x, rng.integers(0, 3, 250), iterations=steps,
                       batch_size=100, progress=False).fit()

    def signatures():
        return sum(len(f.signatures) for f in bk._JITTED)

    run(np.float32, 3)
    after_first = signatures()
    run(np.float32, 12)
    assert signatures() == after_first
    run(np.float64, 3)
    after_f64 = signatures()
    run(np.float64, 12)
    assert signatures() == after_f64


def test_fused_step_with_one_call_update_equals_layer_path():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (700, 100)).astype(np.float32) / np.float32(255)
    t = rng.integers(0, 10, 700)
    runs = []
    for fast in (True, False):
        net = fastdl.TwoLayerNet(100, 30, 10, backend="numba", seed=0)
        tr = fastdl.Trainer(net, fastdl.optimizers.Momentum(0.05), x, t, epochs=2, batch_size=64, seed=0,
                            progress=False, fast_path=fast)
        runs.append((tr.fit().loss, net.params_numpy()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for k in runs[0][1]:
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=1e-5, atol=1e-7)
