import numpy as np
import pytest

import fastdl
from conftest import tol
from fastdl.errors import LabelError, ShapeError


def data(n=7, d=6, c=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, c, n)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_gradient_check_float64(backend, activation):
    x, t = data()
    net = fastdl.MultiLayerNet(6, [5, 4], 4, activation=activation, weight_init_std=0.5,
                               dtype="float64", backend=backend, seed=1)
    errors = fastdl.gradient_check(net, x, t)
    assert set(errors) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert max(errors.values()) <= 1e-6, errors


def test_two_layer_net_gradient_check(backend):
    x, t = data(n=3, d=5, c=3)
    net = fastdl.TwoLayerNet(5, 4, 3, dtype="float64", weight_init_std=1.0, backend=backend, seed=2)
    assert max(fastdl.gradient_check(net, x, t).values()) <= 1e-6


def test_same_seed_same_start_on_every_backend(backend):
    a = fastdl.TwoLayerNet(784, 50, 10, seed=42, backend=backend).params_numpy()
    b = fastdl.TwoLayerNet(784, 50, 10, seed=42, backend="numpy").params_numpy()
    for k in b:
        np.testing.assert_array_equal(a[k], b[k])
    c = fastdl.TwoLayerNet(784, 50, 10, seed=43).params_numpy()
    assert not np.array_equal(c["W1"], b["W1"])


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_network_matches_numpy(backend, dtype, activation):
    x, t = data(n=37, d=20, c=10, dtype=dtype)
    nets = [fastdl.MultiLayerNet(20, [16, 12], 10, activation=activation, weight_init_std="he",
                                 dtype=dtype, backend=b, seed=3) for b in (backend, "numpy")]
    got, want = [n.backend.to_numpy(n.predict(x)) for n in nets]
    np.testing.assert_allclose(got, want, **tol(dtype))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(nets[0].loss(x, t), nets[1].loss(x, t), rtol=1e-5)
    g0, g1 = nets[0].gradient(x, t), nets[1].gradient(x, t)
    for k in g1:
        np.testing.assert_allclose(nets[0].backend.to_numpy(g0[k]), g1[k], rtol=1e-4 if dtype == np.float32 else 1e-10,
                                   atol=1e-6 if dtype == np.float32 else 1e-13)
    assert nets[0].accuracy(x, t) == nets[1].accuracy(x, t)


def test_init_choices():
    he = fastdl.TwoLayerNet(800, 50, 10, weight_init_std="he", seed=0).params["W1"]
    xa = fastdl.TwoLayerNet(800, 50, 10, weight_init_std="xavier", seed=0).params["W1"]
    small = fastdl.TwoLayerNet(800, 50, 10, seed=0).params["W1"]
    assert abs(he.std() - np.sqrt(2 / 800)) < 0.003
    assert abs(xa.std() - np.sqrt(1 / 800)) < 0.002
    assert abs(small.std() - 0.01) < 0.0005
    with pytest.raises(ValueError, match="'he' or 'xavier'"):
        fastdl.TwoLayerNet(8, 5, 2, weight_init_std="lecun")
    with pytest.raises(ValueError, match="activation"):
        fastdl.TwoLayerNet(8, 5, 2, activation="tanh")


def test_labels_minus_one_and_c_are_rejected(backend):
    net = fastdl.TwoLayerNet(6, 5, 4, backend=backend, seed=0)
    x, _ = data(n=3, dtype=np.float32)
    for bad in ([0, 1, -1], [0, 4, 1]):
        for call in (net.loss, net.gradient, net.accuracy):
            with pytest.raises(LabelError, match=r"outside \[0, 4\)"):
                call(x, np.array(bad))
    layer = fastdl.SoftmaxWithLoss(backend)
    with pytest.raises(LabelError):
        layer.forward(backend.asarray(x[:, :4]), backend.asarray(np.array([0, 1, 4])))


def test_one_hot_and_index_labels_agree(backend):
    net = fastdl.TwoLayerNet(6, 5, 4, backend=backend, seed=0, dtype="float64")
    x, t = data(n=9)
    oh = np.eye(4)[t]
    assert net.loss(x, t) == pytest.approx(net.loss(x, oh), rel=1e-12)
    assert net.accuracy(x, t) == net.accuracy(x, oh)


def test_wrong_feature_count_says_expected_shape():
    net = fastdl.TwoLayerNet(6, 5, 4)
    with pytest.raises(ShapeError, match=r"\(3, 7\).*\(N, 6\)"):
        net.predict(np.zeros((3, 7), np.float32))


def test_layers_have_the_books_interface(backend):
    x, _ = data(n=4, d=3, dtype=np.float64)
    W, b = np.ones((3, 2)), np.zeros(2)
    aff = fastdl.Affine(backend.asarray(W), backend.asarray(b), backend)
    y = aff.forward(backend.asarray(x))
    dx = aff.backward(backend.asarray(np.ones((4, 2))))
    np.testing.assert_allclose(backend.to_numpy(y), x @ W)
    np.testing.assert_allclose(backend.to_numpy(dx), np.ones((4, 2)) @ W.T)
    np.testing.assert_allclose(backend.to_numpy(aff.dW), x.T @ np.ones((4, 2)))
    np.testing.assert_allclose(backend.to_numpy(aff.db), [4, 4])
    relu = fastdl.Relu(backend)
    out = backend.to_numpy(relu.forward(backend.asarray(np.array([[-1.0, 0.0, 2.0]]))))
    np.testing.assert_array_equal(out, [[0, 0, 2]])
    np.testing.assert_array_equal(backend.to_numpy(relu.backward(backend.asarray(np.ones((1, 3))))), [[0, 0, 1]])
    sig = fastdl.Sigmoid(backend)
    s = backend.to_numpy(sig.forward(backend.asarray(np.zeros((1, 2)))))
    np.testing.assert_allclose(s, 0.5)
    np.testing.assert_allclose(backend.to_numpy(sig.backward(backend.asarray(np.ones((1, 2))))), 0.25)
    sl = fastdl.SoftmaxWithLoss(backend)
    loss = sl.forward(backend.asarray(np.zeros((2, 4))), backend.asarray(np.array([0, 3])))
    assert float(loss) == pytest.approx(np.log(4))
    np.testing.assert_allclose(backend.to_numpy(sl.backward()), (np.full((2, 4), 0.25) - np.eye(4)[[0, 3]]) / 2)


def test_a_layer_computes_in_its_own_dtype_on_every_backend(backend):
    """float64 input to a float32 Affine: NumPy promoted to float64, numba computed in mixed
    types, and cupy's kernels take one dtype a call; now every backend casts to the layer's dtype
    (a backward's dout to its forward output's), with NumPy's reference numbers."""
    ref = fastdl.get_backend("numpy")
    x, _ = data(n=5, d=3, dtype=np.float64)
    W, b = (np.random.default_rng(1).standard_normal(s).astype(np.float32) for s in ((3, 2), (2,)))
    got = {}
    for bk in (ref, backend):
        aff, sig = fastdl.Affine(bk.asarray(W), bk.asarray(b), bk), fastdl.Sigmoid(bk)
        y = sig.forward(aff.forward(x))                             # host float64 in
        dx = aff.backward(sig.backward(np.ones((5, 2))))            # float64 dout
        got[bk.name] = [bk.to_numpy(a) for a in (y, dx, aff.dW, aff.db)]
    assert all(a.dtype == np.float32 for a in got[backend.name])
    for mine, want in zip(got[backend.name], got["numpy"]):
        np.testing.assert_allclose(mine, want, **tol(np.float32, 3))
    with pytest.raises(fastdl.errors.NonFiniteError, match="beyond float32's range"):
        fastdl.Affine(backend.asarray(W), backend.asarray(b), backend).forward(np.full((1, 3), 1e300))


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_every_optimizer_lowers_the_loss(backend, name):
    x, t = data(n=64, d=10, c=3, dtype=np.float32)
    net = fastdl.TwoLayerNet(10, 16, 3, weight_init_std="he", backend=backend, seed=0)
    opt = fastdl.optimizers.get_optimizer(name, lr={"SGD": 0.5, "Adam": 0.01}.get(name, 0.05))
    before = net.loss(x, t)
    xb, tb = backend.asarray(x), backend.asarray(t)
    for _ in range(60):
        net.train_step(xb, tb, opt)
    assert net.loss(x, t) < 0.7 * before


@pytest.mark.parametrize("labels", [np.zeros(0, np.int64), np.zeros((0, 2), np.float32)], ids=["indices", "one-hot"])
def test_no_labels_for_a_row_is_a_shape_error_naming_them(backend, labels):
    net = fastdl.TwoLayerNet(4, 3, 2, backend=backend, seed=0)
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(ShapeError, match=r"t has shape \(0.*no labels; pass at least one"):
        net.accuracy(x, labels)
    with pytest.raises(ShapeError, match=r"t_train has shape \(0.*no labels"):
        fastdl.Trainer(net, fastdl.optimizers.SGD(), x, labels, iterations=1)
