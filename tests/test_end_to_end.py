"""Each accelerated backend end to end against the NumPy backend, on real MNIST where it matters:
the same accuracy, the same float64 loss curve, the book's 0.97, data on the device and no host
round trip per step. Skips say why a backend cannot run here (cupy: the CUDA reason)."""

import numpy as np
import pytest

import fastdl


def _train(backend, x, t, xt, tt, dtype="float32", **kw):
    net = fastdl.TwoLayerNet(784, 50, 10, backend=backend, dtype=dtype, seed=0)
    return fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, xt, tt, batch_size=100, seed=0,
                          progress=False, **kw)


def test_one_epoch_accuracy_matches_numpy(accelerated, mnist):
    (x, t), (xt, tt) = mnist
    a = _train(accelerated, x, t, xt, tt, epochs=1).fit()
    b = _train("numpy", x, t, xt, tt, epochs=1).fit()
    assert abs(a.test_acc[-1] - b.test_acc[-1]) <= 0.003
    assert a.test_acc[-1] > 0.9


def test_float64_loss_curve_matches_numpy(accelerated, mnist):
    (x, t), _ = mnist
    a = _train(accelerated, x[:20000], t[:20000], None, None, "float64", iterations=100).fit()
    b = _train("numpy", x[:20000], t[:20000], None, None, "float64", iterations=100).fit()
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)


@pytest.mark.slow
def test_book_workload_reaches_097(accelerated, mnist):
    (x, t), (xt, tt) = mnist
    tr = _train(accelerated, x, t, xt, tt, iterations=10_000, evaluate_train=False)
    assert tr.fast_path
    assert tr.fit().test_acc[-1] >= 0.97


def test_data_lives_on_the_device_and_stays_there(backend, mnist, monkeypatch):
    (x, t), _ = mnist
    tr = _train(backend, x[:20000], t[:20000], None, None, iterations=600, evaluate_train=False, sync_every=100)
    held = getattr(tr.x_train, "codes", tr.x_train)     # MNIST's k/255 as bytes where the backend reads them faster
    assert isinstance(tr.x_train, fastdl.ByteImages) == backend.READS_BYTES_FASTER
    assert backend.is_backend_array(held) and backend.is_backend_array(tr.t_train)
    tr.warm_up()                           # the compile's own small run (on a copy) apart: only steps counted
    calls = []
    real = backend.to_numpy
    monkeypatch.setattr(backend, "to_numpy", lambda a: calls.append(a.shape) or real(a))
    tr.fit()
    assert len(calls) == 6, calls          # one per sync point (600 / 100), nothing per step
