"""numba's first layer over the non-zero byte codes (``nonzero_layer``, the body of the split
layer for byte-coded layers; rows of at most MAX_WIDTH columns summed in registers, wider ones
from a list of their codes, ``nonzero_wide``): forward and backward against NumPy's InputLayer at
the widths, tiles, row lengths and cuts its code specialises on, and its checks: what does not
fit raises before anything is read."""

import numpy as np
import pytest

from conftest import tol
from fastdl import ByteImages
from fastdl.backends import get_backend
from fastdl.errors import ShapeError

numba_bk = pytest.importorskip("fastdl.backends.numba")
ref = get_backend("numpy")


def mnist_like(n, K, seed=0, density=0.2):
    rng = np.random.default_rng(seed)
    return (rng.integers(1, 256, (n, K)) * (rng.random((n, K)) < density)).astype(np.uint8)


def layers(K, N, act, codes, dtype=np.float32, batch=64, scale=255, seed=0):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((K, N)) * 0.1).astype(dtype)
    b = (rng.standard_normal(N) * 0.1).astype(dtype)
    x = ByteImages(codes, scale, dtype)
    return [B.InputLayer(B, W, b, np.full_like(W, np.nan), x.on(B, dtype), batch, act) for B in (numba_bk, ref)]


def compare(made, idx, N, dtype, K, dz_seed=None):
    """forward (then backward with a dz of dz_seed) on both; y (and dW) equal to tolerance."""
    out = []
    for B, layer in zip((numba_bk, ref), made):
        y = np.full((len(idx), N), np.nan, dtype=dtype)
        with B.train_scope():
            layer.forward(idx, y)
            if dz_seed is not None:
                layer.backward(np.random.default_rng(dz_seed).standard_normal((len(idx), N)).astype(dtype))
        out.append((y, layer.dW.copy()))
    np.testing.assert_allclose(out[0][0], out[1][0], **tol(dtype, K))
    if dz_seed is not None:
        np.testing.assert_allclose(out[0][1], out[1][1], **tol(dtype, len(idx)))
    return out[0][0]


def test_a_rows_sums_are_held_in_whole_vectors():
    from fastdl.backends.numba.nonzero_ir import chunks
    assert chunks(50) == [(0, 32), (32, 16), (48, 2)]
    assert chunks(64) == [(0, 64)] and chunks(1) == [(0, 1)]
    for width in range(1, 65):
        parts = chunks(width)
        assert sum(c for _, c in parts) == width
        assert all(s == sum(c for _, c in parts[:j]) for j, (s, _) in enumerate(parts))


def test_parts_are_cut_at_whole_words():
    from fastdl.backends.numba.nonzero_layer import word_cuts
    assert word_cuts(784, 2).tolist() == [0, 392, 784]
    assert word_cuts(23, 2).tolist() == [0, 8, 23] and word_cuts(5, 3).tolist() == [0, 0, 0, 5]
    for K in (1, 7, 8, 23, 100, 784):
        for parts in (1, 2, 3, 4):
            c = word_cuts(K, parts)
            assert c[0] == 0 and c[-1] == K and (np.diff(c) >= 0).all() and (c[:-1] % 8 == 0).all()


@pytest.mark.parametrize("K", [1, 7, 8, 23, 24, 64, 72, 129, 784])
@pytest.mark.parametrize("N", [1, 10, 33, 50, 63, 64])
def test_forward_and_backward_equal_numpys_at_every_width_and_row_length(K, N):
    """Rows of whole words of 8 codes, with a part word, or shorter than one, and rows read 64
    codes a compare, then words (72, 784: two parts of 6 x 64 + 8), then a part word (129); a
    row's sums in one vector or in several (33: 32 + 1, 63: 32 + 16 + 8 + 4 + 2 + 1)."""
    made = layers(K, N, "relu", mnist_like(200, K, K + N))
    assert made[0].nonzero                                  # over the non-zero codes, not the GEMM
    compare(made, np.random.default_rng(N).integers(0, 200, 64), N, np.float32, K, dz_seed=N)


@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_activation_and_dtype(act, dtype):
    made = layers(784, 50, act, mnist_like(300, 784), dtype)
    compare(made, np.arange(300)[:64], 50, dtype, 784, dz_seed=1)
    compare(made, np.arange(300)[100:120], 50, dtype, 784, dz_seed=2)      # a partial batch


def test_uneven_and_many_parts(monkeypatch):
    """More parts than threads, parts with no words, one part: the same numbers."""
    from fastdl.backends.numba import threads
    for parts in (1, 3, 5):
        monkeypatch.setattr(threads, "SPLIT_PARTS", parts)
        made = layers(40, 20, "relu", mnist_like(50, 40, parts))
        compare(made, np.arange(50)[:40], 20, np.float32, 40, dz_seed=parts)


@pytest.mark.parametrize("K, parts", [(40, None), (200, 1), (200, 3)])
def test_dense_rows_zero_rows_and_another_scale(monkeypatch, K, parts):
    """Every code non-zero (every byte of every word, all 64 bits of a compare), rows of zeros,
    every code value, codes standing for k / 7.5; 200 codes: 64 at a time, cut in parts."""
    from fastdl.backends.numba import threads
    monkeypatch.setattr(threads, "SPLIT_PARTS", parts)
    codes = np.vstack([np.full((3, K), 255, np.uint8), np.zeros((3, K), np.uint8),
                       np.resize(np.arange(256, dtype=np.uint8), (6, K)), mnist_like(4, K, density=0.9)])
    made = layers(K, 33, "identity", codes, scale=7.5 if K == 40 else 255)     # (sums of 200 past 7.5: cancel)
    y = compare(made, np.arange(16), 33, np.float32, K, dz_seed=3)
    np.testing.assert_array_equal(y[3:6], np.broadcast_to(made[1].b, (3, 33)))    # zeros: the bias alone


def test_rows_in_any_order_repeated_and_clipped():
    """Rows repeated; indices past either end read the first or last row, as the gather and
    NumPy's take clip."""
    made = layers(784, 50, "relu", mnist_like(100, 784))
    idx = np.array([-5, 0, 99, 100, 10**9, 7, 7])
    y = compare(made, idx, 50, np.float32, 784, dz_seed=4)
    np.testing.assert_array_equal(y[0], y[1])
    np.testing.assert_array_equal(y[2], y[3])
    np.testing.assert_array_equal(y[3], y[4])


@pytest.mark.parametrize("K", [1, 7, 23, 784])
@pytest.mark.parametrize("N", [65, 100, 127, 128, 129, 1000])
def test_wider_layers_from_a_list_of_codes_equal_numpys(K, N):
    """Past MAX_WIDTH columns: tiles of 64 float32 columns, full ones (128), a part one after
    them (65: 64 + 1, 127: 64 + 32 + 16 + 8 + 4 + 2 + 1, 129), many (1000: 15 + 40)."""
    made = layers(K, N, "relu", mnist_like(120, K, K + N))
    assert made[0].nonzero
    compare(made, np.random.default_rng(N).integers(0, 120, 48), N, np.float32, K, dz_seed=N)


@pytest.mark.parametrize("N", [33, 65, 100])
@pytest.mark.parametrize("act", ["identity", "sigmoid"])
def test_wider_layers_in_float64(N, act):
    """float64 tiles are 32 columns (256 bytes): 33 is a full one and a part one (narrow rows
    hold up to 64 in registers, so 33 takes them; 65 and 100 the list)."""
    made = layers(784, N, act, mnist_like(100, 784, N), np.float64)
    compare(made, np.arange(100)[::3], N, np.float64, 784, dz_seed=N)


def test_wider_layers_over_dense_and_zero_rows_in_uneven_parts(monkeypatch):
    """A row with every code non-zero fills its part's whole list; zero rows list nothing."""
    from fastdl.backends.numba import threads
    for K, parts in ((40, 1), (40, 3), (200, 3)):
        codes = np.vstack([np.full((2, K), 255, np.uint8), np.zeros((2, K), np.uint8), mnist_like(6, K, density=0.5)])
        monkeypatch.setattr(threads, "SPLIT_PARTS", parts)
        made = layers(K, 70, "identity", codes, scale=7.5 if K == 40 else 255)
        y = compare(made, np.arange(10), 70, np.float32, K, dz_seed=parts)
        np.testing.assert_array_equal(y[2:4], np.broadcast_to(made[1].b, (2, 70)))


def test_float_rows_not_byte_coded_keep_the_gemm():
    from fastdl.backends.numba import nonzero_layer
    N = nonzero_layer.MAX_WIDTH + 1
    x = np.random.default_rng(0).random((100, 784)).astype(np.float32)      # not k / 255
    W = np.random.default_rng(1).standard_normal((784, N)).astype(np.float32) * 0.1
    layer = numba_bk.InputLayer(numba_bk, W, np.zeros(N, np.float32), np.empty_like(W), x, 16, "relu")
    assert not layer.nonzero and not layer.byte_coded
    y = np.empty((16, N), np.float32)
    layer.forward(np.arange(16), y)
    np.testing.assert_allclose(y, np.maximum(x[:16] @ W, 0), **tol(np.float32, 784))


def test_what_does_not_fit_raises_before_anything_runs():
    """More rows than the layer's batch, or a y of another width: ShapeError, y untouched."""
    made = layers(784, 50, "relu", mnist_like(100, 784), batch=8)
    y = np.full((9, 50), np.nan, np.float32)
    with pytest.raises(ShapeError):
        made[0].forward(np.arange(9), y)
    assert np.isnan(y).all()
    with pytest.raises(ShapeError):
        made[0].forward(np.arange(4), np.zeros((4, 49), np.float32))


def _call(address, args):
    import numba

    from fastdl.backends.numba import by_address
    global _call
    _call = by_address.call if numba.config.DISABLE_JIT else numba.njit(lambda a, args: by_address.call(a, args))
    return _call(address, args)


def test_the_body_refuses_arguments_that_do_not_fit():
    """Called as split_layer calls it, the body checks what split_layer does not: W, dW, b, y and
    dz against the width it was made for and the codes' length, cuts at whole words within the
    row, the partials' buffer."""
    from fastdl.backends.numba import by_address, nonzero_layer
    codes = mnist_like(10, 24)
    z = np.zeros((4, 5), np.float32)
    W, b, idx, cut = np.ones((24, 5), np.float32), np.zeros(5, np.float32), np.arange(4), np.array([0, 8, 24])
    buf = np.zeros(1000, np.float32)
    body = nonzero_layer.body(0, 5)

    def run(p=0, backward=False, **over):
        a = dict(z=z, src=codes, idx=idx, cut=cut, W=W, b=b, dW=np.zeros_like(W), X=buf, Z=buf, dz=z)
        a.update(over)
        args = (np.int64(p), backward, a["z"], a["X"], a["Z"], a["src"], a["idx"], np.float32(255), 0, a["cut"],
                a["W"], a["b"], a["dW"], a["dz"])
        return _call(by_address.Body(body, args).target, args)
    assert run() == 0 and run(1) == 0 and run(-1) == 0 and run(1, True) == 0
    assert run(W=np.ones((23, 5), np.float32)) == 1
    assert run(W=np.ones((24, 6), np.float32), dW=np.zeros((24, 6), np.float32)) == 1
    assert run(dW=np.zeros((24, 4), np.float32)) == 1
    assert run(b=np.zeros(4, np.float32)) == 1
    assert run(z=np.zeros((4, 6), np.float32), dz=np.zeros((4, 6), np.float32)) == 1
    assert run(dz=np.zeros((3, 5), np.float32), backward=True) == 1
    assert run(idx=np.arange(3)) == 1
    assert run(src=np.zeros((0, 24), np.uint8)) == 1
    assert run(cut=np.array([0, 4, 24])) == 1 or run(1, cut=np.array([0, 4, 24])) == 1   # not at a word
    assert run(1, cut=np.array([0, 8, 25])) == 1                                       # past the row
    assert run(2) == 1                                                                 # no such part
    assert run(-1, Z=np.zeros(3, np.float32)) == 1                                     # partials do not fit
    assert run(X=np.zeros(255, np.float32)) == 1                                       # no room for the table
    wide = nonzero_layer.body(0, 70)            # a wide body's lists need 256 + 2 K slots
    zw, Ww = np.zeros((4, 70), np.float32), np.ones((24, 70), np.float32)
    for X, expect in ((np.zeros(256 + 48, np.float32), 0), (np.zeros(256 + 47, np.float32), 1)):
        args = (np.int64(1), False, zw, X, np.zeros(280, np.float32), codes, idx, np.float32(255), 0, cut, Ww,
                np.zeros(70, np.float32), np.zeros_like(Ww), zw)
        assert _call(by_address.Body(wide, args).target, args) == expect


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
