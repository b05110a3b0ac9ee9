"""ByteImages: pixels kept as bytes give every backend the very numbers float pixels give, and
bad ones are refused with a clear error before anything reads them."""

import numpy as np
import pytest

import fastdl
from fastdl import ByteImages
from fastdl.checkpoints import data_fingerprint
from fastdl.errors import DTypeError, ShapeError
from fastdl.optimizers import get_optimizer


def pixel_codes(n=437, d=30, c=4, seed=0):
    """Learnable byte images: class c lights its own band of pixels, plus noise and zeros."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    k = rng.integers(0, 256, (n, d)) * (rng.random((n, d)) < 0.3)
    band = d // c
    for cls in range(c):
        rows = t == cls
        k[np.ix_(rows, np.arange(cls * band, (cls + 1) * band))] = 200 + cls
    return k.astype(np.uint8), t


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reading_them_gives_the_divided_floats(dtype):
    codes, _ = pixel_codes()
    dt = np.dtype(dtype)
    want = np.divide(codes, dt.type(255), dtype=dt)
    images = ByteImages(codes, 255, dtype)
    assert images.shape == codes.shape and len(images) == len(codes) and images.dtype == dt
    np.testing.assert_array_equal(np.asarray(images), want)
    np.testing.assert_array_equal(images[[5, 0, 5]], want[[5, 0, 5]])
    np.testing.assert_array_equal(images[3:9], want[3:9])
    part = images.subset(slice(10, 20))
    assert isinstance(part, ByteImages) and part.shape == (10, codes.shape[1])
    np.testing.assert_array_equal(np.asarray(part), want[10:20])
    np.testing.assert_array_equal(np.asarray(ByteImages(codes, 1, dtype)), codes.astype(dt))


def test_bad_ones_are_refused_saying_what_to_do():
    codes, _ = pixel_codes()
    with pytest.raises(DTypeError, match="uint8"):
        ByteImages(codes.astype(np.float32))
    with pytest.raises(ShapeError, match="reshape"):
        ByteImages(codes.reshape(len(codes), 5, -1))
    for scale in (0, -1, float("nan"), float("inf"), True, "255"):
        with pytest.raises(ValueError, match="scale"):
            ByteImages(codes, scale)
    with pytest.raises(DTypeError, match="float32"):
        ByteImages(codes, 255, "int8")
    with pytest.raises(ValueError, match="overflows float32"):        # 255 / 1e-37 is inf in float32
        ByteImages(codes, 1e-37)
    assert np.isfinite(np.asarray(ByteImages(codes, 1e-37, "float64"))).all()
    # strided codes are copied: kernels read whole rows
    assert ByteImages(codes[:, ::2]).codes.flags.c_contiguous


def test_pixel_bytes_passed_raw_are_refused_offering_byte_images(backend):
    codes, t = pixel_codes()
    net = fastdl.TwoLayerNet(codes.shape[1], 8, 4, backend=backend, seed=0)
    with pytest.raises(DTypeError, match=r"fastdl\.ByteImages\(x_train\)"):
        fastdl.Trainer(net, get_optimizer("sgd"), codes, t, iterations=1, progress=False)
    with pytest.raises(DTypeError, match=r"fastdl\.ByteImages\(x\)"):
        net.accuracy(codes, t)
    # other integers are not pixel bytes: no such offer
    with pytest.raises(DTypeError) as err:
        net.accuracy(codes.astype(np.int64), t)
    assert "ByteImages" not in str(err.value)
    # the offer holds: what it names trains
    fastdl.Trainer(net, get_optimizer("sgd"), ByteImages(codes), t, iterations=1, progress=False).fit()


def test_the_trainer_refuses_a_wrong_width_before_any_kernel():
    codes, t = pixel_codes()
    net = fastdl.TwoLayerNet(codes.shape[1] + 1, 8, 4, backend="numpy", seed=0)
    with pytest.raises(ShapeError, match=r"expected \(N, 31\)"):
        fastdl.Trainer(net, get_optimizer("SGD", lr=0.1), ByteImages(codes), t, iterations=1, progress=False)
    blind = type("Backend", (), {"name": "blind", "CAPABILITIES": frozenset()})
    with pytest.raises(ValueError, match="cannot read ByteImages.*np.asarray"):
        fastdl.images.backend_input(ByteImages(codes), blind, codes.shape[1], np.float32)
    with pytest.raises(ShapeError, match="empty"):
        fastdl.Trainer(net, get_optimizer("SGD", lr=0.1), ByteImages(codes[:0, :31 - 1]), t[:0], iterations=1,
                       progress=False)


def _run(backend, x, t, xt, tt, **kw):
    net = fastdl.MultiLayerNet(x.shape[1], [16], 4, weight_init_std="he", backend=backend, seed=1)
    tr = fastdl.Trainer(net, get_optimizer(kw.pop("opt", "Momentum"), lr=0.05), x, t, xt, tt, epochs=2,
                        batch_size=50, seed=3, progress=False, **kw)
    h = tr.fit()
    return tr, (h.loss, h.train_acc, h.test_acc, net.params_numpy())


def _identical(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2]
    for k in a[3]:
        np.testing.assert_array_equal(a[3][k], b[3][k])


@pytest.mark.parametrize("fast_path", [True, False], ids=["fused", "layers"])
def test_training_on_bytes_is_training_on_the_floats_bit_for_bit(backend, fast_path):
    """The same run from ByteImages and from the float array they stand for: the same losses,
    accuracies and parameters, exactly, on every backend and both paths (437 rows: the last
    batch of each epoch is partial)."""
    codes, t = pixel_codes()
    floats = np.divide(codes, np.float32(255), dtype=np.float32)
    tr, from_bytes = _run(backend, ByteImages(codes), t, ByteImages(codes[:120]), t[:120], fast_path=fast_path)
    assert isinstance(tr.x_train, ByteImages) and isinstance(tr.x_test, ByteImages)
    assert tr.x_train.codes.nbytes == codes.nbytes                  # held as bytes on the backend
    if fast_path:
        assert tr._fused.byte_coded
    _, from_floats = _run(backend, floats, t, floats[:120], t[:120], fast_path=fast_path)
    _identical(from_bytes, from_floats)
    assert from_bytes[2][-1] > 0.8                                  # and it learned (chance: 0.25)


def test_a_trainer_holds_k255_floats_as_bytes_where_its_backend_reads_them_faster(backend):
    """Float sets of k/255 values become ByteImages of the same numbers in a trainer whose backend
    declares READS_BYTES_FASTER (numba), stay floats elsewhere, and other floats stay as given."""
    codes, t = pixel_codes()
    floats = np.divide(codes, np.float32(255), dtype=np.float32)
    net = fastdl.TwoLayerNet(codes.shape[1], 8, 4, backend=backend, seed=0)
    tr = fastdl.Trainer(net, get_optimizer("SGD", lr=0.1), floats, t, floats[:120], t[:120], iterations=1,
                        progress=False, warm_up=False)
    for held in (tr.x_train, tr.x_test):
        assert isinstance(held, ByteImages) == backend.READS_BYTES_FASTER
        np.testing.assert_array_equal(backend.to_numpy(held[:]), floats[:len(held)])
    noisy = floats + np.float32(1e-3)
    tr = fastdl.Trainer(net, get_optimizer("SGD", lr=0.1), noisy, t, iterations=1, progress=False, warm_up=False)
    assert backend.is_backend_array(tr.x_train)
    np.testing.assert_array_equal(backend.to_numpy(tr.x_train), noisy)


def test_evaluation_reads_blocks_of_rows_through_the_input_layer(backend, monkeypatch):
    """More rows than one block, a partial last one: the accuracy equals the float array's."""
    monkeypatch.setattr(fastdl.scoring, "BYTE_ROWS", 100)
    codes, t = pixel_codes(n=437)
    floats = np.divide(codes, np.float32(255), dtype=np.float32)
    plain = fastdl.TwoLayerNet(codes.shape[1], 8, 4, backend=backend, seed=0, weight_init_std="he")
    # Batch Norm and Dropout right after Affine1: the rest of the forward pass follows the reader
    extended = fastdl.MultiLayerNet(codes.shape[1], [8, 6], 4, activation="sigmoid", batch_norm=True,
                                    dropout=0.3, backend=backend, seed=0)
    extended.buffers["running_mean1"][...] = backend.asarray(np.linspace(0, 1, 8, dtype=np.float32))
    sigmoid = fastdl.TwoLayerNet(codes.shape[1], 8, 4, activation="sigmoid", backend=backend, seed=0)
    for net in (plain, extended, sigmoid):
        assert net.accuracy(ByteImages(codes), t) == net.accuracy(floats, t)
        blocks = fastdl.scoring.score_blocks(net, ByteImages(codes).on(backend, np.float32))
        scores = [backend.to_numpy(s) for _, s in blocks]
        np.testing.assert_allclose(np.concatenate(scores), backend.to_numpy(net.predict(floats)),
                                   rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(backend.to_numpy(plain.predict(ByteImages(codes[:7]))),
                                  backend.to_numpy(plain.predict(floats[:7])))


def test_a_checkpoint_does_not_care_how_the_pixels_were_held(tmp_path):
    """The data fingerprint is that of the floats: a run saved from floats resumes from bytes
    (and continues exactly as the uninterrupted run)."""
    codes, t = pixel_codes()
    floats = np.divide(codes, np.float32(255), dtype=np.float32)

    def trainer(x, **kw):
        net = fastdl.TwoLayerNet(codes.shape[1], 8, 4, weight_init_std="he", backend="numpy", seed=0)
        return fastdl.Trainer(net, get_optimizer("Adam", lr=0.01), x, t, iterations=20, batch_size=50, seed=2,
                              progress=False, **kw)
    a, b = trainer(floats, checkpoint=tmp_path / "c.npz"), trainer(ByteImages(codes))
    assert data_fingerprint(a) == data_fingerprint(b)
    a.total_steps = 9
    a.fit()
    b.resume(tmp_path / "c.npz").fit()
    whole = trainer(floats)
    whole.fit()
    np.testing.assert_array_equal(b.network.params_numpy()["W1"], whole.network.params_numpy()["W1"])
    assert data_fingerprint(trainer(ByteImages(codes[::-1].copy()))) != data_fingerprint(a)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_load_mnist_as_bytes_stands_for_the_same_floats(mnist_root, dtype):
    (x, t), (xt, tt) = fastdl.datasets.load_mnist(root=mnist_root, download=False, dtype=dtype)
    (bx, bt), (bxt, btt) = fastdl.datasets.load_mnist(root=mnist_root, download=False, dtype=dtype, as_bytes=True)
    assert isinstance(bx, ByteImages) and bx.codes.nbytes * np.dtype(dtype).itemsize == x.nbytes
    np.testing.assert_array_equal(np.asarray(bx), x)
    np.testing.assert_array_equal(np.asarray(bxt), xt)
    np.testing.assert_array_equal(bt, t)
    with pytest.raises(ValueError, match="flatten"):
        fastdl.datasets.load_mnist(root=mnist_root, download=False, as_bytes=True, flatten=False)


def test_the_sweeps_validation_split_keeps_bytes():
    """fastdl sweep loads MNIST as bytes in every worker: its split keeps them bytes, the same
    rows as splitting the floats."""
    from fastdl.search import split
    codes, t = pixel_codes()
    floats = np.divide(codes, np.float32(255), dtype=np.float32)
    (bx, bt), (bv, btv) = split(ByteImages(codes), t, 400, 0.2, seed=5)
    (fx, ft), (fv, ftv) = split(floats, t, 400, 0.2, seed=5)
    assert isinstance(bx, ByteImages) and isinstance(bv, ByteImages) and len(bx) + len(bv) == 400
    np.testing.assert_array_equal(np.asarray(bx), fx)
    np.testing.assert_array_equal(np.asarray(bv), fv)
    np.testing.assert_array_equal(bt, ft)
    np.testing.assert_array_equal(btv, ftv)
