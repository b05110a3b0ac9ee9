"""Random calls of every kernel, update and hook (hypothesis), most of them fitting the contract
with one or two arguments spoiled: another dtype, a row more or less, a transposed, strided,
read-only, flattened or extra-dimensional array, labels or indices out of range, a scalar that is
not a number. The backend modules are public (``fastdl.get_backend``), so each call must end as
NumPy's does (its answer) or in an error, judged as tests/test_hostile_calls.py judges: where
NumPy raises, an error; where NumPy answers, its answer or one of fastdl's own errors (not
Numba's typing error from deep inside a loop). Run under NUMBA_BOUNDSCHECK=1 by CI, where a
read outside an array raises instead of reading."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import load_or_skip
from fastdl.backends import get_backend
from fastdl.errors import FastDLError

ref = get_backend("numpy")


def calls(N, D, M, C, r, lab):
    """Each entry's arguments as the contract has them, for batch N, D inputs, M outputs, C classes."""
    pos = lambda shape: np.abs(r(shape)) + 0.5
    return {
        "affine_forward": lambda: [r((N, D)), r((D, M)), r((M,))],
        "affine_backward": lambda: [r((N, M)), r((N, D)), r((D, M)), True],
        "relu_forward": lambda: [r((N, D))],
        "relu_backward": lambda: [r((N, D)), r((N, D)) > 0],
        "sigmoid_forward": lambda: [r((N, D))],
        "sigmoid_backward": lambda: [r((N, D)), r((N, D))],
        "softmax_cross_entropy_forward": lambda: [r((N, C)), lab()],
        "softmax_cross_entropy_backward": lambda: [pos((N, C)), lab()],
        "sum_squares": lambda: [r((N, D))],
        "scale": lambda: [r((N, D)), 0.5],
        "dropout_forward": lambda: [r((N, D)), 0.3, 7],
        "batchnorm_forward": lambda: [r((N, D)), r((D,)), r((D,)), 1e-7],
        "batchnorm_inference": lambda: [r((N, D)), r((D,)), r((D,)), r((D,)), pos((D,)), 1e-7],
        "batchnorm_backward": lambda: [r((N, D)), r((N, D)), pos((D,)), r((D,))],
        "running_update": lambda: [r((D,)), r((D,)), 0.9, 0.1],
        "axpy_": lambda: [r((D, M)), 0.1, r((D, M))],
        "sgd_update": lambda: [r((D, M)), r((D, M)), 0.1],
        "momentum_update": lambda: [r((D, M)), r((D, M)), r((D, M)), 0.1, 0.9],
        "nesterov_update": lambda: [r((D, M)), r((D, M)), r((D, M)), 0.1, 0.9, 0.81, 0.19],
        "adagrad_update": lambda: [r((D, M)), r((D, M)), pos((D, M)), 0.1, 1e-7],
        "rmsprop_update": lambda: [r((D, M)), r((D, M)), pos((D, M)), 0.1, 0.99, 0.01, 1e-7],
        "adam_update": lambda: [r((D, M)), r((D, M)), r((D, M)), pos((D, M)), 0.1, 0.1, 0.001, 1e-7],
        "gather_rows_": lambda: [r((N, D)), r((N + 3, D)), np.arange(N) % (N + 3)],
        "decode_bytes_": lambda: [r((N, D)), (pos((N, D)) * 50).astype(np.uint8), r(()) * 0 + 255],
        "matmul_": lambda: [r((N, M)), r((N, D)), r((D, M))],
        "add_bias_": lambda: [r((N, M)), r((M,))],
        "bias_relu_": lambda: [r((N, M)), r((M,))],
        "bias_sigmoid_": lambda: [r((N, M)), r((M,))],
        "colsum_": lambda: [r((M,)), r((N, M))],
        "relu_grad_colsum_": lambda: [r((N, M)), r((M,)), r((N, M))],
        "sigmoid_grad_colsum_": lambda: [r((N, M)), r((M,)), pos((N, M)) % 1],
        "softmax_xent_": lambda: [r((N, C)), r((N, C)), lab()],
    }


NAMES = sorted(calls(1, 1, 1, 1, None, None))
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.uint64, np.bool_, np.complex64]
SCALARS = [np.nan, -1.0, 1e30, 0, -5, 2**40, 2**70, np.float32(0.5), np.array(0.5), np.array([0.5]), None, "x", True]


def spoil(draw, a):
    """One argument made to break the contract (or, now and then, to stay within it)."""
    if not isinstance(a, np.ndarray):
        return draw(st.sampled_from(SCALARS))
    how = draw(st.sampled_from(["dtype", "row less", "row more", "strided", "transposed", "read-only",
                                "flat", "extra dimension", "column less", "fortran", "shifted", "empty"]))
    if how == "dtype":
        return a.astype(draw(st.sampled_from(DTYPES)))
    if how == "shifted" and a.dtype.kind in "iu":                # labels or indices out of range
        return a.astype(np.int64) + draw(st.integers(-4, 20))
    if a.ndim == 0:
        return a
    if how == "row less":
        return a[:-1]
    if how == "row more":
        return np.concatenate([a, a[:1]])
    if how == "flat":
        return a.reshape(-1)
    if how == "extra dimension":
        return a[None]
    if how == "read-only":
        a = a.copy()
        a.flags.writeable = False
        return a
    if how == "empty":
        return a[..., :0]
    if a.ndim < 2:
        return a
    if how == "strided":
        return np.repeat(a, 2, axis=1)[:, ::2]
    if how == "transposed":
        return a.T
    if how == "column less":
        return a[:, :-1]
    return np.asfortranarray(a)


@st.composite
def hostile_calls(draw):
    name = draw(st.sampled_from(NAMES))
    N, D, M = (draw(st.integers(0, 5)) for _ in range(3))
    C = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    args = calls(N, D, M, C, lambda shape: rng.standard_normal(shape).astype(dtype), lambda: np.arange(N) % C)[name]()
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(args) - 1))
        args[i] = spoil(draw, args[i])
    return name, args


def outcome(bk, name, args):
    """("returned", results and every array argument after the call) or ("raised", the error)."""
    args = [bk.asarray(a) if isinstance(a, np.ndarray) and a.dtype.kind in "fiub" and a.ndim else a
            for a in (a.copy() if isinstance(a, np.ndarray) else a for a in args)] if bk is not ref else \
        [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = getattr(bk, name)(*args)
    except Exception as exc:                # noqa: BLE001 - judged below
        return "raised", exc
    outs = out if isinstance(out, tuple) else (out,)
    host = lambda v: bk.to_numpy(v) if hasattr(v, "shape") and bk is not ref else v
    return "returned", [host(o) for o in outs] + [host(a) for a in args if hasattr(a, "shape")]


def same(a, b) -> bool:
    if a is None or b is None or not hasattr(a, "shape"):
        return a is b or a == b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if "c" in a.dtype.kind + b.dtype.kind:
        return np.allclose(a, b, rtol=1e-3, atol=1e-4, equal_nan=True)
    if "f" in a.dtype.kind + b.dtype.kind:
        return np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-3, atol=1e-4, equal_nan=True)
    return np.array_equal(a, b)


def labels_outside(name, args) -> bool:
    """A label call whose integer labels fall outside the classes (NumPy wraps negative ones)."""
    if not name.startswith("softmax"):
        return False
    t, classes = args[-1], args[-2].shape[-1] if getattr(args[-2], "ndim", 0) else 0
    return t.ndim == 1 and t.dtype.kind in "iu" and bool(((t < 0) | (t >= classes)).any())


def judge(bk, name, args):
    want, got = outcome(ref, name, args), outcome(bk, name, args)
    what = f"{name}({', '.join(f'{a.dtype}{list(a.shape)}' if isinstance(a, np.ndarray) else repr(a) for a in args)})"
    if bk.name == "cupy" and got[0] == "returned" and labels_outside(name, args):
        # a CUDA kernel cannot raise: a row whose label is outside the classes gets NaN (as in
        # test_hostile_calls; a trainer stops there with DivergenceError)
        values = [np.asarray(v, dtype=np.float64) for v in got[1][:2]]
        assert any(np.isnan(v).any() for v in values) or all(v.size == 0 for v in values), f"{what}: no NaN"
        return
    if got[0] == "raised":
        assert want[0] == "raised" or isinstance(got[1], FastDLError), \
            f"{what}: NumPy answers; {bk.name} raised {type(got[1]).__name__}: {str(got[1])[:300]}"
    else:
        assert want[0] == "returned", f"{what}: NumPy raises {type(want[1]).__name__} ({want[1]}); {bk.name} answered"
        assert len(got[1]) == len(want[1]) and all(same(g, w) for g, w in zip(got[1], want[1])), \
            f"{what}: {bk.name} answered otherwise than NumPy"


FUZZ = settings(max_examples=settings.default.max_examples * 5,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(call=hostile_calls())
def test_numba_ends_every_call_as_numpy_does_or_in_a_clear_error(call):
    bk = load_or_skip("numba")
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: the loops as plain Python raise on a division by zero where "
                    "compiled ones (NumPy's error model) give inf or NaN as NumPy does")
    judge(bk, *call)


@FUZZ
@given(call=hostile_calls())
def test_the_emulated_gpu_ends_every_call_as_numpy_does_or_in_a_clear_error(emu, call):
    judge(emu, *call)
