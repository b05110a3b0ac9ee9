"""A small data set the trainer tests share: separable clusters that any working trainer learns
to high accuracy in a few dozen steps, the same on every backend."""

import numpy as np


def blobs(n=330, d=8, c=3, seed=0):
    """``n`` points in ``d`` dimensions around ``c`` centres, as float32 rows and integer labels."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    centres = rng.standard_normal((c, d)) * 3
    return (centres[t] + rng.standard_normal((n, d))).astype(np.float32), t
