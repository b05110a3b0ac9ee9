"""A contender, not a feature: the numba step's first layer over MNIST's non-zero pixels only.

81% of MNIST's pixels are zero, so a first layer that touches only the others does a fifth of the
dense layer's multiply-adds. Measured here against the numba backend's dense InputLayer (gather of
byte codes + BLAS), both split across the threads by input feature the same way, forward and
backward on the same random batches. Written with per-pixel views of W (Numba reference-counts
each), this one lost (144-163 us against 119, earlier bench/results); without them it is within
about 10% of the dense layer (2026-12-05-sparse-contender): forward and backward each about as
long as the dense one's, since a batch's rows sit at random places in a 27 MB list and each thread
handles only ~7,500 non-zeros a call. fastdl keeps the dense layer, which needs no list and no
kernels of its own to compile; the kernels live here so that anyone can rerun the comparison.
"""

import numpy as np
import pytest

import fastdl
from conftest import backend_info, warm

nb = pytest.importorskip("numba")
jit = nb.njit(cache=False, nogil=True, error_model="numpy")
jit_parallel = nb.njit(cache=False, nogil=True, error_model="numpy", parallel=True)


@jit
def csr_split(codes, cut):
    """Each row's non-zero codes (col, val), with split[i, p]: where row i's features reach cut[p]."""
    n, d = codes.shape
    nnz = 0
    for i in range(n):
        for k in range(d):
            nnz += codes[i, k] != 0
    col, val = np.empty(nnz, np.uint16), np.empty(nnz, np.uint8)
    parts = cut.shape[0] - 1
    split = np.empty((n, parts + 1), np.int64)
    q = 0
    for i in range(n):
        p = 0
        for k in range(d):
            while p <= parts and cut[p] <= k:
                split[i, p] = q
                p += 1
            if codes[i, k] != 0:
                col[q], val[q] = k, codes[i, k]
                q += 1
        while p <= parts:
            split[i, p] = q
            p += 1
    return col, val, split


@jit_parallel
def sparse_forward(z, Zbuf, col, val, split, idx, scale, W, b):
    """z = relu(x[idx] @ W + b) from the non-zeros; thread p sums its features' share.

    Written as Numba compiles it well (each timed ad hoc on evaluation's like loop): W[k, j]
    indexed in two dimensions, never ``W[k]`` per pixel (a view, whose reference count is an
    atomic increment and decrement: twice the loop's time); four pixels per pass over the output
    row (its stores and reloads otherwise chain one pixel to the next: 3.9 -> 1.9 ns a pixel)."""
    n, N = z.shape
    parts = split.shape[1] - 1
    inv = z.dtype.type(1) / scale
    for p in nb.prange(parts):
        out = z if p == 0 else Zbuf[p * n * N:(p + 1) * n * N].reshape((n, N))
        for r in range(n):
            i = idx[r]
            for j in range(N):
                out[r, j] = 0
            q, q1 = split[i, p], split[i, p + 1]
            while q + 4 <= q1:
                k0, k1, k2, k3 = np.intp(col[q]), np.intp(col[q + 1]), np.intp(col[q + 2]), np.intp(col[q + 3])
                v0, v1 = z.dtype.type(val[q]) * inv, z.dtype.type(val[q + 1]) * inv
                v2, v3 = z.dtype.type(val[q + 2]) * inv, z.dtype.type(val[q + 3]) * inv
                for j in range(N):
                    out[r, j] += (v0 * W[k0, j] + v1 * W[k1, j]) + (v2 * W[k2, j] + v3 * W[k3, j])
                q += 4
            while q < q1:
                k0, v0 = np.intp(col[q]), z.dtype.type(val[q]) * inv
                for j in range(N):
                    out[r, j] += v0 * W[k0, j]
                q += 1
    for p in range(1, parts):
        part = Zbuf[p * n * N:(p + 1) * n * N].reshape((n, N))
        for r in range(n):
            for j in range(N):
                z[r, j] += part[r, j]
    for r in range(n):
        for j in range(N):
            v = z[r, j] + b[j]
            z[r, j] = v if v > 0 else 0


@jit_parallel
def sparse_backward(dW, col, val, split, idx, scale, dz, cut):
    """dW = x[idx].T @ dz from the non-zeros; thread p writes its features' rows of dW."""
    n, N = dz.shape
    inv = dz.dtype.type(1) / scale
    for p in nb.prange(split.shape[1] - 1):
        for k in range(cut[p], cut[p + 1]):
            for j in range(N):
                dW[k, j] = 0
        for r in range(n):
            i = idx[r]
            for q in range(split[i, p], split[i, p + 1]):
                k, v = np.intp(col[q]), dz.dtype.type(val[q]) * inv
                for j in range(N):
                    dW[k, j] += v * dz[r, j]


@pytest.mark.parametrize("kind", ["dense (fastdl)", "sparse"])
def test_first_layer_forward_backward(benchmark, kind, mnist):
    """One step's first layer of 784-50-10 (forward with bias and ReLU, then dW), batch 100 of
    random MNIST rows, a new batch each call, split across the threads as in training."""
    from fastdl.images import byte_codes
    from fastdl.backends.numba import step, threads
    bk = fastdl.get_backend("numba")
    benchmark.group = "numba first layer, forward + backward: dense (BLAS) vs non-zero pixels only"
    (x, _), _ = mnist
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((784, 50)) * 0.01).astype(np.float32)
    b, dW, dz = np.zeros(50, np.float32), np.empty_like(W), rng.standard_normal((100, 50)).astype(np.float32)
    batches = rng.integers(0, x.shape[0], (1000, 100))
    layer = bk.InputLayer(bk, W, b, dW, x, 100, "relu")
    codes, scale = byte_codes(x, np)
    cut = step.cuts(784, threads.split_parts(784))
    col, val, split = csr_split(codes, cut)
    z, Zbuf = np.empty((100, 50), np.float32), np.empty(len(cut) * 100 * 50, np.float32)
    it = iter(range(10**9))
    if kind == "sparse":
        def call():
            idx = batches[next(it) % 1000]
            sparse_forward(z, Zbuf, col, val, split, idx, scale, W, b)
            sparse_backward(dW, col, val, split, idx, scale, dz, cut)
    else:
        def call():
            layer.forward(batches[next(it) % 1000], z)
            layer.backward(dz)
    with bk.train_scope():
        call()
        idx = batches[0]
        np.testing.assert_allclose(z, np.maximum(x[idx] @ W + b, 0), rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(dW, x[idx].T @ dz, rtol=1e-3, atol=1e-4)
        warm(call, 50)
        benchmark.extra_info.update(backend_info(bk), backend=f"numba, {kind}", dtype="float32",
                                    nonzero_fraction=len(col) / codes.size)
        benchmark(call)
