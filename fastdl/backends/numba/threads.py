"""Numba's threads and the BLAS ``blas.gemm`` calls: one policy, in effect only while training.

The fused step splits its large GEMMs across Numba's threads, each calling BLAS from inside a
parallel loop. That BLAS is the copy of OpenBLAS SciPy ships; with its own thread pool on top the
threads fight over the cores (timed ad hoc on 2 cores: 19 ms a step instead of 0.2 ms). So:

* ``train_scope()`` (what the trainer enters around ``fit()``) sets that copy to one thread, and
  with ``FASTDL_NUM_THREADS`` caps every BLAS at that many; on exit everything is as before.
  Loading the backend, ``fastdl info`` or building a network change nothing.
* ``parts(n)``: how many parts a split GEMM uses *now*: one outside the scope, so a ``predict``
  called by a user never splits over an unpinned BLAS.
* NumPy's BLAS is never pinned: the layer path's batch-sized GEMMs run on it.
Where SciPy shares NumPy's BLAS (or threadpoolctl is missing) nothing is split or pinned.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numba
import numpy as np

from ...helpers import requested_threads

# How many parts a split uses (None: one per Numba thread). Tests set it to check uneven splits.
SPLIT_PARTS = None

_depth = 0                 # train_scope()s open, in every thread
_restore = []              # what the first of them changed, for the last to put back
_scope_lock = threading.Lock()
_scipy_blas = None         # SciPy's own BLAS controllers, found once

# One parallel region at a time in this process: Numba's workqueue threading layer (the one
# where neither OpenMP nor TBB is found) aborts the process when two threads launch parallel
# functions at once, and where the others allow it the regions would only share the cores.
# Every call of a parallel function (the step's first layer and update, a split GEMM) holds it:
# three uncontended acquisitions a step, ~0.15 us each of its ~150 us (timed ad hoc).
REGION = threading.Lock()


def configured_threads() -> int:
    """``FASTDL_NUM_THREADS``, else all of Numba's threads."""
    n = requested_threads()
    return numba.config.NUMBA_NUM_THREADS if n is None else min(n, numba.config.NUMBA_NUM_THREADS)


def scipy_blas() -> list:
    """threadpoolctl controllers of the BLAS SciPy ships apart from NumPy's (the one ``gemm``
    in ``@njit`` calls); empty where there is none. Only looks, changes nothing."""
    global _scipy_blas
    if _scipy_blas is None:
        try:
            import scipy
            from . import blas  # noqa: F401  (its import loads the library)
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _scipy_blas = []
            return _scipy_blas
        root = os.path.realpath(os.path.dirname(scipy.__file__))
        numpy_root = os.path.realpath(os.path.dirname(np.__file__))
        _scipy_blas = [lib for lib in ThreadpoolController().lib_controllers
                       if lib.user_api == "blas" and os.path.realpath(lib.filepath).startswith(root)
                       and not os.path.realpath(lib.filepath).startswith(numpy_root)]
    return _scipy_blas


def _set_threads(lib, n: int) -> None:
    """Set the thread count of ``lib`` (a threadpoolctl controller of a BLAS) from any thread.
    threadpoolctl's own ``set_num_threads`` lets only the first thread that set an OpenBLAS count
    set it again while that thread lives (the main thread, usually), so a trainer in another
    thread would run unpinned (measured: a worker thread's fit read 2 threads and ran slower);
    this calls the library's own function instead."""
    import ctypes
    handle = ctypes.CDLL(lib.filepath)         # the library already loaded: the same handle
    for prefix in ("scipy_", ""):
        for suffix in ("64_", ""):
            f = getattr(handle, f"{prefix}openblas_set_num_threads{suffix}", None)
            if f is not None:
                f(ctypes.c_int(n))
                return
    lib.set_num_threads(n)                      # not OpenBLAS: threadpoolctl's way


# How much work a parallel launch must share out to pay for itself, per Numba threading layer:
# (multiply-adds of a GEMM, elements of an update). One launch on 2 threads (an empty prange,
# timed ad hoc) costs 1.1-2.7 us on OpenMP and TBB, whose workers spin, and 66-74 us on the
# workqueue, whose workers sleep (the layer Numba uses where neither is found: a Mac without
# libomp, say). There the book's first layer (3.9 M multiply-adds a pass) and update (40 k
# elements) ran their loop 2x slower split than in the calling thread alone (timed ad hoc);
# the 784-1000-1000-10 network's (200 M, 1.8 M) still gain. A layer not listed splits all.
MIN_SPLIT_WORK = {"workqueue": (1 << 24, 1 << 18)}

_layer = None


def threading_layer() -> str:
    """The threading layer Numba runs parallel functions on in this process (its pool started
    if it was not: a few milliseconds, nothing compiled)."""
    global _layer
    if _layer is None:
        from numba.np.ufunc import parallel
        parallel._launch_threads()          # what Numba's first parallel call does first
        _layer = numba.threading_layer()
    return _layer


def splits(work: int, kind: str) -> bool:
    """Whether a split of ``work`` (``kind``: "gemm", in multiply-adds, or "update", in
    elements) pays for a parallel launch on this process's threading layer."""
    floors = MIN_SPLIT_WORK.get(threading_layer())
    return floors is None or work >= floors[("gemm", "update").index(kind)]


def split_parts(n_rows: int) -> int:
    """How many parts a split of ``n_rows`` rows uses inside ``train_scope()``."""
    if not scipy_blas():
        return 1
    return max(1, min(SPLIT_PARTS or numba.get_num_threads(), n_rows))


def active() -> bool:
    return _depth > 0


def parts(n_rows: int) -> int:
    """How many parts a split of ``n_rows`` rows uses now: one outside ``train_scope()``."""
    return split_parts(n_rows) if _depth else 1


@contextlib.contextmanager
def train_scope():
    """SciPy's BLAS single-threaded (and every BLAS capped by FASTDL_NUM_THREADS) for the block;
    nests, in one thread or several (a trainer per thread): the first to enter sets what the
    last to leave restores, whichever thread that is (``_set_threads``)."""
    global _depth
    # Numba's thread count belongs to each thread: a run in any thread gets FASTDL_NUM_THREADS
    numba_threads = numba.get_num_threads()
    numba.set_num_threads(configured_threads())
    with _scope_lock:
        if _depth == 0:
            if os.environ.get("FASTDL_NUM_THREADS", "").strip():       # the cap first, then the pin
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:
                    ThreadpoolController = None
                cap = configured_threads()
                for lib in ThreadpoolController().lib_controllers if ThreadpoolController else ():
                    if lib.user_api == "blas" and lib.num_threads > cap:
                        _restore.append((lib, lib.num_threads))
                        _set_threads(lib, cap)
            for lib in scipy_blas():
                _restore.append((lib, lib.num_threads))
                _set_threads(lib, 1)
        _depth += 1
    try:
        yield
    finally:
        numba.set_num_threads(numba_threads)
        with _scope_lock:
            _depth -= 1
            if _depth == 0:
                for lib, n in reversed(_restore):
                    _set_threads(lib, n)
                _restore.clear()
