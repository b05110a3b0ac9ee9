"""CuPy backend: the kernel contract on NVIDIA GPUs.

* GEMMs go to cuBLAS: the fused step's through a handle of fastdl's own (``cublas_direct``:
  CuPy's cannot be captured into a CUDA graph), the layer path's through CuPy's matmul. The
  optimizer updates and chapter 6 live in ``cuda_updates`` and ``cuda_chapter6``, the graph
  capture in ``cuda_graphs``. What fusion helps is hand-written CUDA in the top-level
  ``kernels/`` folder (shipped inside the wheel as ``fastdl/kernels``): bias + activation, the
  activation backward fused with the bias-gradient column sum, softmax-cross-entropy (loss and
  probabilities, or loss and gradient, in one pass per row, one warp per row), the batch gather
  and the six optimizer updates. They are compiled with NVRTC at first use and cached by CuPy.
* Every kernel handles any N and width (grid-stride loops; partial blocks are masked) and both
  float32 and float64 (``*_f32`` / ``*_f64`` instantiations of one template).
* The trainer's fast path is ``fastdl.fused`` over this module's hooks (the builders are the
  plain compositions of ``fastdl.backends.composed``): the dataset stays on the GPU, batches are
  gathered there, and the loss stays on the device (a 0-d array per step, from CuPy's memory
  pool); the host reads losses only at the trainer's sync points.
* Labels are validated on the host before any kernel runs (``fastdl.validate``), so the kernels
  can index with them safely.
"""

from __future__ import annotations

import contextlib
import math

import cupy as cp
import numpy as np

from ..cuda_sources import kernel_dir
from ..errors import DTypeError, ShapeError
from . import composed, cublas_direct, guard, cuda_chapter6, cuda_graphs, cuda_launch, cuda_updates
from .contract import ACT_CODES, FUSED_STEP, GRAPH_REPLAY, MEAN_THREADS, SOFTMAX_GRAD, SOFTMAX_PROBS

name = "cupy"
xp = cp
device = "cuda"          # refined by check_usable() to the device's name
CAPABILITIES = frozenset({FUSED_STEP, GRAPH_REPLAY})
COMPILES = True           # NVRTC, and fastdl's cuBLAS handle, at selection
READS_BYTES_FASTER = False  # not measured on a GPU: floats as given

THREADS = cuda_launch.THREADS


def check_usable() -> None:
    """Raise with the CUDA reason when no GPU can run our kernels (called at selection time)."""
    global device
    count = cp.cuda.runtime.getDeviceCount()        # raises CUDARuntimeError without a driver
    if count < 1:
        raise RuntimeError("no CUDA device is visible (CUDA_VISIBLE_DEVICES?)")
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    device = f"cuda:{dev.id} ({gpu}, sm_{props['major']}{props['minor']})"
    _module()                                        # compile now: a toolchain problem shows here
    _bind_gemm()


def describe() -> dict:
    info = {"backend": name, "device": device, "cupy": cp.__version__,
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cp.cuda.runtime.driverGetVersion(), "kernels": str(kernel_dir()), "gemm": gemm_path}
    return info


def asarray(a, dtype=None):
    return cp.ascontiguousarray(cp.asarray(a, dtype=dtype))


def to_numpy(a):
    return cp.asnumpy(a)


def synchronize():
    cp.cuda.get_current_stream().synchronize()


def is_backend_array(a) -> bool:
    return isinstance(a, cp.ndarray)


def train_scope():
    """The GPU needs no process settings for training."""
    return contextlib.nullcontext()


# -- the CUDA sources: one module, each launch checked (cuda_launch) -------------------------------

_kernels = cuda_launch.Launcher(cp)
_module, _kernel, _launch, _grid = _kernels.build, _kernels.kernel, _kernels.launch, cuda_launch.grid


def _indices(t):
    t = t.argmax(axis=1) if t.ndim == 2 else t
    return cp.ascontiguousarray(t, dtype=cp.int64)


# -- in-place hooks of the fused step (outputs first; see the contract) ----------------------------

def add_bias_(z, b):
    n, m = z.shape
    _launch("add_bias", z.dtype, n * m, z, b, np.int64(n), np.int32(m))


def bias_relu_(z, b):
    n, m = z.shape
    _launch("bias_relu", z.dtype, n * m, z, b, np.int64(n), np.int32(m))


def bias_sigmoid_(z, b):
    n, m = z.shape
    _launch("bias_sigmoid", z.dtype, n * m, z, b, np.int64(n), np.int32(m))


COLSUM_ROWS = 256          # rows per block of a column sum; a taller batch is summed in parts
COLSUM_PARTS = 64          # at most (enough blocks to fill the GPU with the book's widths)
_parts = {}


def _grad_colsum(dh, db, h, activation):
    """Blocks of (32 x 8) threads, one per 32 columns and part of the rows (see activations.cu);
    the parts' sums go to a kept scratch array (per shape: nothing allocated per step, so a
    captured step can hold it) and one more kernel adds them up in order."""
    n, m = dh.shape
    count = max(1, min(math.ceil(n / COLSUM_ROWS), COLSUM_PARTS))
    rows = math.ceil(n / count)
    out = db
    if count > 1:
        key = (count, m, dh.dtype.char, cp.cuda.Device().id)
        if key not in _parts:
            _parts[key] = cp.empty(count * m, dtype=dh.dtype)
        out = _parts[key]
    _kernel("grad_colsum", dh.dtype)((math.ceil(m / 32), count), (32, 8),
                                     (dh, h, out, np.int64(n), np.int32(m), np.int32(ACT_CODES[activation]),
                                      np.int64(rows)))
    if count > 1:
        _kernel("sum_parts", dh.dtype)(_grid(m), (THREADS,), (out, db, np.int32(count), np.int32(m)))


def relu_grad_colsum_(dh, db, h):
    _grad_colsum(dh, db, h, "relu")


def sigmoid_grad_colsum_(dh, db, y):
    _grad_colsum(dh, db, y, "sigmoid")


def colsum_(out, dy):
    _grad_colsum(dy, out, dy, "identity")


_row_loss = {}


def _softmax(out, z, t, mode, keep=False):
    """The per-row kernel, then the mean loss (kernel ``mean_of``) as a 0-d device array (no host
    round trip): a new one, or with ``keep`` the same one per batch size and dtype, overwritten by
    the next call (so the fused step allocates nothing, and a captured step writes where its
    replays will). A label outside the classes gives NaN (the kernel cannot raise)."""
    n, c = z.shape
    if c < 1:
        raise ShapeError("softmax needs at least one class (z has 0 columns)")
    key = (n, z.dtype.char, cp.cuda.Device().id)
    if key not in _row_loss:                    # buffers per batch size: no allocation per step
        _row_loss[key] = cp.empty(n, dtype=z.dtype), cp.empty((), dtype=z.dtype)
    row_loss, mean = _row_loss[key]
    warps_per_block = THREADS // 32
    blocks = math.ceil(n / warps_per_block)
    _kernel("softmax_xent", z.dtype)((blocks,), (THREADS,), (z, t, out, row_loss, np.int64(n), np.int32(c), np.int32(mode)))
    mean = mean if keep else cp.empty((), dtype=z.dtype)
    _kernel("mean_of", z.dtype)((1,), (MEAN_THREADS,), (row_loss, mean, np.int64(n)))
    return mean


def softmax_xent_(dz, z, t):
    return _softmax(dz, z, t, SOFTMAX_GRAD, keep=True)


_GATHERS = {np.dtype(np.uint8): "gather_bytes", np.dtype(np.int64): "gather_labels"}


def gather_rows_(out, src, idx):
    """Rows (or, from a 1-D src, elements) by index, clipped into range as NumPy's reference does."""
    base = _GATHERS.get(src.dtype, "gather_rows")
    if base == "gather_rows" and src.dtype not in (np.float32, np.float64):
        raise DTypeError(f"gather_rows_ gathers float rows, uint8 codes or int64 labels, not {src.dtype}")
    if src.shape[0] == 0 and idx.size:
        raise ShapeError("gather_rows_: src has no rows to gather from")
    n, d = idx.size, (src.shape[1] if src.ndim == 2 else 1)
    dtype = src.dtype if base == "gather_rows" else np.float32       # the byte and label kernels ignore T
    _launch(base, dtype, n * d, out, src, idx, np.int64(n), np.int64(d), np.int64(src.shape[0]))


def decode_bytes_(out, codes, scale):
    _launch("decode_bytes", out.dtype, out.size, out, codes, out.dtype.type(scale), np.int64(out.size))


_GEMM = None              # cublas_direct.Gemm, bound at selection (check_usable)
gemm_path = "not bound yet"


def _bind_gemm():
    """Our own cuBLAS handle for matmul_ (CuPy's GEMMs cannot be captured into a CUDA graph)."""
    global _GEMM, gemm_path
    _GEMM, gemm_path = cublas_direct.bind(cp)


def matmul_(out, a, b):
    if _GEMM is None:
        _bind_gemm()
    if not _GEMM(out, a, b):                 # a layout the direct call cannot describe
        cp.matmul(a, b, out=out)


InputLayer = composed.InputLayer
OutputLayer = composed.OutputLayer
make_update = composed.make_update           # one launch per parameter already


# -- the contract ---------------------------------------------------------------------------------

def affine_forward(x, W, b):
    y = x @ W
    add_bias_(y, b)
    return y


def affine_backward(dy, x, W, need_dx=True):
    dx = dy @ W.T if need_dx else None
    db = cp.empty(dy.shape[1], dtype=dy.dtype)
    colsum_(db, dy)
    return dx, x.T @ dy, db


def relu_forward(x):
    mask = x > 0
    return cp.where(mask, x, x.dtype.type(0)), mask


def relu_backward(dy, mask):
    return cp.where(mask, dy, dy.dtype.type(0))


def sigmoid_forward(x):
    y = cp.ascontiguousarray(x).copy()
    bias_sigmoid_(y, cp.zeros(x.shape[1], dtype=x.dtype))
    return y


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


def softmax_cross_entropy_forward(z, t):
    z = cp.ascontiguousarray(z)
    probs = cp.empty_like(z)
    loss = _softmax(probs, z, _indices(t), SOFTMAX_PROBS)
    return loss, probs


def softmax_cross_entropy_backward(probs, t):
    n, c = probs.shape
    dz = cp.empty_like(probs)
    _launch("softmax_grad", probs.dtype, n * c, cp.ascontiguousarray(probs), _indices(t), dz, np.int64(n), np.int32(c))
    return dz


# -- chapter 6: weight decay, Dropout, Batch Normalization (fastdl/backends/cuda_chapter6.py) ----

_chapter6 = cuda_chapter6.Chapter6(cp, _kernel, _launch)
sum_squares, scale, dropout_forward = _chapter6.sum_squares, _chapter6.scale, _chapter6.dropout_forward
batchnorm_forward, batchnorm_inference = _chapter6.batchnorm_forward, _chapter6.batchnorm_inference
batchnorm_backward = _chapter6.batchnorm_backward


# -- in-place updates: optimizers, running averages, weight decay (fastdl/backends/cuda_updates.py)

_updates = cuda_updates.Updates(cp, _launch)
sgd_update, momentum_update, nesterov_update = _updates.sgd_update, _updates.momentum_update, _updates.nesterov_update
adagrad_update, rmsprop_update, adam_update = _updates.adagrad_update, _updates.rmsprop_update, _updates.adam_update
running_update, axpy_ = _updates.running_update, _updates.axpy_


# -- replaying captured work -----------------------------------------------------------------------

capture = cuda_graphs.capturer(cp)


# every kernel, update and hook above behind the contract's argument check (``guard``): the
# launch check (``cuda_launch``) sees sizes and element types, not ranks or mixed float dtypes
guard.guard_module(globals(), cp.ndarray)
