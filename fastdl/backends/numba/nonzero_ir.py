"""LLVM IR for reading byte codes over their non-zero codes, shared by the first layer's narrow
rows (``nonzero_layer``: a row's sums in registers) and its wide rows (``nonzero_wide``: a list
of the row's non-zero codes, then tiles of columns).

``scan`` visits the non-zero codes of a row (64 codes a load, their non-zero bytes one bit each of
a vector compare, visited with LLVM's ``cttz``; the rest eight a load); ``chunks`` cuts a row of
columns into vectors of powers of two lanes; the rest builds vector loads and stores.
"""

from __future__ import annotations

import sys

import llvmlite.ir as llvm_ir
from numba import types
from numba.core import cgutils

# (x & LOW7) + LOW7 sets bit 7 of each byte whose low seven bits are not all 0 (no carry leaves a
# byte); with x's own bit 7, NONZERO's bits mark x's non-zero bytes.
LOW7 = 0x7F7F7F7F7F7F7F7F
NONZERO = 0x8080808080808080
I64 = llvm_ir.IntType(64)
# The layer's buffer on the non-zero path: code -> code / scale in its first TABLE slots; past
# them a wide layer's row lists, LIST_SLOTS per feature (its k, its value).
TABLE = 256
LIST_SLOTS = 2
BIG_ENDIAN = sys.byteorder == "big"     # a loaded word's byte q is then pixel 7 - q


def chunks(width: int) -> list[tuple[int, int]]:
    """(first column, columns) of the vectors a row's sums are held in: powers of two, longest
    first (50: 32 + 16 + 2)."""
    out, start = [], 0
    for bit in reversed(range(width.bit_length())):
        if width >> bit & 1:
            out.append((start, 1 << bit))
            start += 1 << bit
    return out


def each_bit(builder, mask, visit):
    """``visit(s)`` for each set bit s of the i64 ``mask``, lowest first (LLVM's ``cttz``); none
    when it is 0."""
    cttz = cgutils.get_or_insert_function(       # (llvmlite's declare_intrinsic drops its flag)
        builder.module, llvm_ir.FunctionType(I64, [I64, llvm_ir.IntType(1)]), "llvm.cttz.i64")
    with builder.if_then(builder.icmp_unsigned("!=", mask, I64(0))):
        before = builder.block
        loop = builder.append_basic_block("set_bit")
        done = builder.append_basic_block("bits_done")
        builder.branch(loop)
        builder.position_at_end(loop)
        m = builder.phi(I64)
        m.add_incoming(mask, before)
        visit(builder.call(cttz, [m, llvm_ir.IntType(1)(1)]))
        rest = builder.and_(m, builder.sub(m, I64(1)))
        m.add_incoming(rest, builder.block)
        builder.cbranch(builder.icmp_unsigned("!=", rest, I64(0)), loop, done)
        builder.position_at_end(done)


def each_nonzero(builder, x, b0, in_memory_order: bool, action):
    """``action(k, code)`` for each non-zero byte of the word x, pixel k = b0 + its place."""
    bits = builder.and_(builder.or_(builder.add(builder.and_(x, I64(LOW7)), I64(LOW7)), x), I64(NONZERO))

    def visit(s):                                   # s: bit 8q + 7 of byte q
        q = builder.lshr(s, I64(3))
        if in_memory_order and BIG_ENDIAN:
            q = builder.sub(I64(7), q)
        action(builder.add(b0, q), builder.and_(builder.lshr(x, builder.sub(s, I64(7))), I64(255)))
    each_bit(builder, bits, visit)


def _words(builder, row, k0, k1, action):
    """``action(k, code)`` for each non-zero code of row[k0:k1] (k0 a multiple of 8): whole words,
    then the last k1 % 8 bytes gathered into one (byte q in bits 8q.., on any byte order)."""
    w0, w1 = builder.udiv(k0, I64(8)), builder.udiv(k1, I64(8))
    with cgutils.for_range(builder, builder.sub(w1, w0)) as loop:
        b0 = builder.mul(builder.add(w0, loop.index), I64(8))
        x = builder.load(builder.bitcast(builder.gep(row, [b0]), I64.as_pointer()), align=1)
        each_nonzero(builder, x, b0, True, action)
    b0 = builder.mul(w1, I64(8))
    tail = cgutils.alloca_once_value(builder, I64(0))
    with cgutils.for_range(builder, builder.sub(k1, b0)) as loop:
        byte = builder.zext(builder.load(builder.gep(row, [builder.add(b0, loop.index)])), I64)
        builder.store(builder.or_(builder.load(tail), builder.shl(byte, builder.mul(loop.index, I64(8)))), tail)
    each_nonzero(builder, builder.load(tail), b0, False, action)


CHUNK = 64              # codes a vector compare reads: its bits fill one i64 mask


def scan(builder, row, k0, k1, action):
    """``action(k, code)`` for each non-zero code of row[k0:k1] (k0 a multiple of 8): CHUNK codes
    a load, their non-zero bytes the bits of one vector compare, then the rest (under CHUNK) by
    words of eight."""
    vec = llvm_ir.VectorType(llvm_ir.IntType(8), CHUNK)
    # (a compare's bits in element order: so kept to little-endian machines, where numba runs)
    n = I64(0) if BIG_ENDIAN else builder.udiv(builder.sub(k1, k0), I64(CHUNK))
    with cgutils.for_range(builder, n) as loop:
        b0 = builder.add(k0, builder.mul(loop.index, I64(CHUNK)))
        x = builder.load(builder.bitcast(builder.gep(row, [b0]), vec.as_pointer()), align=1)
        bits = builder.bitcast(builder.icmp_unsigned("!=", x, llvm_ir.Constant(vec, None)), llvm_ir.IntType(CHUNK))

        def visit(s):                               # s: code b0 + s is non-zero
            k = builder.add(b0, s)
            action(k, builder.zext(builder.load(builder.gep(row, [k])), I64))
        each_bit(builder, bits, visit)
    _words(builder, row, builder.add(k0, builder.mul(n, I64(CHUNK))), k1, action)


def vector_at(builder, data, row, start, n, vec):
    """A pointer to ``vec`` at column ``start`` of row ``row`` of a C array of n columns."""
    return builder.bitcast(builder.gep(data, [builder.add(builder.mul(row, I64(n)), I64(start))]), vec.as_pointer())


def splat(builder, v, vec):
    lanes = llvm_ir.Constant(llvm_ir.VectorType(llvm_ir.IntType(32), vec.count), [0] * vec.count)
    return builder.shuffle_vector(builder.insert_element(llvm_ir.Constant(vec, None), v, I64(0)),
                                  llvm_ir.Constant(vec, None), lanes)


def unpacked(context, builder, sig, args, arrays, ints):
    """The intrinsic's arrays (at positions ``arrays``, the first a float one), its integers as
    int64, the float's LLVM type and alignment."""
    made = [context.make_array(sig.args[k])(context, builder, args[k]) for k in arrays]
    cast = [context.cast(builder, args[k], sig.args[k], types.int64) for k in ints]
    elt = context.get_data_type(sig.args[arrays[0]].dtype)
    return made, cast, elt, context.get_abi_sizeof(elt)


def typed(arrays, ints, width, widths: range, uint8_at: int) -> bool:
    """Whether an intrinsic's arguments are what its code assumes: ``width`` a literal in
    ``widths``; C-contiguous arrays of 2, 2, 1 and 2 dimensions, the one at ``uint8_at`` the codes
    (uint8), the others of one float type; the integers integers."""
    return (isinstance(width, types.IntegerLiteral) and width.literal_value in widths
            and all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)
            and [a.ndim for a in arrays] == [2, 2, 1, 2] and arrays[uint8_at].dtype == types.uint8
            and isinstance(arrays[0].dtype, types.Float)
            and all(a.dtype == arrays[0].dtype for k, a in enumerate(arrays) if k != uint8_at)
            and all(isinstance(i, types.Integer) for i in ints))
