"""blas.gemm, the numba backend's BLAS call from compiled code: every layout it accepts against
NumPy, everything it refuses left untouched, and its symbols resolved in a process that loads
the compiled code from the disk cache instead of compiling it."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import load_or_skip, tol
from test_kernels import rand


@pytest.fixture(scope="module")
def gemm():
    load_or_skip("numba")
    from numba import njit

    from fastdl.backends.numba import blas
    return njit(lambda out, a, b: blas.gemm(out, a, b))


def operand(shape, layout, dtype, seed):
    """A (rows x cols) view: row-major, a transposed (column-major) view, or a block of a wider
    array, so that its leading dimension exceeds its width."""
    r, c = shape
    if layout == "T":
        return rand((c, r), dtype, seed).T
    if layout == "block":
        return rand((r + 2, c + 5), dtype, seed)[1:r + 1, 2:c + 2]
    return rand((r, c), dtype, seed)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 1), (6, 5, 1), (1, 5, 7), (5, 1, 6), (37, 13, 10),
                                   (1, 37, 20), (20, 37, 1), (100, 784, 50), (0, 3, 2), (3, 4, 0)])
@pytest.mark.parametrize("la", ["C", "T", "block"])
@pytest.mark.parametrize("lb", ["C", "T", "block"])
def test_gemm_equals_numpy(gemm, dtype, shape, la, lb):
    """Every layout, sizes 1 and 0 included; one row or one column of out goes to BLAS's GEMV."""
    m, k, n = shape
    a, b = operand((m, k), la, dtype, 0), operand((k, n), lb, dtype, 1)
    wide = np.full((m, n + 2), np.nan, dtype)
    out = wide[:, :n] if lb == "block" else np.full((m, n), np.nan, dtype)     # ldc > n too
    assert gemm(out, a, b)
    np.testing.assert_allclose(out, a @ b, **tol(dtype, k))
    if lb == "block":
        assert np.isnan(wide[:, n:]).all()


@pytest.mark.parametrize("case", ["strided a", "strided b", "column-major out", "strided out",
                                  "k = 0", "inner sizes differ", "out's rows", "out's columns"])
def test_gemm_refuses_and_writes_nothing(gemm, case):
    """What BLAS cannot be told (or what does not chain) returns False and leaves out as it was;
    matmul_ then hands it to NumPy, the callers inside the step raise."""
    x = rand((12, 12), np.float32, 0)
    a, b, out = x[:4, :5], x[:5, :3], np.full((4, 3), 7.0, np.float32)
    if case == "strided a":
        a = x[:4, :10:2]
    elif case == "strided b":
        b = x[:5, ::4]
    elif case == "column-major out":
        out = np.asfortranarray(out)
    elif case == "strided out":
        out = np.full((8, 6), 7.0, np.float32)[::2, ::2]
    elif case == "k = 0":
        a, b = x[:4, :0], x[:0, :3]
    elif case == "inner sizes differ":
        b = x[:6, :3]
    elif case == "out's rows":
        out = np.full((5, 3), 7.0, np.float32)
    else:
        out = np.full((4, 2), 7.0, np.float32)
    assert not gemm(out, a, b)
    assert (out == 7).all()


def test_gemm_refuses_mixed_dtypes_when_compiling(gemm):
    """A compile error (a TypeError in plain Python under NUMBA_DISABLE_JIT), never a call."""
    from numba.core.errors import TypingError
    with pytest.raises((TypingError, TypeError), match="one dtype"):
        gemm(np.zeros((2, 2), np.float32), np.zeros((2, 2)), np.zeros((2, 2), np.float32))
    with pytest.raises((TypingError, TypeError), match="float32 or float64"):
        gemm(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"), reason="nothing is compiled")
def test_cached_code_finds_blas_in_a_new_process(gemm, tmp_path):
    """The disk cache keeps the BLAS call by name: a second process loads the compiled function
    (compiling nothing) and it multiplies. Neither the backend's import nor Numba's first compile
    or cache load imports scipy.linalg (0.14-0.19 s, most of a warm run's imports besides NumPy's
    and Numba's), and a user's later import of cython_blas by name still works."""
    (tmp_path / "mod.py").write_text(
        "import numpy as np\nfrom numba import njit\nfrom fastdl.backends.numba.blas import gemm\n"
        "@njit(cache=True)\ndef mul(out, a, b):\n    return gemm(out, a, b)\n")
    code = ("import sys, numpy as np, fastdl; fastdl.get_backend('numba'); "
            "print('scipy.linalg' in sys.modules); import mod; "
            "a = np.arange(12.0).reshape(3, 4); b = np.arange(8.0).reshape(4, 2); out = np.zeros((3, 2)); "
            "assert mod.mul(out, a, b) and (out == a @ b).all(); print(len(mod.mul.stats.cache_misses)); "
            "print('scipy.linalg' in sys.modules); "
            "import scipy.linalg.cython_blas; assert scipy.linalg.cython_blas.__pyx_capi__['dgemm']")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert [r.stdout.split() for r in runs] == [["False", "1", "False"], ["False", "0", "False"]]


def test_bind_checks_the_integer_width(gemm):
    """BLAS is called with 32-bit integers: a function whose C signature shows another count of
    them is refused when the backend loads, before anything calls it."""
    from fastdl.backends.numba import blas
    capi = blas._cython_blas().__pyx_capi__
    assert blas._address(capi["sgemm"], "sgemm") > 0
    with pytest.raises(ImportError, match="32-bit integer"):
        blas._address(capi["sgemv"], "sgemm")
