"""The book's optimizers: SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam.

Each keeps its hyperparameters and per-parameter state and calls the backend's in-place
``<name>_update`` kernel once per parameter, so the arithmetic (and any fusion) lives with the
backend, and the state stays on the device the parameters live on.

``update(params, grads)`` has the book's signature; pass ``backend=`` (the trainer passes the
network's) or the current backend is used.

What a backend needs to run an optimizer its own way (numba updates every parameter in one
parallel call) is public data, never the class name: ``kernel`` (the contract's update kernel),
``state_names`` and ``state_arrays()`` (the state slots), and ``kernel_hyperparameters()`` (the
kernel's scalar arguments for the coming step, Adam's bias-corrected step size included).

Parameters may also be plain Python numbers, as in the book's ``ch06/optimizer_compare_naive.py``
(``params = {"x": -7.0, "y": 2.0}``): they are updated by the same formulas, in float64, and the
dict entry is replaced, as the book's ``params[key] -= ...`` does.
"""

from __future__ import annotations

import inspect
import math
import numbers
import weakref
from collections.abc import Mapping

import numpy as np

from .backends import get_backend
from .backends.guard import unchecked
from .errors import DTypeError, ShapeError
from .validate import book_alias

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]


def _number(value, what: str, low: float, high: float, *, low_open=False, high_open=True) -> float:
    """A finite float in [low, high) (or the bounds given), else ValueError with the valid range."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    v = float(value) if ok else math.nan
    if not ok or (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
        lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{what}={value!r} must be a finite number in {lo}, {hi}")
    return v


def _is_number(p) -> bool:
    return isinstance(p, numbers.Real) and not isinstance(p, bool)


def _dicts(params, grads) -> None:
    for what, d in (("params", params), ("grads", grads)):
        if not isinstance(d, Mapping):
            raise TypeError(f"{what} is a {type(d).__name__}; give a dict of arrays by name, as "
                            f"network.params and network.gradient(x, t) are")


class Optimizer:
    kernel = ""           # the contract's update kernel, e.g. "sgd_update"
    state_names: tuple[str, ...] = ()
    # Which of kernel_hyperparameters() change from step to step while the hyperparameters stay
    # (Adam's lr_t); () when none do; None (unknown) for an optimizer that does not declare it.
    # A captured block of steps (fastdl.replay) feeds those from device memory and bakes in the
    # rest. Declared, never assumed.
    step_scalars: tuple[str, ...] | None = None

    def __init__(self, lr: float):
        if not (isinstance(lr, numbers.Real) and math.isfinite(lr) and lr > 0):
            default = inspect.signature(type(self)).parameters["lr"].default
            hint = "" if default is inspect.Parameter.empty else f" ({type(self).__name__}'s default is {default})"
            raise ValueError(f"learning rate lr={lr!r} must be a positive finite number{hint}")
        self.lr = float(lr)
        self.state: dict[str, dict[str, object]] = {name: {} for name in self.state_names}
        self.step = 0
        self.scalar_source = None      # set by fastdl.replay while it captures or replays
        self._network = None           # the network a Trainer last trained with it (a weak reference)

    def hyperparameters(self) -> dict:
        return {"lr": self.lr}

    def config(self) -> dict:
        return {"name": type(self).__name__, **self.hyperparameters()}

    def state_arrays(self, key, p, xp):
        """This parameter's state arrays, created (zeros, on p's device) on first use only. State
        made for another parameter under the same name (a second network) is refused."""
        out = []
        for name in self.state_names:
            slot = self.state[name]
            if key not in slot:
                slot[key] = xp.zeros_like(p)
            s = slot[key]
            if tuple(s.shape) != tuple(p.shape) or s.dtype != p.dtype:
                raise ShapeError(
                    f"{type(self).__name__} state {name!r} of parameter {key!r} is {s.dtype} {tuple(s.shape)}, "
                    f"but the parameter is {p.dtype} {tuple(p.shape)}: an optimizer keeps state per "
                    f"parameter name, so use a new optimizer for another network")
            out.append(s)
        return out

    def claim(self, network) -> None:
        """Tie this optimizer to ``network`` (each Trainer does): an optimizer whose state was
        made training another network is refused, since that state (Adam's moments, its step
        count) would carry over to this one without a word where the shapes agree."""
        held = None if self._network is None else self._network()
        if self.state_names and self.step and self._network is not None and held is not network:
            raise ValueError(f"{self!r} has taken {self.step} steps training another network, and its state "
                             f"({', '.join(self.state_names)}) would carry over to this one; give each network an "
                             f"optimizer of its own, e.g. {self!r}")
        self._network = weakref.ref(network)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_network": None}     # a weak reference cannot be pickled

    def kernel_hyperparameters(self) -> dict:
        """The update kernel's scalar arguments for the step ``self.step`` (1-based), in its
        argument order, as Python floats: derived ones (1 - beta, ...) are formed here, in
        float64, so the kernel rounds each once, as the book's Python floats are."""
        return self.hyperparameters()

    def update(self, params: dict, grads: dict, backend=None) -> None:
        bk = get_backend(backend)
        kernel = unchecked(getattr(bk, self.kernel))      # past the backend's guard: _checked checks
        arrays = self._checked(params, grads, bk)
        self.step += 1
        hyper = self.kernel_hyperparameters()
        for key, p in params.items():
            if key in arrays:
                kernel(p, grads[key], *arrays[key], **hyper)
            else:
                params[key] = self._update_number(key, p, grads[key], hyper)

    def bind(self, params: dict, grads: dict, backend=None):
        """``update(params, grads, backend)`` as a function of no arguments for arrays that stay
        the same from step to step (a fused step's own): everything ``update`` checks is checked
        once, here; each call reads the hyperparameters (changing ``lr`` between steps works)."""
        bk = get_backend(backend)
        kernel = unchecked(getattr(bk, self.kernel))      # past its guard: the arrays are checked here
        _dicts(params, grads)
        numbers = [k for k, p in params.items() if _is_number(p)]
        if numbers:
            raise DTypeError(f"parameters {numbers} are Python numbers; bind() updates arrays in place")
        bound = [(params[k], grads[k], states) for k, states in self._checked(params, grads, bk).items()]

        def update():
            self.step += 1
            hyper = self.kernel_hyperparameters()
            if self.scalar_source is not None:       # a replayed block's per-step scalars, on the device
                hyper.update(self.scalar_source())
            for p, g, states in bound:
                kernel(p, g, *states, **hyper)
        return update

    def _checked(self, params: dict, grads: dict, bk) -> dict:
        """Every array parameter checked before any is changed (a refused update changes nothing):
        its state arrays by key."""
        _dicts(params, grads)
        missing = [k for k in params if k not in grads]
        if missing:
            raise KeyError(f"grads lacks {missing} (it has {sorted(grads)}); give a gradient for every parameter")
        return {key: self._check(key, p, grads[key], bk) for key, p in params.items() if not _is_number(p)}

    def _check(self, key, p, g, bk) -> list:
        """Same arrays, same answer on every backend: the kernels assume g and the state match p
        exactly (the compiled ones read them unchecked, so a mismatch must never reach them).
        Returns the parameter's state arrays."""
        for what, a in (("parameter", p), ("gradient", g)):
            if not bk.is_backend_array(a):
                raise DTypeError(f"{what} {key!r} is a {type(a).__name__}; expected an array of the "
                                 f"{bk.name} backend (or a Python number, as in the book)")
        if p.dtype not in (np.float32, np.float64):       # the contract's dtypes (backends.guard's check)
            raise DTypeError(f"parameter {key!r} has dtype {p.dtype}; optimizers update float32 or float64 arrays")
        if tuple(g.shape) != tuple(p.shape) or g.dtype != p.dtype:
            kind = ShapeError if tuple(g.shape) != tuple(p.shape) else DTypeError
            raise kind(f"gradient {key!r} is {g.dtype} {tuple(g.shape)}; its parameter is "
                       f"{p.dtype} {tuple(p.shape)}, and the two must match exactly")
        return self.state_arrays(key, p, bk.xp)

    def _update_number(self, key, p, g, hyper) -> float:
        """A Python-number parameter, updated in float64 by the NumPy reference kernel."""
        if not _is_number(g):
            g = np.asarray(g)
            if g.size != 1:
                raise ShapeError(f"gradient {key!r} has shape {g.shape}; its parameter is a number")
        arr, grad = np.array([float(p)]), np.array([float(np.asarray(g).reshape(-1)[0])])
        getattr(get_backend("numpy"), self.kernel)(arr, grad, *self.state_arrays(key, arr, np), **hyper)
        return float(arr[0])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """p -= lr * g"""
    kernel = "sgd_update"
    step_scalars = ()

    def __init__(self, lr: float = 0.01):
        super().__init__(lr)


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v"""
    kernel = "momentum_update"
    step_scalars = ()
    state_names = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        super().__init__(lr)
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum}


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form: the parameters move with the previous
    velocity, p += momentum^2 v - (1 + momentum) lr g, then v = momentum v - lr g (the same steps
    as PyTorch's SGD(momentum, nesterov=True))."""
    kernel = "nesterov_update"

    def kernel_hyperparameters(self):
        mu = self.momentum
        return {"lr": self.lr, "momentum": mu, "momentum_sq": mu * mu, "lr_ahead": (1.0 + mu) * self.lr}


class AdaGrad(Optimizer):
    """h += g^2; p -= lr * g / (sqrt(h) + eps)"""
    kernel = "adagrad_update"
    step_scalars = ()
    state_names = ("h",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-7):
        super().__init__(lr)
        self.eps = _number(eps, "eps", 0.0, math.inf, low_open=True)

    def hyperparameters(self):
        return {"lr": self.lr, "eps": self.eps}


class RMSprop(Optimizer):
    """h = decay * h + (1 - decay) * g^2; p -= lr * g / (sqrt(h) + eps)"""
    kernel = "rmsprop_update"
    step_scalars = ()
    state_names = ("h",)

    def __init__(self, lr: float = 0.01, decay: float | None = None, eps: float = 1e-7, *,
                 decay_rate: float | None = None):
        super().__init__(lr)
        decay = book_alias(decay, "decay", decay_rate, "decay_rate", 0.99)      # the book's name for it
        self.decay = _number(decay, "decay", 0.0, 1.0)
        self.eps = _number(eps, "eps", 0.0, math.inf, low_open=True)

    def hyperparameters(self):
        return {"lr": self.lr, "decay": self.decay, "eps": self.eps}

    def kernel_hyperparameters(self):
        return {"lr": self.lr, "decay": self.decay, "one_minus_decay": 1.0 - self.decay, "eps": self.eps}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with the bias correction folded into the step size, as in the book."""
    kernel = "adam_update"
    step_scalars = ("lr_t",)        # the bias-corrected step size
    state_names = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7):
        super().__init__(lr)
        self.beta1 = _number(beta1, "beta1", 0.0, 1.0)
        self.beta2 = _number(beta2, "beta2", 0.0, 1.0)
        self.eps = _number(eps, "eps", 0.0, math.inf, low_open=True)

    def hyperparameters(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def kernel_hyperparameters(self):
        return {"lr_t": adam_step_size(self.lr, self.beta1, self.beta2, self.step),
                "one_minus_beta1": 1.0 - self.beta1, "one_minus_beta2": 1.0 - self.beta2, "eps": self.eps}


def adam_step_size(lr, beta1, beta2, step) -> float:
    """Adam's bias correction folded into the step size, as in the book's (and Kingma & Ba's)
    form: lr * sqrt(1 - beta2^step) / (1 - beta1^step), in float64."""
    return lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)


_BY_NAME = {cls.__name__.lower(): cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)}


def get_optimizer(name: str, **kwargs) -> Optimizer:
    """Build an optimizer from its (case-insensitive) name, e.g. ``get_optimizer("adam", lr=1e-3)``."""
    cls = _BY_NAME.get(str(name).strip().lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(c.__name__ for c in _BY_NAME.values())}")
    takes = [k for k in inspect.signature(cls).parameters if k != "self"]
    extra = sorted(set(kwargs) - set(takes))
    if extra:
        raise TypeError(f"{cls.__name__} takes no {', '.join(extra)}; its hyperparameters are {', '.join(takes)}")
    return cls(**kwargs)
