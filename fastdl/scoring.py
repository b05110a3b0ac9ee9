"""Scoring a network on a large set a block of rows at a time: what ``accuracy`` and the trainer's
evaluation at each epoch run (17 times over 70,000 images in the book's run).

Memory stays bounded by the block, whatever the set's size. ByteImages are read by the backend's
``ScoreLayer`` (decoded a block at a time into a buffer made once on NumPy and CuPy; from their
non-zero pixels, listed once, on numba), with the step's activation where one follows Affine1,
then the network's later layers. A ``Scorer`` keeps that layer for every evaluation of its set:
the trainer holds one per set for the whole run.
"""

from __future__ import annotations

from .images import ByteImages

# Rows per forward pass when evaluating a large set of floats: bounds memory, costs nothing in speed.
EVAL_ROWS = 10_000


class Scorer:
    """Scores of the set ``x`` (on ``net``'s backend) in inference mode, block by block, with the
    network's parameters as they are at each call. ``reuse``: the set will be scored many times
    (a trainer's epochs), so the backend may prepare it once (numba lists its non-zero pixels)."""

    def __init__(self, net, x, reuse: bool = False):
        self.net, self.x, self.first = net, x, None
        if isinstance(x, ByteImages):
            bk = net.backend
            self.act = "identity" if net.batch_norm else net.activation    # Batch Norm comes before it
            outputs = net.params["W1"].shape[1]
            self.first = bk.ScoreLayer(bk, x, self.act, outputs, reuse)
            self.z = bk.xp.empty((self.first.rows, outputs), dtype=net.dtype)

    def blocks(self):
        """``(start, scores)`` for consecutive blocks of the set's rows."""
        net, x = self.net, self.x
        if self.first is None:
            for start in range(0, x.shape[0], EVAL_ROWS):
                yield start, net._predict(x[start:start + EVAL_ROWS])
            return
        W, b = net.params["W1"], net.params["b1"]
        rest = net._forward_layers[1 if self.act == "identity" else 2:]
        rows = self.first.rows
        for start in range(0, x.shape[0], rows):
            n = min(rows, x.shape[0] - start)
            y = self.z if n == rows else self.z[:n]
            self.first.forward(y, start, W, b)                       # act(x[rows] @ W1 + b1)
            for layer in rest:
                y = layer._forward(y, False)
            yield start, y

    def correct(self, t) -> int:
        """Number of rows whose highest score is at label ``t`` (on the backend)."""
        xp = self.net.backend.xp
        hits = 0
        for start, y in self.blocks():
            hits += (xp.argmax(y, axis=1) == t[start:start + y.shape[0]]).sum()
        return int(hits)


def correct(net, x, t) -> int:
    """Number of rows of ``x`` whose highest score is at label ``t`` (arrays on the backend)."""
    return Scorer(net, x).correct(t)


def score_blocks(net, x):
    """``(start, scores)`` in inference mode for blocks of x's rows."""
    return Scorer(net, x).blocks()
