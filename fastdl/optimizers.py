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
"""

from __future__ import annotations

import math

from .backends import get_backend

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]


class Optimizer:
    kernel = ""           # backend kernel name, e.g. "sgd_update"
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float):
        if not (lr > 0) or lr != lr:
            raise ValueError(f"learning rate lr={lr!r} must be a positive number (the book uses 0.1 for SGD)")
        self.lr = float(lr)
        self.state: dict[str, dict[str, object]] = {name: {} for name in self.state_names}
        self.step = 0

    def hyperparameters(self) -> dict:
        return {"lr": self.lr}

    def config(self) -> dict:
        return {"name": type(self).__name__, **self.hyperparameters()}

    def state_arrays(self, key, p, xp):
        """This parameter's state arrays, created (zeros, on p's device) on first use only."""
        out = []
        for name in self.state_names:
            slot = self.state[name]
            if key not in slot:
                slot[key] = xp.zeros_like(p)
            out.append(slot[key])
        return out

    def kernel_hyperparameters(self) -> dict:
        """The update kernel's scalar arguments for the step ``self.step`` (1-based), in its
        argument order, as Python floats (formed in float64; the kernel rounds them once)."""
        return self.hyperparameters()

    def update(self, params: dict, grads: dict, backend=None) -> None:
        bk = get_backend(backend)
        kernel = getattr(bk, self.kernel)
        self.step += 1
        hyper = self.kernel_hyperparameters()
        for key, p in params.items():
            kernel(p, grads[key], *self.state_arrays(key, p, bk.xp), **hyper)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """p -= lr * g"""
    kernel = "sgd_update"

    def __init__(self, lr: float = 0.01):
        super().__init__(lr)


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v"""
    kernel = "momentum_update"
    state_names = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        super().__init__(lr)
        self.momentum = float(momentum)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum}


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, in the book's form."""
    kernel = "nesterov_update"


class AdaGrad(Optimizer):
    """h += g^2; p -= lr * g / (sqrt(h) + eps)"""
    kernel = "adagrad_update"
    state_names = ("h",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-7):
        super().__init__(lr)
        self.eps = float(eps)

    def hyperparameters(self):
        return {"lr": self.lr, "eps": self.eps}


class RMSprop(Optimizer):
    """h = decay * h + (1 - decay) * g^2; p -= lr * g / (sqrt(h) + eps)"""
    kernel = "rmsprop_update"
    state_names = ("h",)

    def __init__(self, lr: float = 0.01, decay: float = 0.99, eps: float = 1e-7):
        super().__init__(lr)
        self.decay = float(decay)
        self.eps = float(eps)

    def hyperparameters(self):
        return {"lr": self.lr, "decay": self.decay, "eps": self.eps}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with the bias correction folded into the step size, as in the book."""
    kernel = "adam_update"
    state_names = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7):
        super().__init__(lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)

    def hyperparameters(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def kernel_hyperparameters(self):
        return {"lr_t": adam_step_size(self.lr, self.beta1, self.beta2, self.step),
                "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


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
    return cls(**kwargs)
