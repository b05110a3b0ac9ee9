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

Every name is fastdl's own object (these are re-exports, not copies), so the book's spellings
work as they do in the book: ``load_mnist(normalize=True, one_hot_label=True)``,
``TwoLayerNet(784, 50, 10, 0.01)``, ``net.lastLayer``, ``MultiLayerNet(784, hidden_size_list=[100]
* 4, output_size=10)``, optimizers on ``{"x": -7.0}``. They run on the current backend
(``FASTDL_BACKEND``), in float32 unless asked (``dtype="float64"`` reproduces the book's
float64 numbers).
"""

from __future__ import annotations

import numpy as np

from .datasets import load_mnist
from .functions import (cross_entropy_error, mean_squared_error, numerical_gradient, relu, sigmoid,
                        softmax, step_function)
from .layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss
from .networks import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from .optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from .validate import check_seed

__all__ = ["load_mnist", "step_function", "sigmoid", "relu", "softmax", "mean_squared_error",
           "cross_entropy_error", "numerical_gradient", "Affine", "Relu", "Sigmoid", "SoftmaxWithLoss",
           "Dropout", "BatchNormalization", "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
           "smooth_curve", "shuffle_dataset"]


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
