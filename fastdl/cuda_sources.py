"""Where the CUDA sources live and how they are assembled into one NVRTC module.

Kept apart from ``fastdl.backends.cupy`` so that machines without CuPy (CI) can still find,
assemble and compile-check the exact source the GPU backend builds.
"""

from __future__ import annotations

from pathlib import Path

HEADER = "common.cuh"


def kernel_dir() -> Path:
    """``fastdl/kernels`` in an installed wheel, ``kernels/`` at the top of a source checkout."""
    pkg = Path(__file__).resolve().parent
    for candidate in (pkg / "kernels", pkg.parent / "kernels"):
        if (candidate / HEADER).is_file():
            return candidate
    raise FileNotFoundError(f"fastdl's CUDA sources are missing (looked in {pkg / 'kernels'} and "
                            f"{pkg.parent / 'kernels'}); reinstall fastdl")


def sources() -> list[Path]:
    return sorted(kernel_dir().glob("*.cu"))


def combined_source() -> str:
    """The mode codes generated from the contract, the header once, then every .cu file: one
    translation unit, so NVRTC needs no include path."""
    from .backends.contract import cuda_defines
    folder = kernel_dir()
    parts = [cuda_defines(), (folder / HEADER).read_text().replace("#pragma once", "")]
    for path in sources():
        parts.append(f"// ---- {path.name}\n" + path.read_text().replace(f'#include "{HEADER}"', ""))
    return "\n".join(parts)
