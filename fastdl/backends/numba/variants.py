"""What the fused step's compiled functions call, as code compiled into them.

Which update kernel and which activation a step runs is chosen when it compiles: ``step.py`` and
``first_layer.py`` build one compiled function per choice a run actually uses (a closure over the
entries below; Numba's disk cache keeps each one apart by the entry it closes over), so a first
run compiles only its own optimizer and activation (branching on a code at run time compiled all
six optimizers and every activation into each, a third of a cold run's compile).

The activations are their loops' own Python functions registered with ``register_jitable``
(``code``), not entries that call the ``loops`` dispatchers: each entry and each dispatcher
compiled apart, and without that level the run's compile jobs took 3.6 s of CPU instead of
3.9-4.1 (one process, empty cache, timed ad hoc). The same for the updates, the softmax, the
column sum and the gather made no difference (the step compiles ``loops.add_bias`` anyway, for
evaluation) and was not kept. The entries are plain functions: a closure over one is cached
under a stable key, one over a Numba dispatcher would not be. Like the twins (``loops.inner``)
they compile without the entry points a Python or C caller needs (``loops.CALLEE``): a run's
compile jobs took 3.24-3.69 s of CPU against 3.35-3.76 (five interleaved pairs, one process,
empty cache; timed ad hoc), the code inlined into the step the same.
"""

from __future__ import annotations

import functools

from numba.extending import register_jitable

from . import loops, updates


@functools.cache
def code(f):
    """The loop ``f``'s own Python function as an entry, with ``loops``' error model. Once per
    loop: registering a function twice would overload it twice."""
    return register_jitable(error_model="numpy", **loops.CALLEE)(getattr(f, "py_func", f))


# -- optimizer updates: (p, g, state slot 0, state slot 1, scalars h in the kernel's order) ---------

_sgd, _momentum, _nesterov, _adagrad, _rmsprop, _adam = (        # twins without Python's entry points
    loops.inner(getattr(updates, name)) for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"))


@register_jitable(**loops.CALLEE)
def sgd(p, g, s0, s1, h):
    _sgd(p, g, h[0])


@register_jitable(**loops.CALLEE)
def momentum(p, g, s0, s1, h):
    _momentum(p, g, s0, h[0], h[1])


@register_jitable(**loops.CALLEE)
def nesterov(p, g, s0, s1, h):
    _nesterov(p, g, s0, h[0], h[1], h[2], h[3])


@register_jitable(**loops.CALLEE)
def adagrad(p, g, s0, s1, h):
    _adagrad(p, g, s0, h[0], h[1])


@register_jitable(**loops.CALLEE)
def rmsprop(p, g, s0, s1, h):
    _rmsprop(p, g, s0, h[0], h[1], h[2], h[3])


@register_jitable(**loops.CALLEE)
def adam(p, g, s0, s1, h):
    _adam(p, g, s0, s1, h[0], h[1], h[2], h[3])


# keyed by the contract's kernel name (an optimizer's ``kernel``)
UPDATES = {"sgd_update": sgd, "momentum_update": momentum, "nesterov_update": nesterov,
           "adagrad_update": adagrad, "rmsprop_update": rmsprop, "adam_update": adam}


# -- hidden activations: forward z = act(z + b); backward dh *= act'(h), db = dh.sum(0) -----------

bias_relu = code(loops.bias_relu)
bias_sigmoid = code(loops.bias_sigmoid)
bias_identity = code(loops.add_bias)
relu_grad_colsum = code(loops.relu_grad_colsum)
sigmoid_grad_colsum = code(loops.sigmoid_grad_colsum)


_colsum = loops.inner(loops.colsum)


@register_jitable(**loops.CALLEE)
def identity_grad_colsum(dh, db, h):
    _colsum(db, dh)                      # dh is the gradient of h itself


# by the contract's ACT_CODES (relu 0, sigmoid 1, identity 2)
BIAS_ACTS = (bias_relu, bias_sigmoid, bias_identity)
GRAD_COLSUMS = (relu_grad_colsum, sigmoid_grad_colsum, identity_grad_colsum)
