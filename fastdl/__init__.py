"""fastdl: the network of "Deep Learning from Scratch" on NumPy, Numba or CuPy.

    import fastdl
    (x, t), (xt, tt) = fastdl.datasets.load_mnist()
    net = fastdl.TwoLayerNet(784, 50, 10, backend="numba", seed=0)
    fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, xt, tt, iterations=10_000).fit()

Importing fastdl imports neither numba nor cupy: backends load on first use.
"""

from . import datasets, functions, optimizers
from .backends import available_backends, backend_status, get_backend, set_backend, use_backend
from .errors import (BackendUnavailableError, DatasetError, DeviceError, DivergenceError, DTypeError,
                     FastDLError, FileFormatError, LabelError, NonFiniteError, ShapeError,
                     UnknownBackendError)
from .gradcheck import gradient_check, numerical_gradient
from .images import ByteImages
from .io import load, save
from .layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss
from .networks import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from .search import sweep
from .trainer import History, Trainer

__version__ = "0.1.0"


def __getattr__(name):
    # perceptron is imported on first use, so `python -m fastdl.perceptron` runs it fresh (runpy
    # warns about a module the package already imported)
    if name == "perceptron":
        import importlib
        return importlib.import_module(".perceptron", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "available_backends", "backend_status", "get_backend", "set_backend", "use_backend",
    "datasets", "functions", "optimizers", "perceptron", "gradient_check", "numerical_gradient", "load", "save",
    "Affine", "Relu", "Sigmoid", "SoftmaxWithLoss", "Dropout", "BatchNormalization", "MultiLayerNet",
    "MultiLayerNetExtend", "TwoLayerNet",
    "ByteImages", "History", "Trainer", "sweep", "FastDLError", "UnknownBackendError", "BackendUnavailableError",
    "ShapeError", "DTypeError", "NonFiniteError", "LabelError", "DeviceError", "DivergenceError",
    "DatasetError", "FileFormatError",
]
