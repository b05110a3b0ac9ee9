"""A run's compile jobs, learned without compiling, so that two processes can share them.

``compile_jobs(run)`` calls ``run()`` (a warm-up: two steps and an evaluation on a copy of the
network) with Numba's compiler replaced by a recorder. A kernel whose code the disk cache holds
loads and runs as usual; every other call records (kernel, argument types) and returns 0 instead
of running, so ``run`` passes every call site in about a tenth of a second, computing nothing
meaningful. The jobs come longest first (``COMPILE_SECONDS``). Each returned job compiles its
kernel into the disk cache (``cache.py``), where
another process calling that kernel with those types finds it (``fastdl.warmup`` has a helper
process compile half of them). With a warm cache there are no jobs.

The recorder stands in for ``Dispatcher.compile`` and asks the cache's index whether it holds
a signature: Numba internals, so any surprise there counts as "not cached" (the job then loads
what the cache has: slower, never wrong).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

from . import loops


# Seconds each of the step's kernels took to compile, its callees included, on a first run of the
# book's network (2-vCPU AMD EPYC, Numba 0.68.1, at step.OPT_LEVEL, 2026-12-05; timed ad hoc, one process,
# empty cache, three runs, less the 0.3 s the first compile of a process adds; a body that a kernel
# calls by address, `by_address`, is a job of its own).
# Jobs go longest first: two processes each taking the next job nobody has then end close together
# (in first-call order the run compiled its two longest while the helper, done, waited 1.2 s).
# A kernel not listed counts as short; a stale figure only costs balance. Evaluation from float
# pixels (a library user's arrays, not ByteImages) runs the layer path's tall products through
# `split_dot`, a parallel function: ~1.0 s, which, unlisted, came last and ran alone at the end
# (2026-12-05, the same machine and way).
COMPILE_SECONDS = {"split_dot": 1.0, "split_body": 0.9, "output_layer": 0.88, "update_parts": 0.8,
                   "nonzero_body": 0.7, "split_layer": 0.5, "relu_forward": 0.13, "dot": 0.09}


def _skipped(*args):
    return 0


def _cached(dispatcher, sig) -> bool:
    try:
        cache = dispatcher._cache
        return cache._index_key(sig, dispatcher.targetctx.codegen()) in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - see the module's notes
        return False


def compile_jobs(run, cached: bool = False) -> list[tuple[str, object]]:
    """[(description, job)] in the order ``run`` first calls each kernel with new types; ``job()``
    compiles it. ``cached=True`` lists what the disk cache holds too (for a helper matching
    another process's list, part of which that process may have compiled since). Empty where
    compiled code stays in this process (disk cache off) or nothing compiles (NUMBA_DISABLE_JIT).
    Not thread-safe: no other thread may compile meanwhile."""
    if not loops.CACHE or numba.config.DISABLE_JIT:
        return []
    seen = {}
    compile_ = Dispatcher.compile

    def record(self, sig):
        if not cached and _cached(self, sig):
            return compile_(self, sig)
        seen.setdefault((self, tuple(sig)), None)
        return _skipped             # what the caller then runs in the kernel's place
    Dispatcher.compile = record
    try:
        with np.errstate(all="ignore"):
            run()
    except Exception:  # noqa: BLE001 - zeros in place of results may upset run(); the jobs so far stand
        pass
    finally:
        Dispatcher.compile = compile_
    order = sorted(seen, key=lambda job: -COMPILE_SECONDS.get(job[0].py_func.__name__, 0.0))   # stable
    return [(f"{d.py_func.__module__}.{d.py_func.__qualname__}{sig}", functools.partial(d.compile, sig))
            for d, sig in order]
