"""Calls through a backend module that break the contract's promises: arrays that do not fit
together, labels and indices out of range, other dtypes and layouts. The backend modules are
public (``fastdl.get_backend``), and numba's loops and the CUDA kernels check no bounds per
element, so each such call must end in an exception or in NumPy's own answer, never in a read or
write outside an array. ``test_hostile_calls.py`` runs these in a child process per backend and
judges them against NumPy's.

Run as ``python hostile.py BACKEND OUT``: writes OUT/<n>.npz (case n's results) or an
exception line per case to stdout, announcing each case before it runs (a crash names it).
"""

from __future__ import annotations

import sys

import numpy as np

f32, f64 = np.float32, np.float64
RNG = np.random.default_rng(7)


def r(*shape, dtype=f32):
    return RNG.standard_normal(shape).astype(dtype)


class Strided:
    """An argument that reaches the backend as a non-contiguous view (every other column)."""
    def __init__(self, a):
        self.a = a


def z34():
    return r(3, 4)


# The fused step's builders, given a bad batch after a good construction.

def input_layer(bk, W, b, dW, x, idx, y):
    bk.InputLayer(bk, W, b, dW, x, 4, "relu").forward(idx, y)


def input_layer_backward(bk, W, b, dW, x, idx, y, dz):
    layer = bk.InputLayer(bk, W, b, dW, x, 4, "relu")
    layer.forward(idx, y)
    layer.backward(dz)


def output_layer(bk, W, b, dW, db, dh, db_h, h, t):
    return bk.OutputLayer(bk, W, b, dW, db, 2, "relu").forward_backward(dh, db_h, h, t)


def make_update(bk, p, g):
    from fastdl.optimizers import SGD
    bk.make_update(bk, SGD(lr=0.1), {"W": p}, {"W": g})()


# (case, the backend function's name, its arguments, the indices of the arguments it writes)
CASES = [
    ("add_bias_ short b", "add_bias_", lambda: (z34(), r(2)), (0,)),
    ("add_bias_ long b", "add_bias_", lambda: (z34(), r(9)), (0,)),
    ("bias_relu_ short b", "bias_relu_", lambda: (z34(), r(2)), (0,)),
    ("bias_sigmoid_ long b", "bias_sigmoid_", lambda: (z34(), r(9)), (0,)),
    ("add_bias_ float64 b", "add_bias_", lambda: (z34(), r(4, dtype=f64)), (0,)),
    # float64 first: a dtype equals None where it is float64, which once let the check pass the rest
    ("add_bias_ float64 z, float32 b", "add_bias_", lambda: (r(3, 4, dtype=f64), r(4)), (0,)),
    ("affine_forward float64 x, float32 W and b", "affine_forward", lambda: (r(3, 4, dtype=f64), r(4, 2), r(2)), ()),
    ("gather_rows_ float64 out, float32 src", "gather_rows_",
     lambda: (r(2, 4, dtype=f64), r(5, 4), np.array([0, 3])), (0,)),
    ("bias_relu_ strided z", "bias_relu_", lambda: (Strided(r(3, 8)), r(4)), (0,)),
    ("colsum_ short out", "colsum_", lambda: (r(2), z34()), (0,)),
    ("colsum_ long out", "colsum_", lambda: (r(9), z34()), (0,)),
    ("relu_grad_colsum_ short db", "relu_grad_colsum_", lambda: (z34(), r(2), z34()), (0, 1)),
    ("relu_grad_colsum_ short h", "relu_grad_colsum_", lambda: (z34(), r(4), r(2, 4)), (0, 1)),
    ("sigmoid_grad_colsum_ short y", "sigmoid_grad_colsum_", lambda: (z34(), r(4), r(2, 4)), (0, 1)),
    ("softmax_xent_ label too large", "softmax_xent_", lambda: (z34(), z34(), np.array([0, 7, 1])), (0,)),
    ("softmax_xent_ label far too large", "softmax_xent_", lambda: (z34(), z34(), np.array([0, 10**12, 1])), (0,)),
    ("softmax_xent_ negative label", "softmax_xent_", lambda: (z34(), z34(), np.array([0, -1, 1])), (0,)),
    ("softmax_xent_ short t", "softmax_xent_", lambda: (z34(), z34(), np.array([0, 1])), (0,)),
    ("softmax_xent_ short dz", "softmax_xent_", lambda: (r(2, 4), z34(), np.array([0, 1, 2])), (0,)),
    ("gather_rows_ index too large", "gather_rows_", lambda: (r(3, 4), r(5, 4), np.array([0, 10**9, 2])), (0,)),
    ("gather_rows_ negative index", "gather_rows_", lambda: (r(3, 4), r(5, 4), np.array([-7, 1, 2])), (0,)),
    ("gather_rows_ bytes, index too large", "gather_rows_",
     lambda: (np.zeros((2, 4), np.uint8), RNG.integers(0, 255, (5, 4)).astype(np.uint8), np.array([4, 99])), (0,)),
    ("gather_rows_ labels, index too large", "gather_rows_", lambda: (np.zeros(2, np.int64), np.arange(5), np.array([1, 50])), (0,)),
    # uint64 indices: NumPy's take refuses them before NumPy 2 and wraps those past int64 since
    ("gather_rows_ uint64 index past int64", "gather_rows_",
     lambda: (r(3, 4), r(5, 4), np.array([0, 2**63 + 3, 2], dtype=np.uint64)), (0,)),
    ("gather_rows_ float indices", "gather_rows_", lambda: (r(3, 4), r(5, 4), np.array([0.0, 1.0, 2.0])), (0,)),
    ("softmax_xent_ float labels", "softmax_xent_", lambda: (z34(), z34(), np.array([0.0, 1.0, 2.0])), (0,)),
    ("softmax_xent_ uint64 labels", "softmax_xent_", lambda: (z34(), z34(), np.array([0, 3, 1], dtype=np.uint64)), (0,)),
    ("gather_rows_ out too short", "gather_rows_", lambda: (r(2, 4), r(5, 4), np.array([0, 1, 2])), (0,)),
    ("gather_rows_ out too narrow", "gather_rows_", lambda: (r(3, 2), r(5, 4), np.array([0, 1, 2])), (0,)),
    ("gather_rows_ empty source", "gather_rows_", lambda: (r(3, 4), r(0, 4), np.array([0, 1, 2])), (0,)),
    ("decode_bytes_ short codes", "decode_bytes_", lambda: (r(3, 4), np.zeros((2, 4), np.uint8), 255.0), (0,)),
    ("matmul_ inner dimensions differ", "matmul_", lambda: (r(3, 2), r(3, 5), r(4, 2)), (0,)),
    ("matmul_ out of the wrong shape", "matmul_", lambda: (r(2, 2), r(3, 5), r(5, 2)), (0,)),
    ("affine_forward short b", "affine_forward", lambda: (r(3, 5), r(5, 2), r(1)), ()),
    ("affine_forward W of other rows", "affine_forward", lambda: (r(3, 5), r(4, 2), r(2)), ()),
    ("affine_backward x of other rows", "affine_backward", lambda: (r(2, 2), r(3, 5), r(5, 2)), ()),
    ("relu_backward short mask", "relu_backward", lambda: (z34(), np.ones((2, 4), bool)), ()),
    ("sigmoid_backward short y", "sigmoid_backward", lambda: (z34(), r(2, 4)), ()),
    ("softmax_cross_entropy_forward label too large", "softmax_cross_entropy_forward",
     lambda: (z34(), np.array([0, 9, 1])), ()),
    ("softmax_cross_entropy_forward negative label", "softmax_cross_entropy_forward",
     lambda: (z34(), np.array([0, -2, 1])), ()),
    ("softmax_cross_entropy_backward label too large", "softmax_cross_entropy_backward",
     lambda: (z34(), np.array([0, 9, 1])), ()),
    ("batchnorm_forward short gamma", "batchnorm_forward", lambda: (z34(), r(2), r(4), 1e-5), ()),
    ("batchnorm_inference short var", "batchnorm_inference", lambda: (z34(), r(4), r(4), r(4), r(2), 1e-5), ()),
    ("batchnorm_backward short std", "batchnorm_backward", lambda: (z34(), z34(), r(2), r(4)), ()),
    ("sgd_update short g", "sgd_update", lambda: (r(10), r(3), 0.1), (0,)),
    ("sgd_update long g", "sgd_update", lambda: (r(3), r(10), 0.1), (0,)),
    ("sgd_update float64 g", "sgd_update", lambda: (r(10), r(10, dtype=f64), 0.1), (0,)),
    ("sgd_update float64 p, float32 g", "sgd_update", lambda: (r(10, dtype=f64), r(10), 0.1), (0,)),
    ("momentum_update short v", "momentum_update", lambda: (r(10), r(10), r(3), 0.1, 0.9), (0, 2)),
    ("nesterov_update short v", "nesterov_update", lambda: (r(10), r(10), r(3), 0.1, 0.9, 0.81, 0.19), (0, 2)),
    ("adagrad_update short h", "adagrad_update", lambda: (r(10), r(10), r(3), 0.1, 1e-7), (0, 2)),
    ("rmsprop_update short h", "rmsprop_update", lambda: (r(10), r(10), r(3), 0.1, 0.99, 0.01, 1e-7), (0, 2)),
    ("adam_update short m", "adam_update", lambda: (r(10), r(10), r(3), r(10), 0.1, 0.1, 0.001, 1e-7), (0, 2, 3)),
    ("adam_update strided p", "adam_update",
     lambda: (Strided(r(3, 8)), r(3, 4), r(3, 4), r(3, 4), 0.1, 0.1, 0.001, 1e-7), (0, 2, 3)),
    ("running_update short x", "running_update", lambda: (r(10), r(3), 0.9, 0.1), (0,)),
    ("axpy_ short x", "axpy_", lambda: (r(10), 0.5, r(3)), (0,)),
    ("InputLayer index too large", input_layer,
     lambda: (r(6, 3), r(3), r(6, 3), r(10, 6), np.array([0, 10**9, 3, 2]), r(4, 3)), (5,)),
    ("InputLayer more rows than its batch", input_layer,
     lambda: (r(6, 3), r(3), r(6, 3), r(10, 6), np.arange(6), r(6, 3)), (5,)),
    # numba's layer calls its compiled body by address: arguments not of its exact types are copied
    ("InputLayer strided y", input_layer,
     lambda: (r(6, 3), r(3), r(6, 3), r(10, 6), np.arange(4), Strided(r(4, 6))), (5,)),
    ("InputLayer float64 y", input_layer,
     lambda: (r(6, 3), r(3), r(6, 3), r(10, 6), np.arange(4), r(4, 3, dtype=f64)), (5,)),
    ("InputLayer float idx", input_layer,
     lambda: (r(6, 3), r(3), r(6, 3), r(10, 6), np.array([0.0, 1.0, 2.0, 3.0]), r(4, 3)), (5,)),
    ("InputLayer uint64 idx past int64", input_layer,
     lambda: (r(6, 3), r(3), r(6, 3), r(10, 6), np.array([0, 2**63 + 5, 3, 2], dtype=np.uint64), r(4, 3)), (5,)),
    ("InputLayer strided dz", input_layer_backward,
     lambda: (r(6, 3), r(3), r(6, 3), r(10, 6), np.arange(4), r(4, 3), Strided(r(4, 6))), (2,)),
    ("OutputLayer label too large", output_layer,
     lambda: (r(3, 4), r(4), r(3, 4), r(4), r(2, 3), r(3), r(2, 3), np.array([0, 99])), ()),
    ("OutputLayer float labels", output_layer,
     lambda: (r(3, 4), r(4), r(3, 4), r(4), r(2, 3), r(3), r(2, 3), np.array([0.0, 1.0])), ()),
    ("make_update short gradient", make_update, lambda: (r(4, 3), r(2, 3)), (0,)),
]


def _on(bk, a):
    if isinstance(a, Strided):
        return bk.asarray(a.a)[:, ::2]
    return bk.asarray(a) if isinstance(a, np.ndarray) else a


def main(backend: str, out: str) -> None:
    if backend == "cupy-emulated":
        import fake_cupy
        with fake_cupy.emulated_backend() as bk:
            run(bk, out)
    else:
        import fastdl
        run(fastdl.get_backend(backend), out)


def run(bk, out: str) -> None:
    global RNG
    for n, (case, fn, make, writes) in enumerate(CASES):
        print("start", case, flush=True)
        RNG = np.random.default_rng(n)          # the same arrays in every backend's process
        args = [_on(bk, a) for a in make()]
        try:
            result = getattr(bk, fn)(*args) if isinstance(fn, str) else fn(bk, *args)
        except Exception as exc:  # noqa: BLE001 - the outcome is the point
            print("raised", case, "|", type(exc).__module__, type(exc).__name__, "|", str(exc).replace("\n", " ")[:300],
                  flush=True)
            continue
        values = result if isinstance(result, tuple) else () if result is None else (result,)
        arrays = {f"r{i}": bk.to_numpy(bk.xp.asarray(v)) for i, v in enumerate(values) if v is not None}
        arrays.update({f"w{i}": bk.to_numpy(args[i]) for i in writes})
        np.savez(f"{out}/{n}.npz", **arrays)
        print("returned", case, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
