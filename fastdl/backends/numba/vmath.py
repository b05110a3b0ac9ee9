"""exp(x), max(a, b) and clamp(x, lo, hi) that LLVM can vectorise, for the numba backend's loops.

Numba compiles ``np.exp`` on a scalar to a call of the C library's ``exp``/``expf``, one element
at a time, while NumPy's own ``exp`` runs SIMD code: softmax over 1000 columns took numba 2.3x
NumPy's time (``bench/results/2026-12-04-cpu-kernels-3``). This is the classic Cephes method in
plain arithmetic, which the loop vectoriser turns into SIMD code: x = n ln2 + r with |r| <= ln2/2
(ln2 in two parts, so r is exact), e^r by a polynomial (float32) or a rational function (float64),
then times 2^n built from its bits. 2^n is applied as two factors, so results down to the
subnormals and up to overflow come out as ``np.exp``'s do; the inputs are clamped first, so the
exponent bits are always in range (no bounds to check), and NaN (computed as 0) gives NaN. Accuracy
(``tests/test_numba_vmath.py``, over the whole range): within 1 ulp in float32 and 2 in float64.

``maxnum(a, b)`` is LLVM's ``maxnum``: the larger, or the other one where one is NaN. Python's
``max`` in a loop compiles to compares and branches that LLVM does not vectorise (a row's max took
4x NumPy's time, timed ad hoc); ``maxnum`` does vectorise. Where a softmax row holds a NaN, its
max skips it but the row's exp, sum and so every output are NaN all the same, as NumPy's are.

Under ``NUMBA_DISABLE_JIT`` the same arithmetic runs in Python, the bit patterns made by NumPy.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

f4, f8 = np.float32, np.float64


if numba.config.DISABLE_JIT:
    def _f32_bits(i):
        return np.array(i, dtype=np.int32).view(np.float32)[()]

    def _f64_bits(i):
        return np.array(i, dtype=np.int64).view(np.float64)[()]

    maxnum = np.fmax

    def clamp(x, lo, hi):
        return min(max(x, lo), hi)
else:
    def _from_bits(width: int, float_type, llvm_type):
        @intrinsic
        def from_bits(typingctx, bits):
            """The float whose bit pattern is the low ``width`` bits of the integer ``bits``."""
            if not (isinstance(bits, types.Integer) and bits.bitwidth >= width):
                return None

            def codegen(context, builder, sig, args):
                v = args[0] if bits.bitwidth == width else builder.trunc(args[0], ir.IntType(width))
                return builder.bitcast(v, llvm_type)
            return float_type(bits), codegen
        return from_bits

    _f32_bits = _from_bits(32, types.float32, ir.FloatType())
    _f64_bits = _from_bits(64, types.float64, ir.DoubleType())

    @intrinsic
    def maxnum(typingctx, a, b):
        """The larger of two floats of one type; the other one where one is NaN."""
        if not (isinstance(a, types.Float) and a == b):
            return None

        def codegen(context, builder, sig, args):
            t = context.get_value_type(a)
            return builder.call(builder.module.declare_intrinsic("llvm.maxnum", [t], ir.FunctionType(t, [t, t])), args)
        return a(a, b), codegen

    @intrinsic
    def clamp(typingctx, x, lo, hi):
        """min(max(x, lo), hi) for x, lo, hi of one float or signed integer type, in the compares
        and selects Numba's ``min`` and ``max`` make (a NaN x stays NaN), without compiling those
        two into functions of their own as Numba does (per type, ~20 ms of a first run each).
        Written as Python conditionals instead, the same clamp made exp's loops 3-10% slower."""
        if not (x == lo == hi and (isinstance(x, types.Float) or (isinstance(x, types.Integer) and x.signed))):
            return None

        def codegen(context, builder, sig, args):
            v, a, b = args
            gt = (lambda p, q: builder.fcmp_ordered(">", p, q)) if isinstance(x, types.Float) else \
                (lambda p, q: builder.icmp_signed(">", p, q))
            v = builder.select(gt(a, v), a, v)              # max(v, a): a where a > v
            return builder.select(gt(v, b), b, v)           # min(v, b): b where b < v
        return x(x, lo, hi), codegen


def exp32(x):
    v = clamp(x, f4(-104.0), f4(89.0)) if x == x else f4(0.0)       # e^-104 is 0 in float32, e^89 inf
    n = np.floor(v * f4(1.44269504088896341) + f4(0.5))
    r = v - n * f4(0.693359375) - n * f4(-2.12194440e-4)
    p = f4(1.9875691500e-4)
    p = p * r + f4(1.3981999507e-3)
    p = p * r + f4(8.3334519073e-3)
    p = p * r + f4(4.1665795894e-2)
    p = p * r + f4(1.6666665459e-1)
    p = p * r + f4(5.0000001201e-1)
    p = p * (r * r) + r + f4(1.0)
    k = np.int64(n)                                 # in [-150, 128]: both halves are normal scales
    h = k >> 1
    y = p * _f32_bits((h + 127) << 23) * _f32_bits((k - h + 127) << 23)
    return y if x == x else x


def exp64(x):
    v = clamp(x, -746.0, 710.0) if x == x else 0.0                  # e^-746 is 0 in float64, e^710 inf
    n = np.floor(v * 1.4426950408889634073599 + 0.5)
    r = v - n * 6.93145751953125e-1 - n * 1.42860682030941723212e-6
    rr = r * r
    p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1)
    q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
         + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0
    e = 1.0 + 2.0 * (p / (q - p))
    k = np.int64(n)                                 # in [-1076, 1024]
    h = k >> 1
    y = e * _f64_bits((h + 1023) << 52) * _f64_bits((k - h + 1023) << 52)
    return y if x == x else x


def exp(x):
    """e^x in x's float type (float32 or float64)."""
    return exp32(x) if isinstance(x, np.float32) else exp64(f8(x))


# The implementation for x's type compiles as a function of its own where a caller first needs it
# (these bodies are it: a lambda calling a jitted exp32 compiled one function more), and LLVM
# inlines it there, so the caller's loop still vectorises; inlining it in Numba's own IR instead
# made each caller compile 3x slower (0.43 s against 0.13 s for the softmax loop, timed ad hoc).
@overload(exp, jit_options={"nogil": True, "error_model": "numpy"})
def _exp(x):
    if x == types.float32:
        return exp32
    if x == types.float64:
        return exp64
    return None
