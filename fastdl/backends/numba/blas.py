"""``gemm(out, a, b)``: SciPy's BLAS called straight from compiled code, costing no compile time.

Numba's own ``np.dot`` is typed and optimised anew inside every function that uses it, once per
combination of layouts: 0.25-0.5 s of a first run's compile each, six times over in the fused
step (timed ad hoc). ``gemm`` is an intrinsic instead: a few dozen LLVM instructions emitted in
place, which read the arrays' shapes and strides and call the Fortran ``sgemm``/``dgemm``
(``gemv`` for one row or column of out) that ``scipy.linalg.cython_blas`` exports: the library
``np.dot`` reaches, so ``threads`` pins the same thread pool. The call goes by a symbol name
that this module binds before anything compiles or loads, so the disk cache holds no address.

``gemm`` returns whether it multiplied: ``False`` (and nothing written) when the shapes do not
chain, ``k`` is 0, a size passes BLAS's 32-bit integers, or an operand has no unit stride (or
``out`` is not row-major); callers raise. It never hands BLAS a view it cannot describe. Under
``NUMBA_DISABLE_JIT`` the same rule is checked in Python and NumPy multiplies (``_gemm_python``).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.machinery
import importlib.util
import os
import sys

import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

NAME = "scipy.linalg.cython_blas"
# dtype -> (GEMM, GEMV), each as (cython_blas's name, the symbol compiled code calls)
SYMBOLS = {"float32": (("sgemm", "fastdl_sgemm"), ("sgemv", "fastdl_sgemv")),
           "float64": (("dgemm", "fastdl_dgemm"), ("dgemv", "fastdl_dgemv"))}


def _cython_blas():
    """SciPy's ``cython_blas`` module. Loaded from its file when it can be: importing it by name
    runs ``scipy.linalg``'s ``__init__`` (0.19 s, most of a warm run's imports besides NumPy's
    and Numba's) for a table of function pointers. A later import of either by name works as
    usual. Any surprise takes the ordinary import."""
    try:
        spec = importlib.util.find_spec("scipy")
        folder = os.path.join(spec.submodule_search_locations[0], "linalg")
        path, = glob.glob(os.path.join(folder, "cython_blas.*so")) or glob.glob(
            os.path.join(folder, "cython_blas.*pyd"))
        loader = importlib.machinery.ExtensionFileLoader(NAME, path)
        module = importlib.util.module_from_spec(
            importlib.util.spec_from_file_location(NAME, path, loader=loader))
        loader.exec_module(module)
        module.__pyx_capi__["sgemm"]
        # loading put it in sys.modules without making it scipy.linalg's attribute; a later import
        # of it by name then loads it properly (the library stays loaded: the pointers hold)
        if sys.modules.get(NAME) is module and "scipy.linalg" not in sys.modules:
            # Numba checks once that SciPy's BLAS imports (in numba.np.arraymath, loaded with its
            # registries at the first compile or cache load), by importing this module by name:
            # scipy.linalg's whole __init__, 0.14 s of a warm run. Here the check finds it loaded.
            import numba.np.arraymath  # noqa: F401
            del sys.modules[NAME]
        return module
    except Exception:
        import scipy.linalg.cython_blas
        return scipy.linalg.cython_blas


INT_ARGS = {"gemm": 6, "gemv": 5}     # m, n, k, lda, ldb, ldc / m, n, lda, incx, incy


def _address(capsule, name: str) -> int:
    """The function pointer in ``capsule``, once its C signature (the capsule's name) shows the
    32-bit integers ``gemm`` passes."""
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    signature = get_name(capsule)
    if signature.decode().count("int *") != INT_ARGS[name[1:]]:
        raise ImportError(f"SciPy's cython_blas.{name} is {signature.decode()!r}, not the 32-bit integer "
                          "interface fastdl's numba backend calls; please report it with your SciPy version")
    return get_pointer(capsule, signature)


def bind() -> None:
    """Make the symbols ``gemm`` calls resolvable (idempotent; the backend's import runs it)."""
    capi = _cython_blas().__pyx_capi__
    for pair in SYMBOLS.values():
        for name, symbol in pair:
            ll.add_symbol(symbol, _address(capi[name], name))


bind()


def _operand(builder, rows, cols, s0, s1, size):
    """(transpose flag, leading dimension, usable) of a row-major (rows x cols) view with byte
    strides s0, s1, seen as BLAS's column-major (cols x rows) matrix."""
    one = ir.Constant(s0.type, 1)
    e0, e1 = builder.sdiv(s0, size), builder.sdiv(s1, size)
    exact = builder.and_(builder.icmp_signed("==", builder.srem(s0, size), s0.type(0)),
                         builder.icmp_signed("==", builder.srem(s1, size), s1.type(0)))
    max1 = lambda v: builder.select(builder.icmp_signed(">", v, one), v, one)
    single = lambda v: builder.icmp_signed("<=", v, one)
    # rows contiguous (or one column): 'N', consecutive rows ld apart
    as_n = builder.or_(builder.icmp_signed("==", e1, one), single(cols))
    ld_n = builder.select(single(rows), max1(cols), e0)
    ok_n = builder.icmp_signed(">=", ld_n, max1(cols))
    # columns contiguous (a transposed view) or one row: 'T'
    as_t = builder.or_(builder.icmp_signed("==", e0, one), single(rows))
    ok_t = builder.and_(as_t, builder.icmp_signed(">=", e1, max1(rows)))
    trans = builder.select(as_n, ir.Constant(ir.IntType(8), ord("N")), ir.Constant(ir.IntType(8), ord("T")))
    ld = builder.select(as_n, ld_n, e1)
    return trans, ld, builder.and_(exact, builder.select(as_n, ok_n, ok_t))


@intrinsic
def gemm(typingctx, out, a, b):
    """out = a @ b for 2-d float32 or float64 arrays of one dtype; returns whether it ran."""
    arrays = (out, a, b)
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in arrays) or len(
            {t.dtype for t in arrays}) != 1 or str(out.dtype) not in SYMBOLS:
        raise TypingError(f"gemm takes 2-d float32 or float64 arrays of one dtype, not {arrays}")
    gemm_name, gemv_name = (SYMBOLS[str(out.dtype)][i][1] for i in (0, 1))

    def codegen(context, builder, sig, args):
        C, A, B = (context.make_array(t)(context, builder, value=v) for t, v in zip(sig.args, args))
        intp = context.get_value_type(types.intp)
        size = ir.Constant(intp, context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype)))
        dims = lambda x: cgutils.unpack_tuple(builder, x.shape, 2)
        steps = lambda x: cgutils.unpack_tuple(builder, x.strides, 2)
        (m, k), (kb, n), (mc, nc) = dims(A), dims(B), dims(C)
        ta, lda, ok_a = _operand(builder, m, k, *steps(A), size)
        tb, ldb, ok_b = _operand(builder, kb, n, *steps(B), size)
        tc, ldc, ok_c = _operand(builder, mc, nc, *steps(C), size)
        eq = lambda x, y: builder.icmp_signed("==", x, y)
        zero = ir.Constant(intp, 0)
        empty = builder.or_(eq(m, zero), eq(n, zero))
        limit = ir.Constant(intp, 2**31 - 1)
        fits = [builder.icmp_signed("<=", v, limit) for v in (m, n, k, lda, ldb, ldc)]
        shapes_ok = builder.and_(builder.and_(eq(k, kb), eq(m, mc)), eq(n, nc))
        ok = shapes_ok
        for cond in [builder.icmp_signed(">", k, zero), ok_a, ok_b, ok_c,
                     eq(tc, ir.Constant(ir.IntType(8), ord("N"))), *fits]:
            ok = builder.and_(ok, cond)
        with builder.if_then(builder.and_(ok, builder.not_(empty))):
            i32, ptr = ir.IntType(32), cgutils.voidptr_t
            dtype = context.get_data_type(sig.args[0].dtype)
            slot = lambda v: builder.bitcast(cgutils.alloca_once_value(builder, v), ptr)
            whole = lambda v: slot(builder.trunc(v, i32))
            data = lambda x: builder.bitcast(x.data, ptr)
            alpha, beta = slot(ir.Constant(dtype, 1.0)), slot(ir.Constant(dtype, 0.0))
            call = lambda name, args: builder.call(cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [ptr] * len(args)), name), args)
            is_n = lambda t: eq(t, ir.Constant(ir.IntType(8), ord("N")))
            pick = lambda t, x, y: builder.select(is_n(t), x, y)
            flag = lambda c: ir.Constant(ir.IntType(8), ord(c))
            one = ir.Constant(intp, 1)
            # One row or one column of out: a matrix-vector product. BLAS's GEMM packs its whole
            # operand first and was 7x slower on a 1 x 784 @ 784 x 4096 product (timed ad hoc);
            # Numba's np.dot routes these shapes to GEMV as well.
            with builder.if_else(eq(m, one)) as (row, rest):
                with row:           # out' = op(B') a': x is a's row, y is out's row
                    call(gemv_name, [slot(tb), whole(pick(tb, n, k)), whole(pick(tb, k, n)), alpha, data(B),
                                     whole(ldb), data(A), whole(pick(ta, one, lda)), beta, data(C), whole(one)])
                with rest:
                    with builder.if_else(eq(n, one)) as (column, full):
                        with column:    # out = a b: x is b's column, y is out's column
                            call(gemv_name, [slot(pick(ta, flag("T"), flag("N"))), whole(pick(ta, k, m)),
                                             whole(pick(ta, m, k)), alpha, data(A), whole(lda), data(B),
                                             whole(ldb), beta, data(C), whole(ldc)])
                        with full:
                            # row-major out = a @ b is column-major out' = b' a': the operands swap
                            call(gemm_name, [slot(tb), slot(ta), whole(n), whole(m), whole(k), alpha, data(B),
                                             whole(ldb), data(A), whole(lda), beta, data(C), whole(ldc)])
        # an empty product with matching shapes has nothing to write: done
        return builder.or_(ok, builder.and_(empty, shapes_ok))

    return types.boolean(out, a, b), codegen


def _usable(x, as_out: bool = False) -> bool:
    """The rule ``_operand`` emits, in Python: a unit stride on one axis (for out: along its rows),
    and rows (or columns) no closer together than the matrix is wide (or tall)."""
    (r, c), (e0, e1) = x.shape, (s // x.itemsize for s in x.strides)
    if any(s % x.itemsize for s in x.strides):
        return False
    if e1 == 1 or c <= 1:
        return (max(c, 1) if r <= 1 else e0) >= max(1, c)
    return not as_out and (e0 == 1 or r <= 1) and e1 >= max(1, r)


def _gemm_python(out, a, b) -> bool:
    if not (out.dtype == a.dtype == b.dtype and str(out.dtype) in SYMBOLS and out.ndim == a.ndim == b.ndim == 2):
        raise TypeError(f"gemm takes 2-d float32 or float64 arrays of one dtype, not {out.dtype}, {a.dtype}, {b.dtype}")
    (m, k), (kb, n) = a.shape, b.shape
    if (kb, out.shape) != (k, (m, n)):
        return False
    if m == 0 or n == 0:
        return True
    if k == 0 or max(m, n, k) >= 2**31 or not (_usable(a) and _usable(b) and _usable(out, True)):
        return False
    np.matmul(a, b, out=out)
    return True


if config.DISABLE_JIT:
    gemm = _gemm_python         # noqa: F811 - an intrinsic runs only inside compiled code
