import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import tol
import fastdl
from fastdl import functions as F
from fastdl.perceptron import AND, NAND, OR, XOR, Perceptron, XorNetwork

TABLE = [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("gate,expected", [(AND, [0, 0, 0, 1]), (OR, [0, 1, 1, 1]), (NAND, [1, 1, 1, 0]), (XOR, [0, 1, 1, 0])])
def test_truth_tables(gate, expected):
    assert [gate(a, b) for a, b in TABLE] == expected


def test_xor_network_and_gate_composition_agree():
    assert XorNetwork()(np.array(TABLE)).tolist() == [0, 1, 1, 0]
    assert Perceptron([1, 1], -1.5)(1, 1) == 1


def test_python_m_perceptron_prints_tables():
    out = subprocess.run([sys.executable, "-m", "fastdl.perceptron"], capture_output=True, text=True, check=True).stdout
    assert "XOR" in out and "  1  1 | 0" in out


def host(bk, a):
    return np.asarray(bk.to_numpy(a))


def rand(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 3


@pytest.mark.parametrize("shape", [(7,), (5, 7)])
def test_functions_against_definitions(backend, dtype, shape):
    x = rand(shape, dtype)
    for fn, ref in ((F.step_function, lambda a: (a > 0).astype(a.dtype)),
                    (F.sigmoid, lambda a: 1 / (1 + np.exp(-a))),
                    (F.relu, lambda a: np.maximum(a, 0))):
        got = host(backend, fn(backend.asarray(x), backend=backend))
        assert got.dtype == np.dtype(dtype) and got.shape == x.shape
        np.testing.assert_allclose(got, ref(x), **tol(dtype))
    a2 = x.reshape(1, -1) if x.ndim == 1 else x
    e = np.exp(a2 - a2.max(axis=1, keepdims=True))
    np.testing.assert_allclose(host(backend, F.softmax(backend.asarray(x), backend=backend)),
                               (e / e.sum(axis=1, keepdims=True)).reshape(x.shape), **tol(dtype))


def test_softmax_is_finite_for_huge_inputs(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = host(backend, F.softmax(np.array([1010.0, 1000.0, 990.0]), backend=backend))
    np.testing.assert_allclose(y, [9.99954600e-01, 4.53978686e-05, 2.06106005e-09], rtol=1e-6)
    big = host(backend, F.softmax(np.array([[1e4, -1e4, 0], [-1e4, -1e4, 1e4]]), backend=backend))
    assert np.isfinite(big).all()
    np.testing.assert_allclose(big.sum(axis=1), 1)


def test_relu_is_elementwise(backend):
    x = np.array([[-2.0, 3.0], [0.0, -0.5]])
    np.testing.assert_array_equal(host(backend, F.relu(x, backend=backend)), [[0, 3], [0, 0]])


def test_losses(backend, dtype):
    y = np.array([[0.1, 0.05, 0.6, 0.0, 0.25], [0.0, 0.0, 0.0, 1.0, 0.0]], dtype=dtype)
    t_idx = np.array([2, 3])
    t_oh = np.eye(5, dtype=dtype)[t_idx]
    mse = float(host(backend, F.mean_squared_error(y, t_oh, backend=backend)))
    assert mse == pytest.approx(0.5 * ((y - t_oh) ** 2).sum() / 2, rel=1e-6)
    ce = float(host(backend, F.cross_entropy_error(y, t_idx, backend=backend)))
    assert ce == pytest.approx(-np.log(0.6) / 2, rel=1e-5)
    assert float(host(backend, F.cross_entropy_error(y, t_oh, backend=backend))) == pytest.approx(ce, rel=1e-6)
    # a probability of exactly zero for the true class: large and finite
    zero = float(host(backend, F.cross_entropy_error(y[:1], np.array([3]), backend=backend)))
    assert np.isfinite(zero) and zero > 50
    assert float(host(backend, F.cross_entropy_error(y[0], 2, backend=backend))) == pytest.approx(-np.log(0.6), rel=1e-5)


def test_numerical_gradient_of_a_quadratic():
    x = np.array([3.0, 4.0, -1.5])
    before = x.copy()
    g = F.numerical_gradient(lambda v: (v ** 2).sum() + 2 * v[0], x)
    np.testing.assert_allclose(g, 2 * before + [2, 0, 0], rtol=1e-7)
    np.testing.assert_array_equal(x, before)


def test_python_numbers_keep_their_shape(backend):
    """sigmoid(3.0), relu(-1.0), step_function(0.5): 0-d results, as the book's NumPy gives."""
    for fn, arg, want in ((F.sigmoid, 3.0, 1 / (1 + np.exp(-3.0))), (F.relu, -1.0, 0.0), (F.step_function, 0.5, 1.0)):
        out = fn(arg, backend=backend)
        assert out.shape == ()
        np.testing.assert_allclose(backend.to_numpy(out), want, rtol=1e-6)


def test_cross_entropy_refuses_labels_that_do_not_match_the_batch(backend):
    y = np.array([[0.1, 0.2, 0.7]])
    with pytest.raises(fastdl.ShapeError, match="1 rows but t has 3 labels"):
        F.cross_entropy_error(y, [0, 0, 1], backend=backend)           # a one-hot row given as indices
    with pytest.raises(fastdl.ShapeError, match="one-hot labels must have y's shape"):
        F.cross_entropy_error(y, [[0, 1]], backend=backend)
    with pytest.raises(fastdl.LabelError, match=r"label -1 outside \[0, 3\) \(range seen: -1\.\.-1\); there are 3 classes"):
        F.cross_entropy_error(y, [-1], backend=backend)                 # no wrap-around to the last class
    with pytest.raises(fastdl.LabelError, match=r"non-integer label 0\.5;"):
        F.cross_entropy_error(y, [0.5], backend=backend)
    np.testing.assert_allclose(float(F.cross_entropy_error(y, [[0, 0, 1]], backend=backend)), -np.log(0.7), rtol=1e-6)
    np.testing.assert_allclose(float(F.cross_entropy_error(y[0], 2, backend=backend)), -np.log(0.7), rtol=1e-6)


def test_functions_validate_like_the_layers(backend):
    """Softmax over the last axis of any rank; MSE refuses mismatched shapes; an integer input's
    numerical gradient is taken in floating point."""
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    got = backend.to_numpy(F.softmax(a, backend=backend))
    np.testing.assert_allclose(got.sum(axis=-1), 1, rtol=1e-6)
    np.testing.assert_allclose(got[1, 2], backend.to_numpy(F.softmax(a[1, 2], backend=backend)), rtol=1e-6)
    with pytest.raises(fastdl.ShapeError, match="one-hot rows of y's shape"):
        F.mean_squared_error(np.array([0.1, 0.9]), np.array([1]), backend=backend)
    for empty in (np.array([]), np.zeros((2, 0)), 3.0):                 # no class to normalise over
        with pytest.raises(fastdl.ShapeError, match="at least one class"):
            F.softmax(empty, backend=backend)
    assert backend.to_numpy(F.softmax(np.zeros((0, 3)), backend=backend)).shape == (0, 3)    # no rows: fine
    grad = F.numerical_gradient(lambda x: float((x ** 2).sum()), np.array([3, -2]))
    np.testing.assert_allclose(grad, [6, -4], rtol=1e-6)
    # a list, as a reader types the book's [3.0, 4.0] (an AttributeError on .shape), and a number
    np.testing.assert_allclose(F.numerical_gradient(lambda x: float((x ** 2).sum()), [3.0, 4.0]), [6, 8], rtol=1e-6)
    np.testing.assert_allclose(F.numerical_gradient(lambda x: float(x ** 3), 2.0), 12, rtol=1e-6)


def test_integer_input_computes_in_floating_point():
    """Integers (a list of them, as a reader types) become float64 first: sigmoid of 1 is not 0."""
    np.testing.assert_allclose(F.sigmoid([0, 1]), [0.5, 1 / (1 + np.exp(-1))])
    np.testing.assert_array_equal(F.relu(np.array([-2, 3])), [0.0, 3.0])
    assert F.softmax([1, 1]).dtype == np.float64


def test_labels_of_another_shape_than_the_scores_say_what_fits():
    with pytest.raises(fastdl.errors.ShapeError, match="give one-hot rows of that shape or one class index per row"):
        F.cross_entropy_error(np.full((2, 3), 1 / 3), np.zeros((2, 3, 1)))


def test_the_package_has_perceptron_lazily_and_nothing_else_by_that_route():
    assert fastdl.perceptron.AND(1, 1) == 1
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        fastdl.nothing
