"""Scoring a network on a large set a block of rows at a time: what ``accuracy`` and the trainer's
evaluation at each epoch run (17 times over 70,000 images in the book's run).

Memory stays bounded by the block, whatever the set's size. ByteImages are read by the backend's
``InputLayer``, as the trainer's step reads them (decoded a block at a time into buffers made
once), with the step's activation where one follows Affine1 (numba then compiles nothing more
for evaluation), then the network's later layers.
"""

from __future__ import annotations

import numpy as np

from .images import ByteImages

# Rows per forward pass when evaluating a large set: bounds memory, costs nothing in speed.
EVAL_ROWS = 10_000
# ByteImages' rows per pass through the backend's InputLayer: its buffers stay in the cache.
BYTE_ROWS = 1024


def correct(net, x, t) -> int:
    """Number of rows of ``x`` whose highest score is at label ``t`` (arrays on the backend)."""
    xp = net.backend.xp
    hits = 0
    for start, y in score_blocks(net, x):
        hits += (xp.argmax(y, axis=1) == t[start:start + y.shape[0]]).sum()
    return int(hits)


def score_blocks(net, x):
    """``(start, scores)`` in inference mode for blocks of x's rows."""
    if not isinstance(x, ByteImages):
        for start in range(0, x.shape[0], EVAL_ROWS):
            yield start, net._predict(x[start:start + EVAL_ROWS])
        return
    bk, W, b = net.backend, net.params["W1"], net.params["b1"]
    rows = min(BYTE_ROWS, x.shape[0])
    act = "identity" if net.batch_norm else net.activation         # Batch Norm comes before it
    rest = net._forward_layers[1 if act == "identity" else 2:]
    first = bk.InputLayer(bk, W, b, bk.xp.empty_like(W), x, rows, act)
    z = bk.xp.empty((rows, W.shape[1]), dtype=net.dtype)
    order = bk.asarray(np.arange(x.shape[0]))               # one transfer; each block reads a slice
    for start in range(0, x.shape[0], rows):
        n = min(rows, x.shape[0] - start)
        y = z if n == rows else z[:n]
        first.forward(order[start:start + n], y)                            # act(x[rows] @ W1 + b1)
        for layer in rest:
            y = layer._forward(y, False)
        yield start, y
