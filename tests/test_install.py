"""fastdl as a user installs it: the wheel built from this checkout, installed into a folder of
its own (``pip install --target``, no dependencies: those come from this environment) and run
from another folder, so that nothing of the checkout can stand in for what the wheel lacks."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fastdl.cuda_sources import kernel_dir, sources

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("hatchling")
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return next(out.glob("fastdl-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """(folder the wheel is installed in, a folder outside the checkout to run in)."""
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                        "--no-compile", "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return target, tmp_path_factory.mktemp("elsewhere")


def run_installed(installed, *args, timeout=300):
    target, cwd = installed
    env = dict(os.environ, PYTHONPATH=str(target))      # before site-packages, so before the checkout
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_ships_every_cu_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in list(sources()) + [kernel_dir() / "common.cuh"]:
        assert f"fastdl/kernels/{path.name}" in names, f"{path.name} is not in {wheel.name}"
    assert "fastdl/backends/cupy.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))], "the wheel holds the test or benchmark suites"


def test_the_installed_package_is_the_one_that_runs_and_finds_its_kernels(installed):
    target, _ = installed
    r = run_installed(installed, "-c", "import fastdl, fastdl.cuda_sources as c; print(fastdl.__file__); print(c.kernel_dir())")
    assert r.returncode == 0, r.stderr
    module, kernels = map(Path, r.stdout.split())
    assert module.is_relative_to(target) and kernels == target / "fastdl" / "kernels"
    for path in sources():
        assert (kernels / path.name).read_bytes() == path.read_bytes()


def test_the_command_runs_from_the_install(installed):
    target, _ = installed
    script = target / "bin" / "fastdl"
    assert script.is_file(), "pip made no `fastdl` command: check [project.scripts]"
    r = run_installed(installed, "-m", "fastdl", "info")
    assert r.returncode == 0, r.stderr
    assert "numpy  usable" in r.stdout and str(target) not in r.stderr


def test_bench_says_it_needs_a_checkout(installed):
    r = run_installed(installed, "-m", "fastdl", "bench", "--quick")
    assert r.returncode != 0
    assert "ship with the source" in r.stderr and "checkout" in r.stderr and "Traceback" not in r.stderr
    assert not (installed[1] / "bench").exists(), "it made its report folder before refusing"


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_train_runs_from_the_install(installed, mnist_root, name):
    """A short ``fastdl train`` (on numba with its helper processes, which must find this install's
    fastdl, not the checkout's) writes every file it names."""
    if name == "numba":
        pytest.importorskip("numba")
    r = run_installed(installed, "-m", "fastdl", "train", "--backend", name, "--iters", "200", "--no-progress",
                      "--data", str(mnist_root), "--out", "run")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = installed[1] / "run"
    for f in ("params.npz", "history.json", "checkpoint.npz"):
        assert (out / f).is_file(), f
    assert "test_acc" in r.stdout
