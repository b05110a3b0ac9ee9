"""The book's names in one place, so a script of chapters 2-6 runs on fastdl with its imports
swapped and nothing else changed:

    book                                               fastdl
    from dataset.mnist import load_mnist               from fastdl.compat import load_mnist
    from common.functions import *                     from fastdl.compat import *
    from common.gradient import numerical_gradient     from fastdl.compat import numerical_gradient
    from common.layers import *                        from fastdl.compat import Affine, Relu, ...
    from common.optimizer import *                     from fastdl.compat import SGD, Adam, ...
    from two_layer_net import TwoLayerNet              from fastdl.compat import TwoLayerNet
    from common.multi_layer_net import MultiLayerNet   from fastdl.compat import MultiLayerNet
    from common.multi_layer_net_extend import MultiLayerNetExtend    (likewise)
    from common.util import smooth_curve, shuffle_dataset
    from common.trainer import Trainer                 from fastdl.compat import Trainer

Every name is fastdl's own object (these are re-exports, not copies), so the book's spellings
work as they do in the book: ``load_mnist(normalize=True, one_hot_label=True)``,
``TwoLayerNet(784, 50, 10, 0.01)``, ``net.lastLayer``, ``MultiLayerNet(784, hidden_size_list=[100]
* 4, output_size=10)``, optimizers on ``{"x": -7.0}``, ``RMSprop(decay_rate=0.9)``, and the book's
``Trainer`` (chapter 6's overfit_dropout.py and hyperparameter_optimization.py) on fastdl's. They run on the current backend
(``FASTDL_BACKEND``), in float32 unless asked (``dtype="float64"`` reproduces the book's
float64 numbers).
"""

from __future__ import annotations

import numpy as np

from .datasets import load_mnist
from .errors import DivergenceError
from .functions import (cross_entropy_error, mean_squared_error, numerical_gradient, relu, sigmoid,
                        softmax, step_function)
from .layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss
from .networks import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from .optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, get_optimizer
from .trainer import Trainer as _Trainer
from .validate import check_seed

__all__ = ["load_mnist", "step_function", "sigmoid", "relu", "softmax", "mean_squared_error",
           "cross_entropy_error", "numerical_gradient", "Affine", "Relu", "Sigmoid", "SoftmaxWithLoss",
           "Dropout", "BatchNormalization", "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
           "smooth_curve", "shuffle_dataset", "Trainer"]


def smooth_curve(x):
    """The book's loss-curve smoothing (common/util.py): an 11-point Kaiser window over the curve
    mirrored at both ends; the result has the curve's length."""
    window_len = 11
    x = np.asarray(x, dtype=np.float64)
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def shuffle_dataset(x, t, seed=None):
    """x and t in one random order (the book's common/util.py; ``seed`` added for repeatability)."""
    perm = np.random.default_rng(check_seed(seed)).permutation(x.shape[0])
    return x[perm], t[perm]


class Trainer:
    """The book's ``common/trainer.py`` Trainer on fastdl's: the same arguments, ``train()``, and
    its lists ``train_loss_list`` (per step), ``train_acc_list`` and ``test_acc_list`` (per
    epoch, on the first ``evaluate_sample_num_per_epoch`` images when given). As fastdl's trainer
    does it: batches drawn with replacement (as the book's) from a generator seeded by ``seed``
    (added), the book's number of steps, int(epochs * max(N / batch, 1)), accuracy taken at each
    epoch's end (the book takes it after each epoch's first step: as many entries where the batch
    size divides the data, one epoch later), each step's loss before its update, ``verbose`` printing a line per epoch (not per
    step), and a run whose loss turns NaN stopping there, its lists kept (the book's went on in
    NaN). Optimizer names are the book's, any case ('rmsprop' too, which the book misspells)."""

    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100, optimizer="SGD",
                 optimizer_param=None, evaluate_sample_num_per_epoch=None, verbose=True, seed=None):
        self.network, self.verbose = network, verbose
        self.x_train, self.t_train, self.x_test, self.t_test = x_train, t_train, x_test, t_test
        self.optimizer = get_optimizer(optimizer, **({"lr": 0.01} if optimizer_param is None else optimizer_param))
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.batch_size = mini_batch_size
        self.max_iter = int(epochs * max(x_train.shape[0] / mini_batch_size, 1))
        self.seed = seed
        self.train_loss_list, self.train_acc_list, self.test_acc_list = [], [], []

    def train(self) -> None:
        k = self.evaluate_sample_num_per_epoch
        whole = k is None

        def record(tr, rec):
            if whole:
                train_acc, test_acc = rec["train_acc"], rec["test_acc"]
            else:
                train_acc = self.network.accuracy(self.x_train[:k], self.t_train[:k])
                test_acc = self.network.accuracy(self.x_test[:k], self.t_test[:k])
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                print(f"=== epoch:{len(self.train_acc_list)}, train acc:{train_acc}, test acc:{test_acc} ===")

        tr = _Trainer(self.network, self.optimizer, self.x_train, self.t_train,
                      *((self.x_test, self.t_test) if whole else (None, None)), iterations=self.max_iter,
                      batch_size=min(self.batch_size, self.x_train.shape[0]), sampling="replacement",
                      seed=self.seed, progress=False, evaluate_train=whole, callbacks=[record], explosion=None)
        try:
            tr.fit()
        except DivergenceError as exc:      # the book's went on in NaN; the lists keep what came before
            if self.verbose:
                print(f"stopped: {exc}")
        self.train_loss_list.extend(tr.history.loss)          # a second train() goes on, as the book's
        test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print(f"test acc:{test_acc}")
