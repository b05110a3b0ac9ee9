"""The cupy backend's own cuBLAS call (fastdl/backends/cublas_direct.py): the layouts it describes
to cuBLAS and those it leaves to CuPy, the ctypes binding against a stand-in libcublas on the CPU
(tests/cuda_host/fake_cublas.c), and on a GPU the real library against CuPy's matmul."""

import ctypes
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import load_or_skip
from fastdl.backends import cublas_direct
from fastdl.backends.cublas_direct import OP_N, OP_T, gemm_args

rng = np.random.default_rng(0)


def colmajor_gemm(args, a, b):
    """What cuBLAS computes from ``gemm_args``: column-major op(first) @ op(second) read from
    the operands' memory, returned as the row-major result it leaves in ``out``'s memory."""
    ta, tb, m, n, k, lda, ldb, ldc = args

    def op(x, trans, rows, cols, ld):
        mem = np.ravel(x, order="K")
        stored = (cols, rows) if trans else (rows, cols)
        assert (stored[1] - 1) * ld + stored[0] <= mem.size, "cuBLAS would read past the operand"
        mat = np.lib.stride_tricks.as_strided(mem, stored, (mem.itemsize, ld * mem.itemsize))
        return mat.T if trans else mat

    c = op(b, ta, m, k, lda) @ op(a, tb, k, n, ldb)          # column-major m x n = out^T
    return c.T


def layouts(m, k, n, dtype=np.float32):
    for fa in (False, True):
        for fb in (False, True):
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            yield (np.asfortranarray(a) if fa else a), (np.asfortranarray(b) if fb else b)


@pytest.mark.parametrize("m,k,n", [(100, 784, 50), (50, 100, 10), (1, 7, 3), (5, 1, 4), (6, 4, 1), (1, 1, 1)])
def test_described_layouts_compute_a_at_b(m, k, n):
    for a, b in layouts(m, k, n):
        out = np.empty((m, n), dtype=a.dtype)
        args = gemm_args(out, a, b)
        assert args is not None
        np.testing.assert_allclose(colmajor_gemm(args, a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_transposed_views_as_the_fused_step_passes_them():
    """dW = h.T @ dz and dh = dz @ W.T: views of C-contiguous arrays, described as transposes."""
    h, dz, W = rng.standard_normal((100, 50)), rng.standard_normal((100, 10)), rng.standard_normal((50, 10))
    for a, b, want in ((h.T, dz, (OP_N, OP_T)), (dz, W.T, (OP_T, OP_N))):
        args = gemm_args(np.empty((a.shape[0], b.shape[1])), a, b)
        assert args[:2] == want
        np.testing.assert_allclose(colmajor_gemm(args, a, b), a @ b, rtol=1e-12)


def test_what_it_cannot_describe_is_left_to_cupy():
    a, b = rng.standard_normal((8, 6)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    out = np.empty((8, 4), np.float32)
    assert gemm_args(out, a[:, :5], b[:5]) is None                      # a strided column slice
    assert gemm_args(out, a, b.astype(np.float64)) is None              # mixed dtypes
    assert gemm_args(np.asfortranarray(out), a, b) is None              # output not C-contiguous
    assert gemm_args(out[:, :3], a, b) is None                          # wrong output shape
    assert gemm_args(out, a, b[:5]) is None                             # inner sizes differ
    assert gemm_args(np.empty((8, 4), np.int32), a.astype(np.int32), b.astype(np.int32)) is None
    assert gemm_args(np.empty((0, 4), np.float32), a[:0], b) is None    # empty
    assert gemm_args(out[None], a[None], b[None]) is None               # not 2-D


class _Arr(np.ndarray):
    """A host array with CuPy's ``.data.ptr``."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: the stand-in libcublas cannot be built")
    from pathlib import Path
    so = tmp_path_factory.mktemp("cublas") / "libfakecublas.so"
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(so), str(Path(__file__).parent / "cuda_host" / "fake_cublas.c")],
                   check=True)
    return ctypes.CDLL(str(so))


def test_the_binding_computes_every_layout_and_sets_the_workspace_per_stream(fake_lib, monkeypatch):
    monkeypatch.setattr(cublas_direct, "_loaded_cublas", lambda cp: fake_lib)
    stream = types.SimpleNamespace(ptr=0)
    cp = types.SimpleNamespace(float32=np.float32, uint8=np.uint8, matmul=np.matmul,
                               ones=lambda shape, dtype: np.ones(shape, dtype),
                               empty=lambda n, dtype: np.empty(n, dtype).view(_Arr),
                               cuda=types.SimpleNamespace(get_current_stream=lambda: stream))
    gemm = cublas_direct.Gemm(cp)
    fake_lib.fake_stream.restype = ctypes.c_void_p
    fake_lib.fake_workspace_bytes.restype = ctypes.c_size_t
    for dtype in (np.float32, np.float64):
        for m, k, n in ((100, 784, 50), (3, 1, 5), (1, 9, 1)):
            for a, b in layouts(m, k, n, dtype):
                out = np.full((m, n), np.nan, dtype).view(_Arr)
                assert gemm(out, a.view(_Arr), b.view(_Arr))
                tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(out, a @ b, **tol)
    assert fake_lib.fake_workspace_bytes() == cublas_direct.WORKSPACE_BYTES
    stream.ptr = 4096                                 # another stream: bound again, workspace again
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    out = np.empty((4, 2)).view(_Arr)
    assert gemm(out, a.view(_Arr), b.view(_Arr)) and fake_lib.fake_stream() == 4096
    assert fake_lib.fake_workspace_bytes() == cublas_direct.WORKSPACE_BYTES
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    assert not gemm(out, a[:, :2].view(_Arr), b[:2].view(_Arr))      # left to CuPy, nothing written


@pytest.mark.gpu
def test_on_a_gpu_the_direct_call_matches_cupy_and_captures():
    bk = load_or_skip("cupy")
    import cupy as cp
    assert isinstance(bk._GEMM, cublas_direct.Gemm), bk.gemm_path
    for dtype in (np.float32, np.float64):
        for m, k, n in ((100, 784, 50), (37, 13, 9), (1, 5, 1)):
            for a, b in layouts(m, k, n, dtype):
                A, B = cp.asarray(a, order="K"), cp.asarray(b, order="K")
                out = cp.empty((m, n), dtype)
                bk.matmul_(out, A, B)
                np.testing.assert_allclose(cp.asnumpy(out), a @ b, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                           atol=1e-4 if dtype == np.float32 else 1e-10)
    A, B = cp.asarray(rng.standard_normal((100, 784), dtype=np.float32)), cp.asarray(rng.standard_normal((784, 50), dtype=np.float32))
    eager, captured = cp.empty((100, 50), np.float32), cp.full((100, 50), np.nan, np.float32)
    bk.matmul_(eager, A, B)
    replay = bk.capture(lambda: bk.matmul_(captured, A, B))
    assert np.isnan(cp.asnumpy(captured)).all()       # captured, not run
    replay()
    bk.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(captured), cp.asnumpy(eager))


def test_without_libcublas_the_backend_says_it_uses_cupys_matmul(emu):
    """Where no libcublas is loaded (here: the CPU emulator), matmul_ goes to CuPy's matmul and
    the backend's description (``fastdl info``) says so, with the reason."""
    assert emu.describe()["gemm"].startswith("CuPy's matmul (fastdl's own cuBLAS handle unavailable: libcublas")
    a, b, out = emu.asarray(np.ones((3, 4), np.float32)), emu.asarray(np.ones((4, 2), np.float32)), emu.xp.empty((3, 2), np.float32)
    emu.matmul_(out, a, b)
    np.testing.assert_array_equal(emu.to_numpy(out), np.full((3, 2), 4, np.float32))


def test_which_libcublas_is_bound(tmp_path, monkeypatch):
    """CuPy's own (mapped in this process) first, else the one beside CuPy's cuBLASLt."""
    cp = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(runtimeGetVersion=lambda: 13020)))
    lt, beside = tmp_path / "libcublasLt.so.13", tmp_path / "libcublas.so.13"
    monkeypatch.setattr(cublas_direct, "_mapped_libraries", lambda: ["/x/libcublasLt.so.13", "/y/libcublas.so.13"])
    assert cublas_direct._cublas_path(cp) == "/y/libcublas.so.13"
    monkeypatch.setattr(cublas_direct, "_mapped_libraries", lambda: [str(lt)])
    beside.write_bytes(b"")
    assert cublas_direct._cublas_path(cp) == str(beside)
    beside.unlink()
    monkeypatch.setitem(sys.modules, "cuda.pathfinder", None)     # not installed
    with pytest.raises(OSError, match="libcublas is not loaded"):
        cublas_direct._cublas_path(cp)
