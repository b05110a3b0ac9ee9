"""cuBLAS's GEMM called directly (ctypes) for the cupy backend's ``matmul_``.

CuPy refuses every cuBLAS call while a stream captures (its wrapper raises NotImplementedError
before setting the handle's stream), so a CUDA graph of the training step could not hold its
GEMMs. cuBLAS itself supports capture, given a workspace of the caller's (it then allocates
nothing): ``Gemm`` keeps a cuBLAS handle of its own with such a workspace and calls
``cublasSgemm_v2`` / ``cublasDgemm_v2`` on the current stream, captured or not. Uncaptured steps
take the same path, so a replayed step does the very arithmetic of an uncaptured one.

cuBLAS does no bounds checks: only arrays whose memory the call describes exactly reach it (2-D,
C- or F-contiguous, one float dtype, matching shapes, C-contiguous output, sizes within int32);
for anything else ``Gemm`` returns False and the caller uses CuPy's matmul.

Built around the array module it is given (``Gemm(cupy)``), like ``cuda_graphs``.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

WORKSPACE_BYTES = 32 << 20          # NVIDIA's recommended cuBLAS workspace on Hopper
OP_N, OP_T = 0, 1                    # cublasOperation_t
INT_MAX = 2**31 - 1


def gemm_args(out, a, b):
    """``(transa, transb, m, n, k, lda, ldb, ldc)`` of the column-major GEMM that writes the
    row-major ``out = a @ b``, with cuBLAS's first operand ``b`` and second ``a``; None where the
    arrays' memory cannot be described that way.

    Row-major ``out`` (M x N) is column-major ``out^T`` (N x M, leading dimension N), and
    ``out^T = b^T a^T``. A C-contiguous ``x`` (r x c) is column-major ``x^T`` with leading
    dimension c (no transpose needed); an F-contiguous one is column-major ``x`` with leading
    dimension r (cuBLAS transposes it)."""
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
        return None
    (m, k), (k2, n) = a.shape, b.shape
    if k2 != k or out.shape != (m, n) or not out.flags.c_contiguous:
        return None
    if a.dtype != out.dtype or b.dtype != out.dtype or out.dtype not in (np.float32, np.float64):
        return None
    if min(m, n, k) == 0 or max(m, n, k) > INT_MAX:
        return None

    def operand(x, rows, cols):
        if x.flags.c_contiguous:
            return OP_N, max(1, cols)
        if x.flags.f_contiguous:
            return OP_T, max(1, rows)
        return None

    first, second = operand(b, k, n), operand(a, m, k)
    if first is None or second is None:
        return None
    return first[0], second[0], n, m, k, first[1], second[1], max(1, n)


def _mapped_libraries() -> list[str]:
    try:
        with open("/proc/self/maps") as f:
            return sorted({line.split(None, 5)[5].strip() for line in f if ".so" in line and len(line.split(None, 5)) == 6})
    except OSError:
        return []                      # not Linux: the other ways below


def _cublas_path(cp) -> str:
    """The libcublas to bind: the one this process loaded (CuPy's), else the one beside the
    cuBLASLt CuPy loaded, else where NVIDIA's cuda-pathfinder (CuPy 14 uses it) finds it."""
    mapped = _mapped_libraries()
    for path in mapped:
        if os.path.basename(path).startswith("libcublas.so"):
            return path
    major = cp.cuda.runtime.runtimeGetVersion() // 1000
    for path in mapped:
        beside = os.path.join(os.path.dirname(path), f"libcublas.so.{major}")
        if os.path.basename(path).startswith("libcublasLt.so") and os.path.exists(beside):
            return beside
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        return load_nvidia_dynamic_lib("cublas").abs_path
    except Exception as exc:          # noqa: BLE001 - not installed, or no cuBLAS there either
        raise OSError(f"libcublas is not loaded in this process, nor beside a loaded cuBLASLt, nor found "
                      f"by cuda-pathfinder ({type(exc).__name__}: {exc})") from exc


def _loaded_cublas(cp):
    return ctypes.CDLL(_cublas_path(cp))


class Gemm:
    """``gemm(out, a, b) -> bool``: out = a @ b through this handle's cuBLAS call, or False (and
    nothing done) where ``gemm_args`` cannot describe the arrays."""

    def __init__(self, cp):
        self.cp = cp
        cp.matmul(cp.ones((2, 2), dtype=cp.float32), cp.ones((2, 2), dtype=cp.float32))   # CuPy loads cuBLAS
        lib = self.lib = _loaded_cublas(cp)
        p, i, vp = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)
        for name, args in (("cublasCreate_v2", [vp]), ("cublasSetStream_v2", [p, p]),
                           ("cublasSetWorkspace_v2", [p, p, ctypes.c_size_t]),
                           ("cublasSgemm_v2", [p, i, i, i, i, i, p, p, i, p, i, p, p, i]),
                           ("cublasDgemm_v2", [p, i, i, i, i, i, p, p, i, p, i, p, p, i])):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
        self.handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate_v2")
        self.workspace = cp.empty(WORKSPACE_BYTES, dtype=cp.uint8)
        self.stream = None
        # alpha = 1, beta = 0 per dtype, made once: cuBLAS reads them from host memory at each call
        self.scalars = [ctypes.c_float(1), ctypes.c_float(0), ctypes.c_double(1), ctypes.c_double(0)]
        f1, f0, d1, d0 = (ctypes.byref(x) for x in self.scalars)
        self.calls = {np.dtype(np.float32): (lib.cublasSgemm_v2, f1, f0),
                      np.dtype(np.float64): (lib.cublasDgemm_v2, d1, d0)}

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def _bind(self, stream):
        # cublasSetStream puts the handle back on cuBLAS's own workspace pool, which allocates
        # (forbidden during a capture): our workspace is set again after every change of stream.
        lib, h = self.lib, self.handle
        self._check(lib.cublasSetStream_v2(h, ctypes.c_void_p(stream)), "cublasSetStream_v2")
        self._check(lib.cublasSetWorkspace_v2(h, ctypes.c_void_p(self.workspace.data.ptr), WORKSPACE_BYTES),
                    "cublasSetWorkspace_v2")
        self.stream = stream

    def __call__(self, out, a, b) -> bool:
        args = gemm_args(out, a, b)
        if args is None:
            return False
        transa, transb, m, n, k, lda, ldb, ldc = args
        stream = self.cp.cuda.get_current_stream().ptr
        if stream != self.stream:
            self._bind(stream)
        call, one, zero = self.calls[out.dtype]
        self._check(call(self.handle, transa, transb, m, n, k, one, b.data.ptr, lda,
                         a.data.ptr, ldb, zero, out.data.ptr, ldc), "cublas gemm")
        return True


def bind(cp):
    """(gemm, what it calls): a ``Gemm`` of our own handle, or where it cannot be had (no
    cuBLAS library found, an older CuPy) one that declines every product, so the caller uses
    CuPy's matmul and captures of the step fail with CuPy's reason."""
    try:
        return Gemm(cp), "cuBLAS through fastdl's own handle (capturable)"
    except (OSError, AttributeError, RuntimeError) as exc:
        return (lambda out, a, b: False), f"CuPy's matmul (fastdl's own cuBLAS handle unavailable: {exc})"
