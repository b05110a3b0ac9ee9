"""The fused step's row gather, with software prefetch.

A random MNIST row is a cache miss; asking the CPU for the rows a few ahead of the one being
copied keeps several misses in flight. ``PREFETCH_AHEAD`` rows (0 turns the hints off); the
benchmark ``test_input_layer_forward`` in bench/ times the gather with and without them.
"""

from __future__ import annotations

import llvmlite.ir as llvm_ir
import numpy as np
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .loops import jit
from .vmath import clamp

PREFETCH_AHEAD = 4


def _emit_prefetch(context, builder, sig, args):
    """LLVM's prefetch hint for each cache line of row args[1] of the 2-D array args[0]."""
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    zero = context.get_constant(types.intp, 0)
    row = cgutils.get_item_pointer2(context, builder, data=ary.data,
                                    shape=cgutils.unpack_tuple(builder, ary.shape),
                                    strides=cgutils.unpack_tuple(builder, ary.strides),
                                    layout=aryty.layout, inds=[args[1], zero])
    i8p = llvm_ir.IntType(8).as_pointer()
    i32 = llvm_ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, llvm_ir.FunctionType(llvm_ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
    base = builder.bitcast(row, i8p)
    itemsize = context.get_abi_sizeof(context.get_data_type(aryty.dtype))
    nbytes = builder.mul(builder.extract_value(ary.shape, 1), context.get_constant(types.intp, itemsize))
    # one hint per 64-byte cache line: read access, keep in all cache levels, data cache
    with cgutils.for_range_slice(builder, zero, nbytes, context.get_constant(types.intp, 64)) as (off, _):
        builder.call(fn, [builder.gep(base, [off]), i32(0), i32(3), i32(1)])


@intrinsic
def _llvm_prefetch_row(typingctx, a, i):
    def codegen(context, builder, sig, args):
        _emit_prefetch(context, builder, sig, args)
        return context.get_dummy_value()
    return types.void(a, types.intp), codegen


_PREFETCH = None


def prefetch_available() -> bool:
    """Whether this LLVM compiles the prefetch intrinsic (checked once; else gathers hint nothing)."""
    global _PREFETCH
    if _PREFETCH is None:
        try:
            njit(lambda a: _llvm_prefetch_row(a, 0))(np.zeros((1, 1), np.uint8))
            _PREFETCH = True
        except Exception:           # an LLVM without the intrinsic: gather without hints
            _PREFETCH = False
    return _PREFETCH


if config.DISABLE_JIT:
    def _prefetch_row(a, i):
        """A hint, nothing to do in plain Python."""
else:
    @intrinsic
    def _prefetch_row(typingctx, a, i):
        """Ask the CPU to start fetching row i of the 2-D array ``a`` into its caches (a hint: no
        effect on results; nothing where this LLVM lacks the intrinsic). An intrinsic, not an
        overload: an overload's implementation compiles as a function of its own."""
        hint = prefetch_available()

        def codegen(context, builder, sig, args):
            if hint:
                _emit_prefetch(context, builder, sig, args)
            return context.get_dummy_value()
        return types.void(a, types.intp), codegen


@jit
def gather_part(X, src, idx, scale, ahead):
    """X[r] = src[idx[r]] / scale, hinting row idx[r + ahead] (src: a column slice of the
    training set, byte codes or floats; dividing by 1 leaves floats exact). Indexing the slice
    from 0 lets LLVM vectorise the copy. Indices are clipped into range as NumPy's reference
    ``take(mode="clip")`` does; returns 1, having written nothing, where X is not (len(idx), src's
    width) or src has no rows (a flag, not an exception: it runs inside a parallel loop)."""
    n, rows = idx.shape[0], src.shape[0]
    if X.shape[0] != n or X.shape[1] != src.shape[1] or (rows == 0 and n > 0):
        return 1
    first, last = np.int64(0), np.int64(rows - 1)
    if ahead > 0:
        for r in range(ahead if ahead < n else n):
            _prefetch_row(src, clamp(np.int64(idx[r]), first, last))
    for r in range(n):
        if ahead > 0 and r + ahead < n:
            _prefetch_row(src, clamp(np.int64(idx[r + ahead]), first, last))
        i = clamp(np.int64(idx[r]), first, last)
        for k in range(X.shape[1]):
            X[r, k] = X.dtype.type(src[i, k]) / scale
    return 0
