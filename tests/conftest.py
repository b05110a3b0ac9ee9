"""Shared fixtures: every kernel/layer test runs once per registered backend.

A backend that cannot run here (numba not installed, no CUDA device) is skipped with the
registry's own reason, so the skip line in the report says exactly why.
"""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
from hypothesis import settings

import fastdl
from fastdl import datasets
from fastdl.backends import NAMES, backend_status, get_backend
from mnist_server import Server, idx_bytes

# Hypothesis' example counts: "ci" (the default) repeats the same examples every run; set
# HYPOTHESIS_PROFILE=thorough for 20 times as many, new ones each run.
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# float32 results differ from the NumPy oracle only by summation order inside kernels and BLAS.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def tol(dtype, terms: int = 1):
    """Tolerances against the oracle for results that sum ``terms`` products (a GEMM's inner
    dimension): two BLAS libraries sum in different orders, and the rounding difference of a
    k-term sum grows like sqrt(k) (784 terms: 28x one term's)."""
    t = TOL[np.dtype(dtype).type]
    return dict(rtol=t["rtol"], atol=t["atol"] * max(1.0, float(np.sqrt(terms))))


def backend_params(names=NAMES):
    """Backend names as test parameters, built at collection: cupy carries the ``gpu`` mark, so
    ``-m "not gpu"`` leaves it out and ``-m gpu`` selects it."""
    return [pytest.param(n, marks=pytest.mark.gpu) if n == "cupy" else n for n in names]


def load_or_skip(name):
    ok, reason = backend_status(name)
    if not ok:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    return get_backend(name)


@pytest.fixture(params=backend_params())
def backend(request):
    return load_or_skip(request.param)


@pytest.fixture(params=backend_params([n for n in NAMES if n != "numpy"]))
def accelerated(request):
    """Each backend other than the NumPy oracle, for end-to-end comparisons with it."""
    return load_or_skip(request.param)


@pytest.fixture(scope="module")
def emu():
    """The cupy backend on the CPU emulator (tests/fake_cupy.py), for a test module's duration."""
    import fake_cupy
    if fake_cupy.CXX is None:
        pytest.skip("no C++ compiler (g++, clang++ or $CXX): the CUDA kernels cannot run on the CPU here")
    with fake_cupy.emulated_backend() as module:
        yield module


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def ref():
    return get_backend("numpy")


@pytest.fixture(scope="session", autouse=True)
def _private_mnist_cache(tmp_path_factory):
    """The verified-MNIST cache of this test run, not the user's (subprocesses inherit it)."""
    os.environ["FASTDL_MNIST_CACHE"] = str(tmp_path_factory.mktemp("mnist-verified"))


@pytest.fixture(autouse=True)
def _clean_backend_selection(monkeypatch):
    """Tests start from the default selection and cannot leak one into the next."""
    monkeypatch.delenv("FASTDL_BACKEND", raising=False)
    fastdl.set_backend(None)
    yield
    fastdl.set_backend(None)


@pytest.fixture(scope="session")
def mnist_root():
    """The folder holding real MNIST, or a skip saying how to provide it."""
    from fastdl.datasets import FILES, resolve_root
    root, source = resolve_root(None)
    names = [n for n, _, _ in FILES.values()]
    if all((root / f"{n}.gz").is_file() or (root / n).is_file() for n in names):
        return root
    pytest.skip(f"real MNIST not found in {root} ({source}); set FASTDL_DATA to a folder with the four .gz files")


@pytest.fixture(scope="session")
def mnist(mnist_root):
    return fastdl.datasets.load_mnist(root=mnist_root, download=False)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("FASTDL_RELIABILITY_REPORT", "").strip()
    if path:
        from reliability import RECORDS, write_report
        if RECORDS:
            write_report(path)


# -- MNIST's download path (test_datasets.py, test_download_faults.py) ------------------------------

@pytest.fixture
def tiny_mnist(monkeypatch):
    """Replace the four MNIST files by tiny synthetic ones with their own checksums."""
    rng = np.random.default_rng(0)
    files, raw = {}, {}
    for key, (name, _, _) in datasets.FILES.items():
        n = 6 if key.startswith("train") else 4
        arr = rng.integers(0, 256, (n, 28, 28)) if "images" in key else rng.integers(0, 10, n)
        data = idx_bytes(arr)
        raw[name] = data
        files[key] = (name, hashlib.sha256(data).hexdigest(), arr.shape)
    monkeypatch.setattr(datasets, "FILES", files)
    return {name: gzip.compress(data) for name, data in raw.items()}


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
