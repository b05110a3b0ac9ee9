"""Rows of the first layer over the non-zero byte codes for layers wider than ``MAX_WIDTH``.

A narrow layer's row keeps all its sums in registers while it scans the row's codes once
(``nonzero_layer``). A wide one (784-1000, say) cannot: its sums are made a tile of columns at a
time (256 bytes of them: 64 float32 or 32 float64, the most the registers of AVX-512 hold with
room to spare), and scanning the row's words again for each tile would cost a mispredicted branch
per word per tile. So the row's non-zero codes are listed once, then read from the list:

* ``_forward``: the list of (k, code / scale) of row src[i, k0:k1], then for each tile of columns
  ``z[r, tile] = sum over the list of value * W[k, tile]``, in registers.
* ``_backward``: the same list, then for each entry ``dW[k] += value * dz[r]``, a whole row of dW
  at a time (contiguous: the hardware prefetcher follows it).

The list lives in the layer's buffer past the code table (``nonzero_ir.TABLE``, 256 slots):
part p, which owns the features [k0, k1), writes its list at ``buf[TABLE + 2 k0 : TABLE + 2 k1]``
(``LIST_SLOTS``, 2, per feature: the k's as integers of the float's width, then the values), so
the parts never share a slot. Each call makes its own list
before reading it: nothing from an earlier call is trusted.

``forward`` and ``backward`` are the typing functions of ``nonzero_layer``'s two intrinsics for
widths past ``MAX_WIDTH`` (one intrinsic per direction: a body that chose between two by its
width would hold them in its closure, which Numba's disk cache keys by a pickle that differs in
every process, so the body would never load from the cache).
"""

from __future__ import annotations

import llvmlite.ir as llvm_ir
import numpy as np
from numba import types
from numba.core import cgutils

from .nonzero_ir import I64, LIST_SLOTS, TABLE, chunks, scan, splat, typed, unpacked

TILE_BYTES = 256          # a tile of columns: 64 float32 or 32 float64 (8 AVX2 or 4 AVX-512 registers)


def tile_of(itemsize: int) -> int:
    return TILE_BYTES // itemsize


def _listed(builder, sa, ba, i_, k0_, k1_, size):
    """List row src[i, k0:k1]'s non-zero codes in buf (see the module's notes): returns the
    k's and values' pointers and the count."""
    int_t = llvm_ir.IntType(8 * size)
    at = builder.add(I64(TABLE), builder.mul(k0_, I64(LIST_SLOTS)))
    ks = builder.bitcast(builder.gep(ba.data, [at]), int_t.as_pointer())
    vs = builder.gep(ba.data, [builder.add(at, builder.sub(k1_, k0_))])
    count = cgutils.alloca_once_value(builder, I64(0))

    def keep(k, code):
        c = builder.load(count)
        builder.store(builder.trunc(k, int_t) if int_t.width < 64 else k, builder.gep(ks, [c]))
        builder.store(builder.load(builder.gep(ba.data, [code])), builder.gep(vs, [c]))
        builder.store(builder.add(c, I64(1)), count)
    scan(builder, builder.gep(sa.data, [builder.mul(i_, builder.extract_value(sa.shape, 1))]), k0_, k1_, keep)
    return ks, vs, builder.load(count)


def _entry(builder, ks, vs, j):
    k = builder.load(builder.gep(ks, [j]))
    return (builder.sext(k, I64) if k.type.width < 64 else k), builder.load(builder.gep(vs, [j]))


def _tiles(builder, n, tile, each):
    """``each(first column, chunks)`` for the full tiles of ``tile`` columns (a loop), then the
    last part tile's chunks (unrolled)."""
    full = n // tile
    if full:
        with cgutils.for_range(builder, I64(full)) as loop:
            each(builder.mul(loop.index, I64(tile)), [(0, tile)])
    if n % tile:
        each(I64(full * tile), chunks(n % tile))


def _at(builder, data, row, col, n, start, vec):
    """A pointer to ``vec`` at column col + start of row ``row`` of a C array of n columns."""
    flat = builder.add(builder.add(builder.mul(row, I64(n)), col), I64(start))
    return builder.bitcast(builder.gep(data, [flat]), vec.as_pointer())


def forward(typingctx, z, r, src, i, buf, W, k0, k1, width):
    """z[r] = the sum over the non-zero codes c = src[i, k], k0 <= k < k1, of buf[c] * W[k].
    Trusted (the body checks): W (K, width), z's rows width long, k0 a multiple of 8, k1 <= K,
    buf at least TABLE + LIST_SLOTS k1 long, K < 2**31."""
    if not typed((z, src, buf, W), (r, i, k0, k1), width, range(1, 2**31), 1):
        return None
    n = width.literal_value

    def codegen(context, builder, sig, args):
        (za, sa, ba, wa), (r_, i_, k0_, k1_), elt, align = unpacked(context, builder, sig, args, (0, 2, 4, 5),
                                                                    (1, 3, 6, 7))
        ks, vs, count = _listed(builder, sa, ba, i_, k0_, k1_, align)
        accs = {c: cgutils.alloca_once(builder, llvm_ir.VectorType(elt, c)) for _, c in chunks(n % tile_of(align))}
        accs[tile_of(align)] = cgutils.alloca_once(builder, llvm_ir.VectorType(elt, tile_of(align)))

        def tile(col, parts):
            for _, c in parts:
                builder.store(llvm_ir.Constant(accs[c].type.pointee, None), accs[c])
            with cgutils.for_range(builder, count) as loop:
                k, v = _entry(builder, ks, vs, loop.index)
                for start, c in parts:
                    vec = accs[c].type.pointee
                    w = builder.load(_at(builder, wa.data, k, col, n, start, vec), align=align)
                    builder.store(builder.fadd(builder.load(accs[c]), builder.fmul(splat(builder, v, vec), w)), accs[c])
            for start, c in parts:
                builder.store(builder.load(accs[c]), _at(builder, za.data, r_, col, n, start, accs[c].type.pointee),
                              align=align)
        _tiles(builder, n, tile_of(align), tile)
        return context.get_dummy_value()
    return types.none(z, r, src, i, buf, W, k0, k1, width), codegen


def backward(typingctx, dW, src, i, buf, dz, r, k0, k1, width):
    """dW[k] += buf[c] * dz[r] for the non-zero codes c = src[i, k], k0 <= k < k1. Trusted (the
    body checks): dW (K, width), dz's rows width long, k0 a multiple of 8, k1 <= K, buf at least
    TABLE + LIST_SLOTS k1 long, K < 2**31."""
    if not typed((dW, src, buf, dz), (i, r, k0, k1), width, range(1, 2**31), 1):
        return None
    n = width.literal_value

    def codegen(context, builder, sig, args):
        (wa, sa, ba, da), (i_, r_, k0_, k1_), elt, align = unpacked(context, builder, sig, args, (0, 1, 3, 4),
                                                                    (2, 5, 6, 7))
        ks, vs, count = _listed(builder, sa, ba, i_, k0_, k1_, align)
        with cgutils.for_range(builder, count) as loop:
            k, v = _entry(builder, ks, vs, loop.index)

            def tile(col, parts):
                for start, c in parts:
                    vec = llvm_ir.VectorType(elt, c)
                    d = builder.load(_at(builder, da.data, r_, col, n, start, vec), align=align)
                    at = _at(builder, wa.data, k, col, n, start, vec)
                    builder.store(builder.fadd(builder.load(at, align=align), builder.fmul(splat(builder, v, vec), d)),
                                  at, align=align)
            _tiles(builder, n, tile_of(align), tile)
        return context.get_dummy_value()
    return types.none(dW, src, i, buf, dz, r, k0, k1, width), codegen


def _listed_python(buf, src, i, k0, k1):
    """The Python twin of ``_listed``: the same list in the same slots of buf."""
    k = k0 + np.flatnonzero(src[i, k0:k1])
    at, c = TABLE + LIST_SLOTS * k0, k.size
    buf[at:at + c].view(np.int32 if buf.itemsize == 4 else np.int64)[:] = k
    buf[at + k1 - k0:at + k1 - k0 + c] = buf[src[i, k]]
    return k, buf[at + k1 - k0:at + k1 - k0 + c]


def forward_python(z, r, src, i, buf, W, k0, k1, width):
    k, v = _listed_python(buf, src, i, k0, k1)
    z[r] = (v[:, None] * W[k]).sum(axis=0) if k.size else 0


def backward_python(dW, src, i, buf, dz, r, k0, k1, width):
    k, v = _listed_python(buf, src, i, k0, k1)
    dW[k] += v[:, None] * dz[r]
