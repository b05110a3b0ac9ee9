"""Numba backend: the kernel contract as JIT-compiled CPU loops, and a fused training step.

Layout: ``loops`` (the ``@njit`` loops, one formula each; ``updates`` the optimizers',
``chapter6`` those of Dropout, Batch Norm and weight decay), ``blas`` (``gemm``: SciPy's BLAS called from compiled code), ``vmath``
(``exp`` and ``maxnum`` that LLVM vectorises, for softmax and sigmoid), ``threads``
(Numba's threads and that BLAS's, set only inside ``train_scope()``), ``gather`` (the step's row
gather with software prefetch), ``first_layer`` and ``step`` (the fused step's builders and GEMM routing),
``by_address`` (how a parallel loop calls a body compiled apart), ``variants``
(the optimizer updates and activations the step compiles in, one per run's choice), ``cache``
(where compiled code is kept). This module binds them to the contract's names
(``fastdl/backends/contract.py``).

Choices, each measured on the book's shapes (bench/results):
* GEMMs stay in BLAS: hand-written loops, even ones that skip MNIST's zero pixels, measured
  slower at 100x784x50. Everything *between* GEMMs is one fused ``@njit`` pass.
* Parallel loops (``prange``) only where each thread gets a large piece of its own: the split
  first layer, large GEMMs and the update. At 100 x 50 an elementwise pass costs less than
  handing it out.
* ``FASTDL_NUM_THREADS`` (default: all cores) sets Numba's threads and, during training, caps
  BLAS's; compiled code is cached on disk (``FASTDL_NUMBA_CACHE=0`` turns that off).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numba
import numpy as np

from ...helpers import requested_threads
from .. import numpy as _ref
from .. import guard, numba_cache
from ..contract import COMPILE_AHEAD, FUSED_STEP
from . import cache


with cache.ours():
    from . import ahead, chapter6, first_layer, gather, loops, step, threads, updates
if loops.CACHE and not Path(cache.FOLDER).exists():
    cache.prune()           # a new version's first use: older versions' unused folders go
elif not loops.CACHE and numba_cache.cache_on():
    warnings.warn(f"Numba's cache folder {cache.FOLDER} cannot be written, so fastdl's numba "
                  f"backend compiles its kernels in every process (seconds each run); set NUMBA_CACHE_DIR to a "
                  f"writable folder", RuntimeWarning, stacklevel=2)

name = "numba"
xp = np
device = "cpu"
CAPABILITIES = frozenset({FUSED_STEP, COMPILE_AHEAD})
COMPILES = True
READS_BYTES_FASTER = True   # the first layer over the non-zero codes only (nonzero_layer)

asarray = _ref.asarray
to_numpy = _ref.to_numpy
synchronize = _ref.synchronize
is_backend_array = _ref.is_backend_array
train_scope = threads.train_scope
compile_jobs = ahead.compile_jobs
_as_indices = _ref._as_indices
_integers, _labels = step.integers, step.labels


def check_usable() -> None:
    """Numba imported (this module did); FASTDL_NUM_THREADS checked and, where it is given,
    Numba's thread count set from it (unset, a count the caller chose stays: training sets its
    own in ``train_scope()`` either way). Numba's own setting only: no BLAS is touched here."""
    if requested_threads() is not None:         # raises, saying why, for a bad value
        numba.set_num_threads(threads.configured_threads())


def describe() -> dict:
    info = _ref.describe()
    info.update(backend=name, numba=numba.__version__, threads=numba.get_num_threads(),
                disk_cache=_disk_cache_status(), compiled=compiled_status(),
                split_parts=threads.split_parts(1 << 30), threading_layer=_layer_status(),
                prefetch=f"{gather.PREFETCH_AHEAD} rows ahead" if gather.PREFETCH_AHEAD and gather.prefetch_available()
                else "off")
    return info


def _layer_status() -> str:
    """Numba's threading layer here, and what it means for the split (``threads.MIN_SPLIT_WORK``)."""
    layer = threads.threading_layer()
    floors = threads.MIN_SPLIT_WORK.get(layer)
    if floors is None:
        return layer
    return (f"{layer} (a parallel call wakes sleeping workers: layers under {floors[0]:,} multiply-adds a "
            f"pass and updates under {floors[1]:,} elements run in one thread; OpenMP or TBB split them)")


def jitted() -> list:
    """Every compiled function of the backend (the fused step's per-activation and per-optimizer
    ones as far as this process has built them)."""
    made = [f for f in step.MADE if isinstance(f, numba.core.registry.CPUDispatcher)]   # not under DISABLE_JIT
    return [v for mod in (loops, updates, chapter6, gather, step) for v in vars(mod).values()
            if isinstance(v, numba.core.registry.CPUDispatcher) and v.__module__ == mod.__name__] + made


def compiled_status() -> str:
    """How many of the JIT kernels have compiled code loaded in this process."""
    funcs = jitted()
    return f"{sum(1 for f in funcs if f.signatures)} of {len(funcs)} kernels in this process"


def _disk_cache_status() -> str:
    if not loops.CACHE:
        return ("off (FASTDL_NUMBA_CACHE=0)" if not numba_cache.cache_on() else
                f"off ({cache.FOLDER} cannot be written; set NUMBA_CACHE_DIR to a writable folder)")
    folder = Path(cache.FOLDER)
    files = len(list(folder.rglob("*.nbc"))) if folder.is_dir() else 0      # Numba nests a folder inside
    return f"{files} compiled signatures in {folder}"


# -- the contract's kernels ------------------------------------------------------------------------

def affine_forward(x, W, b):
    y = step.forward_gemm(x, W)
    loops.add_bias(y, b)
    return y


def affine_backward(dy, x, W, need_dx=True):
    dx = dy @ W.T if need_dx else None
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    loops.colsum(db, dy)
    return dx, x.T @ dy, db


def relu_forward(x):
    y = np.empty_like(x)
    mask = np.empty(x.shape, dtype=np.bool_)
    loops.relu_forward(y, mask, x)
    return y, mask


def relu_backward(dy, mask):
    dx = np.empty_like(dy)
    loops.relu_backward(dx, dy, mask)
    return dx


def sigmoid_forward(x):
    y = np.array(x, copy=True, order="C")
    loops.bias_sigmoid(y, np.zeros(x.shape[1], dtype=x.dtype))
    return y


def sigmoid_backward(dy, y):
    dx = np.empty_like(dy)
    loops.sigmoid_backward(dx, dy, y)
    return dx


def softmax_cross_entropy_forward(z, t):
    probs = np.empty_like(z)
    loss = loops.softmax_rows(probs, z, np.ascontiguousarray(_labels(_as_indices(t))), False)
    return z.dtype.type(loss), probs


def softmax_cross_entropy_backward(probs, t):
    dz = np.empty_like(probs)
    loops.softmax_grad(dz, probs, np.ascontiguousarray(_labels(_as_indices(t))))
    return dz


# -- chapter 6 -------------------------------------------------------------------------------------

scale = _ref.scale          # one multiply per element: NumPy's SIMD loop is as fast as ours


def sum_squares(a):
    return np.asarray(chapter6.sum_squares(np.ascontiguousarray(a).reshape(-1)), dtype=a.dtype)


def dropout_forward(x, ratio, key):
    rows = x if x.ndim == 2 else x.reshape(1, -1)        # any rank: the loop's flat index is C order's
    y = np.empty(rows.shape, dtype=x.dtype)
    mask = np.empty(rows.shape, dtype=np.bool_)
    chapter6.dropout(y, mask, rows, float(ratio), np.uint64(key))
    return y.reshape(x.shape), mask.reshape(x.shape)


def batchnorm_forward(x, gamma, beta, eps):
    n, m = x.shape
    y, xn = np.empty_like(x), np.empty_like(x)
    std, mean, var = (np.empty(m, dtype=x.dtype) for _ in range(3))
    chapter6.batchnorm_train(y, xn, std, mean, var, x, gamma, beta, x.dtype.type(eps))
    return y, xn, std, mean, var


def batchnorm_inference(x, gamma, beta, mean, var, eps):
    y = np.empty_like(x)
    chapter6.batchnorm_inference(y, x, gamma, beta, mean, var, x.dtype.type(eps))
    return y


def batchnorm_backward(dy, xn, std, gamma):
    dx = np.empty_like(dy)
    dgamma, dbeta = np.empty(dy.shape[1], dtype=dy.dtype), np.empty(dy.shape[1], dtype=dy.dtype)
    chapter6.batchnorm_backward(dx, dgamma, dbeta, dy, xn, std, gamma)
    return dx, dgamma, dbeta


def running_update(avg, x, momentum, one_minus_momentum):
    _update(chapter6.running, (avg, x), (momentum, one_minus_momentum))


def axpy_(y, a, x):
    _update(chapter6.axpy, (y, x), (a,))


# -- optimizer updates (in place, one pass each over flat arrays) ----------------------------------

def _update(kernel, arrays, scalars):
    """Run an update loop over flat views; arrays that are not C-contiguous (a column slice, a
    Fortran-ordered array) are updated through contiguous copies written back, so the update is
    in place on every layout, never on a silent copy."""
    dense = [np.ascontiguousarray(a) for a in arrays]
    t = arrays[0].dtype.type
    kernel(*[a.reshape(-1) for a in dense], *[t(s) for s in scalars])
    for a, d in zip(arrays, dense):
        if d is not a:
            a[...] = d


def sgd_update(p, g, lr):
    _update(updates.sgd, (p, g), (lr,))


def momentum_update(p, g, v, lr, momentum):
    _update(updates.momentum, (p, g, v), (lr, momentum))


def nesterov_update(p, g, v, lr, momentum, momentum_sq, lr_ahead):
    _update(updates.nesterov, (p, g, v), (lr, momentum, momentum_sq, lr_ahead))


def adagrad_update(p, g, h, lr, eps):
    _update(updates.adagrad, (p, g, h), (lr, eps))


def rmsprop_update(p, g, h, lr, decay, one_minus_decay, eps):
    _update(updates.rmsprop, (p, g, h), (lr, decay, one_minus_decay, eps))


def adam_update(p, g, m, v, lr_t, one_minus_beta1, one_minus_beta2, eps):
    _update(updates.adam, (p, g, m, v), (lr_t, one_minus_beta1, one_minus_beta2, eps))


# -- the fused step's hooks and builders -------------------------------------------------------------

def gather_rows_(out, src, idx):
    if src.ndim == 2:
        loops.gather_rows(out, src, _integers(idx, "indices"))
    else:       # the step's labels: NumPy's take, 0.4 us more a step than a loop (ad hoc), and no compile
        _ref.gather_rows_(out, src, idx)


# The contract's hook for the composed InputLayer; numba's own InputLayer decodes while it gathers
# and never calls it. NumPy's SIMD loop: nothing to compile.
decode_bytes_ = _ref.decode_bytes_

matmul_ = step.matmul_
add_bias_ = loops.add_bias
bias_relu_ = loops.bias_relu
bias_sigmoid_ = loops.bias_sigmoid
colsum_ = loops.colsum
relu_grad_colsum_ = loops.relu_grad_colsum
sigmoid_grad_colsum_ = loops.sigmoid_grad_colsum


def softmax_xent_(dz, z, t):
    return z.dtype.type(loops.softmax_rows(dz, z, _labels(t), True))     # as NumPy's: z's type


InputLayer = first_layer.InputLayer
OutputLayer = step.OutputLayer
make_update = step.make_update


# every kernel, update and hook above behind the contract's argument check (``guard``): Numba
# would compile a loop for int32 parameters and write truncated steps into them, or fail deep in
# its type inference on a 3-D array
guard.guard_module(globals(), np.ndarray)
