"""Loading MNIST: the first load (inflate the .gz files, check their SHA-256, parse, convert)
against a later one (the verified, decompressed cache; its SHA-256 still checked)."""

import os
import shutil
import tempfile

import pytest

import fastdl
from conftest import backend_info


@pytest.mark.parametrize("state", ["first load", "cached"])
def test_load_mnist(benchmark, state, monkeypatch):
    from fastdl.datasets import resolve_root
    root, _ = resolve_root(None)
    try:
        fastdl.datasets.load_mnist(root=root, download=False)
    except fastdl.DatasetError as exc:
        pytest.skip(f"real MNIST not available: {exc}")
    cache = tempfile.mkdtemp(prefix="fastdl-bench-cache-")
    monkeypatch.setenv("FASTDL_MNIST_CACHE", cache)
    benchmark.group = "load_mnist (float32, normalised)"
    benchmark.extra_info.update(backend_info(fastdl.get_backend("numpy")), backend=state, dtype="float32")

    def setup():
        if state == "first load":
            shutil.rmtree(cache, ignore_errors=True)
            os.makedirs(cache)
        else:
            fastdl.datasets.load_mnist(root=root, download=False)
        return (), {}
    try:
        benchmark.pedantic(lambda: fastdl.datasets.load_mnist(root=root, download=False), setup=setup,
                           rounds=5, iterations=1)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
