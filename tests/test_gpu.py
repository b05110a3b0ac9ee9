"""CuPy end to end on a real GPU (skipped, with the CUDA reason, where none can run).
Kernel-by-kernel parity with NumPy runs in the backend-parametrized suites."""

import numpy as np
import pytest

import fastdl
from fastdl.backends import backend_status

ok, why = backend_status("cupy")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ok, reason=f"cupy backend unavailable: {why}")]


def test_book_workload_reaches_097_on_the_gpu(mnist):
    (x, t), (xt, tt) = mnist
    net = fastdl.TwoLayerNet(784, 50, 10, backend="cupy", seed=0)
    tr = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, xt, tt, iterations=10_000, seed=0, progress=False)
    assert tr.fast_path
    h = tr.fit()
    assert h.test_acc[-1] >= 0.97, h.test_acc


def test_no_host_round_trip_per_step(mnist, monkeypatch):
    (x, t), _ = mnist
    bk = fastdl.get_backend("cupy")
    net = fastdl.TwoLayerNet(784, 50, 10, backend=bk, seed=0)
    tr = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, iterations=600, seed=0, progress=False,
                        evaluate_train=False, sync_every=100)
    calls = []
    real = bk.to_numpy
    monkeypatch.setattr(bk, "to_numpy", lambda a: calls.append(a.shape) or real(a))
    tr.fit()
    assert len(calls) <= 6 + 1, calls          # one per sync point (600 / 100), nothing per step


def test_data_lives_on_the_device(mnist):
    import cupy as cp
    (x, t), _ = mnist
    net = fastdl.TwoLayerNet(784, 50, 10, backend="cupy", seed=0)
    tr = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, iterations=1, progress=False)
    assert isinstance(tr.x_train, cp.ndarray) and isinstance(tr.t_train, cp.ndarray)


def test_same_seed_matches_numpy_after_one_epoch(mnist):
    (x, t), (xt, tt) = mnist
    accs = []
    for name in ("cupy", "numpy"):
        net = fastdl.TwoLayerNet(784, 50, 10, backend=name, seed=0)
        accs.append(fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, xt, tt, epochs=1, seed=0,
                                   progress=False).fit().test_acc[-1])
    assert abs(accs[0] - accs[1]) <= 0.003


def test_float64_loss_curve_matches_numpy(mnist):
    (x, t), _ = mnist
    curves = []
    for name in ("cupy", "numpy"):
        net = fastdl.TwoLayerNet(784, 50, 10, backend=name, seed=0, dtype="float64")
        curves.append(fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x[:20000], t[:20000], iterations=100,
                                     seed=0, progress=False).fit().loss)
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-6)


@pytest.mark.parametrize("n,m", [(1, 1), (33, 7), (257, 1000), (1024, 4096)])
def test_kernels_at_awkward_sizes(n, m):
    """Sizes that are not multiples of any block size, against NumPy."""
    bk, ref = fastdl.get_backend("cupy"), fastdl.get_backend("numpy")
    rng = np.random.default_rng(0)
    z, dy = rng.standard_normal((n, m)), rng.standard_normal((n, m))
    t = rng.integers(0, m, n)
    loss, dz = bk.softmax_cross_entropy(bk.asarray(z), bk.asarray(t))
    loss_r, dz_r = ref.softmax_cross_entropy(z, t)
    np.testing.assert_allclose(float(loss), loss_r, rtol=1e-12)
    np.testing.assert_allclose(bk.to_numpy(dz), dz_r, rtol=1e-10, atol=1e-15)
    dx, db = bk.relu_backward_colsum(bk.asarray(dy), bk.asarray(z > 0))
    dx_r, db_r = ref.relu_backward_colsum(dy, z > 0)
    np.testing.assert_allclose(bk.to_numpy(db), db_r, rtol=1e-10, atol=1e-12)
