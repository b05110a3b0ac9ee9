"""The book's chapter 4, 5 and 6 scripts, their logic written again here (not copied) with only
the imports swapped for fastdl.compat, on every backend. The selected backend stands in for the
book's NumPy: FASTDL_BACKEND, set the way a reader would set it."""

import numpy as np
import pytest



@pytest.fixture
def book(backend, monkeypatch):
    """fastdl.compat with ``backend`` selected as a reader selects it: by FASTDL_BACKEND."""
    monkeypatch.setenv("FASTDL_BACKEND", backend.name)
    from fastdl import compat
    return compat


def test_ch05_gradient_check(book, backend):
    """ch05/gradient_check.py: backprop against numerical gradients on three images, float64."""
    rng = np.random.default_rng(0)
    x_batch, t_batch = rng.random((3, 784)), np.eye(10)[rng.integers(0, 10, 3)]
    network = book.TwoLayerNet(input_size=784, hidden_size=5, output_size=10, dtype="float64", seed=0)
    assert network.backend.name == backend.name
    grad_numerical = network.numerical_gradient(x_batch, t_batch)
    grad_backprop = network.gradient(x_batch, t_batch)
    for key in grad_numerical:
        diff = np.average(np.abs(backend.to_numpy(grad_backprop[key]) - backend.to_numpy(grad_numerical[key])))
        assert diff < 1e-9, f"{key}: {diff}"


def test_ch04_ch05_train_neuralnet(book, backend, mnist_root):
    """ch05/train_neuralnet.py (ch04's with backprop): one-hot labels, random batches with
    replacement, ``network.params[key] -= learning_rate * grad[key]``, accuracy per epoch."""
    (x_train, t_train), (x_test, t_test) = book.load_mnist(normalize=True, one_hot_label=True, root=mnist_root)
    assert t_train.shape == (60000, 10)
    network = book.TwoLayerNet(784, 50, 10, 0.01, seed=0)
    rng = np.random.default_rng(0)
    train_size, batch_size, learning_rate = x_train.shape[0], 100, 0.1
    train_loss_list, test_acc_list = [], []
    for i in range(600):
        batch_mask = rng.choice(train_size, batch_size)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
        train_loss_list.append(network.loss(x_batch, t_batch))
    test_acc_list.append(network.accuracy(x_test, t_test))
    assert np.mean(train_loss_list[-50:]) < 0.5 * np.mean(train_loss_list[:10])
    assert test_acc_list[-1] > 0.85
    assert type(network.lastLayer).__name__ == "SoftmaxWithLoss"


def test_ch06_optimizer_compare_naive(book):
    """ch06/optimizer_compare_naive.py: every optimizer walks f(x, y) = x^2/20 + y^2 from
    (-7, 2) on Python-float parameters and ends nearer the minimum."""
    def df(x, y):
        return x / 10.0, 2.0 * y

    for name, opt in (("SGD", book.SGD(lr=0.95)), ("Momentum", book.Momentum(lr=0.1)),
                      ("AdaGrad", book.AdaGrad(lr=1.5)), ("Adam", book.Adam(lr=0.3))):
        params = {"x": -7.0, "y": 2.0}
        grads = {"x": 0, "y": 0}
        history = []
        for _ in range(30):
            history.append((params["x"], params["y"]))
            grads["x"], grads["y"] = df(params["x"], params["y"])
            opt.update(params, grads)
        assert abs(params["x"]) < 7.0 and abs(params["y"]) < 2.0, name


def test_ch06_optimizer_compare_mnist(book, backend, mnist_root):
    """ch06/optimizer_compare_mnist.py: a 5-layer MultiLayerNet per optimizer on the same batches;
    each one's loss falls."""
    (x_train, t_train), _ = book.load_mnist(normalize=True, root=mnist_root)
    optimizers = {"SGD": book.SGD(), "Momentum": book.Momentum(), "AdaGrad": book.AdaGrad(), "Adam": book.Adam()}
    networks = {k: book.MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100], output_size=10, seed=0)
                for k in optimizers}
    train_loss = {k: [] for k in optimizers}
    rng = np.random.default_rng(0)
    for i in range(60):
        batch_mask = rng.choice(x_train.shape[0], 128)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        for key in optimizers:
            grads = networks[key].gradient(x_batch, t_batch)
            optimizers[key].update(networks[key].params, grads)
            train_loss[key].append(networks[key].loss(x_batch, t_batch))
    for key, losses in train_loss.items():
        smooth = book.smooth_curve(losses)
        assert len(smooth) == len(losses)
        assert smooth[-5:].mean() < smooth[:5].mean(), key
