"""Every in-place hook and builder of the contract, on every backend, against NumPy's: the same
inputs, outputs compared in the hook's own dtype, at edge sizes (a batch of 1, odd sizes, the
book's). ``CASES`` must name every hook and builder of the contract (test_contract checks)."""

import numpy as np
import pytest

from conftest import tol
from fastdl import ByteImages, optimizers
from test_kernels import labels, rand

SHAPES = [(1, 1), (37, 13), (100, 50)]
# column sums also over tall batches: cupy sums those in parts of rows (two parts, a part per 256
# rows, and its cap of 64 parts with an uneven last one)
COLSUM_SHAPES = SHAPES + [(257, 3), (1000, 50), (20_001, 10)]


def pixels(shape, dtype, seed=0, scale=255):
    """Values k/255 with many zeros, as scaled MNIST (k itself with scale=1)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 256, shape) * (rng.random(shape) < 0.3)
    return (k.astype(dtype) / dtype(scale)).astype(dtype)


def same(got, want, dtype, terms=1):
    """Equal in the hook's dtype: same dtype and shape, values within the dtype's tolerance."""
    got = np.asarray(got)
    assert got.dtype == want.dtype, f"dtype {got.dtype}, NumPy's {want.dtype}"
    assert got.shape == want.shape
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, **tol(dtype, terms))


def both(bk, ref, hook, outs, ins, dtype, terms=1):
    """Run ``hook(*outs, *ins)`` on ``bk`` and on NumPy from the same host arrays; compare every
    output array; return both return values."""
    dev_out = [bk.asarray(o.copy()) for o in outs]
    dev_in = [bk.asarray(a) if isinstance(a, np.ndarray) else a for a in ins]
    ref_out = [o.copy() for o in outs]
    got = getattr(bk, hook)(*dev_out, *dev_in)
    want = getattr(ref, hook)(*ref_out, *ins)
    for g, w in zip(dev_out, ref_out):
        same(bk.to_numpy(g), w, dtype, terms)
    return got, want


def nan(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def case_gather_rows_(bk, ref, dtype):
    src, lab = rand((300, 23), dtype), labels(300, 10).astype(np.int64)
    for n in (1, 37, 100):
        idx = np.random.default_rng(n).integers(0, 300, n)
        both(bk, ref, "gather_rows_", [nan((n, 23), dtype)], [src, idx], dtype)
        both(bk, ref, "gather_rows_", [np.zeros(n, np.int64)], [lab, idx], dtype)
        both(bk, ref, "gather_rows_", [np.zeros((n, 23), np.uint8)], [codes(300, 23), idx], dtype)


def codes(n, d, seed=0):
    """uint8 pixel codes, many zeros, every value 0..255 likely present."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, d)) * (rng.random((n, d)) < 0.4)).astype(np.uint8)


def case_decode_bytes_(bk, ref, dtype):
    for (n, d), scale in [((1, 1), 255), ((37, 13), 255), ((2048, 784), 255), ((37, 13), 1), ((5, 300), 7.5)]:
        c = codes(n, d, n)
        c[0, 0], c[-1, -1] = 255, 1
        both(bk, ref, "decode_bytes_", [nan((n, d), dtype)], [c, dtype(scale)], dtype)
        out = bk.asarray(nan((n, d), dtype))
        bk.decode_bytes_(out, bk.asarray(c), dtype(scale))
        # exactly the floats a float array made by dividing holds (what load_mnist makes)
        np.testing.assert_array_equal(bk.to_numpy(out), np.divide(c, dtype(scale), dtype=dtype))


def case_matmul_(bk, ref, dtype):
    for m, k, n in [(1, 5, 3), (37, 13, 10), (100, 784, 50)]:
        a, b = rand((m, k), dtype, 0), rand((k, n), dtype, 1)
        both(bk, ref, "matmul_", [nan((m, n), dtype)], [a, b], dtype, k)
        # the transposed views the step passes: h.T in dW = h.T @ dz, W.T in dh = dz @ W.T
        at, bt = rand((k, m), dtype, 2), rand((n, k), dtype, 3)
        dev = [bk.asarray(at), bk.asarray(bt)]
        out = bk.asarray(nan((m, n), dtype))
        bk.matmul_(out, dev[0].T, dev[1].T)
        same(bk.to_numpy(out), at.T @ bt.T, dtype, k)
    # what the step never passes but a caller may: views without a unit stride, an out whose rows
    # lie wider apart than it is wide (a column slice) or column-major, k = 0, no rows
    a, b = rand((40, 30), dtype, 4), rand((30, 20), dtype, 5)
    views = [(lambda x: x[::2, 1:8], lambda y: y[2:9, ::3]), (lambda x: x[:5, :0], lambda y: y[:0, :7]),
             (lambda x: x[:0], lambda y: y)]
    for va, vb in views:
        want = va(a) @ vb(b)
        m, n = want.shape
        for layout in ("C", "F", "slice"):
            wide = bk.asarray(nan((m, n + 3), dtype))
            out = {"C": bk.asarray(nan((m, n), dtype)), "F": bk.asarray(nan((n, m), dtype)).T,
                   "slice": wide[:, 1:n + 1]}[layout]
            bk.matmul_(out, va(bk.asarray(a)), vb(bk.asarray(b)))
            same(bk.to_numpy(out), want, dtype, max(1, va(a).shape[1]))
            if layout == "slice":        # the columns beside the slice are left as they were
                assert np.isnan(bk.to_numpy(wide)[:, [0, n + 1, n + 2]]).all()


def _bias_case(hook, scale=1.0):
    def run(bk, ref, dtype):
        for n, m in SHAPES:
            z, b = rand((n, m), dtype, 0, scale), rand(m, dtype, 1)
            z.flat[::3] = -b[np.arange(z.size)[::3] % m]        # z + b exactly 0: the ReLU kink
            both(bk, ref, hook, [z], [b], dtype)
    return run


def case_axpy_(bk, ref, dtype):
    for shape in [(1,), (37, 13), (784, 50)]:
        both(bk, ref, "axpy_", [rand(shape, dtype, 0)], [0.1, rand(shape, dtype, 1)], dtype)


def case_colsum_(bk, ref, dtype):
    for n, m in COLSUM_SHAPES:
        both(bk, ref, "colsum_", [nan(m, dtype)], [rand((n, m), dtype)], dtype, n)


def case_relu_grad_colsum_(bk, ref, dtype):
    for n, m in COLSUM_SHAPES:
        h = np.maximum(rand((n, m), dtype, 1), 0)              # a ReLU's output: many exact zeros
        both(bk, ref, "relu_grad_colsum_", [rand((n, m), dtype), nan(m, dtype)], [h], dtype, n)


def case_sigmoid_grad_colsum_(bk, ref, dtype):
    for n, m in COLSUM_SHAPES:
        y = (1 / (1 + np.exp(-rand((n, m), dtype, 1, 4)))).astype(dtype)
        both(bk, ref, "sigmoid_grad_colsum_", [rand((n, m), dtype), nan(m, dtype)], [y], dtype, n)


def case_softmax_xent_(bk, ref, dtype):
    for n, c in [(1, 10), (37, 10), (100, 10), (5, 3), (7, 1), (9, 33)]:
        z, t = rand((n, c), dtype, 0, 4), labels(n, c).astype(np.int64)
        z[0, 0] = 1e3                                           # an extreme logit too
        got, want = both(bk, ref, "softmax_xent_", [nan((n, c), dtype)], [z, t], dtype)
        np.testing.assert_allclose(float(got), float(want), **tol(dtype, c))
        assert got.dtype == want.dtype == dtype                 # the loss in the data's type


def case_InputLayer(bk, ref, dtype):
    """forward and backward; rows of 23 and of 24 bytes (numba's first layer reads byte codes a
    word of 8 at a time where it can)."""
    rng = np.random.default_rng(3)
    for K in (23, 24):
        W, b = rand((K, 7), dtype, 1), rand(7, dtype, 2)
        as_bytes = ByteImages(codes(300, K), 255, dtype)
        for data in (rand((300, K), dtype, 0), pixels((300, K), dtype), as_bytes):
            for act in ("identity", "relu", "sigmoid"):
                made = []
                for B in (bk, ref):
                    dW = B.asarray(np.zeros_like(W))
                    x = data.on(B, dtype) if data is as_bytes else B.asarray(data)
                    made.append((B.InputLayer(B, B.asarray(W), B.asarray(b), dW, x, 40, act), dW))
                for n in (40, 13, 40, 1):                       # full, partial, full again, one row
                    idx, dz = rng.integers(0, 300, n), rand((n, 7), dtype, n)
                    out = []
                    for B, (layer, dW) in zip((bk, ref), made):
                        y = B.asarray(nan((n, 7), dtype))
                        with B.train_scope():
                            layer.forward(B.asarray(idx), y)
                            layer.backward(B.asarray(dz))
                        out.append((B.to_numpy(y), B.to_numpy(dW).copy()))
                    same(out[0][0], out[1][0], dtype, K)
                    same(out[0][1], out[1][1], dtype, n)


def case_OutputLayer(bk, ref, dtype):
    W, b = rand((12, 10), dtype, 1), rand(10, dtype, 2)
    for act in ("relu", "sigmoid", "identity"):         # identity: below Batch Norm / Dropout blocks
        made = []
        for B in (bk, ref):
            bufs = [B.asarray(nan(s, dtype)) for s in ((12, 10), (10,))]
            made.append((B.OutputLayer(B, B.asarray(W), B.asarray(b), *bufs, 40, act), bufs))
        for n in (40, 7):
            h = rand((n, 12), dtype, n)
            h = {"relu": np.maximum(h, 0), "sigmoid": (1 / (1 + np.exp(-h))).astype(dtype), "identity": h}[act]
            t = labels(n, 10, seed=n).astype(np.int64)
            res = []
            for B, (layer, bufs) in zip((bk, ref), made):
                dh, db_h = B.asarray(nan((n, 12), dtype)), B.asarray(nan(12, dtype))
                loss = layer.forward_backward(dh, db_h, B.asarray(h), B.asarray(t))
                assert loss.dtype == dtype                      # the loss in the data's type
                res.append([float(loss)] + [B.to_numpy(a).copy() for a in (*bufs, dh, db_h)])
            np.testing.assert_allclose(res[0][0], res[1][0], **tol(dtype, 10))
            for g, w, terms in zip(res[0][1:], res[1][1:], (n, n, 10, n)):
                same(g, w, dtype, terms)


def case_make_update(bk, ref, dtype):
    for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
        host = {"W": rand((37, 13), dtype, 0), "b": rand(13, dtype, 1)}
        grads = {"W": rand((37, 13), dtype, 2), "b": rand(13, dtype, 3)}
        res = []
        for B in (bk, ref):
            opt = optimizers.get_optimizer(name, lr=0.01)
            params = {k: B.asarray(v.copy()) for k, v in host.items()}
            g = {k: B.asarray(v) for k, v in grads.items()}
            update = B.make_update(B, opt, params, g)
            with B.train_scope():
                for _ in range(3):
                    update()
            assert opt.step == 3
            res.append({k: B.to_numpy(v) for k, v in params.items()})
        for k in host:
            same(res[0][k], res[1][k], dtype)


CASES = {
    "gather_rows_": case_gather_rows_, "matmul_": case_matmul_, "axpy_": case_axpy_,
    "add_bias_": _bias_case("add_bias_"), "bias_relu_": _bias_case("bias_relu_"),
    "bias_sigmoid_": _bias_case("bias_sigmoid_", scale=30.0), "colsum_": case_colsum_,
    "relu_grad_colsum_": case_relu_grad_colsum_, "sigmoid_grad_colsum_": case_sigmoid_grad_colsum_,
    "softmax_xent_": case_softmax_xent_, "decode_bytes_": case_decode_bytes_, "InputLayer": case_InputLayer, "OutputLayer": case_OutputLayer,
    "make_update": case_make_update,
}


@pytest.mark.parametrize("hook", sorted(CASES))
def test_hook_equals_numpy(backend, ref, dtype, hook):
    CASES[hook](backend, ref, np.dtype(dtype).type)
