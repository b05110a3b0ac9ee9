"""Hand-written training loops of the book's network, the yardsticks fastdl is measured against.

Each does the work of ``fastdl.Trainer`` on a TwoLayerNet with ReLU and SGD (lr 0.1, batch 100):
the same batches as ``plain_numpy.train`` (the same generator calls), float32, the log-sum-exp
loss, no input gradient for layer 1, and returns the loss of every step.

* ``numba_loop``: the whole run inside one ``@njit`` function, GEMMs through ``np.dot`` (BLAS),
  everything else fused in loops, single-threaded apart from BLAS.
* ``numba_sparse_loop``: the same, with the first layer's forward and dW over each row's non-zero
  pixels only (81% of MNIST's are zero), single-threaded.
* ``torch_manual``: PyTorch on the CPU with the backward written by hand (no autograd).
"""

import numpy as np


def batches(n, iterations, batch_size=100, seed=0):
    """Every step's row indices, drawn as ``plain_numpy.train`` draws them."""
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-n // batch_size)
    out, done = [], 0
    while done < iterations:
        perm = rng.permutation(n)
        for s in range(min(steps_per_epoch, iterations - done)):
            out.append(perm[s * batch_size:(s + 1) * batch_size])
            done += 1
    return np.stack(out)


def _numba():
    import numba

    @numba.njit(cache=False, error_model="numpy")
    def head(h, W2, b2, t, lr, loss_out, step):
        """Layer 2, softmax loss and its gradient, dW2 update; returns dz (for dh)."""
        n, c = h.shape[0], W2.shape[1]
        z = np.dot(h, W2)
        dz = np.empty_like(z)
        total = 0.0
        for i in range(n):
            mx = -np.inf
            for j in range(c):
                z[i, j] += b2[j]
                mx = max(mx, z[i, j])
            s = 0.0
            for j in range(c):
                dz[i, j] = np.exp(z[i, j] - mx)
                s += dz[i, j]
            total += np.log(s) - (z[i, t[i]] - mx)
            for j in range(c):
                dz[i, j] = dz[i, j] / s / n
            dz[i, t[i]] -= np.float32(1.0 / n)
        loss_out[step] = total / n
        return dz

    @numba.njit(cache=False, error_model="numpy")
    def dense(x, t, W1, b1, W2, b2, idx, lr):
        iters, n = idx.shape
        losses = np.empty(iters, np.float32)
        xb = np.empty((n, x.shape[1]), np.float32)
        tb = np.empty(n, np.int64)
        for it in range(iters):
            for r in range(n):
                xb[r] = x[idx[it, r]]
                tb[r] = t[idx[it, r]]
            h = np.dot(xb, W1)
            for r in range(n):
                for j in range(h.shape[1]):
                    h[r, j] = max(h[r, j] + b1[j], np.float32(0))
            dz = head(h, W2, b2, tb, lr, losses, it)
            dh = np.dot(dz, W2.T)
            for r in range(n):
                for j in range(h.shape[1]):
                    if h[r, j] <= 0:
                        dh[r, j] = 0
            W2 -= lr * np.dot(h.T, dz)
            b2 -= lr * dz.sum(axis=0)
            W1 -= lr * np.dot(xb.T, dh)
            b1 -= lr * dh.sum(axis=0)
        return losses

    @numba.njit(cache=False, error_model="numpy")
    def sparse(ptr, col, val, t, W1, b1, W2, b2, idx, lr):
        iters, n = idx.shape
        H = W1.shape[1]
        losses = np.empty(iters, np.float32)
        tb = np.empty(n, np.int64)
        h = np.empty((n, H), np.float32)
        for it in range(iters):
            for r in range(n):
                i = idx[it, r]
                tb[r] = t[i]
                h[r] = b1
                for q in range(ptr[i], ptr[i + 1]):
                    v, w = val[q], W1[col[q]]
                    for j in range(H):
                        h[r, j] += v * w[j]
                for j in range(H):
                    h[r, j] = max(h[r, j], np.float32(0))
            dz = head(h, W2, b2, tb, lr, losses, it)
            dh = np.dot(dz, W2.T)
            for r in range(n):
                for j in range(H):
                    if h[r, j] <= 0:
                        dh[r, j] = 0
            W2 -= lr * np.dot(h.T, dz)
            b2 -= lr * dz.sum(axis=0)
            for r in range(n):            # W1 -= lr x.T @ dh, over the row's non-zeros only
                i = idx[it, r]
                for q in range(ptr[i], ptr[i + 1]):
                    v, w = lr * val[q], W1[col[q]]
                    for j in range(H):
                        w[j] -= v * dh[r, j]
            b1 -= lr * dh.sum(axis=0)
        return losses

    return dense, sparse


_LOOPS = None


def _loops():
    global _LOOPS
    if _LOOPS is None:
        _LOOPS = _numba()
    return _LOOPS


def numba_loop(x, t, W1, b1, W2, b2, *, iterations, lr=0.1):
    return _loops()[0](x, t.astype(np.int64), W1, b1, W2, b2, batches(len(x), iterations), np.float32(lr))


def csr(x):
    """(ptr, col, val): each row's non-zero pixels (made once, like fastdl's byte codes)."""
    rows, cols = np.nonzero(x)
    ptr = np.zeros(len(x) + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=len(x)), out=ptr[1:])
    return ptr, cols.astype(np.int32), x[rows, cols]


def numba_sparse_loop(rows, t, W1, b1, W2, b2, *, iterations, lr=0.1):
    ptr, col, val = rows
    return _loops()[1](ptr, col, val, t.astype(np.int64), W1, b1, W2, b2,
                       batches(len(ptr) - 1, iterations), np.float32(lr))


def torch_manual(x, t, W1, b1, W2, b2, *, iterations, lr=0.1):
    """PyTorch, the backward written out: the parameters (NumPy arrays) are updated in place."""
    import torch
    X, T = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
    W1, b1, W2, b2 = (torch.from_numpy(a) for a in (W1, b1, W2, b2))
    order = torch.from_numpy(batches(len(x), iterations))
    losses = torch.empty(iterations)
    with torch.no_grad():
        for it in range(iterations):
            idx = order[it]
            xb, tb = X[idx], T[idx]
            n = len(idx)
            h = torch.relu(torch.addmm(b1, xb, W1))
            z = torch.addmm(b2, h, W2)
            losses[it] = (torch.logsumexp(z, 1) - z.gather(1, tb[:, None])[:, 0]).mean()
            dz = torch.softmax(z, 1)
            dz[torch.arange(n), tb] -= 1
            dz /= n
            dh = (dz @ W2.T).mul_(h > 0)
            W2.sub_(h.T @ dz, alpha=lr)
            b2.sub_(dz.sum(0), alpha=lr)
            W1.sub_(xb.T @ dh, alpha=lr)
            b1.sub_(dh.sum(0), alpha=lr)
    return losses.numpy()
