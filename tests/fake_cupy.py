"""A stand-in for CuPy, on the CPU, to test the cupy backend's Python side where no GPU exists.

Arrays are a NumPy subclass (so host and "device" arrays stay distinguishable), CuPy functions
are NumPy's wrapped to return that subclass, and ``RawModule.get_function`` returns an emulation
of each CUDA kernel that first checks its launch arguments against the kernel's signature as
written in ``kernels/*.cu`` (count, order, pointer vs scalar, element type, C-contiguity), then
does the kernel's arithmetic with NumPy. It proves the glue (which kernel, which arguments, in
which order and types), not the CUDA code itself: that needs a real GPU (bench/gpu_check.sh).
"""

from __future__ import annotations

import re
import types

import numpy as np

from fastdl.backends.contract import ACT_CODES, SOFTMAX_GRAD
from fastdl.cuda_sources import combined_source

__version__ = "0.0-emulated"


class ndarray(np.ndarray):
    """A "device" array."""


def _dev(a):
    if isinstance(a, np.ndarray) and not isinstance(a, ndarray):
        return a.view(ndarray)
    if isinstance(a, tuple):
        return tuple(_dev(x) for x in a)
    return a


def _wrap(fn):
    def wrapped(*args, **kwargs):
        return _dev(fn(*args, **kwargs))
    wrapped.__name__ = getattr(fn, "__name__", "fn")
    return wrapped


def asarray(a, dtype=None):
    return np.array(a, dtype=dtype, copy=True).view(ndarray) if not isinstance(a, ndarray) else _dev(np.asarray(a, dtype=dtype))


def ascontiguousarray(a, dtype=None):
    return _dev(np.ascontiguousarray(a, dtype=dtype))


def asnumpy(a):
    return np.array(a, copy=True).view(np.ndarray) if isinstance(a, np.ndarray) else np.asarray(a)


def __getattr__(name):
    obj = getattr(np, name)
    return _wrap(obj) if callable(obj) and not isinstance(obj, type) else obj


# -- the CUDA runtime --------------------------------------------------------------------------

class _Stream:
    def synchronize(self):
        pass


class _Device:
    id = 0


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(i):
        return {"name": b"emulated GPU", "major": 9, "minor": 0}

    @staticmethod
    def runtimeGetVersion():
        return 13000

    driverGetVersion = runtimeGetVersion


cuda = types.SimpleNamespace(runtime=_Runtime(), Device=_Device, get_current_stream=lambda: _Stream())


# -- kernels -------------------------------------------------------------------------------------

def _signatures() -> dict[str, list[str]]:
    """kernel base name -> parameter types, parsed from the CUDA sources."""
    sigs = {}
    for name, params in re.findall(r"FASTDL_INSTANTIATE\(\s*(\w+),\s*\(([^)]*)\)", combined_source(), re.S):
        sigs[name] = [" ".join(p.split()[:-1]).replace("const ", "") for p in params.split(",")]
    return sigs


SIGNATURES = _signatures()


def _check(name, T, sig, args):
    assert len(args) == len(sig), f"{name}: {len(args)} arguments, the kernel takes {len(sig)}: {sig}"
    for i, (kind, a) in enumerate(zip(sig, args)):
        where = f"{name} argument {i} ({kind})"
        if kind.endswith("*"):
            assert isinstance(a, ndarray), f"{where}: got {type(a).__name__}, not a device array"
            assert a.flags.c_contiguous, f"{where}: not C-contiguous"
            want = T if kind == "T*" else {"long long*": np.int64}[kind]
            assert a.dtype == want, f"{where}: dtype {a.dtype}, kernel expects {np.dtype(want)}"
        else:
            want = {"T": T, "long long": np.int64, "int": np.int32}[kind]
            assert type(a) is want, f"{where}: got {type(a).__name__}, kernel expects {want.__name__}"


def _mat(a, n, m):
    return a.reshape(-1)[: n * m].reshape(n, m)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _run(name, a):
    if name == "add_bias":
        z, b, n, m = a; _mat(z, n, m)[...] += b
    elif name == "bias_relu":
        z, b, n, m = a; v = _mat(z, n, m); v[...] = np.maximum(v + b, 0)
    elif name == "bias_sigmoid":
        z, b, n, m = a; v = _mat(z, n, m); v[...] = _sigmoid(v + b)
    elif name == "grad_colsum":
        dh, h, db, n, m, mode = a
        d, hh = _mat(dh, n, m), _mat(h, n, m)
        v = (np.where(hh > 0, d, 0) if mode == ACT_CODES["relu"] else
             d * hh * (1 - hh) if mode == ACT_CODES["sigmoid"] else d)
        if mode != ACT_CODES["identity"]:
            d[...] = v
        db[:m] = v.sum(axis=0)
    elif name == "softmax_xent":
        z, t, out, row_loss, n, c, mode = a
        zz = _mat(z, n, c).astype(np.float64)
        s = zz - zz.max(axis=1, keepdims=True)
        e = np.exp(s)
        tot = e.sum(axis=1, keepdims=True)
        p = e / tot
        rows = np.arange(n)
        row_loss[:n] = np.log(tot[:, 0]) - s[rows, t[:n]]
        if mode == SOFTMAX_GRAD:
            p[rows, t[:n]] -= 1
            p /= n
        _mat(out, n, c)[...] = p
    elif name == "softmax_grad":
        probs, t, dz, n, c = a
        d = _mat(probs, n, c).copy()
        d[np.arange(n), t[:n]] -= 1
        _mat(dz, n, c)[...] = d / d.dtype.type(n)
    elif name == "gather_rows":
        out, src, idx, n, d = a
        _mat(out, n, d)[...] = _mat(src, src.size // d, d)[idx[:n]]
    elif name == "sgd":
        p, g, lr, size = a; p -= lr * g
    elif name == "momentum":
        p, g, v, lr, mu, size = a; v[...] = mu * v - lr * g; p += v
    elif name == "nesterov":
        p, g, v, lr, mu, mu_sq, lr_ahead, size = a; p += mu_sq * v; p -= lr_ahead * g; v[...] = mu * v - lr * g
    elif name == "adagrad":
        p, g, h, lr, eps, size = a; h += g * g; p -= lr * g / (np.sqrt(h) + eps)
    elif name == "rmsprop":
        p, g, h, lr, decay, omd, eps, size = a; h[...] = decay * h + omd * g * g; p -= lr * g / (np.sqrt(h) + eps)
    elif name == "adam":
        p, g, m, v, lr_t, omb1, omb2, eps, size = a
        m += omb1 * (g - m); v += omb2 * (g * g - v); p -= lr_t * m / (np.sqrt(v) + eps)
    else:
        raise AssertionError(f"no emulation for kernel {name}")


class _Kernel:
    def __init__(self, full_name):
        self.name, suffix = full_name.rsplit("_", 1)
        assert self.name in SIGNATURES, f"kernel {self.name!r} is not defined in kernels/*.cu"
        self.T = {"f32": np.float32, "f64": np.float64}[suffix]
        self.launches = 0

    def __call__(self, grid, block, args):
        assert isinstance(args, tuple), "RawKernel arguments go in a tuple"
        assert all(isinstance(g, int) and g >= 1 for g in tuple(grid) + tuple(block)), (grid, block)
        _check(self.name, self.T, SIGNATURES[self.name], args)
        self.launches += 1
        _run(self.name, args)


class RawModule:
    def __init__(self, code, options=()):
        assert code == combined_source(), "the backend must build exactly the combined sources"
        self.kernels = {}

    def get_function(self, name):
        return self.kernels.setdefault(name, _Kernel(name))
