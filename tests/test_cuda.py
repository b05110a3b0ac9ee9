"""The CUDA side, checked without a GPU: every .cu compiles with nvcc (as written, and as the one
module the cupy backend builds), and a missing GPU fails clearly.
GPU parity itself runs in the backend-parametrized suites whenever the cupy backend can run."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastdl
from fastdl import backends
from fastdl.backends.contract import cuda_defines
from fastdl.cuda_sources import combined_source, extents, kernel_dir, signatures, sources

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH: install the CUDA toolkit to compile-check kernels/")
ARCH = "sm_90"       # Hopper (H100/H200); any current architecture catches syntax and type errors


def test_sources_are_found():
    names = {p.name for p in sources()}
    assert {"activations.cu", "softmax_xent.cu", "optimizers.cu", "chapter6.cu"} <= names
    assert (kernel_dir() / "common.cuh").is_file()


def test_every_kernel_declares_what_each_of_its_pointers_spans():
    """The launch check (fastdl/backends/cuda_launch.py) refuses arrays by these extents, so each
    kernel must state one for each pointer parameter, in terms of its own integer parameters."""
    code = combined_source()
    sigs, ext = signatures(code), extents(code)
    assert set(ext) == set(sigs) and len(sigs) >= 25
    for name, params in sigs.items():
        integers = {p for kind, p in params if kind in ("int", "long long")}
        for pointer, factors in ext[name].items():
            for f in factors:
                assert f in integers or f in ("grid.x", "grid.y") or f.isdigit(), (name, pointer, f)
    dropped = code.replace("// extents: z n*m, b m\nFASTDL_INSTANTIATE(add_bias", "FASTDL_INSTANTIATE(add_bias")
    assert dropped != code
    with pytest.raises(ValueError, match="kernel add_bias: its extents line must name"):
        extents(dropped)
    renamed = code.replace("// extents: z n*m, b m\nFASTDL_INSTANTIATE(add_bias", "// extents: z n*m, bias m\nFASTDL_INSTANTIATE(add_bias")
    with pytest.raises(ValueError, match="add_bias"):
        extents(renamed)


def nvcc(src: Path, out: Path, include: Path | None = None):
    cmd = [NVCC, "-c", f"-arch={ARCH}", "-std=c++14", "-Werror", "all-warnings", "-o", str(out), str(src)]
    if include:
        # a single .cu file gets the contract's generated mode codes as the module gets them
        defines = out.parent / "fastdl_defines.h"
        defines.write_text(cuda_defines())
        cmd[1:1] = ["-I", str(include), "-include", str(defines)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"nvcc failed on {src.name}:\n{r.stdout}\n{r.stderr}"


@needs_nvcc
@pytest.mark.parametrize("name", [p.name for p in sources()])
def test_each_cu_file_compiles(name, tmp_path):
    nvcc(kernel_dir() / name, tmp_path / "k.o", include=kernel_dir())


@needs_nvcc
def test_the_module_the_backend_builds_compiles(tmp_path):
    src = tmp_path / "fastdl_all.cu"
    src.write_text(combined_source())
    nvcc(src, tmp_path / "all.o")
    cubin = tmp_path / "all.cubin"
    subprocess.run([NVCC, "-cubin", f"-arch={ARCH}", "-o", str(cubin), str(src)], check=True, capture_output=True)
    data = cubin.read_bytes()
    for kernel in ("bias_relu", "bias_sigmoid", "add_bias", "grad_colsum", "softmax_xent", "softmax_grad",
                   "gather_rows", "gather_bytes", "gather_labels", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "dropout",
                   "batchnorm_train", "batchnorm_backward", "batchnorm_inference", "running", "axpy"):
        for suffix in ("f32", "f64"):
            assert f"{kernel}_{suffix}".encode() in data, f"{kernel}_{suffix} missing from the module"


def test_without_a_gpu_selecting_cupy_fails_with_reason_and_install_command():
    ok, reason = backends.backend_status("cupy")
    if ok:
        pytest.skip("a GPU is available here; the failure path cannot be observed")
    with pytest.raises(fastdl.BackendUnavailableError) as err:
        fastdl.get_backend("cupy")
    msg = str(err.value)
    assert reason in msg and "fastdl[cuda12]" in msg and "fastdl[cuda13]" in msg
    out = subprocess.run([sys.executable, "-m", "fastdl", "info"], capture_output=True, text=True, check=True).stdout
    assert "cupy   unusable" in out and reason.split(":")[0] in out


def test_nvrtc_compiles_the_module_as_cupy_will():
    """NVRTC (what CuPy compiles with) differs from nvcc: no host headers. Needs only the NVRTC
    library, not a GPU; skipped where CuPy's NVRTC binding is not installed."""
    try:
        from cupy_backends.cuda.libs import nvrtc
        prog = nvrtc.createProgram(combined_source(), "fastdl.cu", [], [])
    except Exception as exc:  # ImportError, or the NVRTC library missing
        pytest.skip(f"CuPy's NVRTC is not usable here: {type(exc).__name__}: {exc}")
    try:
        nvrtc.compileProgram(prog, ["--std=c++14", "--gpu-architecture=compute_90"])
    except Exception:
        pytest.fail("NVRTC rejected the module:\n" + nvrtc.getProgramLog(prog))
    ptx = nvrtc.getPTX(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert ptx.count(".entry") == 26
