"""Fused kernels equal the composition of the plain ones, and the trainer's fused step equals the
layer-by-layer path, on every backend."""

import numpy as np
import pytest

import fastdl
from fastdl.fused import byte_codes
from conftest import tol
from test_kernels import labels, rand, run


def check_all(got, want, dtype, terms=1):
    for g, w in zip(got, want):
        g = np.asarray(g).reshape(np.shape(w)) if np.ndim(w) == 0 else g
        np.testing.assert_allclose(np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64),
                                   **tol(dtype, terms))


@pytest.mark.parametrize("n,d,m", [(1, 3, 2), (37, 13, 10), (100, 784, 50)])
def test_affine_activation_forward(backend, ref, dtype, n, d, m):
    x, W, b = rand((n, d), dtype, 0), rand((d, m), dtype, 1), rand(m, dtype, 2)
    y, mask = run(backend, "affine_relu_forward", x, W, b)
    y_ref, mask_ref = run(ref, "relu_forward", run(ref, "affine_forward", x, W, b))
    check_all([y], [y_ref], dtype, d)
    # the mask may differ only where the pre-activation is within rounding of 0
    near_zero = np.abs(run(ref, "affine_forward", x, W, b)) <= tol(dtype, d)["atol"]
    np.testing.assert_array_equal(mask.astype(bool)[~near_zero], mask_ref[~near_zero])
    check_all([run(backend, "affine_sigmoid_forward", x, W, b)],
              [run(ref, "sigmoid_forward", run(ref, "affine_forward", x, W, b))], dtype, d)


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


def input_layer_class(backend):
    from fastdl.fused import InputLayer
    if not hasattr(backend, "compile_train_step"):
        pytest.skip(f"backend {backend.name!r} has no fused training step")
    return getattr(backend, "InputLayer", InputLayer)


def test_numba_step_keeps_its_blas_single_threaded():
    """The split step calls SciPy's BLAS from every Numba thread at once; a BLAS pool on top
    would oversubscribe the cores. Building a step pins that BLAS (only it) to one thread."""
    nb = pytest.importorskip("fastdl.backends.numba")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import os
    import scipy
    W = np.zeros((23, 7), np.float32)
    layer = nb.InputLayer(nb, W, np.zeros(7, np.float32), W.copy(), np.zeros((10, 23), np.float32), 4, "relu")
    scipy_root = os.path.realpath(os.path.dirname(scipy.__file__))
    libs = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    own = [lib for lib in libs if os.path.realpath(lib["filepath"]).startswith(scipy_root)]
    if not own:
        assert len(layer.cut) == 2, "SciPy shares NumPy's BLAS here: the step must not split"
        return
    assert all(lib["num_threads"] == 1 for lib in own)
    import fastdl.backends.numba
    assert len(layer.cut) - 1 == min(fastdl.backends.numba.numba.get_num_threads(), 23)


@pytest.mark.parametrize("parts", [None, 1, 2, 3, 5])
@pytest.mark.parametrize("data", ["gaussian", "pixels"])
def test_input_layer_equals_gather_then_gemm(backend, dtype, data, parts, monkeypatch):
    """The fused step's first layer: forward act(x[idx] @ W + b) for each activation, backward
    x[idx]^T @ dz, for a full and a partial batch; on numba split into 1, 2, 3 (uneven) or 5
    parts by input feature."""
    cls = input_layer_class(backend)
    if parts is not None:
        if not hasattr(backend, "SPLIT_PARTS"):
            pytest.skip(f"backend {backend.name!r} does not split the input layer")
        monkeypatch.setattr(backend, "SPLIT_PARTS", parts)
    rng = np.random.default_rng(3)
    x = rand((300, 23), dtype, 0) if data == "gaussian" else pixels((300, 23), dtype)
    W = rand((23, 7), dtype, 1)
    b = rand(7, dtype, 2)
    Wd, bd, dWd = backend.asarray(W), backend.asarray(b), backend.asarray(np.zeros_like(W))
    layers = {act: cls(backend, Wd, bd, dWd, backend.asarray(x), 40, act) for act in (None, "relu", "sigmoid")}
    want = {None: lambda a: a, "relu": lambda a: np.maximum(a, 0), "sigmoid": lambda a: 1 / (1 + np.exp(-a))}
    for act, layer in layers.items():
        if parts is not None:
            assert len(layer.cut) - 1 == parts
        assert layer.byte_coded is (data == "pixels" and backend.name == "numba")
        for n in (40, 13, 40):
            idx = rng.integers(0, 300, n)
            dz = rand((n, 7), dtype, n)
            y = backend.asarray(np.full((n, 7), np.nan, dtype=dtype))
            layer.forward(backend.asarray(idx), y)
            layer.backward(backend.asarray(dz))
            check_all([backend.to_numpy(y), backend.to_numpy(dWd)],
                      [want[act](x[idx] @ W + b), x[idx].T @ dz], dtype)


@pytest.mark.parametrize("data", ["gaussian", "pixels"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("opt", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
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
    if not hasattr(backend, "compile_train_step"):
        pytest.skip(f"backend {backend.name!r} has no fused training step")
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


@pytest.mark.parametrize("shape", [(7, 5, 3), (300, 120, 130)], ids=["small", "split"])
@pytest.mark.parametrize("transposed", [False, True], ids=["a", "a.T"])
def test_matmul_hook(backend, dtype, shape, transposed, monkeypatch):
    """The step's GEMM hook, in the calling thread and split by output rows across threads
    (the threshold lowered so a test-sized GEMM takes the split path), with the transposed
    operands the step passes (h.T in dW = h.T @ dz, W.T in dh = dz @ W.T)."""
    mm = getattr(backend, "matmul_", None)
    if mm is None:
        pytest.skip(f"backend {backend.name!r} uses xp.matmul in the fused step")
    monkeypatch.setattr(backend, "SMALL_GEMM", 1000)
    m, k, n = shape
    a = rand((k, m), dtype, 0).T if transposed else rand((m, k), dtype, 0)
    bt = rand((n, k), dtype, 1)
    out = backend.asarray(np.full((m, n), np.nan, dtype=dtype))
    mm(out, backend.asarray(a), backend.asarray(bt).T)
    check_all([backend.to_numpy(out)], [a @ bt.T], dtype)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_softmax_head_equals_the_composition(backend, ref, dtype, activation):
    """The fused step's last layer + loss + the hidden activation's backward (the backend's
    softmax_head_ or the composition in fastdl.fused), for a full and a partial batch, against
    the NumPy kernels."""
    from fastdl import fused
    if not hasattr(backend, "compile_train_step"):
        pytest.skip(f"backend {backend.name!r} has no fused training step")
    head = getattr(backend, "softmax_head_", None) or fused._softmax_head(backend, fused._matmul(backend))
    W, b = rand((12, 10), dtype, 1), rand(10, dtype, 2)
    for n in (40, 7):
        h = rand((n, 12), dtype, n)
        h = np.maximum(h, 0) if activation == "relu" else 1 / (1 + np.exp(-h))
        t = labels(n, 10, seed=n)
        dev = backend.asarray
        out = [dev(np.full(s, np.nan, dtype=dtype)) for s in ((n, 10), (n, 10), (12, 10), (10,), (n, 12), (12,))]
        z, dz, dW, db, dh, db_h = out
        loss = head(z, dz, dev(h), dev(W), dev(b), dev(t), dW, db, dh, db_h, activation == "relu")
        loss_ref, probs = run(ref, "softmax_cross_entropy_forward", h @ W + b, t)
        dz_ref = run(ref, "softmax_cross_entropy_backward", probs, t)
        dh_ref = dz_ref @ W.T
        dh_ref = dh_ref * (h > 0) if activation == "relu" else dh_ref * h * (1 - h)
        check_all([float(loss)] + [backend.to_numpy(a) for a in (dz, dW, db, dh, db_h)],
                  [loss_ref, dz_ref, h.T @ dz_ref, dz_ref.sum(axis=0), dh_ref, dh_ref.sum(axis=0)],
                  dtype, n)


def test_numba_layer_path_gemm_routes(monkeypatch):
    """Tall forward products (evaluation) split across Numba's threads, a batch's stay on
    NumPy's BLAS; both equal NumPy's a @ b."""
    nb = pytest.importorskip("fastdl.backends.numba")
    calls = []
    real = nb._split_dot
    monkeypatch.setattr(nb, "_split_dot", lambda *args: (calls.append(args[0].shape[0]), real(*args))[1])
    monkeypatch.setattr(nb, "SMALL_GEMM", 1000)
    for m in (nb.EVAL_ROWS, nb.EVAL_ROWS + 37, 100):
        a, b = rand((m, 60), np.float32, 0), rand((60, 30), np.float32, 1)
        check_all([nb._forward_gemm(a, b)], [a @ b], np.float32, 60)
    assert calls == [nb.EVAL_ROWS, nb.EVAL_ROWS + 37]
