"""The chapter-6 kernels (Dropout, Batch Normalization, weight decay) on every backend against
NumPy's, and NumPy's against numerical gradients and the book's own formulas."""

import numpy as np
import pytest

from conftest import tol
from fastdl.backends import contract
from fastdl.gradcheck import numerical_gradient, relative_error
from test_kernels import rand, run

SHAPES = [(1, 1), (37, 13), (100, 50), (9, 70)]


def same(got, want, dtype, terms=1):
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind == "b":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, **tol(dtype, terms))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ratio", [0.0, 0.15, 0.5])
def test_dropout_masks_are_the_same_on_every_backend(backend, ref, dtype, shape, ratio):
    x = rand(shape, dtype)
    for call in (0, 1, 7):
        key = contract.dropout_key(1234, call)
        (y, mask), (y_ref, mask_ref) = run(backend, "dropout_forward", x, ratio, key), run(ref, "dropout_forward", x, ratio, key)
        same(mask, mask_ref, dtype)
        same(y, y_ref, dtype)
    # the reference is the contract's definition, element by element
    key = contract.dropout_key(1234, 7)
    want = np.array([contract.dropout_uniform(key, i) > ratio for i in range(x.size)]).reshape(shape)
    np.testing.assert_array_equal(mask_ref, want)


def test_dropout_keeps_the_right_fraction_and_calls_differ(ref):
    x = np.ones((200, 500), np.float32)
    _, a = ref.dropout_forward(x, 0.3, contract.dropout_key(0, 0))
    _, b = ref.dropout_forward(x, 0.3, contract.dropout_key(0, 1))
    assert abs(a.mean() - 0.7) < 0.005 and abs(b.mean() - 0.7) < 0.005
    assert 0.5 < (a == b).mean() < 0.65            # independent masks agree on 0.7^2 + 0.3^2


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_forward_inference_backward(backend, ref, dtype, shape):
    n, m = shape
    x, dy = rand(shape, dtype, 0, 3) + dtype(2), rand(shape, dtype, 1)
    gamma, beta = rand(m, dtype, 2) + dtype(1), rand(m, dtype, 3)
    got, want = run(backend, "batchnorm_forward", x, gamma, beta, 1e-6), run(ref, "batchnorm_forward", x, gamma, beta, 1e-6)
    for g, w in zip(got, want):
        same(g, w, dtype, n)
    _, xn, std, mean, var = want
    same(run(backend, "batchnorm_inference", x, gamma, beta, mean, var, 1e-6),
         run(ref, "batchnorm_inference", x, gamma, beta, mean, var, 1e-6), dtype)
    for g, w in zip(run(backend, "batchnorm_backward", dy, xn, std, gamma), run(ref, "batchnorm_backward", dy, xn, std, gamma)):
        same(g, w, dtype, n)


def test_batchnorm_is_the_books(ref):
    """The book's layer (ch06 common/layers.py BatchNormalization), written out in float64."""
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((10, 4)) * 3 + 1, rng.standard_normal((10, 4))
    gamma, beta = rng.standard_normal(4) + 1, rng.standard_normal(4)
    mu = x.mean(axis=0); xc = x - mu; var = np.mean(xc ** 2, axis=0); std = np.sqrt(var + 10e-7); xn = xc / std
    y_book = gamma * xn + beta
    dbeta = dout.sum(axis=0); dgamma = np.sum(xn * dout, axis=0); dxn = gamma * dout; dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0); dvar = 0.5 * dstd / std
    dxc += (2.0 / 10) * xc * dvar; dmu = np.sum(dxc, axis=0); dx_book = dxc - dmu / 10
    y, xn_, std_, mean, var_ = ref.batchnorm_forward(x, gamma, beta, 10e-7)
    np.testing.assert_allclose(y, y_book, rtol=1e-12)
    for g, w in zip(ref.batchnorm_backward(dout, xn_, std_, gamma), (dx_book, dgamma, dbeta)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_numpy_batchnorm_gradient_is_numerically_right(ref):
    rng = np.random.default_rng(1)
    x, R = rng.standard_normal((6, 3)) * 2, rng.standard_normal((6, 3))
    gamma, beta = rng.standard_normal(3) + 1, rng.standard_normal(3)
    f = lambda: float((ref.batchnorm_forward(x, gamma, beta, 1e-6)[0] * R).sum())
    _, xn, std, _, _ = ref.batchnorm_forward(x, gamma, beta, 1e-6)
    dx, dgamma, dbeta = ref.batchnorm_backward(R, xn, std, gamma)
    for analytic, arr in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        assert relative_error(analytic, numerical_gradient(f, arr, 1e-6)) < 1e-7


@pytest.mark.parametrize("shape", [(1,), (37, 13), (784, 50)])
def test_sum_squares_and_scale(backend, ref, dtype, shape):
    a = rand(shape, dtype)
    got, want = run(backend, "sum_squares", a), run(ref, "sum_squares", a)
    assert np.asarray(got).dtype == dtype
    np.testing.assert_allclose(np.asarray(got), want, **tol(dtype, a.size))
    same(run(backend, "scale", a, 0.7), run(ref, "scale", a, 0.7), dtype)
