"""Numba backend: the kernel contract as JIT-compiled CPU loops, plus a fused training step.

Choices, each measured on the book's shapes (see bench/):
* GEMMs stay in BLAS: hand-written loops, even ones that skip MNIST's zero pixels, measured
  slower at 100x784x50. The fused step's GEMMs and the layer path's tall forward products
  (evaluation) run on Numba's threads with BLAS single-threaded inside (``matmul_``,
  ``_forward_gemm``), so training never has two thread pools spinning against each other; the
  rest of the layer path stays on NumPy's threaded BLAS. Everything *between* GEMMs is a single
  fused ``@njit`` pass: bias + ReLU, softmax + cross-entropy + its gradient, activation
  backward + the bias-gradient column sum, the optimizer updates.
* The trainer's fast path is ``fastdl.fused.compile_train_step`` with this module's hooks:
  ``InputLayer`` splits the first layer across the threads by input feature (each core gathers,
  multiplies and updates its own slice of W1, calling BLAS single-threaded; the rows come from
  uint8 codes when the data is k/255, see ``fastdl.fused.byte_codes``), ``softmax_head_`` does
  the last layer and the loss in one call, ``fused_update`` updates every parameter in one
  parallel call with the same split. No allocation per step, except the row-block copies
  ``_split_dot`` makes of a transposed operand in the large GEMMs of deeper nets' middle layers.
  The layer-by-layer path remains and must agree with it (tests/test_fused.py).
* Figures quoted below without a bench/results folder were timed ad hoc on the 2-core machine
  the benchmarks ran on; they explain a choice, the benchmarks back the speed claims.
* Parallel loops (``prange``) only where each thread gets a large piece of its own: the split
  first layer and the update. At 100 x 50 an elementwise pass costs less than handing it out.
* Constants are made in the array's type (``x.dtype.type(1)``): a bare ``1`` next to a float32
  promotes the whole expression to float64 in Numba, which halves the SIMD width.
* Compiled code is cached on disk (``cache=True``); set ``FASTDL_NUMBA_CACHE=0`` to turn that off.
  float32 and float64 each compile once; hyperparameters are cast to the array dtype inside.
* Threads: ``FASTDL_NUM_THREADS`` (default: all cores) sets Numba's threads and BLAS's; the fused
  step's parallel loops use Numba's and keep the BLAS they call single-threaded.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
import llvmlite.ir as llvm_ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import numpy as _ref

name = "numba"
xp = np
device = "cpu"

CACHE = os.environ.get("FASTDL_NUMBA_CACHE", "1").strip() not in ("0", "false", "no", "off")

asarray = _ref.asarray
to_numpy = _ref.to_numpy
synchronize = _ref.synchronize
is_backend_array = _ref.is_backend_array
_as_indices = _ref._as_indices


def _threads() -> int:
    value = os.environ.get("FASTDL_NUM_THREADS", "").strip()
    if not value:
        return numba.config.NUMBA_NUM_THREADS
    n = int(value)
    if n < 1:
        raise ValueError(f"FASTDL_NUM_THREADS={value!r} must be a positive integer")
    return min(n, numba.config.NUMBA_NUM_THREADS)


def check_usable() -> None:
    global _BLAS_PINNED
    n = _threads()
    numba.set_num_threads(n)
    if os.environ.get("FASTDL_NUM_THREADS", "").strip():
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(n, user_api="blas")
        except ImportError:
            pass
    # The fused step's GEMMs run on Numba's threads, each calling SciPy's BLAS single-threaded
    # (see matmul_ and InputLayer); NumPy's BLAS keeps its threads for the layer path.
    _BLAS_PINNED = _numba_blas_single_threaded()


def describe() -> dict:
    info = _ref.describe()
    info.update(backend=name, numba=numba.__version__, threads=numba.get_num_threads(),
                disk_cache="on" if CACHE else "off", compiled=compiled_status())
    return info


def compiled_status() -> str:
    """How many of the JIT kernels have compiled code loaded in this process."""
    done = sum(1 for f in _JITTED if f.signatures)
    return f"{done}/{len(_JITTED)} kernels compiled"


# error_model="numpy": a float division by zero gives inf/nan as in NumPy, instead of a Python
# exception whose check in every iteration keeps LLVM from vectorising the loop.
jit = njit(cache=CACHE, nogil=True, error_model="numpy")


# -- in-place building blocks (also used by the fused step) ------------------------------------

@jit
def _add_bias(z, b):
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            z[i, j] += b[j]


@jit
def _bias_relu(z, b):
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            if v > 0:
                z[i, j] = v
            else:
                z[i, j] = 0


@jit
def _bias_sigmoid(z, b):
    n, m = z.shape
    one = z.dtype.type(1)
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            e = np.exp(-abs(v))
            z[i, j] = one / (one + e) if v >= 0 else e / (one + e)


@jit
def _colsum(dy, out):
    n, m = dy.shape
    out[:] = 0
    for i in range(n):
        for j in range(m):
            out[j] += dy[i, j]


@jit
def _relu_grad_colsum(dh, h, db):
    """dh *= (h > 0); db = column sums of dh. h is the ReLU *output* (h > 0 iff input > 0)."""
    n, m = dh.shape
    zero = dh.dtype.type(0)
    db[:] = 0
    for i in range(n):
        for j in range(m):
            v = dh[i, j] if h[i, j] > 0 else zero
            dh[i, j] = v
            db[j] += v


@jit
def _sigmoid_grad_colsum(dh, y, db):
    n, m = dh.shape
    one = dh.dtype.type(1)
    db[:] = 0
    for i in range(n):
        for j in range(m):
            v = dh[i, j] * y[i, j] * (one - y[i, j])
            dh[i, j] = v
            db[j] += v


# Summing a row may be reassociated (fastmath "reassoc"), which lets LLVM vectorise the float64
# sum of exp() as NumPy's pairwise sum is vectorised; nothing else about the arithmetic changes.
@njit(cache=CACHE, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _softmax_rows(z, t, out, grad):
    """One pass per row: returns the mean loss (float64 accumulator) and writes softmax(z) into
    ``out``, or, with ``grad``, (softmax(z) - onehot(t)) / N."""
    n, c = z.shape
    scale = 1.0 / n if grad else 1.0
    total = 0.0
    for i in range(n):
        mx = z[i, 0]
        for j in range(1, c):
            mx = max(mx, z[i, j])
        for j in range(c):
            out[i, j] = np.exp(z[i, j] - mx)
        s = 0.0
        for j in range(c):
            s += out[i, j]
        total += math.log(s) - (z[i, t[i]] - mx)
        inv = out.dtype.type(scale / s)      # the sums in float64, the scaling in the data's type
        for j in range(c):
            out[i, j] *= inv
        if grad:
            out[i, t[i]] -= scale
    return total / n


@jit
def _softmax_grad(probs, t, dz):
    n, c = probs.shape
    inv_n = probs.dtype.type(1.0 / n)          # in the data's type: no float64 promotion
    for i in range(n):
        for j in range(c):
            dz[i, j] = probs[i, j] * inv_n
        dz[i, t[i]] -= inv_n


@jit
def _gather_rows(src, idx, dst):
    d = src.shape[1]
    for r in range(idx.shape[0]):
        k = idx[r]
        for j in range(d):
            dst[r, j] = src[k, j]


@jit
def _gather(src, idx, dst):
    for r in range(idx.shape[0]):
        dst[r] = src[idx[r]]


# -- the contract ------------------------------------------------------------------------------

def affine_forward(x, W, b):
    y = _forward_gemm(x, W)
    _add_bias(y, b)
    return y


def affine_backward(dy, x, W, need_dx=True):
    dx = dy @ W.T if need_dx else None
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    _colsum(dy, db)
    return dx, x.T @ dy, db


@jit
def _relu_forward(x, y, mask):
    n, m = x.shape
    zero = x.dtype.type(0)
    for i in range(n):
        for j in range(m):
            v = x[i, j]
            pos = v > 0
            mask[i, j] = pos
            y[i, j] = v if pos else zero


def relu_forward(x):
    y = np.empty_like(x)
    mask = np.empty(x.shape, dtype=np.bool_)
    _relu_forward(x, y, mask)
    return y, mask


@jit
def _relu_backward(dy, mask, dx):
    n, m = dy.shape
    zero = dy.dtype.type(0)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dy[i, j] if mask[i, j] else zero


def relu_backward(dy, mask):
    dx = np.empty_like(dy)
    _relu_backward(dy, mask, dx)
    return dx


def sigmoid_forward(x):
    y = x.copy()
    _bias_sigmoid(y, np.zeros(x.shape[1], dtype=x.dtype))
    return y


@jit
def _sigmoid_backward(dy, y, dx):
    n, m = dy.shape
    one = dy.dtype.type(1)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dy[i, j] * y[i, j] * (one - y[i, j])


def sigmoid_backward(dy, y):
    dx = np.empty_like(dy)
    _sigmoid_backward(dy, y, dx)
    return dx


def softmax_cross_entropy_forward(z, t):
    probs = np.empty_like(z)
    loss = _softmax_rows(z, np.ascontiguousarray(_as_indices(t)), probs, False)
    return z.dtype.type(loss), probs


def softmax_cross_entropy_backward(probs, t):
    dz = np.empty_like(probs)
    _softmax_grad(probs, np.ascontiguousarray(_as_indices(t)), dz)
    return dz


# -- fused kernels (equal to the compositions in the NumPy backend) ----------------------------

def affine_relu_forward(x, W, b):
    y = _forward_gemm(x, W)
    _bias_relu(y, b)
    return y, y > 0


def affine_sigmoid_forward(x, W, b):
    y = _forward_gemm(x, W)
    _bias_sigmoid(y, b)
    return y


def relu_backward_colsum(dy, mask):
    dx = dy.copy()
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    _relu_grad_colsum(dx, mask, db)           # compiles for a bool mask: no conversion pass
    return dx, db


def sigmoid_backward_colsum(dy, y):
    dx = dy.copy()
    db = np.empty(dy.shape[1], dtype=dy.dtype)
    _sigmoid_grad_colsum(dx, y, db)
    return dx, db


def softmax_cross_entropy(z, t):
    dz = np.empty_like(z)
    loss = _softmax_rows(z, np.ascontiguousarray(_as_indices(t)), dz, True)
    return z.dtype.type(loss), dz


# -- optimizer updates (in place, one pass each; arrays are flattened views) --------------------

@jit
def _sgd(p, g, lr):
    for i in range(p.size):
        p[i] -= lr * g[i]


@jit
def _momentum(p, g, v, lr, mu):
    for i in range(p.size):
        v[i] = mu * v[i] - lr * g[i]
        p[i] += v[i]


@jit
def _nesterov(p, g, v, lr, mu):
    one = p.dtype.type(1)
    for i in range(p.size):
        v[i] = mu * v[i] - lr * g[i]
        p[i] += mu * mu * v[i] - (one + mu) * lr * g[i]


@jit
def _adagrad(p, g, h, lr, eps):
    for i in range(p.size):
        h[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def _rmsprop(p, g, h, lr, decay, eps):
    one = p.dtype.type(1)
    for i in range(p.size):
        h[i] = decay * h[i] + (one - decay) * g[i] * g[i]
        p[i] -= lr * g[i] / (np.sqrt(h[i]) + eps)


@jit
def _adam(p, g, m, v, lr_t, b1, b2, eps):
    one = p.dtype.type(1)
    for i in range(p.size):
        m[i] += (one - b1) * (g[i] - m[i])
        v[i] += (one - b2) * (g[i] * g[i] - v[i])
        p[i] -= lr_t * m[i] / (np.sqrt(v[i]) + eps)


def _flat(*arrays):
    return [a.reshape(-1) for a in arrays]


def _scalars(p, *values):
    """Hyperparameters in the parameter dtype: float32 math stays float32, one compile per dtype."""
    t = p.dtype.type
    return [t(v) for v in values]


def sgd_update(p, g, lr):
    _sgd(*_flat(p, g), *_scalars(p, lr))


def momentum_update(p, g, v, lr, momentum):
    _momentum(*_flat(p, g, v), *_scalars(p, lr, momentum))


def nesterov_update(p, g, v, lr, momentum):
    _nesterov(*_flat(p, g, v), *_scalars(p, lr, momentum))


def adagrad_update(p, g, h, lr, eps):
    _adagrad(*_flat(p, g, h), *_scalars(p, lr, eps))


def rmsprop_update(p, g, h, lr, decay, eps):
    _rmsprop(*_flat(p, g, h), *_scalars(p, lr, decay, eps))


def adam_update(p, g, m, v, lr, beta1, beta2, eps, step):
    lr_t = _ref.adam_step_size(lr, beta1, beta2, step)
    _adam(*_flat(p, g, m, v), *_scalars(p, lr_t, beta1, beta2, eps))


# -- in-place kernels of the fused training step (see fastdl/fused.py) -------------------------

from ..fused import compile_train_step  # noqa: E402,F401  (the trainer's fast path)


def gather_rows_(out, src, idx):
    if src.ndim == 2:
        _gather_rows(src, idx, out)
    else:
        _gather(src, idx, out)


@jit
def _softmax_head(z, dz, h, W, b, t, dW, db, dh, db_h, relu):
    np.dot(h, W, z)
    _add_bias(z, b)
    loss = _softmax_rows(z, t, dz, True)
    _colsum(dz, db)
    np.dot(h.T, dz, dW)
    np.dot(dz, W.T, dh)
    if relu:
        _relu_grad_colsum(dh, h, db_h)
    else:
        _sigmoid_grad_colsum(dh, h, db_h)
    return loss


def softmax_head_(z, dz, h, W, b, t, dW, db, dh, db_h, relu):
    """The last layer (its GEMMs are thin: 10 classes), softmax + loss and their backward, and the
    hidden activation's backward, as one call: the book's whole middle in one dispatch."""
    return _softmax_head(z, dz, h, W, b, t, dW, db, dh, db_h, relu)


SMALL_GEMM = 1 << 22          # multiply-adds; a 256x1000x1000 layer is 64x above, 100x50x10 100x below


def matmul_(out, a, b):
    """out = a @ b, for the fused step. Small GEMMs (the book's 100x50x10) run in the calling
    thread: waking any thread pool for a few microseconds of work costs more than it saves.
    Large ones are split by output rows across Numba's threads, each calling BLAS
    single-threaded, like the input layer: NumPy's threaded BLAS here would have its pool spin
    against Numba's on the same cores (measured: the 784-1000-1000-10 step ran 1.9x slower)."""
    m = a.shape[0]
    if m * a.shape[1] * b.shape[1] < SMALL_GEMM:
        _dot(a, b, out)
    else:
        _split_dot(a, b, out, _cuts(m, _parts(m)))


EVAL_ROWS = 1024      # forward products at least this tall are evaluation or prediction


def _forward_gemm(a, b):
    """x @ W for the layer path's forward kernels. Tall products (evaluation's 10,000-row
    chunks) are split by rows across Numba's threads like the fused step's GEMMs, so that
    evaluating during training never wakes NumPy's BLAS pool, whose spinning workers slowed the
    next training steps by a third (measured). Everything else in the layer path, a batch's
    forward and the whole backward, stays on NumPy's threaded BLAS: mixing the two pools inside
    one training step made them spin against each other (an affine_backward 4x slower), and
    splitting short products by rows loses to it (100x784x4096: 1.5x slower)."""
    m = a.shape[0]
    if (m < EVAL_ROWS or m * a.shape[1] * b.shape[1] < SMALL_GEMM
            or a.dtype != b.dtype or a.dtype.char not in "fd" or a.size == 0 or b.size == 0
            or not (a.flags.c_contiguous or a.flags.f_contiguous)
            or not (b.flags.c_contiguous or b.flags.f_contiguous)):
        return a @ b
    out = np.empty((m, b.shape[1]), dtype=a.dtype)
    _split_dot(a, b, out, _cuts(m, _parts(m)))
    return out


@jit
def _dot(a, b, out):
    np.dot(a, b, out)


@njit(cache=CACHE, nogil=True, error_model="numpy", parallel=True)
def _split_dot(a, b, out, cut):
    for p in prange(cut.shape[0] - 1):
        r0, r1 = cut[p], cut[p + 1]
        # a row block of a transposed operand (h.T in dW = h.T @ dz) is strided: Numba's np.dot
        # wants it contiguous, a copy (and an allocation) that costs ~1% of this GEMM
        np.dot(np.ascontiguousarray(a[r0:r1]), b, out[r0:r1])


# -- the fused step's input layer, split across threads by input feature -----------------------

# How many parts the step splits the input features (and every parameter's update) into:
# None means one per Numba thread. Tests set it to check uneven splits.
SPLIT_PARTS = None


_BLAS_PINNED = None      # see _numba_blas_single_threaded; checked once, re-pinned per step built


def _parts(n_rows: int) -> int:
    global _BLAS_PINNED
    if _BLAS_PINNED is None:
        _BLAS_PINNED = _numba_blas_single_threaded()
    if not _BLAS_PINNED:
        return 1
    return max(1, min(SPLIT_PARTS or numba.get_num_threads(), n_rows))


def _cuts(n: int, parts: int) -> np.ndarray:
    """Bounds of ``parts`` contiguous near-equal slices of range(n)."""
    return np.array([n * p // parts for p in range(parts + 1)], dtype=np.int64)


class InputLayer:
    """The fused step's first layer, ``y = act(x_train[idx] @ W + b)`` and
    ``dW = x_train[idx]^T @ dz`` (as ``fastdl.fused.InputLayer``),
    split by input feature across Numba's threads: thread p gathers features [k_p, k_p+1) of
    the batch's rows, multiplies them by W's rows [k_p, k_p+1) into its own partial z (thread 0
    writes z itself; the others' partials are added after the join), and in the backward pass
    computes exactly those rows of dW, which ``fused_update`` has the same thread update (the
    same cuts). So each core keeps its own slice of W, of the batch and of dW in its cache from
    step to step, and nothing crosses between cores but the 100x50 z and dz. Each thread calls
    BLAS single-threaded. Measured on 2 cores: the book's step ~145 us, against ~195 us when the
    whole batch was gathered and multiplied by NumPy's 2-thread BLAS (interleaved 10,000-step
    runs: 0.55x the NumPy backend's time, was 0.72x; bench/results/2026-11-29-cpu-training-3).

    When the training set is k/255 pixels (``fastdl.fused.byte_codes``) the rows are kept and
    gathered as uint8 codes, divided back while gathering: the same floats, a quarter of the
    memory traffic and of the copy's size."""

    def __init__(self, bk, W, b, dW, x_train, batch_size: int, activation, byte_coded: bool = True):
        from ..fused import byte_codes
        global _BLAS_PINNED
        _BLAS_PINNED = _numba_blas_single_threaded()
        K, N = W.shape
        self.W, self.b, self.dW = W, b, dW
        self.act = {None: 0, "relu": 1, "sigmoid": 2}[activation]
        self.cut = _cuts(K, _parts(K))
        coded = byte_codes(x_train, np) if byte_coded else None
        self.byte_coded = coded is not None
        self.src, scale = coded if coded is not None else (x_train, 1)
        self.scale = W.dtype.type(scale)
        self.X = np.empty(batch_size * K, dtype=W.dtype)            # part p: rows of its features
        self.Z = np.empty((len(self.cut) - 1) * batch_size * N, dtype=W.dtype)   # partial z's

    def forward(self, idx, y):
        _split_forward(self.src, idx, self.scale, self.cut, self.X, self.W, self.Z, y, self.b, self.act)

    def backward(self, dz):
        _split_backward(self.cut, self.X, dz, self.dW)


def _prefetch_row(a, i):
    """Ask the CPU to start fetching row i of the 2-D array ``a`` into its caches (a hint: no
    effect on results; a no-op in plain Python and wherever the LLVM intrinsic fails)."""


@intrinsic
def _llvm_prefetch_row(typingctx, a, i):
    def codegen(context, builder, sig, args):
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
        return context.get_dummy_value()
    return types.void(a, types.intp), codegen


_PREFETCH = None


def _prefetch_compiles() -> bool:
    global _PREFETCH
    if _PREFETCH is None:
        try:
            njit(lambda a: _llvm_prefetch_row(a, 0))(np.zeros((1, 1), np.uint8))
            _PREFETCH = True
        except Exception:           # an LLVM without the intrinsic: gather without hints
            _PREFETCH = False
    return _PREFETCH


@overload(_prefetch_row)
def _prefetch_row_impl(a, i):
    if _prefetch_compiles():
        return lambda a, i: _llvm_prefetch_row(a, i)
    return lambda a, i: None


# Rows asked for ahead of the copy: a random MNIST row is a cache miss; hinting 4 rows ahead keeps
# several misses in flight (measured: the split gather of a batch 13.8 -> 8.5 us).
PREFETCH_AHEAD = 4


@njit(cache=CACHE, nogil=True, error_model="numpy")
def _gather_part(src, idx, scale, X):
    """X[r] = src[idx[r]] / scale (src: a column slice of the training set, codes or floats;
    dividing by 1 leaves floats exact). Indexing the slice from 0 lets LLVM vectorise the copy."""
    n = idx.shape[0]
    for r in range(min(PREFETCH_AHEAD, n)):
        _prefetch_row(src, idx[r])
    for r in range(n):
        if r + PREFETCH_AHEAD < n:
            _prefetch_row(src, idx[r + PREFETCH_AHEAD])
        i = idx[r]
        for k in range(X.shape[1]):
            X[r, k] = X.dtype.type(src[i, k]) / scale


@njit(cache=CACHE, nogil=True, error_model="numpy", parallel=True)
def _split_forward(src, idx, scale, cut, Xbuf, W, Zbuf, z, b, act):
    n, N = z.shape
    for p in prange(cut.shape[0] - 1):
        k0, k1 = cut[p], cut[p + 1]
        X = Xbuf[n * k0:n * k1].reshape((n, k1 - k0))
        _gather_part(src[:, k0:k1], idx, scale, X)
        out = z if p == 0 else Zbuf[p * n * N:(p + 1) * n * N].reshape((n, N))
        np.dot(X, W[k0:k1], out)
    for p in range(1, cut.shape[0] - 1):
        part = Zbuf[p * n * N:(p + 1) * n * N].reshape((n, N))
        for r in range(n):
            for j in range(N):
                z[r, j] += part[r, j]
    if act == 1:
        _bias_relu(z, b)
    elif act == 2:
        _bias_sigmoid(z, b)
    else:
        _add_bias(z, b)


@njit(cache=CACHE, nogil=True, error_model="numpy", parallel=True)
def _split_backward(cut, Xbuf, dz, dW):
    n = dz.shape[0]
    for p in prange(cut.shape[0] - 1):
        k0, k1 = cut[p], cut[p + 1]
        X = Xbuf[n * k0:n * k1].reshape((n, k1 - k0))
        np.dot(X.T, dz, dW[k0:k1])


def _numba_blas_single_threaded() -> bool:
    """Set the BLAS that Numba's np.dot calls (SciPy's) to one thread; True when done.

    The split step calls it from every Numba thread at once: with its own pool on top the
    threads fight over the cores (measured on 2 cores: 19 ms a step instead of 0.2 ms). Only
    the copy SciPy ships is touched, so NumPy's BLAS (the layer path, large GEMMs) keeps its
    threads. Where the two are one library (or threadpoolctl is missing), the step is not split
    and runs as one part. Done again for every step built, in case something reset it."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return False
    root = os.path.realpath(os.path.dirname(scipy.__file__))
    numpy_root = os.path.realpath(os.path.dirname(np.__file__))
    pinned = False
    for lib in ThreadpoolController().lib_controllers:
        path = os.path.realpath(lib.filepath)
        if lib.user_api == "blas" and path.startswith(root) and not path.startswith(numpy_root):
            lib.set_num_threads(1)
            pinned = True
    return pinned


# -- optimizer updates in the fused step: one parallel call for all parameters -------------------

_KINDS = {"SGD": 0, "Momentum": 1, "Nesterov": 2, "AdaGrad": 3, "RMSprop": 4, "Adam": 5}


def _hyper(o, kind):
    if kind == 0:
        return (o.lr,)
    if kind in (1, 2):
        return o.lr, o.momentum
    if kind == 3:
        return o.lr, o.eps
    if kind == 4:
        return o.lr, o.decay, o.eps
    return _ref.adam_step_size(o.lr, o.beta1, o.beta2, o.step), o.beta1, o.beta2, o.eps


@jit
def _apply(kind, p, g, s0, s1, h):
    if kind == 0:
        _sgd(p, g, h[0])
    elif kind == 1:
        _momentum(p, g, s0, h[0], h[1])
    elif kind == 2:
        _nesterov(p, g, s0, h[0], h[1])
    elif kind == 3:
        _adagrad(p, g, s0, h[0], h[1])
    elif kind == 4:
        _rmsprop(p, g, s0, h[0], h[1], h[2])
    else:
        _adam(p, g, s0, s1, h[0], h[1], h[2], h[3])


@njit(cache=CACHE, nogil=True, error_model="numpy", parallel=True)
def _update_parts(kind, P, G, S0, S1, h, cuts):
    for part in prange(cuts.shape[1] - 1):
        for a in range(len(P)):          # P, G, S0, S1: tuples of flat arrays, one per parameter
            lo, hi = cuts[a, part], cuts[a, part + 1]
            _apply(kind, P[a][lo:hi], G[a][lo:hi], S0[a][lo:hi], S1[a][lo:hi], h)


def fused_update(optimizer, params, grads):
    """update() doing optimizer.update(params, grads) in one parallel JIT call, for the book's
    six optimizers (None for others: they keep one call per parameter). Part p of every
    parameter is its rows [r_p, r_p+1) cut as InputLayer cuts W1, so the thread that computed
    a slice of dW1 updates that slice of W1. Reads the hyperparameters at every call, so
    changing ``optimizer.lr`` between steps works."""
    kind = _KINDS.get(type(optimizer).__name__)
    if kind is None:
        return None
    keys = list(params)
    dt = params[keys[0]].dtype
    parts = _parts(params[keys[0]].shape[0])
    # Tuples of flat views: a call unboxes them in ~1 us; typed Lists took ~3 us more.
    flat = lambda arrays: tuple(a.reshape(-1) for a in arrays)
    P, G = flat(params[k] for k in keys), flat(grads[k] for k in keys)
    states = [flat(optimizer._state_for(k, params[k], np)[i] for k in keys)
              for i in range(len(optimizer.state_names))]
    while len(states) < 2:
        states.append(flat(np.empty(0, dtype=dt) for k in keys))    # unused slots: empty slices
    # cuts[a]: flat bounds of parameter a's parts, whole rows each
    cuts = np.stack([_cuts(params[k].shape[0], parts) * (params[k].size // max(params[k].shape[0], 1))
                     for k in keys])
    h = np.zeros(4, dtype=dt)

    def update():
        optimizer.step += 1
        values = _hyper(optimizer, kind)
        h[:len(values)] = values
        _update_parts(kind, P, G, states[0], states[1], h, cuts)

    return update


def add_bias_(z, b):
    _add_bias(z, b)


def bias_relu_(z, b):
    _bias_relu(z, b)


def bias_sigmoid_(z, b):
    _bias_sigmoid(z, b)


def colsum_(out, dy):
    _colsum(dy, out)


def relu_grad_colsum_(dh, h, db):
    _relu_grad_colsum(dh, h, db)


def sigmoid_grad_colsum_(dh, y, db):
    _sigmoid_grad_colsum(dh, y, db)


def softmax_xent_(dz, z, t):
    return _softmax_rows(z, t, dz, True)


import sys as _sys  # noqa: E402
_this = _sys.modules[__name__]
_JITTED = [v for v in list(globals().values()) if isinstance(v, numba.core.registry.CPUDispatcher)]
