"""The first layer from byte codes over their non-zero codes only: forward, backward, evaluation.

81% of MNIST's pixels are 0. A row's product with W needs only its non-zero pixels, a fifth of
the GEMM's work: for each non-zero code c at pixel k, ``z[r] += (c / scale) * W[k]``, and in the
backward pass ``dW[k] += (c / scale) * dz[r]``. Three things make that faster than the GEMM on
the gathered rows (the step's first layer forward 27.2 us against 94.4 for the gather and GEMM
from float32 rows, the loop 0.655x the GEMM + gather floor, evaluation 2.02x the speed of its
GEMMs alone: bench/results/2026-12-06-*, docs/performance.md):

* The non-zero codes are found 64 at a time in the rows themselves (a narrow row makes no list
  of them): one vector compare makes their non-zero bytes one bit each, and the loop visits
  exactly those bits (LLVM's ``cttz``); a part's last codes go a word of eight at a time
  (``NONZERO``). Testing the bytes one by one mispredicted a branch at every stroke's edge (1.2x
  the time, timed ad hoc), and words of eight at each word with a stroke in it (39 of 98 in an
  MNIST row, against 9 of 12 compares: the first layer's evaluation 0.78x the words' time,
  interleaved ad hoc; bench/results/2026-12-06-evaluation-chunks).
* A row's sums stay in registers, as vectors of powers of two lanes (``chunks``: 32 + 16 + 2 for
  50 columns; LLVM splits a vector of 50 into single lanes past 32). Numba has no fixed-size local
  arrays: a sum kept in an array went to memory and back at every pixel (no faster than the GEMM),
  and one scalar per column, generated Python, took Numba 1.0 s to compile. So the inner loops
  are LLVM IR written here (``_forward``, ``_backward``; the word scan in ``nonzero_ir``), up to
  ``MAX_WIDTH`` columns. A wider layer's row (784-1000, say) lists its non-zero codes once and
  makes its sums a tile of columns at a time from the list (``nonzero_wide``, through the same
  two intrinsics).
* The parts split the features by whole words, as ``first_layer`` splits the dense layer: thread
  p reads its words of each row and owns those rows of W and dW; the forward's partial sums are
  added after the join, as the dense layer's are.

``body`` is ``first_layer.split_layer``'s body (called by address) for byte-coded layers, in
place of the dense ``split_body``; it gathers no rows, so the buffer that would hold them holds
the table of ``code / scale`` (``table``), made once, and a wide layer's lists (``room``). Sums
run in another order than the GEMM's, so results agree with NumPy's to rounding, as the GEMM's
do. Where W or dz hold inf or
NaN, a zero code contributes nothing here where the GEMM's 0 * inf is NaN.
"""

from __future__ import annotations

import functools

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..contract import ACT_CODES
from . import nonzero_wide, variants
from .gather import _prefetch_row as prefetch_row
from .loops import jit_body
from .nonzero_ir import LIST_SLOTS, TABLE, chunks, scan, splat, typed, unpacked, vector_at
from .step import made
from .vmath import clamp

MAX_WIDTH = 64          # columns a row's sums can keep in registers (AVX-512 has 32 of 16 floats)


@intrinsic
def _forward(typingctx, z, r, src, i, table, W, k0, k1, width):
    """z[r] = the sum over the non-zero codes c = src[i, k], k0 <= k < k1, of table[c] * W[k]
    (table: the layer's buffer, code -> value in its first TABLE slots). Trusted (the body
    checks): W (K, width), z's rows width long, k0 a multiple of 8, k1 <= K."""
    if isinstance(width, types.IntegerLiteral) and width.literal_value > MAX_WIDTH:
        return nonzero_wide.forward(typingctx, z, r, src, i, table, W, k0, k1, width)
    if not typed((z, src, table, W), (r, i, k0, k1), width, range(1, MAX_WIDTH + 1), 1):
        return None
    n = width.literal_value

    def codegen(context, builder, sig, args):
        (za, sa, ta, wa), (r_, i_, k0_, k1_), elt, align = unpacked(context, builder, sig, args, (0, 2, 4, 5),
                                                                     (1, 3, 6, 7))
        accs = []
        for start, count in chunks(n):
            acc = cgutils.alloca_once(builder, llvm_ir.VectorType(elt, count))
            builder.store(llvm_ir.Constant(acc.type.pointee, None), acc)          # zeros
            accs.append((start, acc))

        def add_row(k, code):
            v = builder.load(builder.gep(ta.data, [code]))
            for start, acc in accs:
                vec = acc.type.pointee
                w = builder.load(vector_at(builder, wa.data, k, start, n, vec), align=align)
                builder.store(builder.fadd(builder.load(acc), builder.fmul(splat(builder, v, vec), w)), acc)
        row = builder.gep(sa.data, [builder.mul(i_, builder.extract_value(sa.shape, 1))])
        scan(builder, row, k0_, k1_, add_row)
        for start, acc in accs:
            builder.store(builder.load(acc), vector_at(builder, za.data, r_, start, n, acc.type.pointee), align=align)
        return context.get_dummy_value()
    return types.none(z, r, src, i, table, W, k0, k1, width), codegen


@intrinsic
def _backward(typingctx, dW, src, i, table, dz, r, k0, k1, width):
    """dW[k] += table[c] * dz[r] for the non-zero codes c = src[i, k], k0 <= k < k1. Trusted (the
    body checks): dW (K, width), dz's rows width long, k0 a multiple of 8, k1 <= K."""
    if isinstance(width, types.IntegerLiteral) and width.literal_value > MAX_WIDTH:
        return nonzero_wide.backward(typingctx, dW, src, i, table, dz, r, k0, k1, width)
    if not typed((dW, src, table, dz), (i, r, k0, k1), width, range(1, MAX_WIDTH + 1), 1):
        return None
    n = width.literal_value

    def codegen(context, builder, sig, args):
        (wa, sa, ta, da), (i_, r_, k0_, k1_), elt, align = unpacked(context, builder, sig, args, (0, 1, 3, 4),
                                                                     (2, 5, 6, 7))
        dz_row = [(start, builder.load(vector_at(builder, da.data, r_, start, n, llvm_ir.VectorType(elt, count)),
                                       align=align)) for start, count in chunks(n)]

        def add_to_row(k, code):
            v = builder.load(builder.gep(ta.data, [code]))
            for start, d in dz_row:
                at = vector_at(builder, wa.data, k, start, n, d.type)
                builder.store(builder.fadd(builder.load(at, align=align), builder.fmul(splat(builder, v, d.type), d)),
                              at, align=align)
        row = builder.gep(sa.data, [builder.mul(i_, builder.extract_value(sa.shape, 1))])
        scan(builder, row, k0_, k1_, add_to_row)
        return context.get_dummy_value()
    return types.none(dW, src, i, table, dz, r, k0, k1, width), codegen


def _forward_python(z, r, src, i, table, W, k0, k1, width):
    if width > MAX_WIDTH:
        return nonzero_wide.forward_python(z, r, src, i, table, W, k0, k1, width)
    k = k0 + np.flatnonzero(src[i, k0:k1])
    z[r] = (table[src[i, k]][:, None] * W[k]).sum(axis=0) if k.size else 0


def _backward_python(dW, src, i, table, dz, r, k0, k1, width):
    if width > MAX_WIDTH:
        return nonzero_wide.backward_python(dW, src, i, table, dz, r, k0, k1, width)
    k = k0 + np.flatnonzero(src[i, k0:k1])
    dW[k] += table[src[i, k]][:, None] * dz[r]


forward_row, backward_row = ((_forward_python, _backward_python) if numba.config.DISABLE_JIT
                             else (_forward, _backward))


def table(scale, dtype) -> np.ndarray:
    """``code / scale`` for the 256 codes, divided as ``decode_bytes_`` divides."""
    return np.divide(np.arange(TABLE, dtype=np.uint8), scale, dtype=dtype)


def room(K: int, width: int) -> int:
    """Slots the layer's buffer needs on this path for K features and ``width`` columns: the
    table, and past ``MAX_WIDTH`` the rows' lists."""
    return TABLE + (LIST_SLOTS * K if width > MAX_WIDTH else 0)


def word_cuts(K: int, parts: int) -> np.ndarray:
    """Bounds of ``parts`` slices of range(K) of whole words of 8 (the last ends at K)."""
    words = -(-K // 8)
    return np.minimum(np.array([8 * (words * p // parts) for p in range(parts + 1)], dtype=np.int64), K)


@functools.cache
def body(act: int, width: int):
    """``split_layer``'s body for activation code ``act`` and layer width ``width``: its rows'
    sums in registers up to ``MAX_WIDTH`` columns, from a list of their codes past it
    (``nonzero_wide``)."""
    if width < 1:
        raise ValueError(f"nonzero_layer.body: width {width}; a layer has at least one column")
    bias_act = variants.BIAS_ACTS[act]
    listed = LIST_SLOTS if width > MAX_WIDTH else 0    # Xbuf's slots per feature past the table

    def nonzero_body(args):
        """Forward: features [cut[p], cut[p+1]) of the batch's rows into z (part 0) or Zbuf (the
        others). Backward: dW[cut[p]:cut[p+1]] = X_p.T @ dz. p = -1, after the forward's parts:
        z += the other parts' partials, then the activation. 1 where the part does not fit."""
        p, backward, z, Xbuf, Zbuf, src, idx, scale, ahead, cut, W, b, dW, dz = args
        n, N = z.shape
        parts = cut.shape[0] - 1
        K = src.shape[1]
        if (W.shape[0] != K or W.shape[1] != width or N != width or b.shape[0] != width or dW.shape != W.shape
                or dz.shape != z.shape or idx.shape[0] != n or src.shape[0] == 0 or (parts - 1) * n * N > Zbuf.shape[0]):
            return 1
        if p < 0:
            for q in range(1, parts):
                part = Zbuf[(q - 1) * n * N:q * n * N].reshape((n, N))
                for r in range(n):
                    for j in range(N):
                        z[r, j] += part[r, j]
            bias_act(z, b)
            return 0
        if p >= parts:
            return 1
        k0, k1 = cut[p], cut[p + 1]
        # Xbuf[:TABLE]: code -> code / scale (this layer gathers no rows into Xbuf); a wide part's
        # list past it (its k's held in integers as wide as the floats: K < 2**31 for float32)
        if not (0 <= k0 <= k1 <= K < 2**31 and k0 % 8 == 0 and Xbuf.shape[0] >= TABLE + listed * K):
            return 1
        last = np.int64(src.shape[0] - 1)
        if backward:
            dW[k0:k1] = 0
            for r in range(n):
                backward_row(dW, src, clamp(np.int64(idx[r]), np.int64(0), last), Xbuf, dz, r, k0, k1, width)
            return 0
        out = z if p == 0 else Zbuf[(p - 1) * n * N:p * n * N].reshape((n, N))
        mine = src[:, k0:k1]            # the part's columns of each row: what it asks the caches for
        if ahead > 0:
            for r in range(ahead if ahead < n else n):
                prefetch_row(mine, clamp(np.int64(idx[r]), np.int64(0), last))
        for r in range(n):
            if ahead > 0 and r + ahead < n:     # the rows a few ahead: random rows are cache misses
                prefetch_row(mine, clamp(np.int64(idx[r + ahead]), np.int64(0), last))
            forward_row(out, r, src, clamp(np.int64(idx[r]), np.int64(0), last), Xbuf, W, k0, k1, width)
        return 0
    # a name of its own per activation and width (by_address finds a body by its symbol's name);
    # its __name__ stays, ahead.COMPILE_SECONDS knows the job by it
    nonzero_body.__qualname__ = f"nonzero_body_{next(k for k, v in ACT_CODES.items() if v == act)}_{width}"
    return made(nonzero_body, jit_body)
