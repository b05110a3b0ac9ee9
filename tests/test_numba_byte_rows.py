"""numba's evaluation of byte codes over their non-zero codes (``byte_rows``, through
``InputLayer.predict``) against NumPy's InputLayer, at the widths and row lengths its generated
code specialises on, and its checks: what does not fit raises before anything is read."""

import numpy as np
import pytest

from conftest import tol
from fastdl import ByteImages
from fastdl.backends import get_backend
from fastdl.errors import ShapeError

numba_bk = pytest.importorskip("fastdl.backends.numba")
ref = get_backend("numpy")


def layers(K, N, act, codes, dtype=np.float32, batch=64, scale=255, seed=0):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((K, N)) * 0.1).astype(dtype)
    b = (rng.standard_normal(N) * 0.1).astype(dtype)
    x = ByteImages(codes, scale, dtype)
    return [B.InputLayer(B, W, b, np.zeros_like(W), x.on(B, dtype), batch, act) for B in (numba_bk, ref)]


def test_a_rows_sums_are_held_in_whole_vectors():
    from fastdl.backends.numba.byte_rows import chunks
    assert chunks(50) == [(0, 32), (32, 16), (48, 2)]
    assert chunks(64) == [(0, 64)] and chunks(1) == [(0, 1)]
    for width in range(1, 65):
        parts = chunks(width)
        assert sum(c for _, c in parts) == width and all(s == sum(c for _, c in parts[:j]) for j, (s, _) in enumerate(parts))


def compare(made, idx, N, dtype, K):
    out = []
    for layer in made:
        y = np.full((len(idx), N), np.nan, dtype=dtype)
        layer.predict(idx, y)
        out.append(y)
    np.testing.assert_allclose(out[0], out[1], **tol(dtype, K))
    return out[0]


def mnist_like(n, K, seed=0, density=0.2):
    rng = np.random.default_rng(seed)
    return (rng.integers(1, 256, (n, K)) * (rng.random((n, K)) < density)).astype(np.uint8)


@pytest.mark.parametrize("K", [1, 7, 8, 23, 24, 784])
@pytest.mark.parametrize("N", [1, 10, 33, 50, 63, 64])
def test_predict_equals_numpy_at_every_width_and_row_length(K, N):
    """Rows of whole words of 8 codes, with a part word, or shorter than one; a row's sums in
    one vector or in several (33: 32 + 1, 63: 32 + 16 + 8 + 4 + 2 + 1)."""
    made = layers(K, N, "relu", mnist_like(200, K, K + N))
    assert made[0]._rows is not None                      # the byte_rows path, not the GEMM
    compare(made, np.random.default_rng(N).integers(0, 200, 64), N, np.float32, K)


@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_equals_numpy_for_each_activation_and_dtype(act, dtype):
    made = layers(784, 50, act, mnist_like(300, 784), dtype)
    compare(made, np.arange(300)[:64], 50, dtype, 784)


def test_dense_rows_zero_rows_and_another_scale():
    """Every code non-zero (every byte of every word), rows of zeros, codes standing for k / 7.5."""
    codes = np.vstack([np.full((3, 40), 255, np.uint8), np.zeros((3, 40), np.uint8),
                       np.arange(240, dtype=np.uint8).reshape(6, 40), mnist_like(4, 40, density=0.9)])
    made = layers(40, 33, "identity", codes, scale=7.5)
    y = compare(made, np.arange(16), 33, np.float32, 40)
    np.testing.assert_array_equal(y[3:6], np.broadcast_to(made[1].b, (3, 33)))    # zeros: the bias alone


def test_rows_split_across_threads_unevenly_and_indices_clipped():
    """Any number of rows per call (fewer than the parts too), rows in any order and repeated;
    indices past either end read the first or last row, as the gather and NumPy's take clip."""
    made = layers(784, 50, "relu", mnist_like(100, 784))
    for n in (1, 2, 3, 63, 64):
        compare(made, np.random.default_rng(n).integers(0, 100, n), 50, np.float32, 784)
    idx = np.array([-5, 0, 99, 100, 10**9, 7, 7])
    y = compare(made, idx, 50, np.float32, 784)
    np.testing.assert_array_equal(y[0], y[1])
    np.testing.assert_array_equal(y[2], y[3])
    np.testing.assert_array_equal(y[3], y[4])


def test_a_strided_or_read_only_y_and_wider_layers():
    """y that the compiled body cannot take is computed apart and copied in (a read-only one
    raises as NumPy's does); a layer wider than MAX_WIDTH evaluates through forward's GEMM."""
    from fastdl.backends.numba import byte_rows
    made = layers(784, 50, "relu", mnist_like(100, 784))
    idx = np.arange(10)
    want = compare(made, idx, 50, np.float32, 784)
    wide = np.full((10, 100), np.nan, np.float32)
    made[0].predict(idx, wide[:, ::2])
    np.testing.assert_array_equal(wide[:, ::2], want)
    frozen = np.zeros((10, 50), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError):
        made[0].predict(idx, frozen)
    N = byte_rows.MAX_WIDTH + 1
    made = layers(784, N, "relu", mnist_like(100, 784))
    assert made[0]._rows is None
    compare(made, idx, N, np.float32, 784)


def test_what_does_not_fit_raises_before_anything_runs():
    """More rows than the layer's batch, or a y of another width: ShapeError, y untouched."""
    made = layers(784, 50, "relu", mnist_like(100, 784), batch=8)
    y = np.full((9, 50), np.nan, np.float32)
    with pytest.raises(ShapeError):
        made[0].predict(np.arange(9), y)
    assert np.isnan(y).all()
    with pytest.raises(ShapeError):
        made[0].predict(np.arange(4), np.zeros((4, 49), np.float32))
    with pytest.raises(ShapeError):
        made[0].predict(np.arange(4), np.zeros((5, 50), np.float32))


def _call(address, args):
    from fastdl.backends.numba import by_address
    import numba
    global _call
    _call = by_address.call if numba.config.DISABLE_JIT else numba.njit(lambda a, args: by_address.call(a, args))
    return _call(address, args)


def test_the_body_refuses_arguments_that_do_not_fit():
    """Called directly, the body checks what split_layer does not: W, b and y's widths against
    the width it was generated for, W's rows against the codes' length, whole words."""
    from fastdl.backends.numba import by_address, byte_rows
    codes = mnist_like(10, 24)
    z = np.zeros((4, 5), np.float32)
    W, b, idx, cut = np.ones((24, 5), np.float32), np.zeros(5, np.float32), np.arange(4), np.arange(3)
    buf = np.zeros(1000, np.float32)
    body = byte_rows.rows_body(0, 5)

    def run(**over):
        a = dict(z=z, src=codes, idx=idx, cut=cut, W=W, b=b)
        a.update(over)
        args = (np.int64(0), False, a["z"], buf, buf, a["src"], a["idx"], np.float32(255), 0, a["cut"], a["W"],
                a["b"], a["W"], a["z"])
        return _call(by_address.Body(body, args).target, args)       # as split_layer calls it
    assert run() == 0
    assert run(W=np.ones((23, 5), np.float32)) == 1
    assert run(W=np.ones((24, 6), np.float32)) == 1
    assert run(b=np.zeros(4, np.float32)) == 1
    assert run(z=np.zeros((4, 6), np.float32), W=np.ones((24, 6), np.float32), b=np.zeros(6, np.float32)) == 1
    assert run(idx=np.arange(3)) == 1
    assert run(src=np.zeros((0, 24), np.uint8)) == 1
    assert run(cut=np.arange(1)) == 1                                            # part 0 of no parts


def test_accuracy_from_bytes_is_numpys():
    """A network's accuracy on ByteImages (what the trainer's evaluation runs) equals NumPy's."""
    import fastdl
    codes = mnist_like(3000, 784, 5)
    t = np.random.default_rng(5).integers(0, 10, 3000)
    acc = []
    for name in ("numba", "numpy"):
        net = fastdl.TwoLayerNet(784, 50, 10, backend=name, seed=3)
        acc.append(net.accuracy(ByteImages(codes), t))
    assert acc[0] == acc[1]
