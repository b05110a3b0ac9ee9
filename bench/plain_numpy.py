"""The book's training loop written by hand in plain NumPy: the yardstick for fastdl's overhead.

Same work as ``fastdl.Trainer`` on the NumPy backend with a TwoLayerNet, ReLU and SGD: same
batches (the same generator calls), same float32 arithmetic, same log-sum-exp loss, no input
gradient for layer 1, the loss kept per step. Only the abstraction is missing.
"""

import numpy as np


def train(x, t, W1, b1, W2, b2, *, iterations, batch_size=100, lr=0.1, seed=0):
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    steps_per_epoch = -(-n // batch_size)
    lr = W1.dtype.type(lr)
    losses = np.empty(iterations, dtype=W1.dtype)
    done = 0
    while done < iterations:
        perm = rng.permutation(n)
        for s in range(min(steps_per_epoch, iterations - done)):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb, tb = x[idx], t[idx]
            m = len(idx)
            h = np.maximum(xb @ W1 + b1, 0)
            z = h @ W2 + b2
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            total = e.sum(axis=1, keepdims=True)
            rows = np.arange(m)
            losses[done] = (np.log(total[:, 0]) - z[rows, tb]).mean()
            dz = e / total
            dz[rows, tb] -= 1
            dz /= W1.dtype.type(m)
            dh = (dz @ W2.T) * (h > 0)
            W2 -= lr * (h.T @ dz)
            b2 -= lr * dz.sum(axis=0)
            W1 -= lr * (xb.T @ dh)
            b1 -= lr * dh.sum(axis=0)
            done += 1
    return losses
