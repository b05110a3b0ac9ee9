"""Property tests (hypothesis): mathematical facts every backend must satisfy on random shapes
and values. The ``ci`` profile (conftest.py; the default) runs 100 examples per property."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastdl
from fastdl.backends import NAMES, backend_status, get_backend


USABLE = [n for n in NAMES if backend_status(n)[0]]
ref = get_backend("numpy")

dtypes = st.sampled_from([np.float32, np.float64])
shapes = st.tuples(st.integers(1, 40), st.integers(1, 12))


@st.composite
def logits(draw, scale=50.0):
    dtype = draw(dtypes)
    n, c = draw(shapes)
    z = draw(hnp.arrays(dtype, (n, c), elements=st.floats(-scale, scale, width=32)))
    t = draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    return z, t


@pytest.mark.parametrize("name", USABLE)
@given(data=logits())
def test_softmax_rows_sum_to_one_and_are_shift_invariant(name, data):
    bk = get_backend(name)
    z, t = data
    _, p = bk.softmax_cross_entropy_forward(bk.asarray(z), bk.asarray(t))
    _, p_shift = bk.softmax_cross_entropy_forward(bk.asarray(z + z.dtype.type(7)), bk.asarray(t))
    p, p_shift = bk.to_numpy(p), bk.to_numpy(p_shift)
    tol = 1e-5 if z.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=tol * 10)
    np.testing.assert_allclose(p, p_shift, atol=tol * 10)


@pytest.mark.parametrize("name", USABLE)
@given(data=logits(scale=1e3))
def test_loss_is_logsumexp_minus_true_logit_and_nonnegative(name, data):
    bk = get_backend(name)
    z, t = data
    loss, _ = bk.softmax_cross_entropy_forward(bk.asarray(z), bk.asarray(t))
    z64 = z.astype(np.float64)
    m = z64.max(axis=1)
    expected = (m + np.log(np.exp(z64 - m[:, None]).sum(axis=1)) - z64[np.arange(len(t)), t]).mean()
    assert float(loss) >= 0
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4 if z.dtype == np.float32 else 1e-10,
                               atol=1e-5 if z.dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", USABLE)
@given(x=hnp.arrays(dtypes, shapes, elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_sigmoid_is_symmetric_and_quiet(name, x):
    bk = get_backend(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = bk.to_numpy(bk.sigmoid_forward(bk.asarray(x)))
            y_neg = bk.to_numpy(bk.sigmoid_forward(bk.asarray(-x)))
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y_neg, 1 - y, atol=2e-7 if x.dtype == np.float32 else 1e-15)


@st.composite
def affine_data(draw):
    dtype = draw(dtypes)
    n, d, m = draw(st.integers(1, 20)), draw(st.integers(1, 20)), draw(st.integers(1, 20))
    el = st.floats(-3, 3, width=32)
    return (draw(hnp.arrays(dtype, (n, d), elements=el)), draw(hnp.arrays(dtype, (d, m), elements=el)),
            draw(hnp.arrays(dtype, (m,), elements=el)), draw(hnp.arrays(dtype, (n, m), elements=el)))


@pytest.mark.parametrize("name", USABLE)
@given(data=affine_data())
def test_affine_backward_is_the_adjoint_of_forward(name, data):
    """<dy, x W> == <dy W^T, x> == <x^T dy, W>: backward applies the transpose of forward's map."""
    bk = get_backend(name)
    x, W, b, dy = data
    y = bk.to_numpy(bk.affine_forward(bk.asarray(x), bk.asarray(W), bk.asarray(b))) - b
    dx, dW, db = (bk.to_numpy(a) for a in bk.affine_backward(bk.asarray(dy), bk.asarray(x), bk.asarray(W)))
    f64 = lambda a: a.astype(np.float64)
    lhs = (f64(dy) * f64(y)).sum()
    tol = dict(rtol=1e-4, atol=1e-3) if x.dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose((f64(dx) * f64(x)).sum(), lhs, **tol)
    np.testing.assert_allclose((f64(dW) * f64(W)).sum(), lhs, **tol)
    np.testing.assert_allclose(db, dy.sum(axis=0), **tol)


@pytest.mark.parametrize("name", [n for n in USABLE if n != "numpy"])
@given(data=logits(scale=20), seed=st.integers(0, 2**16))
def test_every_backend_equals_numpy_on_random_networks(name, data, seed):
    z, t = data
    n, c = z.shape
    nets = [fastdl.MultiLayerNet(c, [7], max(2, c), dtype=z.dtype, backend=b, seed=seed, weight_init_std="he")
            for b in (name, "numpy")]
    t = t % max(2, c)
    losses = [nt.loss(z, t) for nt in nets]
    grads = [nt.gradient(z, t) for nt in nets]
    rtol = 1e-4 if z.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(losses[0], losses[1], rtol=rtol, atol=rtol * 1e-2)
    # Backends sum in different orders (numba's softmax even in float64), and the gradient of a
    # saturated softmax is a difference of numbers near 1: float32 agrees to ~eps32 times the size
    # of the inputs (|z| <= 20), not to a relative tolerance of the tiny result.
    atol = 1e-5 if z.dtype == np.float32 else 1e-12
    for k in grads[1]:
        np.testing.assert_allclose(nets[0].backend.to_numpy(grads[0][k]), grads[1][k], rtol=rtol, atol=atol)
