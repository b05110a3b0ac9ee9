"""Networks of the book: ``MultiLayerNet`` (any depth) and ``TwoLayerNet`` (one hidden layer).

Parameters are named W1, b1, W2, b2, ... and live on the network's backend in the network's dtype.
Initial weights are drawn on the host from ``seed`` (float64 normals, then cast), so the same seed
gives the same start on every backend.

Public methods (``predict``, ``loss``, ``accuracy``, ``gradient``) validate their inputs on the
host and accept NumPy arrays on any backend. The underscore methods skip validation and expect
arrays already on the backend; the trainer uses them after validating its data once.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from . import scoring
from .backends import get_backend
from .layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss
from .images import ByteImages, backend_input
from .validate import (as_float_dtype, book_alias, check_buffers, check_dropout_state, check_labels, check_param,
                       check_seed, host_view, positive_int)

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


def init_scale(weight_init_std, fan_in: int) -> float:
    """The book's choices: a fixed std (0.01), 'he' = sqrt(2/n) for ReLU, 'xavier' = sqrt(1/n)."""
    if isinstance(weight_init_std, str):
        key = weight_init_std.strip().lower()
        if key in ("he", "relu"):
            return math.sqrt(2.0 / fan_in)
        if key in ("xavier", "sigmoid"):
            return math.sqrt(1.0 / fan_in)
        raise ValueError(f"weight_init_std={weight_init_std!r}: use a number (e.g. 0.01), 'he' or 'xavier'")
    scale = float(weight_init_std)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"weight_init_std={weight_init_std!r} must be a positive finite number, 'he' or 'xavier'")
    return scale


class MultiLayerNet:
    """Affine -> activation -> ... -> Affine -> SoftmaxWithLoss, with any number of hidden layers.

    Chapter 6 (the book's ``MultiLayerNetExtend``): ``weight_decay`` (lambda: 0.5 lambda sum W^2
    in the loss, lambda W in each gradient), ``dropout`` (a ratio: a Dropout layer after each hidden
    activation) and ``batch_norm`` (a BatchNormalization layer between each hidden Affine and its
    activation, with parameters gamma1, beta1, ... and running averages in ``buffers``).
    ``predict``, ``loss`` and ``accuracy`` run in inference mode unless ``train_flg=True``; the
    gradient and training run in training mode.

    The book's positional order and spellings work too: ``MultiLayerNet(input_size,
    hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda)``; the
    initial scale defaults to the book's "relu" (He)."""

    def __init__(self, input_size: int, hidden_sizes: Sequence[int] | None = None, output_size: int | None = None,
                 activation: str = "relu", weight_init_std: float | str = "relu", weight_decay: float | None = None, *,
                 dropout: float = 0.0, batch_norm: bool = False, dtype="float32", backend=None,
                 seed: int | None = None, hidden_size_list=None, weight_decay_lambda=None):
        hidden_sizes = book_alias(hidden_sizes, "hidden_sizes", hidden_size_list, "hidden_size_list")
        weight_decay = book_alias(weight_decay, "weight_decay", weight_decay_lambda, "weight_decay_lambda", 0.0)
        if hidden_sizes is None or output_size is None:
            raise TypeError("MultiLayerNet needs input_size, hidden_sizes (a list, [] for none) and output_size")
        if not (isinstance(weight_decay, (int, float, np.floating)) and math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay={weight_decay!r} must be a finite number >= 0 (the book uses 0.1)")
        if not (isinstance(dropout, (int, float, np.floating)) and 0 <= dropout < 1):
            raise ValueError(f"dropout={dropout!r} must be a ratio in [0, 1) (0: no Dropout layers)")
        self.weight_decay, self.dropout, self.batch_norm = float(weight_decay), float(dropout), bool(batch_norm)
        self.backend = get_backend(backend)
        self.dtype = as_float_dtype(dtype)
        self.input_size = positive_int(input_size, "input_size")
        if isinstance(hidden_sizes, (int, np.integer)):
            hidden_sizes = [hidden_sizes]
        self.hidden_sizes = [positive_int(h, "each hidden size") for h in hidden_sizes]
        self.output_size = positive_int(output_size, "output_size")
        act = str(activation).strip().lower()
        if act not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: choose one of {', '.join(ACTIVATIONS)}")
        self.activation = act
        self.weight_init_std = weight_init_std
        sizes = [self.input_size, *self.hidden_sizes, self.output_size]
        seed = check_seed(seed)
        rng = np.random.default_rng(seed)
        host = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            scale = init_scale(weight_init_std, fan_in)
            host[f"W{i}"] = (scale * rng.standard_normal((fan_in, fan_out))).astype(self.dtype)
            host[f"b{i}"] = np.zeros(fan_out, dtype=self.dtype)
            if self.batch_norm and i < len(sizes) - 1:
                host[f"gamma{i}"] = np.ones(fan_out, dtype=self.dtype)
                host[f"beta{i}"] = np.zeros(fan_out, dtype=self.dtype)
        self.params = {k: self.backend.asarray(v) for k, v in host.items()}
        self.buffers = {f"running_{stat}{i}": self.backend.xp.zeros(h, dtype=self.dtype) for i, h in
                        enumerate(self.hidden_sizes, start=1) for stat in ("mean", "var")} if self.batch_norm else {}
        # Dropout's seeds: from their own stream of ``seed``, so the weights are those of a net without
        self._dropout_seeds = [int(v) for v in np.random.SeedSequence(seed).spawn(1)[0].generate_state(
            len(self.hidden_sizes), np.uint64)]
        self._build_layers()

    # -- structure -----------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """Number of Affine layers."""
        return len(self.hidden_sizes) + 1

    def _build_layers(self) -> None:
        bk, p = self.backend, self.params
        self.layers = {}
        for i in range(1, self.n_layers + 1):
            # Nobody uses the gradient with respect to the input data.
            self.layers[f"Affine{i}"] = Affine(p[f"W{i}"], p[f"b{i}"], bk, need_dx=i > 1)
            if i < self.n_layers:
                if self.batch_norm:
                    self.layers[f"BatchNorm{i}"] = BatchNormalization(
                        p[f"gamma{i}"], p[f"beta{i}"], running_mean=self.buffers[f"running_mean{i}"],
                        running_var=self.buffers[f"running_var{i}"], backend=bk)
                self.layers[f"{self.activation.capitalize()}{i}"] = ACTIVATIONS[self.activation](bk)
                if self.dropout:
                    self.layers[f"Dropout{i}"] = Dropout(self.dropout, bk, seed=self._dropout_seeds[i - 1])
        self.last_layer = SoftmaxWithLoss(bk)
        self._norms = {i: self.layers[f"BatchNorm{i}"] for i in range(1, self.n_layers) if self.batch_norm}
        self._dropouts = [layer for layer in self.layers.values() if isinstance(layer, Dropout)]
        self._affines = [self.layers[f"Affine{i}"] for i in range(1, self.n_layers + 1)]
        self._forward_layers = list(self.layers.values())
        self._backward_layers = self._forward_layers[::-1]

    @property
    def lastLayer(self):          # noqa: N802  (the book's name)
        return self.last_layer

    def config(self) -> dict:
        """The constructor arguments that define the architecture (saved in parameter files)."""
        return {"class": "MultiLayerNet", "input_size": self.input_size, "hidden_sizes": list(self.hidden_sizes),
                "output_size": self.output_size, "activation": self.activation, "weight_decay": self.weight_decay,
                "dropout": self.dropout, "batch_norm": self.batch_norm}

    def dropout_state(self) -> list:
        """Each Dropout layer's (seed, calls): what its next masks depend on (checkpoints save it)."""
        return [[d.seed, d.calls] for d in self._dropouts]

    def set_dropout_state(self, state) -> None:
        """Each Dropout layer's (seed, calls), as ``dropout_state()`` gives them; all checked first."""
        for d, (seed, calls) in zip(self._dropouts, check_dropout_state(state, len(self._dropouts))):
            d.seed, d.calls = seed, calls

    def set_buffers(self, buffers: dict) -> None:
        """Copy running averages into the existing arrays (the Batch Norm layers keep seeing them),
        every value checked before any is copied."""
        for k, v in check_buffers(buffers, self.buffers, self.dtype, self.backend).items():
            self.buffers[k][...] = self.backend.asarray(v, dtype=self.dtype)

    def buffers_numpy(self) -> dict:
        return {k: self.backend.to_numpy(v).copy() for k, v in self.buffers.items()}

    def set_params(self, params: dict) -> None:
        """Copy new values into the existing parameter arrays (layers keep seeing them), cast to
        the network's dtype. Every value is checked before any is copied (names, shapes, real
        numbers, all finite), so a refused call leaves the network as it was."""
        if not isinstance(params, dict):
            raise TypeError(f"set_params takes a dict of arrays by name (as network.params), not {type(params).__name__}")
        missing = set(self.params) - set(params)
        extra = set(params) - set(self.params)
        if missing or extra:
            raise ValueError(f"parameter names differ: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for k, v in params.items():
            check_param(host_view(v, self.backend, f"parameter {k}"), k, self.params[k].shape, self.dtype)
        self._copy_params(params)

    def _copy_params(self, params: dict) -> None:
        """set_params without its checks, for values this library made (the trainer's snapshot)."""
        for k, v in params.items():
            self.params[k][...] = self.backend.asarray(v, dtype=self.dtype)

    def params_numpy(self) -> dict:
        return {k: self.backend.to_numpy(v).copy() for k, v in self.params.items()}

    def __repr__(self) -> str:
        sizes = "-".join(str(s) for s in [self.input_size, *self.hidden_sizes, self.output_size])
        extra = "".join(f", {k}={v!r}" for k, v in (("weight_decay", self.weight_decay), ("dropout", self.dropout),
                                                     ("batch_norm", self.batch_norm)) if v)
        return (f"{type(self).__name__}({sizes}, activation={self.activation!r}{extra}, dtype={self.dtype.name}, "
                f"backend={self.backend.name!r})")

    # -- validated public API ------------------------------------------------------------------

    def _x(self, x, decode: bool = True):
        """x checked and on the backend; ByteImages decoded whole unless ``decode=False``."""
        x = backend_input(x, self.backend, self.input_size, self.dtype)
        return x[:] if decode and isinstance(x, ByteImages) else x

    def _t(self, t, n_rows):
        idx = check_labels(host_view(t, self.backend, "t"), self.output_size, n_rows)
        return self.backend.asarray(idx)

    def predict(self, x, train_flg: bool = False):
        """Scores (logits) of shape (N, output_size), on the backend (inference mode by default)."""
        return self._predict(self._x(x), train_flg)

    def loss(self, x, t, train_flg: bool = False) -> float:
        """The mean loss, with weight decay's penalty; inference mode by default, as the book's."""
        x = self._x(x)
        return float(self._loss(x, self._t(t, x.shape[0]), train_flg))

    def accuracy(self, x, t) -> float:
        x = self._x(x, decode=False)          # evaluated a block at a time
        return self._accuracy(x, self._t(t, x.shape[0]))

    def gradient(self, x, t) -> dict:
        """Gradients of the mean loss by backpropagation, keyed like ``params``."""
        x = self._x(x)
        self._loss_and_gradient(x, self._t(t, x.shape[0]))
        return self._grads()

    def numerical_gradient(self, x, t, h: float | None = None) -> dict:
        """Central differences, one parameter element at a time (slow: for checking only)."""
        from .gradcheck import numerical_gradient_of_network
        x = self._x(x)
        return numerical_gradient_of_network(self, x, self._t(t, x.shape[0]), h)

    # -- unchecked internals (arrays already on the backend, labels as int indices) ------------

    def _predict(self, x, train=False):
        for layer in self._forward_layers:
            x = layer._forward(x, train)
        return x

    def _loss(self, x, t, train=False):
        loss = self.last_layer.forward_unchecked(self._predict(x, train), t)
        if self.weight_decay:
            bk, lam = self.backend, self.dtype.type(0.5 * self.weight_decay)
            for layer in self._affines:
                loss = loss + lam * bk.sum_squares(layer.W)
        return loss

    def _loss_and_gradient(self, x, t):
        loss = self._loss(x, t, train=True)
        dout = self.last_layer.backward()
        for layer in self._backward_layers:
            dout = layer._backward(dout)
        if self.weight_decay:
            for layer in self._affines:
                self.backend.axpy_(layer.dW, self.weight_decay, layer.W)      # + lambda W
        return loss

    def _grads(self) -> dict:
        grads = {}
        for i, layer in enumerate(self._affines, start=1):
            grads[f"W{i}"] = layer.dW
            grads[f"b{i}"] = layer.db
            if i in self._norms:
                grads[f"gamma{i}"], grads[f"beta{i}"] = self._norms[i].dgamma, self._norms[i].dbeta
        return grads

    def _accuracy(self, x, t) -> float:
        return scoring.correct(self, x, t) / x.shape[0]

    def train_step(self, x, t, optimizer):
        """One step of the layer-by-layer path: forward, backward, update. Returns the loss."""
        loss = self._loss_and_gradient(x, t)
        optimizer.update(self.params, self._grads(), self.backend)
        return loss


class TwoLayerNet(MultiLayerNet):
    """The book's network: Affine -> ReLU (or Sigmoid) -> Affine -> SoftmaxWithLoss, with the
    book's signature ``TwoLayerNet(input_size, hidden_size, output_size, weight_init_std=0.01)``."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, weight_init_std: float | str = 0.01, *,
                 activation: str = "relu", dtype="float32", backend=None, seed: int | None = None):
        super().__init__(input_size, [hidden_size], output_size, activation=activation,
                         weight_init_std=weight_init_std, dtype=dtype, backend=backend, seed=seed)


class MultiLayerNetExtend(MultiLayerNet):
    """The book's chapter-6 network under its own name and signature: ``MultiLayerNetExtend(
    input_size, hidden_size_list, output_size, activation='relu', weight_init_std='relu',
    weight_decay_lambda=0, use_dropout=False, dropout_ration=0.5, use_batchnorm=False)``."""

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu", weight_init_std="relu",
                 weight_decay_lambda=0, use_dropout=False, dropout_ration=0.5, use_batchnorm=False, **kwargs):
        super().__init__(input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda,
                         dropout=dropout_ration if use_dropout else 0.0, batch_norm=use_batchnorm, **kwargs)


def network_from_config(config: dict, **kwargs) -> MultiLayerNet:
    """Rebuild a network from ``config()`` output (used when loading parameter files)."""
    return MultiLayerNet(config["input_size"], config["hidden_sizes"], config["output_size"],
                         activation=config.get("activation", "relu"), weight_decay=config.get("weight_decay", 0.0),
                         dropout=config.get("dropout", 0.0), batch_norm=config.get("batch_norm", False), **kwargs)
