"""fastdl's CUDA kernels on the GPU: built, looked up, and every launch checked against what the
kernel will touch.

``Launcher`` builds all ``kernels/*.cu`` as one RawModule (NVRTC, at first use; CuPy caches it on
disk) and looks each kernel's float32 or float64 instantiation up once (a step launches ~15).

The kernels check no bounds. Each declares, on the line above its
``FASTDL_INSTANTIATE``, how many elements each pointer parameter spans, as a product of its
integer parameters and the launch's grid (``// extents: z n*m, b m``; parsed by
``fastdl.cuda_sources.extents``). ``Checked`` stands in front of a kernel and refuses a launch
whose pointer arguments are not device arrays of the declared element type (``T`` the
instantiation's float type), C-contiguous, holding exactly that many elements. The backend
module's functions are public (``fastdl.get_backend("cupy")``), so this is what keeps a call
with arrays that do not fit from reading or writing outside them on the GPU; values (labels,
gather indices) are the kernels' own to guard (they clip or write NaN).

A launch's check costs a few attribute reads per array; a replayed CUDA graph repeats none.
Built around the array module it is given, like ``cuda_graphs``.
"""

from __future__ import annotations

import math

import numpy as np

from ..cuda_sources import combined_source, extents, signatures
from ..errors import DTypeError, ShapeError

THREADS = 256               # threads per block of the one-dimensional launches

ELEMENTS = {"unsigned char*": np.dtype(np.uint8), "long long*": np.dtype(np.int64), "bool*": np.dtype(np.bool_)}


def grid(total: int) -> tuple:
    """Blocks for ``total`` elements of a grid-stride kernel."""
    return (max(1, min(math.ceil(total / THREADS), 65535)),)


class Launcher:
    """The kernels for the array module ``cp`` (CuPy, or the tests' CPU emulator)."""

    def __init__(self, cp):
        self.cp, self._module, self._functions = cp, None, {}

    def build(self):
        if self._module is None:
            code = combined_source()
            self._signatures, self._extents = signatures(code), extents(code)
            self._module = self.cp.RawModule(code=code, options=("--std=c++14",))
        return self._module

    def kernel(self, base: str, dtype) -> "Checked":
        """The float32 or float64 instantiation of kernel ``base``, behind its launch check."""
        key = (base, np.dtype(dtype) == np.float32)
        fn = self._functions.get(key)
        if fn is None:
            raw = self.build().get_function(f"{base}_{'f32' if key[1] else 'f64'}")
            fn = self._functions[key] = Checked(self.cp, raw, base, np.float32 if key[1] else np.float64,
                                                self._signatures[base], self._extents[base])
        return fn

    def launch(self, base: str, dtype, total: int, *args) -> None:
        """A one-dimensional grid-stride launch over ``total`` elements."""
        self.kernel(base, dtype)(grid(total), (THREADS,), args)


class Checked:
    """A kernel of ``name`` instantiated for ``dtype``, called as a RawKernel: ``(grid, block, args)``."""

    def __init__(self, cp, kernel, name: str, dtype, signature, extents):
        self.cp, self.kernel, self.name = cp, kernel, name
        position = {p: i for i, (_, p) in enumerate(signature)}
        self.rules = []               # (argument index, its name, element dtype, factors)
        for i, (kind, p) in enumerate(signature):
            if kind.endswith("*"):
                want = np.dtype(dtype) if kind == "T*" else ELEMENTS[kind]
                self.rules.append((i, p, want, [_factor(f, position) for f in extents[p]]))

    def __call__(self, grid, block, args):
        grid = tuple(grid) + (1, 1)
        for i, p, want, factors in self.rules:
            n = 1
            for kind, v in factors:
                n *= int(args[v]) if kind == "arg" else grid[v] if kind == "grid" else v
            self._check(p, args[i], want, n)
        if 0 not in grid[:3]:           # no blocks, no work (and CUDA refuses an empty grid)
            self.kernel(grid[:3], block, args)

    def _check(self, p, a, want, n):
        where = f"kernel {self.name}: argument {p}"
        if not isinstance(a, self.cp.ndarray):
            raise DTypeError(f"{where} is a {type(a).__name__}; it takes a device array")
        if a.dtype != want:
            raise DTypeError(f"{where} is {a.dtype}; the kernel reads {want} (give every array the same float dtype)")
        if not a.flags.c_contiguous:
            raise ShapeError(f"{where} is not C-contiguous (a view such as a column slice or a transpose); "
                             f"the kernel reads flat memory: pass a contiguous array")
        if a.size != n:
            raise ShapeError(f"{where} holds {a.size} elements where the call's shapes need {n}: "
                             f"its arrays do not fit together")


def _factor(f: str, position: dict):
    """One factor of an extent: ("arg", index of an integer parameter), ("grid", axis) or ("number", n)."""
    if f in ("grid.x", "grid.y"):
        return "grid", "xy".index(f[-1])
    if f in position:
        return "arg", position[f]
    return "number", int(f)
