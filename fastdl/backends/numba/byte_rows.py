"""Evaluation's first layer from byte codes, over the non-zero codes only.

81% of MNIST's pixels are 0. Evaluating a set (17 times over 70,000 images in the book's run)
multiplies every row by W1; a row's product needs only its non-zero pixels, a fifth of the work:
for each non-zero code c at pixel k, ``z[r] += (c / scale) * W[k]``. Two things make that faster
than the GEMM (about half its time at 784-50, ``bench/``):

* Finding the non-zero codes a word of eight at a time: a word's non-zero bytes become one bit
  each (``NONZERO``), and the loop visits exactly those bits (LLVM's ``cttz``). Testing the bytes
  one by one mispredicted a branch at every stroke's edge (1.2x the time, timed ad hoc).
* A row's sums stay in registers, as one vector of the layer's width. Numba has no fixed-size
  local arrays: a sum kept in an array went to memory and back at every pixel (no faster than
  the GEMM), and one scalar per column (generated Python) took Numba 1.0 s to compile. So the
  row is LLVM IR written here (``_row``), a vector type per width, up to ``MAX_WIDTH`` (wider
  layers keep the GEMM).

The body runs as parts of ``first_layer.split_layer``, the parallel function the training step
already compiled, called by address (``by_address``): part p takes rows [n p / P, n (p + 1) / P)
of the call, where P = len(cut) - 1; only the body compiles. Sums run in another order than the
GEMM's, so results agree with NumPy's to rounding, as the GEMM's do.
"""

from __future__ import annotations

import functools
import sys

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..contract import ACT_CODES
from . import variants
from .loops import jit_body
from .step import made
from .vmath import clamp

MAX_WIDTH = 64          # columns a row's sums can keep in registers (AVX-512 has 32 of 16 floats)

# (x & LOW7) + LOW7 sets bit 7 of each byte whose low seven bits are not all 0 (no carry leaves a
# byte); with x's own bit 7, NONZERO's bits mark x's non-zero bytes.
LOW7 = 0x7F7F7F7F7F7F7F7F
NONZERO = 0x8080808080808080
I64 = llvm_ir.IntType(64)


def chunks(width: int) -> list[tuple[int, int]]:
    """(first column, columns) of the vectors a row's sums are held in: powers of two, longest
    first. LLVM splits a vector of 50 floats into single lanes past its first 32 (the evaluation
    ran 3x slower than at 64); 32 + 16 + 2 keeps each whole."""
    out, start = [], 0
    for bit in reversed(range(width.bit_length())):
        if width >> bit & 1:
            out.append((start, 1 << bit))
            start += 1 << bit
    return out


def _emit_word(builder, x, b0, big_endian: bool, accs, table, w_row, align: int):
    """For each non-zero byte q of the word x (pixel b0 + q): accs += table[byte] * W[b0 + q],
    a vector per chunk of columns (W's rows read ``align``-byte aligned: a float's alignment)."""
    cttz = cgutils.get_or_insert_function(       # (llvmlite's declare_intrinsic drops its flag)
        builder.module, llvm_ir.FunctionType(I64, [I64, llvm_ir.IntType(1)]), "llvm.cttz.i64")
    with builder.if_then(builder.icmp_unsigned("!=", x, I64(0))):
        first = builder.and_(builder.or_(builder.add(builder.and_(x, I64(LOW7)), I64(LOW7)), x), I64(NONZERO))
        before = builder.block
        loop = builder.append_basic_block("nonzero_byte")
        done = builder.append_basic_block("word_done")
        builder.branch(loop)
        builder.position_at_end(loop)
        m = builder.phi(I64)
        m.add_incoming(first, before)
        s = builder.call(cttz, [m, llvm_ir.IntType(1)(1)])        # bit 8q + 7 of byte q
        q = builder.lshr(s, I64(3))
        if big_endian:                                            # the word's byte q is pixel 7 - q
            q = builder.sub(I64(7), q)
        v = builder.load(builder.gep(table, [builder.and_(builder.lshr(x, builder.sub(s, I64(7))), I64(255))]))
        k = builder.add(b0, q)
        for start, acc in accs:
            vec = acc.type.pointee
            lanes = llvm_ir.Constant(llvm_ir.VectorType(llvm_ir.IntType(32), vec.count), [0] * vec.count)
            splat = builder.shuffle_vector(builder.insert_element(llvm_ir.Constant(vec, None), v, I64(0)),
                                           llvm_ir.Constant(vec, None), lanes)
            w = builder.load(w_row(k, start, vec), align=align)
            builder.store(builder.fadd(builder.load(acc), builder.fmul(splat, w)), acc)
        rest = builder.and_(m, builder.sub(m, I64(1)))
        m.add_incoming(rest, builder.block)
        builder.cbranch(builder.icmp_unsigned("!=", rest, I64(0)), loop, done)
        builder.position_at_end(done)


@intrinsic
def _row(typingctx, z, r, src, i, table, W, width):
    """z[r] = the sum over the non-zero codes c = src[i, k] of table[c] * W[k]. The caller checks
    what this trusts: W (K, width) and z's rows width long, r and i rows of z and src."""
    arrays = (z, src, table, W)
    if not (isinstance(width, types.IntegerLiteral) and 1 <= width.literal_value <= MAX_WIDTH
            and all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)
            and (z.ndim, src.ndim, table.ndim, W.ndim) == (2, 2, 1, 2) and src.dtype == types.uint8
            and isinstance(z.dtype, types.Float) and z.dtype == W.dtype == table.dtype
            and isinstance(r, types.Integer) and isinstance(i, types.Integer)):
        return None
    n = width.literal_value
    big_endian = sys.byteorder == "big"

    def codegen(context, builder, sig, args):
        za, sa, ta, wa = (context.make_array(sig.args[k])(context, builder, args[k]) for k in (0, 2, 4, 5))
        row_z = context.cast(builder, args[1], sig.args[1], types.int64)
        row_src = context.cast(builder, args[3], sig.args[3], types.int64)
        elt = context.get_data_type(sig.args[0].dtype)
        align = context.get_abi_sizeof(elt)
        accs = []
        for start, count in chunks(n):
            acc = cgutils.alloca_once(builder, llvm_ir.VectorType(elt, count))
            builder.store(llvm_ir.Constant(acc.type.pointee, None), acc)          # zeros
            accs.append((start, acc))
        K = builder.extract_value(sa.shape, 1)
        row = builder.gep(sa.data, [builder.mul(row_src, K)])

        def w_row(k, start, vec):
            return builder.bitcast(builder.gep(wa.data, [builder.add(builder.mul(k, I64(n)), I64(start))]),
                                   vec.as_pointer())
        words = builder.udiv(K, I64(8))
        with cgutils.for_range(builder, words) as loop:
            b0 = builder.mul(loop.index, I64(8))
            x = builder.load(builder.bitcast(builder.gep(row, [b0]), I64.as_pointer()), align=1)
            _emit_word(builder, x, b0, big_endian, accs, ta.data, w_row, align)
        # the last K % 8 bytes, gathered into one word: byte q in bits 8q.., on any byte order
        b0 = builder.mul(words, I64(8))
        tail = cgutils.alloca_once_value(builder, I64(0))
        with cgutils.for_range(builder, builder.sub(K, b0)) as loop:
            byte = builder.zext(builder.load(builder.gep(row, [builder.add(b0, loop.index)])), I64)
            builder.store(builder.or_(builder.load(tail), builder.shl(byte, builder.mul(loop.index, I64(8)))), tail)
        _emit_word(builder, builder.load(tail), b0, False, accs, ta.data, w_row, align)
        for start, acc in accs:
            out = builder.gep(za.data, [builder.add(builder.mul(row_z, I64(n)), I64(start))])
            builder.store(builder.load(acc), builder.bitcast(out, acc.type), align=align)
        return context.get_dummy_value()
    return types.none(z, r, src, i, table, W, width), codegen


def _row_python(z, r, src, i, table, W, width):
    """``_row`` under NUMBA_DISABLE_JIT."""
    k = np.flatnonzero(src[i])
    z[r] = (table[src[i, k]][:, None] * W[k]).sum(axis=0) if k.size else 0


row = _row_python if numba.config.DISABLE_JIT else _row


@functools.cache
def rows_body(act: int, width: int):
    """The body for activation code ``act`` and layer width ``width`` (1 .. ``MAX_WIDTH``)."""
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"rows_body: width {width} outside 1 .. {MAX_WIDTH}")
    bias_act = variants.BIAS_ACTS[act]

    def rows_body(args):
        """Rows [n p / P, n (p + 1) / P) of z = act(x[idx] @ W + b), P the parts; 1 where they
        do not fit. No work after the parts (p = -1) nor in a backward pass."""
        p, backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz = args
        parts = cut.shape[0] - 1
        if p < 0 or backward:
            return 0
        n, K = z.shape[0], src.shape[1]
        if (W.shape[0] != K or W.shape[1] != width or z.shape[1] != width or b.shape[0] != width
                or idx.shape[0] != n or src.shape[0] == 0 or p >= parts):
            return 1
        table = np.empty(256, dtype=W.dtype)        # code -> code / scale, as decode_bytes_ divides
        for c in range(256):
            table[c] = W.dtype.type(c) / scale
        last = np.int64(src.shape[0] - 1)
        r0, r1 = n * p // parts, n * (p + 1) // parts
        for r in range(r0, r1):
            row(z, r, src, clamp(np.int64(idx[r]), np.int64(0), last), table, W, width)   # clipped, as gathers do
        bias_act(z[r0:r1], b)
        return 0
    # a name of its own per activation and width (by_address finds a body by its symbol's name);
    # its __name__ stays, ahead.COMPILE_SECONDS knows the job by it
    rows_body.__qualname__ = f"rows_body_{next(k for k, v in ACT_CODES.items() if v == act)}_{width}"
    return made(rows_body, jit_body)
