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


def test_ch06_overfit_dropout_with_the_books_trainer(book, backend, mnist_root, capsys):
    """ch06/overfit_dropout.py: MultiLayerNetExtend with Dropout on 300 images, trained by the
    book's ``common.trainer.Trainer`` (here ``fastdl.compat.Trainer``), whose lists it plots."""
    (x_train, t_train), (x_test, t_test) = book.load_mnist(normalize=True, root=mnist_root)
    x_train, t_train = x_train[:300], t_train[:300]
    network = book.MultiLayerNetExtend(input_size=784, hidden_size_list=[100] * 6, output_size=10,
                                       use_dropout=True, dropout_ration=0.2, seed=0)
    trainer = book.Trainer(network, x_train, t_train, x_test, t_test, epochs=3, mini_batch_size=100,
                           optimizer="sgd", optimizer_param={"lr": 0.01}, verbose=True, seed=0)
    trainer.train()
    printed = capsys.readouterr().out
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 3 and len(trainer.train_loss_list) == 9
    assert all(0 <= a <= 1 for a in trainer.train_acc_list + trainer.test_acc_list)
    assert f"=== epoch:3, train acc:{trainer.train_acc_list[-1]}, test acc:{trainer.test_acc_list[-1]} ===" in printed
    assert "=============== Final Test Accuracy ===============" in printed
    assert trainer.test_acc_list[-1] == network.accuracy(x_test, t_test)       # taken at the last epoch's end


def test_ch06_hyperparameter_optimization_with_the_books_trainer(book, backend, mnist_root):
    """ch06/hyperparameter_optimization.py: 500 images shuffled, 20% held out for validation,
    trials of random lr and weight decay through the book's Trainer, sorted by the last
    validation accuracy; accuracies on a sample of each set where it says so."""
    (x_train, t_train), _ = book.load_mnist(normalize=True, root=mnist_root)
    x_train, t_train = book.shuffle_dataset(x_train[:500], t_train[:500], seed=0)
    validation_num = int(x_train.shape[0] * 0.20)
    x_val, t_val, x_train, t_train = x_train[:validation_num], t_train[:validation_num], x_train[validation_num:], t_train[validation_num:]
    rng = np.random.default_rng(0)
    results_val = {}
    for _ in range(2):
        weight_decay, lr = 10 ** rng.uniform(-8, -4), 10 ** rng.uniform(-6, -2)
        network = book.MultiLayerNet(input_size=784, hidden_size_list=[100] * 6, output_size=10,
                                     weight_decay_lambda=weight_decay, seed=0)
        trainer = book.Trainer(network, x_train, t_train, x_val, t_val, epochs=2, mini_batch_size=100,
                               optimizer="sgd", optimizer_param={"lr": lr}, verbose=False,
                               evaluate_sample_num_per_epoch=40)
        trainer.train()
        assert len(trainer.test_acc_list) == 2 and len(trainer.train_loss_list) == 8
        assert all(a * 40 == round(a * 40) for a in trainer.train_acc_list + trainer.test_acc_list)   # of 40 images
        results_val[f"lr:{lr}, weight decay:{weight_decay}"] = trainer.test_acc_list
    assert len(sorted(results_val.items(), key=lambda x: x[1][-1], reverse=True)) == 2


def test_the_books_rmsprop_and_a_diverging_run_through_the_books_trainer(book, capsys):
    """RMSprop takes the book's decay_rate (its Trainer misspells the name 'rmsprop'; fastdl's
    takes it); a run whose loss turns NaN stops there with its lists, as a script expects lists."""
    assert book.RMSprop(lr=0.01, decay_rate=0.9).decay == 0.9
    with pytest.raises(TypeError, match="not both"):
        book.RMSprop(decay=0.5, decay_rate=0.9)
    rng = np.random.default_rng(0)
    x, t = rng.random((200, 20)).astype(np.float32), rng.integers(0, 3, 200)
    ok = book.Trainer(book.MultiLayerNet(20, [8], 3, seed=0), x, t, x, t, epochs=2, optimizer="RMSprop",
                      optimizer_param={"lr": 0.01, "decay_rate": 0.9}, verbose=False, seed=0)
    ok.train()
    assert len(ok.train_acc_list) == 2 and ok.optimizer.decay == 0.9
    ok.train()                                   # again: the lists go on, as the book's do
    assert len(ok.train_acc_list) == 4 and len(ok.train_loss_list) == 8
    bad = book.Trainer(book.MultiLayerNet(20, [8], 3, seed=0, weight_init_std=1e18), x * 1e20, t, x, t, epochs=2,
                       optimizer_param={"lr": 1e30}, verbose=True, seed=0)
    bad.train()
    assert "stopped: training diverged" in capsys.readouterr().out
    assert len(bad.train_loss_list) < 4 and len(bad.train_acc_list) < 2
