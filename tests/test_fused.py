"""Fused kernels equal the composition of the plain ones, and the trainer's fused step equals the
layer-by-layer path, on every backend."""

import numpy as np
import pytest

import fastdl
from fastdl.fused import byte_codes
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


def pixels(shape, dtype, seed=0, scale=255):
    """Values k/255 with many zeros, as scaled MNIST (k itself with scale=1)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 256, shape) * (rng.random(shape) < 0.3)
    return (k.astype(dtype) / dtype(scale)).astype(dtype)


@pytest.mark.parametrize("scale", [255, 1])
def test_byte_codes_give_back_the_exact_values(dtype, scale):
    x = pixels((300, 17), dtype, scale=scale)
    codes, s = byte_codes(x, np, chunk=64)
    assert codes.dtype == np.uint8 and s == scale and s.dtype == dtype
    np.testing.assert_array_equal(codes.astype(dtype) / s, x)


@pytest.mark.parametrize("case", ["half step", "negative", "nan", "above 255", "1-D", "ints", "empty"])
def test_byte_codes_refuse_what_they_cannot_hold_exactly(case):
    x = pixels((300, 17), np.float32)
    if case == "half step":
        x[290, 3] = np.float32(0.5) / np.float32(255)          # only in the last block
    elif case == "negative":
        x[5, 5] = -x[5, 5] - 1
    elif case == "nan":
        x[200, 0] = np.nan
    elif case == "above 255":
        x = x * 255
        x[7, 1] = 256
    elif case == "1-D":
        x = x[0]
    elif case == "ints":
        x = (x * 255).astype(np.int64)
    else:
        x = x[:0]
    assert byte_codes(x, np, chunk=64) is None


def test_gather_decoded_rows_equals_the_plain_gather(backend, dtype):
    if not hasattr(backend, "gather_decoded_rows_"):
        pytest.skip(f"backend {backend.name!r} gathers the training rows as they are")
    x = pixels((500, 33), dtype)
    codes, scale = byte_codes(x, np)
    idx = np.random.default_rng(1).integers(0, 500, 64)
    out = backend.asarray(np.full((64, 33), np.nan, dtype=dtype))
    backend.gather_decoded_rows_(out, backend.asarray(codes), backend.asarray(idx), scale)
    np.testing.assert_array_equal(backend.to_numpy(out), x[idx])


@pytest.mark.parametrize("data", ["gaussian", "pixels"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("opt", ["SGD", "Momentum", "Adam"])
def test_fused_train_step_equals_layer_path(backend, dtype, activation, opt, data):
    if not hasattr(backend, "compile_train_step"):
        pytest.skip(f"backend {backend.name!r} has no fused training step")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((137, 20)).astype(dtype) if data == "gaussian" else pixels((137, 20), dtype)
    t = rng.integers(0, 10, 137)
    runs = []
    for fast in (True, False):
        net = fastdl.MultiLayerNet(20, [16, 12], 10, activation=activation, weight_init_std="he",
                                   dtype=dtype, backend=backend, seed=0)
        tr = fastdl.Trainer(net, fastdl.optimizers.get_optimizer(opt, lr=0.05), x, t, epochs=3,
                            batch_size=50, seed=0, progress=False, fast_path=fast)
        assert tr.fast_path is fast
        if fast:      # pixel data takes the byte-coded gather where the backend has one
            assert tr._fused.byte_coded is (data == "pixels" and hasattr(backend, "gather_decoded_rows_"))
        h = tr.fit()                                            # includes a partial batch of 37
        runs.append((np.array(h.loss), net.params_numpy()))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=rtol)
    for k in runs[1][1]:
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=rtol, atol=rtol * 1e-2)
