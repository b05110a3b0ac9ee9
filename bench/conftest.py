"""Shared machinery of the benchmark suites.

* ``FASTDL_BENCH_QUICK=1`` shrinks every suite to a smoke run (CI runs that, so nothing rots).
* Every result carries, in ``extra_info``: backend, device, dtype, threads, library versions and
  the BLAS kernel in use (threadpoolctl), so runs are compared like with like (a result without
  its backend or dtype fails the run).
* Warm-up is explicit (Numba compiles on the first call; pytest-benchmark warms up only under PyPy
  by default) and GPU timings synchronise inside the timed function.
* Correctness is asserted once, before timing, against the NumPy backend.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import pytest

import fastdl
from fastdl.backends import NAMES, backend_status, get_backend
from fastdl.optimizers import SGD

QUICK = os.environ.get("FASTDL_BENCH_QUICK", "").strip() not in ("", "0", "false", "no")
# Rounds of each whole-run benchmark (medians of more rounds resist this machine class's noise).
ROUNDS = 1 if QUICK else int(os.environ.get("FASTDL_BENCH_ROUNDS", "3"))


def machine_info() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "numpy": np.__version__, "fastdl": fastdl.__version__,
            "quick": QUICK}
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        info["blas"] = "; ".join(f"{p.get('internal_api')} {p.get('version')} kernel={p.get('architecture')} "
                                 f"threads={p.get('num_threads')}" for p in blas)
    except ImportError:
        info["blas"] = "unknown"
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "FASTDL_NUM_THREADS", "NUMBA_THREADING_LAYER"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def backend_info(bk) -> dict:
    d = {k: str(v) for k, v in bk.describe().items() if k != "compiled"}
    d.update(machine_info())
    return d


@pytest.fixture(params=NAMES)
def backend(request):
    ok, reason = backend_status(request.param)
    if not ok:
        pytest.skip(f"backend {request.param!r} unavailable: {reason}")
    return get_backend(request.param)


def timed(bk, fn):
    """fn wrapped so the device is synchronised inside the timed region."""
    def run():
        out = fn()
        bk.synchronize()
        return out
    return run


def settle(seconds: float = 0.3) -> None:
    """Let idle thread pools stop spinning before a timed run. A pool that just worked (NumPy's
    OpenBLAS, Numba's OpenMP, PyTorch's) busy-waits for its next task for up to ~0.1 s, and in
    one process that slows whichever contender runs next on the same cores (measured here: a
    numba step 145 us alone, 250-400 us right after NumPy GEMMs; a NumPy GEMM 54 us alone, 65-100
    us right after numba steps)."""
    if not QUICK:
        time.sleep(seconds)


@pytest.fixture(autouse=True)
def _settled():
    """Every benchmark starts with the previous one's thread pools asleep."""
    settle()


@pytest.fixture(autouse=True)
def _records_backend_and_dtype(request):
    """Every result says which backend and dtype it measured (the report and comparisons read
    them): a benchmark that ran without saying so fails here."""
    yield
    bm = request.node.funcargs.get("benchmark")
    if bm is None or getattr(bm, "stats", None) is None:           # no benchmark ran
        return
    missing = [k for k in ("backend", "dtype") if k not in bm.extra_info]
    if missing:
        pytest.fail(f"{request.node.nodeid} does not record its {' and '.join(missing)} in benchmark.extra_info")


def warm(fn, times: int = 3):
    for _ in range(times):
        fn()


def timings(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed ones."""
    warm(fn, warmup)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


@pytest.fixture(scope="session")
def mnist():
    from fastdl.datasets import resolve_root
    root, source = resolve_root(None)
    try:
        data = fastdl.datasets.load_mnist(root=root, download=False)
    except fastdl.DatasetError as exc:
        pytest.skip(f"real MNIST not available ({source}): {exc}")
    (x, _), _ = data
    x.sum()      # touch every page once: first-touch costs would otherwise land in the first timing
    return data


def gemm_shapes(sizes, batch):
    """(m, k, n) of every GEMM of one training step: forward, dW, and dX except for layer 1."""
    shapes = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes.append((batch, a, b))            # forward  x @ W
        shapes.append((a, batch, b))            # dW = x.T @ dy
        if i > 0:
            shapes.append((batch, b, a))        # dx = dy @ W.T
    return shapes


def step_flops(sizes, batch) -> float:
    return float(sum(2 * m * k * n for m, k, n in gemm_shapes(sizes, batch)))


def measure_gemm_floor(bk, sizes, batch, dtype=np.float32, repeats: int = 30, gather_from=None) -> dict:
    """The machine's roof for one training step: the time of exactly its GEMMs on this backend's
    BLAS (median of ``repeats``), hence the FLOP rate at these shapes; ``gemm_seconds_total``:
    all ``repeats`` back to back, the floor of a run of that many steps. With ``gather_from``
    (the training set), each step also gathers ``batch`` random rows of it, as training must:
    the GEMM + gather floor."""
    xp = bk.xp
    rng = np.random.default_rng(0)
    ops = []
    for m, k, n in gemm_shapes(sizes, batch):
        a = bk.asarray(rng.standard_normal((m, k)).astype(dtype))
        b = bk.asarray(rng.standard_normal((k, n)).astype(dtype))
        ops.append((a, b, xp.empty((m, n), dtype=dtype)))
    if gather_from is not None:
        rows = xp.empty((batch, gather_from.shape[1]), dtype=gather_from.dtype)
        batches = [bk.asarray(rng.integers(0, gather_from.shape[0], batch)) for _ in range(64)]
        turn = iter(range(10**12))

    def step():
        if gather_from is not None:
            xp.take(gather_from, batches[next(turn) % 64], axis=0, out=rows, mode="clip")
        for a, b, c in ops:
            xp.matmul(a, b, out=c)
        bk.synchronize()

    times = timings(step, repeats, warmup=5)
    t = float(np.median(times))
    flops = step_flops(sizes, batch)
    return {"gemm_seconds_per_step": t, "gemm_flops_per_step": flops, "gemm_rate_gflops": flops / t / 1e9,
            "gemm_seconds_total": float(np.sum(times))}


# -- the book's workload and a larger one, through fastdl.Trainer ---------------------------------

BOOK = dict(sizes=[784, 50, 10], batch=100, iterations=200 if QUICK else 10_000)
LARGE = dict(sizes=[784, 1000, 1000, 10], batch=256, iterations=20 if QUICK else 235)   # one epoch


def make_trainer(bk, data, spec, steps, **kw):
    """A Trainer of ``spec``'s network on MNIST ``data`` for ``steps`` SGD steps (seeded: every
    contender sees the same batches), without per-epoch training-set evaluation, and without
    fit()'s warm-up on a copy (each benchmark compiles in a run of its own before it times)."""
    (x, t), _ = data
    net = fastdl.MultiLayerNet(spec["sizes"][0], spec["sizes"][1:-1], spec["sizes"][-1], backend=bk,
                               seed=0, weight_init_std=0.01 if len(spec["sizes"]) == 3 else "he")
    return fastdl.Trainer(net, SGD(lr=0.1), x, t, iterations=steps, batch_size=spec["batch"], seed=0,
                          progress=False, evaluate_train=False, warm_up=False, **kw)


def fit_synced(bk, tr):
    """fit(), with the device synchronised before returning (for timing)."""
    tr.fit()
    bk.synchronize()
