"""The trainer's fused step equals the layer-by-layer path on every backend (NumPy included, which
makes its fused step the oracle of the others'), at every depth and with every optimizer; the
byte codes the numba step gathers from are exact."""

import numpy as np
import pytest

import fastdl
from fastdl.images import byte_codes
from test_hooks import pixels


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


@pytest.mark.parametrize("data", ["gaussian", "pixels"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("opt", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_fused_train_step_equals_layer_path(backend, dtype, activation, opt, data):
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
        if fast:      # numba's step keeps pixel data as byte codes
            assert tr._fused.byte_coded is (data == "pixels" and backend.name == "numba")
        h = tr.fit()                                            # includes a partial batch of 37
        runs.append((np.array(h.loss), net.params_numpy()))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    atol = rtol * 1e-2
    if opt in ("AdaGrad", "RMSprop") and dtype == np.float32:
        # lr * g / (sqrt(h) + eps) with h ~ g^2 tiny: a rounding difference in a near-zero
        # gradient (BLAS summation order) moves the step by up to lr/eps times as much.
        atol = 2e-5
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=rtol)
    for k in runs[1][1]:
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=rtol, atol=atol)


@pytest.mark.parametrize("hidden", [[], [16], [16, 12, 8]], ids=["no-hidden", "1-hidden", "3-hidden"])
def test_fused_train_step_any_depth(backend, dtype, hidden):
    """The fused step handles the output layer being the input layer, and deep middles."""
    x, t = pixels((137, 20), dtype), np.random.default_rng(0).integers(0, 10, 137)
    runs = []
    for fast in (True, False):
        net = fastdl.MultiLayerNet(20, hidden, 10, weight_init_std="he", dtype=dtype, backend=backend, seed=0)
        tr = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.05), x, t, epochs=3, batch_size=50, seed=0,
                            progress=False, fast_path=fast)
        assert tr.fast_path is fast
        runs.append((np.array(tr.fit().loss), net.params_numpy()))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=rtol)
    for k in runs[1][1]:
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=rtol, atol=rtol * 1e-2)
