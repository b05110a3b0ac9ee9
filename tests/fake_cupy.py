"""A stand-in for CuPy on the CPU that runs the CUDA kernels themselves.

Arrays are a NumPy subclass (so host and "device" arrays stay distinguishable), and CuPy's array
functions are NumPy's wrapped to return that subclass. ``RawModule(code)`` compiles ``code`` (the
very source the GPU backend hands NVRTC) with the machine's C++ compiler (``cuda_build``) against
``tests/cuda_host/cuda_host.h``, which gives CUDA's built-ins their meaning on the CPU (blocks,
threads as fibers, ``__syncthreads``, warp shuffles; see its header for what it does not model).
A launch first checks its arguments against the kernel's CUDA signature (count, order, pointer
or scalar, element type, C-contiguity), then runs the compiled kernel with exactly the grid and
block the backend passed, over the arrays' memory. So the CUDA code's logic and launch geometry
are tested here; speed, NVRTC and the driver only on a GPU (bench/gpu_check.sh).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import types
from pathlib import Path

import numpy as np

from cuda_build import CXX, build  # noqa: F401 - CXX: whether kernels can run here
from fastdl.cuda_sources import combined_source, signatures

__version__ = "0.0-emulated"


class ndarray(np.ndarray):
    """A "device" array. While a stream captures, what would write one is recorded, and what
    would allocate one is refused (see ``_capturing``)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        base = lambda a: a.view(np.ndarray) if isinstance(a, ndarray) else a
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(base(o) for o in out)
        args = tuple(base(a) for a in inputs)
        run = lambda: getattr(ufunc, method)(*args, **kwargs)
        if _CAPTURE is not None:
            _capturing(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}", {"out": out}, run)
        else:
            result = run()
            if out is None:
                return _dev(result)
        return out[0] if len(out) == 1 else out

    def __array_finalize__(self, obj):
        if _CAPTURE is not None and self.base is None:      # new memory, not a view (copy, astype, ...)
            raise CaptureError("a new device array during stream capture (a graph cannot own pool memory): "
                               "write into a preallocated one")

    def __setitem__(self, key, value):
        if _CAPTURE is not None:
            _CAPTURE.append(lambda: np.ndarray.__setitem__(self, key, value))
            return
        super().__setitem__(key, value)


# -- stream capture (CUDA graphs) ----------------------------------------------------------------
# While a stream captures, the GPU runs nothing: kernel launches, cuBLAS calls and copies become
# nodes of a graph that each launch of it replays, on the very same memory. So here: work that
# writes given arrays is recorded and replayed in order by Graph.launch(); work that would
# allocate its result is refused, as it must be on a GPU too (pool memory handed out during a
# capture goes back to the pool afterwards while the graph still writes to it); so are host
# transfers and synchronisation, which a capture forbids.

_CAPTURE = None              # the recorded work while a stream captures


class CaptureError(RuntimeError):
    pass


def _capturing(what, kwargs, work):
    if kwargs.get("out") is None:
        raise CaptureError(f"{what} allocates its result during stream capture (a graph cannot own pool "
                           f"memory): write into a preallocated array with out=")
    _CAPTURE.append(work)


def _no_capture(what):
    if _CAPTURE is not None:
        raise CaptureError(f"{what} during stream capture: a captured graph cannot wait on the host")


class MemoryHook:
    """CuPy's pool hooks; the emulator checks allocations itself (above), so nothing is reported."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Graph:
    def __init__(self, work):
        self.work, self.launches = work, 0

    def launch(self, stream=None):
        _no_capture("launching a graph")
        self.launches += 1
        for w in self.work:
            w()


def _dev(a):
    if isinstance(a, np.ndarray) and not isinstance(a, ndarray):
        return a.view(ndarray)
    if isinstance(a, tuple):
        return tuple(_dev(x) for x in a)
    return a


def _wrap(fn):
    def wrapped(*args, **kwargs):
        if _CAPTURE is not None:
            _capturing(f"cupy.{getattr(fn, '__name__', 'fn')}", kwargs, lambda: fn(*args, **kwargs))
            return kwargs["out"]
        return _dev(fn(*args, **kwargs))
    wrapped.__name__ = getattr(fn, "__name__", "fn")
    return wrapped


def asarray(a, dtype=None):
    return np.array(a, dtype=dtype, copy=True).view(ndarray) if not isinstance(a, ndarray) else _dev(np.asarray(a, dtype=dtype))


def ascontiguousarray(a, dtype=None):
    return _dev(np.ascontiguousarray(a, dtype=dtype))


def asnumpy(a):
    _no_capture("copying to the host")
    return np.array(a, copy=True).view(np.ndarray) if isinstance(a, np.ndarray) else np.asarray(a)


def __getattr__(name):
    obj = getattr(np, name)
    return _wrap(obj) if callable(obj) and not isinstance(obj, type) else obj


# -- the CUDA runtime --------------------------------------------------------------------------

class _Stream:
    """The current stream; ``Stream(non_blocking=True)`` makes one to capture on."""

    def __init__(self, null=False, non_blocking=False):
        self.capturing = False

    def synchronize(self):
        _no_capture("synchronizing")

    def __enter__(self):
        global _CURRENT
        self._outer, _CURRENT = _CURRENT, self
        return self

    def __exit__(self, *exc):
        global _CURRENT
        _CURRENT = self._outer

    def begin_capture(self, mode=None):
        global _CAPTURE
        assert self is not _NULL, "cannot capture on the default (legacy) stream"
        assert _CAPTURE is None, "a stream is capturing already"
        _CAPTURE, self.capturing = [], True

    def end_capture(self):
        global _CAPTURE
        assert self.capturing, "this stream is not capturing"
        work, _CAPTURE, self.capturing = _CAPTURE, None, False
        return Graph(work)

    def is_capturing(self):
        return self.capturing


_NULL = _CURRENT = _Stream(null=True)


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


cuda = types.SimpleNamespace(runtime=_Runtime(), Device=_Device, Stream=_Stream, Graph=Graph, MemoryHook=MemoryHook,
                             get_current_stream=lambda: _CURRENT)


# -- kernels -------------------------------------------------------------------------------------

_C_TYPES = {"T": None, "long long": ctypes.c_longlong, "int": ctypes.c_int, "double": ctypes.c_double,
            "unsigned long long": ctypes.c_ulonglong}


def _check(name, T, sig, args):
    assert len(args) == len(sig), f"{name}: {len(args)} arguments, the kernel takes {len(sig)}: {sig}"
    for i, ((kind, _), a) in enumerate(zip(sig, args)):
        where = f"{name} argument {i} ({kind})"
        if kind.endswith("*"):
            assert isinstance(a, ndarray), f"{where}: got {type(a).__name__}, not a device array"
            assert a.flags.c_contiguous, f"{where}: not C-contiguous"
            want = T if kind == "T*" else {"long long*": np.int64, "bool*": np.bool_, "unsigned char*": np.uint8}[kind]
            assert a.dtype == want, f"{where}: dtype {a.dtype}, kernel expects {np.dtype(want)}"
        else:
            want = {"T": T, "long long": np.int64, "int": np.int32, "double": float,
                    "unsigned long long": np.uint64}[kind]
            assert type(a) is want, f"{where}: got {type(a).__name__}, kernel expects {want.__name__}"


class _Kernel:
    def __init__(self, module, full_name):
        self.name, suffix = full_name.rsplit("_", 1)
        assert self.name in module.sigs, f"kernel {self.name!r} is not defined in kernels/*.cu"
        self.T = {"f32": np.float32, "f64": np.float64}[suffix]
        self.sig = module.sigs[self.name]
        self.fn = getattr(module.dll, f"launch_{full_name}")
        self.dll = module.dll
        self.launches = 0

    def __call__(self, grid, block, args):
        assert isinstance(args, tuple), "RawKernel arguments go in a tuple"
        grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
        assert all(isinstance(g, int) and g >= 1 for g in grid + block), (grid, block)
        assert block[0] * block[1] * block[2] <= 1024, f"{self.name}: {block} is more than 1024 threads"
        _check(self.name, self.T, self.sig, args)
        real = ctypes.c_float if self.T == np.float32 else ctypes.c_double
        c_args = [ctypes.c_void_p(a.ctypes.data) if kind.endswith("*") else (_C_TYPES[kind] or real)(a)
                  for (kind, _), a in zip(self.sig, args)]
        if _CAPTURE is not None:               # a node of the graph: the same pointers and scalars
            _CAPTURE.append(lambda: self._run(grid, block, c_args))
            return
        self._run(grid, block, c_args)

    def _run(self, grid, block, c_args):
        self.launches += 1
        if self.fn(*grid, *block, *c_args) != 0:
            raise RuntimeError(f"kernel {self.name}_{'f32' if self.T == np.float32 else 'f64'} failed on the "
                               f"CPU emulator: {self.dll.fastdl_emu_last_error().decode()}")


class RawModule:
    def __init__(self, code, options=()):
        assert code == combined_source(), "the backend must build exactly the combined sources"
        self.sigs = signatures(code)
        self.dll = build(code)
        self.kernels = {}

    def get_function(self, name):
        if name not in self.kernels:
            self.kernels[name] = _Kernel(self, name)
        return self.kernels[name]


BACKEND_SOURCE = Path(__file__).resolve().parent.parent / "fastdl" / "backends" / "cupy.py"


@contextlib.contextmanager
def emulated_backend(source: str | None = None):
    """The cupy backend (``fastdl/backends/cupy.py``, or ``source``: a changed copy of it) loaded
    over this module as ``cupy``; its kernels compiled for the CPU."""
    from fastdl import backends
    saved = sys.modules.get("cupy")
    before = (dict(backends._loaded), dict(backends._failed), sys.modules.get("fastdl.backends.cupy"),
              set(backends._misset))
    sys.modules["cupy"] = sys.modules[__name__]
    try:
        module = types.ModuleType("fastdl.backends._cupy_emulated")
        module.__package__ = "fastdl.backends"
        module.__file__ = str(BACKEND_SOURCE)
        exec(compile(source or BACKEND_SOURCE.read_text(), str(BACKEND_SOURCE), "exec"), module.__dict__)
        module.check_usable()
        yield module
    finally:
        if saved is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved
        # a name lookup of "cupy" while emulating (get_backend("cupy")) loads the real backend
        # module over this stand-in: forget it, so later tests see the machine's own cupy
        backends._loaded.clear(), backends._loaded.update(before[0])
        backends._failed.clear(), backends._failed.update(before[1])
        backends._misset.clear(), backends._misset.update(before[3])
        if before[2] is None:
            sys.modules.pop("fastdl.backends.cupy", None)
