"""Perceptrons and logic gates (chapter 2 of the book).

A perceptron fires 1 when ``b + w . x > 0`` and 0 otherwise. AND, OR and NAND are single
perceptrons. XOR is not: its true inputs (0,1), (1,0) and its false inputs (0,0), (1,1) cannot be
separated by any one straight line, so no single perceptron computes it (it is not linearly
separable). Two layers can: XOR(a, b) = AND(NAND(a, b), OR(a, b)).

``python -m fastdl.perceptron`` prints the four truth tables.
"""

from __future__ import annotations

import numpy as np


class Perceptron:
    def __init__(self, weights, bias: float):
        self.w = np.asarray(weights, dtype=np.float64)
        self.b = float(bias)

    def __call__(self, *x) -> int:
        return int(self.b + float(np.dot(self.w, np.asarray(x, dtype=np.float64))) > 0)

    def __repr__(self) -> str:
        return f"Perceptron(weights={self.w.tolist()}, bias={self.b})"


AND_GATE = Perceptron([0.5, 0.5], -0.7)
OR_GATE = Perceptron([0.5, 0.5], -0.2)
NAND_GATE = Perceptron([-0.5, -0.5], 0.7)


def AND(x1, x2) -> int:
    return AND_GATE(x1, x2)


def OR(x1, x2) -> int:
    return OR_GATE(x1, x2)


def NAND(x1, x2) -> int:
    return NAND_GATE(x1, x2)


def XOR(x1, x2) -> int:
    """Two layers of perceptrons: NAND and OR feed AND."""
    return AND(NAND(x1, x2), OR(x1, x2))


class XorNetwork:
    """The same XOR as a 2-2-1 network with step activations and fixed weights.

    Layer 1 computes (NAND, OR) of the inputs, layer 2 ANDs them; works on a batch (N, 2).
    """

    W1 = np.array([[-0.5, 0.5], [-0.5, 0.5]])
    b1 = np.array([0.7, -0.2])
    W2 = np.array([[0.5], [0.5]])
    b2 = np.array([-0.7])

    def __call__(self, x) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        h = (x @ self.W1 + self.b1 > 0).astype(np.float64)
        return (h @ self.W2 + self.b2 > 0).astype(np.int64)[:, 0]


def truth_tables() -> str:
    lines = []
    for name, gate in (("AND", AND), ("OR", OR), ("NAND", NAND), ("XOR", XOR)):
        lines.append(f"{name}\n x1 x2 | y")
        for a in (0, 1):
            for b in (0, 1):
                lines.append(f"  {a}  {b} | {gate(a, b)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(truth_tables())
