"""The cupy backend on the CPU (tests/fake_cupy.py): its Python side and the CUDA kernels of
kernels/*.cu themselves, compiled for the host and launched with the backend's own grids and
blocks, against NumPy, kernel by kernel and hook by hook, in both dtypes. Speed, NVRTC and the
driver are tested only on a GPU (bench/gpu_check.sh)."""

import numpy as np
import pytest

import fastdl
import fake_cupy
from conftest import tol
from fastdl.backends import contract
from test_hooks import CASES
from test_kernels import UPDATES, labels, rand, run
from test_optimizers import NAMES as OPTIMIZERS
from test_optimizers import test_updates_in_place_on_any_layout as layout_case


def test_selection_compiles_the_module_and_names_the_device(emu):
    assert emu.device.startswith("cuda:0 (emulated GPU, sm_90)")
    assert isinstance(emu._module(), fake_cupy.RawModule)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,m", [(1, 1), (37, 13), (100, 10), (9, 33)])
def test_every_contract_kernel_matches_numpy(emu, dtype, n, m):
    ref = fastdl.get_backend("numpy")
    x, W, b, dy = rand((n, 6), dtype, 0), rand((6, m), dtype, 1), rand(m, dtype, 2), rand((n, m), dtype, 3)
    z, t = rand((n, m), dtype, 4, 3), labels(n, m)
    y = ref.sigmoid_forward(z)
    cases = [("affine_forward", (x, W, b), {}), ("affine_backward", (dy, x, W), {}),
             ("affine_backward", (dy, x, W), {"need_dx": False}), ("relu_forward", (z,), {}),
             ("relu_backward", (dy, z > 0), {}), ("sigmoid_forward", (z,), {}), ("sigmoid_backward", (dy, y), {}),
             ("softmax_cross_entropy_forward", (z, t), {}),
             ("softmax_cross_entropy_backward", (ref.softmax_cross_entropy_forward(z, t)[1], t), {})]
    for name, args, kw in cases:
        got = run(emu, name, *args, **kw)
        want = run(ref, name, *args, **kw)
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        for g, w in zip(got, want):
            if w is None:
                assert g is None
                continue
            np.testing.assert_allclose(np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64),
                                       **tol(dtype), err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("hook", sorted(CASES))
def test_every_hook_matches_numpy(emu, hook, dtype):
    CASES[hook](emu, fastdl.get_backend("numpy"), dtype)


def test_the_emulated_module_meets_the_contract(emu):
    assert contract.missing(emu) == []


@pytest.mark.parametrize("kernel", sorted(UPDATES))
def test_optimizer_updates(emu, kernel):
    n_state, hyper = UPDATES[kernel]
    host = [rand((37, 13), np.float32, i) for i in range(2)] + [np.abs(rand((37, 13), np.float32, 5 + i)) for i in range(n_state)]
    want = [a.copy() for a in host]
    getattr(fastdl.get_backend("numpy"), kernel)(*want, **hyper)
    dev = [emu.asarray(a.copy()) for a in host]
    getattr(emu, kernel)(*dev, **hyper)
    for d, w in zip(dev, want):
        np.testing.assert_allclose(emu.to_numpy(d), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["fortran", "column slice"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_updates_in_place_on_any_layout(emu, name, layout):
    """The update kernels index flat memory: a Fortran-ordered parameter or a column slice goes
    through contiguous copies written back, never past the view's own elements (the first GPU run
    found the kernels run on such arrays as they were)."""
    layout_case(emu, fastdl.get_backend("numpy"), name, layout)


@pytest.mark.parametrize("opt", ["SGD", "Momentum", "Adam"])
def test_trainer_fused_step_and_layer_path_agree(emu, opt):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((137, 20)).astype(np.float32), rng.integers(0, 10, 137)
    runs = []
    for backend, fast in ((emu, True), (emu, False), ("numpy", False)):
        net = fastdl.MultiLayerNet(20, [16, 12], 10, weight_init_std="he", backend=backend, seed=0)
        tr = fastdl.Trainer(net, fastdl.optimizers.get_optimizer(opt, lr=0.05), x, t, x[:40], t[:40],
                            epochs=2, batch_size=50, seed=0, progress=False, fast_path=fast)
        assert tr.fast_path is fast
        assert isinstance(tr.x_train, fake_cupy.ndarray) or backend == "numpy"
        h = tr.fit()
        runs.append((np.array(h.loss), net.params_numpy(), h.test_acc))
    for other in runs[1:]:
        np.testing.assert_allclose(runs[0][0], other[0], rtol=1e-4)
        for k in other[1]:
            np.testing.assert_allclose(runs[0][1][k], other[1][k], rtol=1e-4, atol=1e-6)


def test_save_load_and_validation_on_the_emulated_device(emu, tmp_path):
    net = fastdl.TwoLayerNet(6, 5, 4, backend=emu, seed=0)
    back = fastdl.load(fastdl.save(net, tmp_path / "p.npz"), backend=emu)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(emu.to_numpy(back.predict(x)), emu.to_numpy(net.predict(x)))
    with pytest.raises(fastdl.LabelError):
        net.loss(x, np.array([0, 4, 1]))
    assert max(fastdl.gradient_check(fastdl.TwoLayerNet(6, 5, 4, backend=emu, dtype="float64", seed=0,
                                                        weight_init_std=1.0), x, np.array([0, 3, 1])).values()) < 1e-6


def test_the_fused_step_launches_the_hand_written_kernels(emu):
    """The fast path really runs on the kernels of kernels/*.cu (not on generic array code)."""
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    net = fastdl.TwoLayerNet(8, 6, 3, backend=emu, seed=0)
    tr = fastdl.Trainer(net, fastdl.optimizers.SGD(0.1), x, np.arange(64) % 3, iterations=3, batch_size=32,
                        progress=False, evaluate_train=False)
    before = {k: v.launches for k, v in emu._module().kernels.items()}
    tr.fit()
    launched = {k for k, v in emu._module().kernels.items() if v.launches > before.get(k, 0)}
    assert {"gather_rows_f32", "bias_relu_f32", "add_bias_f32", "softmax_xent_f32", "grad_colsum_f32", "sgd_f32"} <= launched


def test_training_from_byte_images_on_the_emulated_device(emu):
    """ByteImages stay bytes on the device, each batch is decoded by the decode_bytes kernel, and
    the run is the float array's, exactly (the same device arithmetic) and NumPy's (within
    float32's rounding)."""
    from test_images import _identical, _run, pixel_codes
    codes, t = pixel_codes()
    floats = np.divide(codes, np.float32(255), dtype=np.float32)
    before = emu._module().get_function("decode_bytes_f32").launches
    tr, from_bytes = _run(emu, fastdl.ByteImages(codes), t, fastdl.ByteImages(codes[:120]), t[:120])
    assert isinstance(tr.x_train.codes, fake_cupy.ndarray) and tr._fused.byte_coded
    assert emu._module().get_function("decode_bytes_f32").launches - before >= tr.total_steps
    _identical(from_bytes, _run(emu, floats, t, floats[:120], t[:120])[1])
    on_numpy = _run("numpy", floats, t, floats[:120], t[:120])[1]
    np.testing.assert_allclose(from_bytes[0], on_numpy[0], rtol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_chapter6_kernels_match_numpy(emu, dtype):
    """Dropout (the same masks), Batch Norm (column statistics and backward, with barriers) and the
    small updates, at every size of the backend-parametrized suite."""
    import test_chapter6_kernels as ch6
    ref = fastdl.get_backend("numpy")
    for shape in ch6.SHAPES:
        for ratio in (0.0, 0.5):
            ch6.test_dropout_masks_are_the_same_on_every_backend(emu, ref, dtype, shape, ratio)
        ch6.test_batchnorm_forward_inference_backward(emu, ref, dtype, shape)
    for shape in [(1,), (37, 13), (784, 50)]:
        ch6.test_sum_squares_and_scale(emu, ref, dtype, shape)


@pytest.mark.parametrize("option", ["decay", "dropout", "batchnorm", "all"])
def test_chapter6_fused_step_and_layer_path_agree(emu, option):
    """Weight decay, Dropout and Batch Norm through the emulated GPU's fused step and layer path,
    against NumPy: the same losses, and Dropout's masks drawn alike."""
    import test_chapter6 as ch6
    x, t = ch6.data()
    runs = []
    for backend, fast in ((emu, True), (emu, False), ("numpy", True)):
        net = fastdl.MultiLayerNet(20, [16, 12], 10, backend=backend, seed=0, **ch6.OPTIONS[option])
        tr = fastdl.Trainer(net, fastdl.optimizers.SGD(0.05), x, t, epochs=2, batch_size=50, seed=0, progress=False,
                            fast_path=fast)
        runs.append((np.array(tr.fit().loss), net.params_numpy()))
    for other in runs[1:]:
        np.testing.assert_allclose(runs[0][0], other[0], rtol=1e-4)
        for k in other[1]:
            np.testing.assert_allclose(runs[0][1][k], other[1][k], rtol=1e-4, atol=1e-5, err_msg=k)
