"""Every kernel on every available backend against the NumPy oracle, and the oracle against
numerical gradients (float64)."""

import warnings

import numpy as np
import pytest

from conftest import tol
from fastdl.gradcheck import numerical_gradient, relative_error
from fastdl.optimizers import Adam

SIZES = [(1, 5, 3), (37, 13, 10), (100, 784, 50)]   # batch of 1, odd sizes, the book's layer


def rand(shape, dtype, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def labels(n, c, seed=1):
    return np.random.default_rng(seed).integers(0, c, size=n)


def one_hot(t, c, dtype=np.float32):
    out = np.zeros((len(t), c), dtype=dtype)
    out[np.arange(len(t)), t] = 1
    return out


def run(backend, fn, *args, **kw):
    """Call a backend kernel with host arrays moved over; return host results; check purity."""
    dev = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    before = [backend.to_numpy(a).copy() if backend.is_backend_array(a) else None for a in dev]
    out = getattr(backend, fn)(*dev, **kw)
    for a, b in zip(dev, before):
        if b is not None:
            np.testing.assert_array_equal(backend.to_numpy(a), b, err_msg=f"{fn} modified its input")
    outs = out if isinstance(out, tuple) else (out,)
    host = tuple(None if o is None else np.asarray(backend.to_numpy(o)) for o in outs)
    return host if isinstance(out, tuple) else host[0]


def check(got, want, dtype, terms=1):
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **tol(dtype, terms))


# -- parity with the oracle --------------------------------------------------------------------

@pytest.mark.parametrize("n,d,m", SIZES)
def test_affine(backend, ref, dtype, n, d, m):
    x, W, b, dy = rand((n, d), dtype, 0), rand((d, m), dtype, 1), rand(m, dtype, 2), rand((n, m), dtype, 3)
    check(run(backend, "affine_forward", x, W, b), run(ref, "affine_forward", x, W, b), dtype, d)
    got, want = run(backend, "affine_backward", dy, x, W), run(ref, "affine_backward", dy, x, W)
    for g, w, terms in zip(got, want, (m, n, n)):          # dx sums over m, dW and db over n
        check(g, w, dtype, terms)
    dx, dW, db = run(backend, "affine_backward", dy, x, W, need_dx=False)
    assert dx is None
    check(dW, want[1], dtype, n)


@pytest.mark.parametrize("shape", [(1, 1), (37, 13), (100, 50)])
def test_relu(backend, ref, dtype, shape):
    x = rand(shape, dtype)
    x.flat[::3] = 0                                     # exactly at the kink
    y, mask = run(backend, "relu_forward", x)
    y_ref, mask_ref = run(ref, "relu_forward", x)
    check(y, y_ref, dtype)
    np.testing.assert_array_equal(mask.astype(bool), mask_ref)
    dy = rand(shape, dtype, 5)
    dx = run(backend, "relu_backward", dy, backend.to_numpy(backend.relu_forward(backend.asarray(x))[1]))
    check(dx, run(ref, "relu_backward", dy, mask_ref), dtype)
    assert (dx.flat[::3] == 0).all(), "the gradient at exactly 0 must be 0"


@pytest.mark.parametrize("shape", [(1, 1), (37, 13), (100, 50)])
def test_sigmoid(backend, ref, dtype, shape):
    x = rand(shape, dtype, scale=5)
    y = run(backend, "sigmoid_forward", x)
    check(y, run(ref, "sigmoid_forward", x), dtype)
    dy = rand(shape, dtype, 6)
    check(run(backend, "sigmoid_backward", dy, y), run(ref, "sigmoid_backward", dy, y), dtype)


def test_sigmoid_is_stable_for_any_finite_input(backend, dtype):
    fi = np.finfo(dtype)
    x = np.array([[-fi.max, -1e4, -100, -30, -1, 0, 1, 30, 100, 1e4, fi.max]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = run(backend, "sigmoid_forward", x)
    assert np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()
    assert y[0, 0] == 0 and y[0, -1] == 1 and y[0, 5] == 0.5
    np.testing.assert_allclose(y[0, 3], np.exp(-30.0) / (1 + np.exp(-30.0)), rtol=1e-5)   # relative accuracy in the tail


@pytest.mark.parametrize("n,c", [(1, 10), (37, 10), (100, 10), (5, 3), (7, 1), (9, 33)])
def test_softmax_cross_entropy(backend, ref, dtype, n, c):
    z, t = rand((n, c), dtype, scale=3), labels(n, c)
    loss, probs = run(backend, "softmax_cross_entropy_forward", z, t)
    loss_ref, probs_ref = run(ref, "softmax_cross_entropy_forward", z, t)
    check(probs, probs_ref, dtype)
    check(np.asarray(loss).reshape(()), np.asarray(loss_ref).reshape(()), dtype)
    check(run(backend, "softmax_cross_entropy_backward", probs, t),
          run(ref, "softmax_cross_entropy_backward", probs_ref, t), dtype)
    # one-hot rows give the same results as indices
    oh = one_hot(t, c, dtype)
    loss_oh, probs_oh = run(backend, "softmax_cross_entropy_forward", z, oh)
    check(np.asarray(loss_oh).reshape(()), np.asarray(loss).reshape(()), dtype)
    check(run(backend, "softmax_cross_entropy_backward", probs, oh),
          run(backend, "softmax_cross_entropy_backward", probs, t), dtype)


def test_softmax_cross_entropy_extreme_logits(backend, dtype):
    # logits of +-1e3: a naive exp overflows; log(p + 1e-7) caps the loss at 16.1.
    z = np.array([[1e3, -1e3, 0], [-1e3, 1e3, 0], [0, 0, 0]], dtype=dtype)
    t = np.array([1, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, probs = run(backend, "softmax_cross_entropy_forward", z, t)
        dz = run(backend, "softmax_cross_entropy_backward", probs, t)
    expected = (2e3 + 0 + np.log(3)) / 3                   # confident-wrong row costs exactly 2000
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    np.testing.assert_allclose(dz[0], np.array([1, -1, 0]) / 3, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


# -- the oracle against numerical gradients (float64) ------------------------------------------

def _scalar(f, R):
    return lambda: float((f() * R).sum())


def test_numpy_affine_gradients(ref):
    x, W, b = rand((4, 5), np.float64, 0), rand((5, 3), np.float64, 1), rand(3, np.float64, 2)
    R = rand((4, 3), np.float64, 3)
    f = _scalar(lambda: ref.affine_forward(x, W, b), R)
    dx, dW, db = ref.affine_backward(R, x, W)
    for analytic, arr in ((dx, x), (dW, W), (db, b)):
        assert relative_error(analytic, numerical_gradient(f, arr, 1e-6)) < 1e-8


def test_numpy_activation_gradients(ref):
    x = rand((4, 6), np.float64, 0)
    x[np.abs(x) < 1e-3] = 0.5                             # stay off the ReLU kink
    R = rand((4, 6), np.float64, 1)
    _, mask = ref.relu_forward(x)
    assert relative_error(ref.relu_backward(R, mask),
                          numerical_gradient(_scalar(lambda: ref.relu_forward(x)[0], R), x, 1e-6)) < 1e-8
    y = ref.sigmoid_forward(x)
    assert relative_error(ref.sigmoid_backward(R, y),
                          numerical_gradient(_scalar(lambda: ref.sigmoid_forward(x), R), x, 1e-6)) < 1e-8


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_numpy_softmax_cross_entropy_gradient(ref, scale):
    z, t = rand((5, 4), np.float64, 0, scale), labels(5, 4)
    _, probs = ref.softmax_cross_entropy_forward(z, t)
    numeric = numerical_gradient(lambda: ref.softmax_cross_entropy_forward(z, t)[0], z, 1e-6)
    assert relative_error(ref.softmax_cross_entropy_backward(probs, t), numeric) < 1e-7


# -- optimizer updates -------------------------------------------------------------------------

UPDATES = {          # kernel -> (state slots, the scalars an optimizer passes)
    "sgd_update": (0, dict(lr=0.1)),
    "momentum_update": (1, dict(lr=0.1, momentum=0.9)),
    "nesterov_update": (1, dict(lr=0.1, momentum=0.9, momentum_sq=0.81, lr_ahead=0.19)),
    "adagrad_update": (1, dict(lr=0.1, eps=1e-7)),
    "rmsprop_update": (1, dict(lr=0.01, decay=0.99, one_minus_decay=0.01, eps=1e-7)),
    "adam_update": (2, dict(lr_t=0.0003, one_minus_beta1=0.1, one_minus_beta2=0.001, eps=1e-7)),
    "running_update": (0, dict(momentum=0.9, one_minus_momentum=0.1)),     # Batch Norm's averages
}


@pytest.mark.parametrize("kernel", sorted(UPDATES))
@pytest.mark.parametrize("shape", [(1,), (37, 13), (784, 50)])
def test_optimizer_updates(backend, ref, dtype, kernel, shape):
    n_state, hyper = UPDATES[kernel]
    p, g = rand(shape, dtype, 0), rand(shape, dtype, 1)
    states = [np.abs(rand(shape, dtype, 2 + i)) for i in range(n_state)]
    host = [a.copy() for a in (p, g, *states)]
    getattr(ref, kernel)(*host, **hyper)
    dev = [backend.asarray(a.copy()) for a in (p, g, *states)]
    getattr(backend, kernel)(*dev, **hyper)
    for d, h in zip(dev, host):
        check(np.asarray(backend.to_numpy(d)), h, dtype)


class BookOptimizers:
    """The book's common/optimizer.py formulas, written out here in float64 (from its code)."""

    @staticmethod
    def nesterov(p, g, v, lr, mu):
        p = p + mu * mu * v
        p = p - (1 + mu) * lr * g
        return p, mu * v - lr * g

    @staticmethod
    def adam(p, g, m, v, lr, b1, b2, it):
        lr_t = lr * np.sqrt(1.0 - b2 ** it) / (1.0 - b1 ** it)
        m = m + (1 - b1) * (g - m)
        v = v + (1 - b2) * (g ** 2 - v)
        return p - lr_t * m / (np.sqrt(v) + 1e-7), m, v

    @staticmethod
    def rmsprop(p, g, h, lr, decay):
        h = h * decay + (1 - decay) * g * g
        return p - lr * g / (np.sqrt(h) + 1e-7), h


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizers_follow_the_books_formulas(backend, dtype):
    """Three steps of each optimizer on every backend against the book's code; in float32 the
    book's own arithmetic (Python floats times float32 arrays: each derived constant rounded once)
    is matched to the last bit or two."""
    from fastdl import optimizers
    p0, gs = rand(6, dtype, 0), [rand(6, dtype, i) for i in (1, 2, 3)]
    book = BookOptimizers
    cases = {
        "Nesterov": (dict(lr=0.1, momentum=0.9), (np.zeros(6, dtype),),
                     lambda p, g, s, i: (lambda r: (r[0], (r[1],)))(book.nesterov(p, g, s[0], 0.1, 0.9))),
        "Adam": (dict(lr=0.001, beta1=0.9, beta2=0.999), (np.zeros(6, dtype), np.zeros(6, dtype)),
                 lambda p, g, s, i: (lambda r: (r[0], r[1:]))(book.adam(p, g, s[0], s[1], 0.001, 0.9, 0.999, i))),
        "RMSprop": (dict(lr=0.01, decay=0.99), (np.zeros(6, dtype),),
                    lambda p, g, s, i: (lambda r: (r[0], (r[1],)))(book.rmsprop(p, g, s[0], 0.01, 0.99))),
    }
    for name, (hyper, state, step) in cases.items():
        opt = optimizers.get_optimizer(name, **hyper)
        params = {"p": backend.asarray(p0.copy())}
        want, s = p0.copy(), state
        for i, g in enumerate(gs, start=1):
            opt.update(params, {"p": backend.asarray(g)}, backend)
            want, s = step(want, g, s, i)
            want, s = want.astype(dtype), tuple(a.astype(dtype) for a in s)
        got = backend.to_numpy(params["p"])
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-13 if dtype == np.float64 else 2e-7, atol=0, err_msg=name)


def test_two_nesterov_steps_from_the_issue(ref):
    """Nesterov(lr=0.1, momentum=0.9) on w=1, g=1 twice: the book and PyTorch give 0.5390."""
    from fastdl.optimizers import Nesterov
    params = {"w": np.array([1.0])}
    opt = Nesterov(lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.update(params, {"w": np.array([1.0])}, ref)
    np.testing.assert_allclose(params["w"], [0.539], rtol=1e-12)


def test_update_formulas_match_the_book(ref):
    """The reference updates against the book's formulas, written out in float64."""
    p0, g = rand(6, np.float64, 0), rand(6, np.float64, 1)
    p, v = p0.copy(), np.zeros(6)
    ref.momentum_update(p, g, v, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(p, p0 - 0.1 * g)
    p, v = p0.copy(), rand(6, np.float64, 2)
    want, v_want = BookOptimizers.nesterov(p0, g, v.copy(), 0.1, 0.9)
    ref.nesterov_update(p, g, v, lr=0.1, momentum=0.9, momentum_sq=0.81, lr_ahead=0.19)
    np.testing.assert_allclose(p, want)
    np.testing.assert_allclose(v, v_want)
    p, h = p0.copy(), np.zeros(6)
    ref.adagrad_update(p, g, h, lr=0.1, eps=1e-7)
    np.testing.assert_allclose(p, p0 - 0.1 * g / (np.abs(g) + 1e-7))
    p = p0.copy()
    adam = Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7)
    adam.update({"p": p}, {"p": g}, ref)                  # step 1: the optimizer folds lr_t
    lr_t = 0.001 * np.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(p, p0 - lr_t * (0.1 * g) / (np.sqrt(0.001 * g * g) + 1e-7))
