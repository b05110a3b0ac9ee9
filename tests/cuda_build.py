"""The CUDA sources (``kernels/*.cu``) compiled for the CPU, for the emulator in ``fake_cupy``.

``build(code)`` compiles the very text the GPU backend hands NVRTC with the machine's C++ compiler
against ``cuda_host/cuda_host.h`` (CUDA's built-ins on the CPU) plus one C launcher per kernel
and dtype, which runs the kernel over the grid and block it is given: as fibers where the kernel
synchronises (``uses_barriers``), as plain calls otherwise. ``FASTDL_EMU_SANITIZE=1`` builds them
with AddressSanitizer and UBSan (the process must preload both libraries: ``.ci/run`` shows how),
so that an access outside an array stops the run with the kernel's line.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from fastdl.cuda_sources import instantiations

HOST = Path(__file__).resolve().parent / "cuda_host"
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")
SANITIZE = os.environ.get("FASTDL_EMU_SANITIZE") == "1"


def uses_barriers(code: str) -> set[str]:
    """Kernels whose code reaches __syncthreads or a warp shuffle (directly or through a helper of
    the header): those run as fibers; the others as plain calls. A wrong guess cannot pass
    silently: a barrier outside a fiber is a launch error."""
    helpers = [m.group(1) for m in re.finditer(r"__device__[^(;{]*?\b(\w+)\s*\(", code)
               if not m.group(1).endswith("_impl")
               and re.search(r"__shfl|__syncthreads", code[m.end():code.find("\n}", m.end())])]
    marks = re.compile(r"__syncthreads|__shfl" + "".join(rf"|\b{h}\s*\(" for h in helpers))
    out = set()
    for m in re.finditer(r"__device__ void (\w+)_impl\s*\(", code):
        if marks.search(code[m.end():code.find("\n}", m.end())]):
            out.add(m.group(1))
    return out


def _launchers(code: str) -> str:
    parts = []
    for name, params in instantiations(code):
        args = ", ".join(p.split()[-1].lstrip("*") for p in params.split(","))
        fibers = "true" if name in uses_barriers(code) else "false"
        for suffix, ns in (("f32", "fastdl_f32"), ("f64", "fastdl_f64")):
            parts.append(
                f"namespace {ns} {{ extern \"C\" int launch_{name}_{suffix}(unsigned gx, unsigned gy, unsigned gz, "
                f"unsigned bx, unsigned by, unsigned bz, {params}) {{ return fastdl_emu::run(dim3{{gx, gy, gz}}, "
                f"dim3{{bx, by, bz}}, {fibers}, [=]() {{ {name}_{suffix}({args}); }}); }} }}")
    return "\n".join(parts) + "\n"


def build(code: str) -> ctypes.CDLL:
    """The sources compiled for the CPU, once per distinct text (cached by hash)."""
    if CXX is None:
        raise RuntimeError("no C++ compiler (g++, clang++ or $CXX) to run the CUDA kernels on the CPU")
    text = '#include "cuda_host.h"\n' + code + "\n" + _launchers(code)
    shim = (HOST / "cuda_host.cpp").read_text() + (HOST / "cuda_host.h").read_text()
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-O1", "-g"] \
        if SANITIZE else ["-O2"]
    key = hashlib.sha256((text + shim + CXX + " ".join(flags)).encode()).hexdigest()[:20]
    folder = Path(tempfile.gettempdir()) / f"fastdl-cuda-host-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(exist_ok=True)
    lib = folder / f"kernels-{key}.so"
    if not lib.is_file():
        src = folder / f"kernels-{key}.cpp"
        src.write_text(text)
        tmp = folder / f"kernels-{key}.{os.getpid()}.so"
        r = subprocess.run([CXX, "-std=c++17", *flags, "-shared", "-fPIC", "-w", "-I", str(HOST), str(src),
                            str(HOST / "cuda_host.cpp"), "-o", str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"the CUDA sources do not compile for the CPU:\n{r.stderr[-4000:]}")
        os.replace(tmp, lib)
    dll = ctypes.CDLL(str(lib))
    dll.fastdl_emu_last_error.restype = ctypes.c_char_p
    return dll
