"""Per-kernel benchmarks: every contract kernel and every in-place hook of the fused step, on
every backend, by size.

Groups are kernel + size + dtype, so each table row group compares the backends directly.
"""

import numpy as np
import pytest

from conftest import QUICK, backend_info, timed, warm
from fastdl.backends import get_backend

BATCHES = [100] if QUICK else [1, 100, 1024]
WIDTHS = [50] if QUICK else [50, 1000, 4096]
DTYPES = ["float32"] if QUICK else ["float32", "float64"]
IN = 784


def _inputs(bk, kernel, n, m, dtype):
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    t = rng.integers(0, m, n)
    x, W, b, dy = r(n, IN), r(IN, m), r(m), r(n, m)
    z = r(n, m)
    mask = z > 0
    y = 1 / (1 + np.exp(-z))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    args = {
        "affine_forward": (x, W, b), "affine_backward": (dy, x, W),
        "relu_forward": (z,), "relu_backward": (dy, mask),
        "sigmoid_forward": (z,), "sigmoid_backward": (dy, y),
        "softmax_cross_entropy_forward": (z, t), "softmax_cross_entropy_backward": (probs, t),
        "batchnorm_forward": (z, r(m), r(m), 1e-6),
        "batchnorm_backward": (dy, z, np.abs(r(m)) + 1, r(m)),
        "dropout_forward": (z, 0.2, 12345),
    }[kernel]
    return [bk.asarray(a) if isinstance(a, np.ndarray) else a for a in args], args


KERNELS = ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "sigmoid_forward",
           "sigmoid_backward", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
           "batchnorm_forward", "batchnorm_backward", "dropout_forward"]
def _host(bk, out):
    outs = out if isinstance(out, tuple) else (out,)
    return [None if o is None else np.asarray(bk.to_numpy(o), dtype=np.float64) for o in outs]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", WIDTHS)
@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel(benchmark, backend, kernel, n, m, dtype):
    benchmark.group = f"{kernel} N={n} M={m} {dtype}"
    benchmark.extra_info.update(backend_info(backend), kernel=kernel, n=n, m=m, dtype=dtype)
    args, host_args = _inputs(backend, kernel, n, m, dtype)
    fn = getattr(backend, kernel)
    want = _host(get_backend("numpy"), getattr(get_backend("numpy"), kernel)(*host_args))
    got = _host(backend, fn(*args))
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)
    call = timed(backend, lambda: fn(*args))
    warm(call)
    benchmark(call)


# -- the fused step's in-place hooks: outputs first, then inputs (fastdl/backends/contract.py) ------

# -- optimizer updates: labelled by the parameter they update (W1's shape), all six ----------------

UPDATES = {"sgd_update": (0, dict(lr=0.01)), "momentum_update": (1, dict(lr=0.01, momentum=0.9)),
           "nesterov_update": (1, dict(lr=0.01, momentum=0.9, momentum_sq=0.81, lr_ahead=0.019)),
           "adagrad_update": (1, dict(lr=0.01, eps=1e-7)),
           "rmsprop_update": (1, dict(lr=0.01, decay=0.99, one_minus_decay=0.01, eps=1e-7)),
           "adam_update": (2, dict(lr_t=0.0003, one_minus_beta1=0.1, one_minus_beta2=0.001, eps=1e-7))}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", WIDTHS)
@pytest.mark.parametrize("kernel", sorted(UPDATES))
def test_update(benchmark, backend, kernel, m, dtype):
    """One update of a (784, m) parameter in place, checked against NumPy's once first."""
    benchmark.group = f"{kernel} W ({IN}, {m}) {dtype}"
    benchmark.extra_info.update(backend_info(backend), kernel=kernel, n=IN, m=m, dtype=dtype)
    rng = np.random.default_rng(0)
    n_state, hyper = UPDATES[kernel]
    host = [rng.standard_normal((IN, m)).astype(dtype) for _ in range(2)]
    host += [np.abs(rng.standard_normal((IN, m))).astype(dtype) for _ in range(n_state)]
    want = [a.copy() for a in host]
    getattr(get_backend("numpy"), kernel)(*want, **hyper)
    got = [backend.asarray(a.copy()) for a in host]
    fn = getattr(backend, kernel)
    fn(*got, **hyper)
    for g, w in zip(got, want):
        np.testing.assert_allclose(backend.to_numpy(g), w, rtol=1e-4, atol=1e-6)
    call = timed(backend, lambda: fn(*got, **hyper))
    warm(call)
    benchmark(call)


def _hook_args(hook, n, m, dtype):
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    t = rng.integers(0, m, n).astype(np.int64)
    h = np.maximum(r(n, m), 0)
    return {
        "gather_rows_": ([r(n, IN)], [r(60000 if not QUICK else 1000, IN), rng.integers(0, 1000, n)]),
        "matmul_": ([r(n, m)], [r(n, IN), r(IN, m)]),
        "bias_relu_": ([r(n, m)], [r(m)]),
        "bias_sigmoid_": ([r(n, m)], [r(m)]),
        "relu_grad_colsum_": ([r(n, m), r(m)], [h]),
        "softmax_xent_": ([r(n, m)], [r(n, m), t]),
    }[hook]


HOOKS = ["gather_rows_", "matmul_", "bias_relu_", "bias_sigmoid_", "relu_grad_colsum_", "softmax_xent_"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", WIDTHS)
@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("hook", HOOKS)
def test_hook(benchmark, backend, hook, n, m, dtype):
    """Each hook in place on preallocated outputs, as the fused step calls it (inside the
    backend's train_scope); checked against NumPy's hook once before timing."""
    benchmark.group = f"{hook} N={n} M={m} {dtype}"
    benchmark.extra_info.update(backend_info(backend), kernel=hook, n=n, m=m, dtype=dtype)
    outs, ins = _hook_args(hook, n, m, dtype)
    ref = get_backend("numpy")
    want = [o.copy() for o in outs]
    getattr(ref, hook)(*want, *ins)
    dev_out = [backend.asarray(o.copy()) for o in outs]
    dev_in = [backend.asarray(a) for a in ins]
    fn = getattr(backend, hook)
    with backend.train_scope():
        if hook.endswith("_grad_colsum_") or hook.startswith("bias_"):
            fresh = [backend.asarray(o.copy()) for o in outs]       # these read their outputs too
            fn(*fresh, *dev_in)
            got = fresh
        else:
            fn(*dev_out, *dev_in)
            got = dev_out
        for g, w in zip(got, want):
            np.testing.assert_allclose(backend.to_numpy(g), w, rtol=1e-3, atol=1e-3 * np.sqrt(IN))
        call = timed(backend, lambda: fn(*dev_out, *dev_in))
        warm(call)
        benchmark(call)
