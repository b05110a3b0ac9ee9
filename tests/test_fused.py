"""Fused kernels equal the composition of the plain ones, and the trainer's fused step equals the
layer-by-layer path, on every backend."""

import numpy as np
import pytest

import fastdl
from conftest import tol
from test_kernels import labels, rand, run


def check_all(got, want, dtype):
    for g, w in zip(got, want):
        g = np.asarray(g).reshape(np.shape(w)) if np.ndim(w) == 0 else g
        np.testing.assert_allclose(np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64), **tol(dtype))


@pytest.mark.parametrize("n,d,m", [(1, 3, 2), (37, 13, 10), (100, 784, 50)])
def test_affine_activation_forward(backend, ref, dtype, n, d, m):
    x, W, b = rand((n, d), dtype, 0), rand((d, m), dtype, 1), rand(m, dtype, 2)
    y, mask = run(backend, "affine_relu_forward", x, W, b)
    y_ref, mask_ref = run(ref, "relu_forward", run(ref, "affine_forward", x, W, b))
    check_all([y], [y_ref], dtype)
    np.testing.assert_array_equal(mask.astype(bool), mask_ref)
    check_all([run(backend, "affine_sigmoid_forward", x, W, b)],
              [run(ref, "sigmoid_forward", run(ref, "affine_forward", x, W, b))], dtype)


@pytest.mark.parametrize("n,m", [(1, 2), (37, 13), (100, 50)])
def test_activation_backward_colsum(backend, ref, dtype, n, m):
    dy, x = rand((n, m), dtype, 0), rand((n, m), dtype, 1)
    x.flat[::4] = 0
    mask = x > 0
    dx, db = run(backend, "relu_backward_colsum", dy, mask)
    dx_ref = run(ref, "relu_backward", dy, mask)
    check_all([dx, db], [dx_ref, dx_ref.sum(axis=0)], dtype)
    y = run(ref, "sigmoid_forward", x)
    dx, db = run(backend, "sigmoid_backward_colsum", dy, y)
    dx_ref = run(ref, "sigmoid_backward", dy, y)
    check_all([dx, db], [dx_ref, dx_ref.sum(axis=0)], dtype)


@pytest.mark.parametrize("n,c", [(1, 10), (37, 10), (100, 10)])
def test_softmax_cross_entropy_fused(backend, ref, dtype, n, c):
    z, t = rand((n, c), dtype, 0, scale=4), labels(n, c)
    z[0, 0] = 1e3                                              # an extreme logit too
    loss, dz = run(backend, "softmax_cross_entropy", z, t)
    loss_ref, probs = run(ref, "softmax_cross_entropy_forward", z, t)
    check_all([loss, dz], [loss_ref, run(ref, "softmax_cross_entropy_backward", probs, t)], dtype)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("opt", ["SGD", "Momentum", "Adam"])
def test_fused_train_step_equals_layer_path(backend, dtype, activation, opt):
    if not hasattr(backend, "compile_train_step"):
        pytest.skip(f"backend {backend.name!r} has no fused training step")
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((137, 20)).astype(dtype), rng.integers(0, 10, 137)
    runs = []
    for fast in (True, False):
        net = fastdl.MultiLayerNet(20, [16, 12], 10, activation=activation, weight_init_std="he",
                                   dtype=dtype, backend=backend, seed=0)
        tr = fastdl.Trainer(net, fastdl.optimizers.get_optimizer(opt, lr=0.05), x, t, epochs=3,
                            batch_size=50, seed=0, progress=False, fast_path=fast)
        assert tr.fast_path is fast
        h = tr.fit()                                            # includes a partial batch of 37
        runs.append((np.array(h.loss), net.params_numpy()))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=rtol)
    for k in runs[1][1]:
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=rtol, atol=rtol * 1e-2)
