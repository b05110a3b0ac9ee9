"""Evaluation at an epoch's end: the accuracy of the book's network on all 60,000 training and
10,000 test images (what the trainer does 17 times in the book's run), per backend, from float32
pixels and from ByteImages (what ``fastdl train`` holds), beside the time of exactly its GEMMs on
NumPy's BLAS measured in the same test (its floor)."""

import numpy as np
import pytest

import fastdl
from conftest import QUICK, backend_info, settle, timings, warm
from fastdl.scoring import EVAL_ROWS as EVAL_CHUNK


def _gemm_floor(x, W1, W2, repeats=5) -> float:
    """Seconds of the evaluation's GEMMs alone (chunk @ W1, h @ W2), median of ``repeats``."""
    h = np.empty((EVAL_CHUNK, W1.shape[1]), dtype=x.dtype)
    y = np.empty((EVAL_CHUNK, W2.shape[1]), dtype=x.dtype)

    def gemms():
        for lo in range(0, x.shape[0], EVAL_CHUNK):
            n = min(EVAL_CHUNK, x.shape[0] - lo)
            np.matmul(x[lo:lo + n], W1, out=h[:n])
            np.matmul(h[:n], W2, out=y[:n])
    return float(np.median(timings(gemms, repeats)))


@pytest.mark.parametrize("pixels", ["float32", "bytes"])
def test_evaluation(benchmark, backend, mnist, pixels):
    """train and test accuracy of 784-50-10, as at the end of each of the book's epochs."""
    (x, t), (xt, tt) = mnist
    if QUICK:
        x, t, xt, tt = x[:2000], t[:2000], xt[:1000], tt[:1000]
    benchmark.group = f"evaluation: accuracy on {len(x)} + {len(xt)} images, 784-50-10"
    net = fastdl.TwoLayerNet(784, 50, 10, backend=backend, seed=0, weight_init_std="he")
    ref = fastdl.TwoLayerNet(784, 50, 10, backend="numpy", seed=0, weight_init_std="he")
    if pixels == "bytes":
        as_bytes = lambda a: fastdl.ByteImages(np.rint(a * 255).astype(np.uint8)).on(backend, np.float32)
        xs, xts = as_bytes(x), as_bytes(xt)
        assert np.array_equal(backend.to_numpy(xs[:]), x)
    else:
        xs, xts = backend.asarray(x), backend.asarray(xt)
    ts, tts = backend.asarray(t.astype(np.int64)), backend.asarray(tt.astype(np.int64))

    def run():
        with backend.train_scope():            # as the trainer evaluates: inside fit()
            return net._accuracy(xs, ts), net._accuracy(xts, tts)
    assert run() == pytest.approx((ref.accuracy(x, t), ref.accuracy(xt, tt)), abs=2e-4)
    warm(run, 2)
    p = ref.params_numpy()
    floor = _gemm_floor(x, p["W1"], p["W2"]) + _gemm_floor(xt, p["W1"], p["W2"])
    settle()
    benchmark.extra_info.update(backend_info(backend), dtype="float32", pixels=pixels, floor_seconds=floor)
    if pixels == "bytes":                      # the report's row label; float32 rows stay the baseline
        benchmark.extra_info["backend"] = f"{backend.name}, ByteImages"
    benchmark.pedantic(run, rounds=3 if QUICK else 10, iterations=1)
