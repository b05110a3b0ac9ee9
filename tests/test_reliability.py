"""The catalogue of bad inputs at the public surface, each run on every available backend:
each must raise its documented exception type, with the received and expected values in the
message, before any kernel runs. A case that returns a result silently fails the test."""

import numpy as np
import pytest

import fastdl
from fastdl import errors as E
from fastdl.optimizers import SGD
from reliability import record

RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 6)).astype(np.float32)
T = np.array([0, 1, 2, 3, 0])


def net(bk):
    return fastdl.TwoLayerNet(6, 5, 4, backend=bk, seed=0)


def with_nan(a, value=np.nan):
    a = a.copy()
    a[2, 3] = value
    return a


class ForeignArray:
    """Stands for an array of another library or device (a torch tensor, a cupy array on numpy)."""
    __module__ = "torch"
    shape = (5, 6)


def one_hot(rows):
    return np.array(rows, dtype=np.float32)


CASES = [
    # (case, expected type, call(backend), text the message must show)
    ("x of rank 1", E.ShapeError, lambda bk: net(bk).predict(X[0]), "rank 1"),
    ("x of rank 3 (unflattened images)", E.ShapeError, lambda bk: net(bk).predict(X.reshape(5, 2, 3)), "flatten"),
    ("x with 7 features, network expects 6", E.ShapeError, lambda bk: net(bk).predict(np.zeros((5, 7), np.float32)), "(N, 6)"),
    ("empty batch (0, 6)", E.ShapeError, lambda bk: net(bk).predict(np.zeros((0, 6), np.float32)), "empty batch"),
    ("integer pixels", E.DTypeError, lambda bk: net(bk).predict((X * 100).astype(np.int64)), "int64"),
    ("uint8 pixels", E.DTypeError, lambda bk: net(bk).predict(np.zeros((5, 6), np.uint8)), "uint8"),
    ("bool x", E.DTypeError, lambda bk: net(bk).predict(X > 0), "bool"),
    ("object x", E.DTypeError, lambda bk: net(bk).predict(X.astype(object)), "object"),
    ("complex x", E.DTypeError, lambda bk: net(bk).predict(X.astype(np.complex64)), "complex"),
    ("string x", E.DTypeError, lambda bk: net(bk).predict(X.astype(str)), "expected float32"),
    ("NaN in x", E.NonFiniteError, lambda bk: net(bk).predict(with_nan(X)), "(2, 3)"),
    ("+Inf in x", E.NonFiniteError, lambda bk: net(bk).predict(with_nan(X, np.inf)), "NaN or Inf"),
    ("-Inf in x (gradient)", E.NonFiniteError, lambda bk: net(bk).gradient(with_nan(X, -np.inf), T), "NaN or Inf"),
    ("label -1", E.LabelError, lambda bk: net(bk).loss(X, np.array([0, 1, -1, 3, 0])), "-1"),
    ("label == C (4)", E.LabelError, lambda bk: net(bk).loss(X, np.array([0, 1, 4, 3, 0])), "[0, 4)"),
    ("label far out of range (accuracy)", E.LabelError, lambda bk: net(bk).accuracy(X, np.array([0, 1, 255, 3, 0])), "255"),
    ("non-integer float label 1.5", E.LabelError, lambda bk: net(bk).loss(X, np.array([0, 1.5, 2, 3, 0])), "1.5"),
    ("NaN label", E.LabelError, lambda bk: net(bk).loss(X, np.array([0, np.nan, 2, 3, 0])), "nan"),
    ("bool labels", E.LabelError, lambda bk: net(bk).loss(X, T > 1), "bool"),
    ("string labels", E.LabelError, lambda bk: net(bk).loss(X, T.astype(str)), "dtype"),
    ("one-hot row with two 1s", E.LabelError, lambda bk: net(bk).loss(X[:2], one_hot([[1, 1, 0, 0], [0, 1, 0, 0]])), "row 0"),
    ("one-hot row of zeros", E.LabelError, lambda bk: net(bk).loss(X[:2], one_hot([[1, 0, 0, 0], [0, 0, 0, 0]])), "row 1"),
    ("soft labels 0.5/0.5", E.LabelError, lambda bk: net(bk).loss(X[:1], one_hot([[0.5, 0.5, 0, 0]])), "not one-hot"),
    ("one-hot of width 3, network has 4 outputs", E.ShapeError, lambda bk: net(bk).loss(X[:1], one_hot([[1, 0, 0]])), "(N, 4)"),
    ("labels of rank 3", E.ShapeError, lambda bk: net(bk).loss(X, np.zeros((5, 4, 1))), "(5, 4, 1)"),
    ("5 rows of x, 4 labels", E.ShapeError, lambda bk: net(bk).loss(X, T[:4]), "must match"),
    ("array of another library/device", E.DeviceError, lambda bk: net(bk).predict(ForeignArray()), "torch.ForeignArray"),
    ("Trainer: integer x_train", E.DTypeError, lambda bk: fastdl.Trainer(net(bk), SGD(0.1), X.astype(np.int32), T, iterations=1), "x_train"),
    ("Trainer: NaN in x_train", E.NonFiniteError, lambda bk: fastdl.Trainer(net(bk), SGD(0.1), with_nan(X), T, iterations=1), "x_train"),
    ("Trainer: label out of range", E.LabelError, lambda bk: fastdl.Trainer(net(bk), SGD(0.1), X, T + 1, iterations=1), "t_train"),
    ("Trainer: x_train and t_train lengths differ", E.ShapeError, lambda bk: fastdl.Trainer(net(bk), SGD(0.1), X, T[:3], iterations=1), "must match"),
    ("Trainer: x_test with wrong features", E.ShapeError, lambda bk: fastdl.Trainer(net(bk), SGD(0.1), X, T, X[:, :5], T, iterations=1), "x_test"),
    ("Trainer: empty training set", E.ShapeError, lambda bk: fastdl.Trainer(net(bk), SGD(0.1), X[:0], T[:0], iterations=1), "empty"),
    ("Trainer: batch_size 0", ValueError, lambda bk: fastdl.Trainer(net(bk), SGD(0.1), X, T, iterations=1, batch_size=0), "batch_size"),
    ("Trainer: negative learning rate", ValueError, lambda bk: SGD(lr=-0.1), "positive"),
    ("Affine.forward with 7 features", E.ShapeError, lambda bk: net(bk).layers["Affine1"].forward(np.zeros((2, 7), np.float32)), "(N, 6)"),
    ("Affine.backward with wrong dout", E.ShapeError, lambda bk: _affine_bad_backward(bk), "rows"),
    ("Relu.backward before forward", RuntimeError, lambda bk: fastdl.Relu(bk).backward(np.ones((2, 2))), "before forward"),
    ("SoftmaxWithLoss label -1", E.LabelError, lambda bk: fastdl.SoftmaxWithLoss(bk).forward(X[:2, :4], np.array([0, -1])), "-1"),
    ("ByteImages of float codes", E.DTypeError, lambda bk: fastdl.ByteImages(X), "uint8"),
    ("ByteImages of rank 3", E.ShapeError, lambda bk: fastdl.ByteImages(np.zeros((5, 2, 3), np.uint8)), "reshape"),
    ("ByteImages scale 0", ValueError, lambda bk: fastdl.ByteImages(np.zeros((5, 6), np.uint8), 0), "positive"),
    ("ByteImages scale that overflows float32", ValueError, lambda bk: fastdl.ByteImages(np.zeros((5, 6), np.uint8), 1e-37), "overflows"),
    ("Trainer: ByteImages with 7 features", E.ShapeError,
     lambda bk: fastdl.Trainer(net(bk), SGD(0.1), fastdl.ByteImages(np.zeros((5, 7), np.uint8)), T, iterations=1), "x_train"),
    ("predict on ByteImages with 7 features", E.ShapeError,
     lambda bk: net(bk).predict(fastdl.ByteImages(np.zeros((5, 7), np.uint8))), "(N, 6)"),
    ("accuracy on empty ByteImages", E.ShapeError,
     lambda bk: net(bk).accuracy(fastdl.ByteImages(np.zeros((0, 6), np.uint8)), T[:0]), "empty"),
    ("network dtype float16", E.DTypeError, lambda bk: fastdl.TwoLayerNet(6, 5, 4, dtype="float16", backend=bk), "float16"),
    ("hidden size 0", ValueError, lambda bk: fastdl.TwoLayerNet(6, 0, 4, backend=bk), "positive integer"),
]


def _affine_bad_backward(bk):
    layer = net(bk).layers["Affine1"]
    layer.forward(X)
    return layer.backward(np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("case,expected,call,text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_documented_error(backend, case, expected, call, text):
    try:
        result = call(backend)
    except Exception as exc:            # noqa: BLE001 - we classify what happened
        ok = isinstance(exc, expected) and text in str(exc)
        record("Bad input at the public surface", case, backend.name, expected.__name__,
               type(exc).__name__, ok)
        assert isinstance(exc, expected), f"{case}: got {type(exc).__name__}: {exc}"
        assert text in str(exc), f"{case}: message lacks {text!r}: {exc}"
        return
    record("Bad input at the public surface", case, backend.name, expected.__name__, "no error (silent result)", False)
    pytest.fail(f"{case}: returned {type(result).__name__} instead of raising {expected.__name__}")


def test_catalogue_is_large_enough():
    assert len(CASES) >= 30


def test_divergence_names_the_step_and_keeps_the_checkpoint(tmp_path):
    x = RNG.standard_normal((300, 6)).astype(np.float32)
    t = RNG.integers(0, 4, 300)
    ckpt = tmp_path / "ckpt.npz"
    n = fastdl.TwoLayerNet(6, 5, 4, seed=0)
    tr = fastdl.Trainer(n, SGD(lr=0.5), x, t, epochs=2, batch_size=50, progress=False, seed=0, sync_every=6, checkpoint=ckpt)
    tr.fit()
    good = fastdl.io.read_arrays(ckpt, expected_format="fastdl-checkpoint")[1]["step"]
    before = ckpt.read_bytes()
    tr2 = fastdl.Trainer(n, SGD(lr=1e35), x, t, epochs=4, batch_size=50, progress=False, seed=0, sync_every=6, checkpoint=ckpt)
    with pytest.raises(E.DivergenceError) as err:
        tr2.fit()
    msg = str(err.value)
    ok = f"step {err.value.step}" in msg and "smaller learning rate" in msg and ckpt.read_bytes() == before
    record("Divergence", "lr=1e35 blows the loss up", "numpy", "DivergenceError, checkpoint kept",
           f"DivergenceError at step {err.value.step}", ok, files_lost=0 if ckpt.read_bytes() == before else 1)
    assert ok, msg
    assert all(np.isfinite(v).all() for v in n.params_numpy().values())
    assert good == 12
