"""Which update kernel and which activation a compiled step runs, chosen when it compiles.

The fused step's parallel functions took a small integer code and branched on it at run time,
which compiled every branch into each of them: all six optimizers' loops into the update, every
activation into each layer, a third of a cold first run's compile. ``step.py`` now builds one
compiled function per code a run actually uses (a closure over the entries below; Numba's disk
cache keeps each one apart by the entry it closes over), so a first run compiles only its own
optimizer and activation.

The entries are plain Python functions that Numba also compiles (``register_jitable``) with one
signature per table: a closure over a plain function is cached under a stable key, one over a
Numba dispatcher would not be.
"""

from __future__ import annotations

from numba.extending import register_jitable

from . import loops, updates

# -- optimizer updates: (p, g, state slot 0, state slot 1, scalars h in the kernel's order) ---------

@register_jitable
def sgd(p, g, s0, s1, h):
    updates.sgd(p, g, h[0])


@register_jitable
def momentum(p, g, s0, s1, h):
    updates.momentum(p, g, s0, h[0], h[1])


@register_jitable
def nesterov(p, g, s0, s1, h):
    updates.nesterov(p, g, s0, h[0], h[1], h[2], h[3])


@register_jitable
def adagrad(p, g, s0, s1, h):
    updates.adagrad(p, g, s0, h[0], h[1])


@register_jitable
def rmsprop(p, g, s0, s1, h):
    updates.rmsprop(p, g, s0, h[0], h[1], h[2], h[3])


@register_jitable
def adam(p, g, s0, s1, h):
    updates.adam(p, g, s0, s1, h[0], h[1], h[2], h[3])


# keyed by the contract's kernel name (an optimizer's ``kernel``)
UPDATES = {"sgd_update": sgd, "momentum_update": momentum, "nesterov_update": nesterov,
           "adagrad_update": adagrad, "rmsprop_update": rmsprop, "adam_update": adam}


# -- hidden activations: forward z = act(z + b); backward dh *= act'(h), db = dh.sum(0) -----------

@register_jitable
def bias_relu(z, b):
    loops.bias_relu(z, b)


@register_jitable
def bias_sigmoid(z, b):
    loops.bias_sigmoid(z, b)


@register_jitable
def bias_identity(z, b):
    loops.add_bias(z, b)


@register_jitable
def relu_grad_colsum(dh, db, h):
    loops.relu_grad_colsum(dh, db, h)


@register_jitable
def sigmoid_grad_colsum(dh, db, h):
    loops.sigmoid_grad_colsum(dh, db, h)


@register_jitable
def identity_grad_colsum(dh, db, h):
    loops.colsum(db, dh)                 # dh is the gradient of h itself


# by the contract's ACT_CODES (relu 0, sigmoid 1, identity 2)
BIAS_ACTS = (bias_relu, bias_sigmoid, bias_identity)
GRAD_COLSUMS = (relu_grad_colsum, sigmoid_grad_colsum, identity_grad_colsum)
