"""Where the CUDA sources live and how they are assembled into one NVRTC module.

Kept apart from ``fastdl.backends.cupy`` so that machines without CuPy (CI) can still find,
assemble and compile-check the exact source the GPU backend builds.
"""

from __future__ import annotations

import re
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


_INSTANTIATE = re.compile(r"FASTDL_INSTANTIATE\(\s*(\w+),\s*\(([^)]*)\)", re.S)
_EXTENTS = re.compile(r"^// extents: ([^\n]*)\nFASTDL_INSTANTIATE\(\s*(\w+)", re.M)


def instantiations(code: str) -> list[tuple[str, str]]:
    """(kernel base name, its parameter list as written) for each FASTDL_INSTANTIATE in ``code``."""
    return _INSTANTIATE.findall(code)


def signatures(code: str) -> dict[str, list[tuple[str, str]]]:
    """kernel base name -> [(type, name), ...] parsed from the sources (const dropped)."""
    sigs = {}
    for name, params in instantiations(code):
        sigs[name] = [(" ".join(p.split()[:-1]).replace("const ", ""), p.split()[-1].lstrip("*"))
                      for p in params.split(",")]
    return sigs


def extents(code: str) -> dict[str, dict[str, list[str]]]:
    """kernel base name -> {pointer parameter: the factors of how many elements it spans}, from the
    ``// extents:`` line right above each kernel's FASTDL_INSTANTIATE (``z n*m, b m``: factors are
    integer parameters, ``grid.x`` / ``grid.y`` or numbers). Every kernel must declare every
    pointer parameter: the launcher (``fastdl.backends.cuda_launch``) checks each launch by them."""
    sigs, out = signatures(code), {}
    for line, name in _EXTENTS.findall(code):
        out[name] = {item.split()[0]: item.split()[1].split("*") for item in line.split(",")}
    for name, params in sigs.items():
        pointers = {p for kind, p in params if kind.endswith("*")}
        if set(out.get(name, {})) != pointers:
            raise ValueError(f"kernel {name}: its extents line must name exactly its pointer parameters "
                             f"{sorted(pointers)} (it names {sorted(out.get(name, {}))})")
    return out
