"""vmath, the numba backend's vectorisable exp and max: exp against a more precise reference over
its whole range (ulps, subnormals, overflow, specials), maxnum against np.fmax, and the softmax
built on them against NumPy's where rows hold NaN or infinities."""

import numpy as np
import pytest

from conftest import load_or_skip

# the reference: exp in long double where that is wider than float64 (x86, aarch64 Linux)
WIDE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant
# the bounds in ulps (results in the normal range); where the reference is itself a float64 exp,
# its own rounding adds up to one
ULPS = {np.float32: 1.0, np.float64: 2.0 if WIDE else 3.0}
RANGE = {np.float32: (-110.0, 95.0), np.float64: (-760.0, 720.0)}    # zero to inf, and past both


@pytest.fixture(scope="module")
def vm():
    load_or_skip("numba")
    import numba
    from numba import njit

    from fastdl.backends.numba import vmath

    @njit(error_model="numpy")                 # as the backend's loops compile
    def exp_all(out, x):
        for i in range(x.size):
            out[i] = vmath.exp(x[i])

    @njit(error_model="numpy")
    def maxnum_all(out, a, b):
        for i in range(a.size):
            out[i] = vmath.maxnum(a[i], b[i])
    points = 4_001 if numba.config.DISABLE_JIT else 2_000_001     # Python runs the same arithmetic
    return exp_all, maxnum_all, points


def _exp(vm, x):
    out = np.empty_like(x)
    with np.errstate(over="ignore"):      # Python's scalars warn on the way to inf (NUMBA_DISABLE_JIT)
        vm[0](out, x)
    return out


def test_exp_within_its_ulps(vm, dtype):
    lo, hi = RANGE[dtype]
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(lo, hi, vm[2]), rng.uniform(-5, 5, vm[2] // 2)]).astype(dtype)
    y = _exp(vm, x)
    ref = np.exp(x.astype(np.longdouble))
    fi = np.finfo(dtype)
    normal = (ref >= fi.tiny) & (ref <= fi.max)
    ulps = np.abs(y[normal].astype(np.longdouble) - ref[normal]) / np.spacing(ref[normal].astype(dtype))
    assert ulps.max() <= ULPS[dtype], f"{ulps.max():.2f} ulps at x = {x[normal][ulps.argmax()]}"
    tiny = ref < fi.tiny                                    # subnormal results, and those that round to 0
    smallest = np.nextafter(dtype(0), dtype(1))
    assert np.all(np.abs(y[tiny].astype(np.longdouble) - ref[tiny]) <= smallest)
    assert np.all(np.isinf(y[ref > fi.max]))                # overflow, as np.exp's


def test_exp_specials(vm, dtype):
    """Exactly np.exp's: inf, 0 and NaN at the ends, exactly 1 at 0 and next to it."""
    x = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 1e-30, -1e-30, np.finfo(dtype).max,
                  -np.finfo(dtype).max, np.finfo(dtype).smallest_subnormal], dtype)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(_exp(vm, x), np.exp(x))


def test_exp_is_monotonic_across_the_range_reduction(vm, dtype):
    """Where x crosses a multiple of ln2/2 (n changes), the result must not step backwards."""
    n = np.arange(-40, 41)
    centre = (n + 0.5) * np.log(2.0)
    x = np.sort(np.concatenate([np.nextafter(centre.astype(dtype), dtype(-np.inf)), centre.astype(dtype),
                                np.nextafter(centre.astype(dtype), dtype(np.inf))]))
    assert np.all(np.diff(_exp(vm, x)) >= 0)


def test_maxnum_is_fmax(vm, dtype):
    vals = np.array([1.0, -2.0, 0.0, -0.0, np.inf, -np.inf, np.nan, 3.5], dtype)
    a, b = np.repeat(vals, len(vals)), np.tile(vals, len(vals))
    out = np.empty_like(a)
    vm[1](out, a, b)
    expected = np.fmax(a, b)
    same = (out == expected) | (np.isnan(out) & np.isnan(expected))
    assert same.all(), list(zip(a[~same], b[~same], out[~same]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_softmax_rows_with_nan_or_infinities(dtype, bad, ref):
    """The numba softmax's max skips NaN (maxnum); its outputs must still be NumPy's: NaN rows
    where NumPy's are NaN, and -inf logits a probability of 0."""
    bk = load_or_skip("numba")
    z = np.random.default_rng(1).standard_normal((4, 37)).astype(dtype)
    z[1, 5] = bad
    z[3, :] = bad
    t = np.array([0, 1, 2, 3])
    with np.errstate(all="ignore"):
        loss, probs = bk.softmax_cross_entropy_forward(z, t)
        loss_ref, probs_ref = ref.softmax_cross_entropy_forward(z, t)
    np.testing.assert_array_equal(np.isnan(probs), np.isnan(probs_ref))
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-5, equal_nan=True)
    assert np.isnan(loss) == np.isnan(loss_ref)


@pytest.mark.parametrize("kind", ["float32", "float64", "int64", "int32"])
def test_clamp_is_min_of_max(vm, kind):
    """vmath.clamp emits the compares and selects of Numba's min(max(x, lo), hi) itself: the same
    results for every float (NaN, infinities, signed zeros) and signed integer, bounds included."""
    from numba import njit

    from fastdl.backends.numba import vmath

    @njit
    def clamp_all(out, x, lo, hi):
        for i in range(x.size):
            out[i] = vmath.clamp(x[i], lo, hi)

    @njit
    def min_max_all(out, x, lo, hi):
        for i in range(x.size):
            out[i] = min(max(x[i], lo), hi)
    dt = np.dtype(kind)
    rng = np.random.default_rng(1)
    if dt.kind == "f":
        x = np.concatenate([rng.normal(0, 200, 1000), [np.nan, np.inf, -np.inf, 0.0, -0.0, -104, 89]]).astype(dt)
        bounds = [(dt.type(-104), dt.type(89)), (dt.type(-0.0), dt.type(0.0)), (dt.type(5), dt.type(5))]
    else:
        info = np.iinfo(dt)
        x = np.concatenate([rng.integers(-1000, 1000, 1000), [info.min, info.max, 0, -1, 9]]).astype(dt)
        bounds = [(dt.type(0), dt.type(9)), (dt.type(-3), dt.type(-3)), (dt.type(info.min), dt.type(info.max))]
    for lo, hi in bounds:
        got, want = np.empty_like(x), np.empty_like(x)
        clamp_all(got, x, lo, hi)
        min_max_all(want, x, lo, hi)
        assert np.array_equal(got.view(f"u{dt.itemsize}"), want.view(f"u{dt.itemsize}")), (lo, hi)
