"""Chapter 6 as a user meets it: weight decay, Dropout and Batch Norm networks on every backend,
checked by numerical gradients, against the layer path, across backends, across save/load and
checkpoint resume, and through the book's own spellings."""

import numpy as np
import pytest

import fastdl
from fastdl.gradcheck import gradient_check
from fastdl.networks import MultiLayerNetExtend

OPTIONS = {"decay": dict(weight_decay=0.1), "dropout": dict(dropout=0.3), "batchnorm": dict(batch_norm=True),
           "all": dict(weight_decay=0.05, dropout=0.2, batch_norm=True)}


def data(n=137, d=20, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, d)) / 255).astype(np.float32), rng.integers(0, 10, n)


def before_batch_norm(net):
    """Biases that feed a Batch Norm: their true gradient is exactly 0 (the mean is subtracted)."""
    return {f"b{i}" for i in net._norms}


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_gradients_are_numerically_right(backend, option, activation):
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((6, 7)), rng.integers(0, 4, 6)
    net = fastdl.MultiLayerNet(7, [9, 8], 4, activation=activation, weight_init_std=1.0, dtype="float64",
                               backend=backend, seed=3, **OPTIONS[option])
    errors = gradient_check(net, x, t)
    grads = net.gradient(x, t)
    for k, err in errors.items():
        if k in before_batch_norm(net):
            assert np.abs(backend.to_numpy(grads[k])).max() < 1e-12, k
        else:
            assert err < 1e-6, (k, err)


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_fused_step_equals_layer_path(backend, option, opt):
    x, t = data()
    runs = []
    for fast in (True, False):
        net = fastdl.MultiLayerNet(20, [16, 12], 10, backend=backend, seed=0, **OPTIONS[option])
        tr = fastdl.Trainer(net, fastdl.optimizers.get_optimizer(opt, lr=0.05), x, t, x[:40], t[:40], epochs=3,
                            batch_size=50, seed=0, progress=False, fast_path=fast)
        assert tr.fast_path is fast
        h = tr.fit()
        runs.append((np.array(h.loss), net.params_numpy(), h.test_acc, net.dropout_state()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-4)
    assert runs[0][3] == runs[1][3]                       # the same Dropout calls
    skip = before_batch_norm(net) if opt == "Adam" else set()   # Adam scales a zero gradient's noise up
    for k in runs[1][1]:
        if k not in skip:
            np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_dropout_masks_and_training_agree_across_backends(backend, ref):
    """The same seed gives the same masks, losses and parameters on every backend."""
    x, t = data()
    out = []
    for bk in (backend, ref):
        net = fastdl.MultiLayerNet(20, [16, 12], 10, dropout=0.3, backend=bk, seed=5)
        net.gradient(x[:50], t[:50])
        masks = [bk.to_numpy(d.mask) for d in net._dropouts]
        h = fastdl.Trainer(net, fastdl.optimizers.SGD(0.05), x, t, epochs=2, batch_size=50, seed=0,
                           progress=False).fit()
        out.append((masks, np.array(h.loss)))
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5)


def test_inference_is_deterministic_and_changes_nothing(backend):
    x, t = data()
    net = fastdl.MultiLayerNet(20, [16, 12], 10, dropout=0.5, batch_norm=True, backend=backend, seed=0)
    net.gradient(x[:30], t[:30])                          # running averages and a Dropout call
    state, buffers = net.dropout_state(), net.buffers_numpy()
    a, b = backend.to_numpy(net.predict(x)), backend.to_numpy(net.predict(x))
    np.testing.assert_array_equal(a, b)
    assert net.dropout_state() == state
    for k, v in net.buffers_numpy().items():
        np.testing.assert_array_equal(v, buffers[k])
    assert net.loss(x, t) == net.loss(x, t)                # inference mode by default, as the book's
    assert net.loss(x, t, train_flg=True) != net.loss(x, t, train_flg=True)   # new masks each call


def test_save_load_keeps_batch_norm_statistics(backend, tmp_path):
    x, t = data()
    net = fastdl.MultiLayerNet(20, [16, 12], 10, batch_norm=True, dropout=0.2, weight_decay=0.1, backend=backend, seed=0)
    fastdl.Trainer(net, fastdl.optimizers.SGD(0.05), x, t, epochs=1, batch_size=50, progress=False).fit()
    back = fastdl.load(fastdl.save(net, tmp_path / "p.npz"), backend="numpy")
    assert back.config() == net.config()
    for k, v in net.buffers_numpy().items():
        np.testing.assert_array_equal(back.buffers_numpy()[k], v)
    np.testing.assert_allclose(back.predict(x), backend.to_numpy(net.predict(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stop_at", [4, 6])
def test_resume_is_exact(backend, tmp_path, stop_at):
    x, t = data()

    def trainer(steps):
        net = fastdl.MultiLayerNet(20, [16, 12], 10, batch_norm=True, dropout=0.2, weight_decay=0.05,
                                   backend=backend, seed=0)
        return fastdl.Trainer(net, fastdl.optimizers.Adam(0.01), x, t, iterations=steps, batch_size=50, seed=3,
                              progress=False, sync_every=2, checkpoint=tmp_path / "c.npz", checkpoint_every=2)
    full = trainer(10)
    h_full = full.fit()
    trainer(stop_at).fit()
    second = trainer(10).resume(tmp_path / "c.npz")
    h = second.fit()
    assert h.loss == h_full.loss
    for k, v in full.network.params_numpy().items():
        np.testing.assert_array_equal(second.network.params_numpy()[k], v)
    for k, v in full.network.buffers_numpy().items():
        np.testing.assert_array_equal(second.network.buffers_numpy()[k], v)


def test_the_books_spellings(backend):
    book = MultiLayerNetExtend(784, [100, 100], 10, "relu", "relu", 0.1, use_dropout=True, dropout_ration=0.2,
                               use_batchnorm=True, backend=backend)
    assert (book.weight_decay, book.dropout, book.batch_norm) == (0.1, 0.2, True)
    assert list(book.layers) == ["Affine1", "BatchNorm1", "Relu1", "Dropout1", "Affine2", "BatchNorm2", "Relu2",
                                 "Dropout2", "Affine3"]
    plain = fastdl.MultiLayerNet(784, hidden_size_list=[100], output_size=10, weight_decay_lambda=0.1)
    assert plain.weight_decay == 0.1
    with pytest.raises(TypeError, match="not both"):
        fastdl.MultiLayerNet(784, [100], 10, weight_decay=0.1, weight_decay_lambda=0.2)
    for bad, words in ((dict(dropout=1.0), "dropout=1.0"), (dict(weight_decay=-1), "weight_decay=-1")):
        with pytest.raises(ValueError, match=words):
            fastdl.MultiLayerNet(4, [3], 2, **bad)


def test_layers_have_the_books_interface(backend):
    x = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    drop = fastdl.Dropout(0.5, backend=backend, seed=1)
    y = backend.to_numpy(drop.forward(x))                       # train_flg=True by default, as the book's
    assert ((y == 0) | (y == x)).all() and (y == 0).any()
    np.testing.assert_allclose(backend.to_numpy(drop.forward(x, train_flg=False)), x * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(drop.backward(np.ones_like(x))), (y != 0) | (x == 0))
    bn = fastdl.BatchNormalization(backend.asarray(np.ones(5, np.float32)), backend.asarray(np.zeros(5, np.float32)),
                                   backend=backend)
    out = backend.to_numpy(bn.forward(x, train_flg=True))
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(bn.running_mean), 0.1 * x.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert backend.to_numpy(bn.backward(np.ones_like(x))).shape == x.shape
    with pytest.raises(fastdl.ShapeError):
        bn.forward(np.ones((3, 4), np.float32))
