"""Serial bodies that a parallel loop calls by address, so that each compiles once.

Numba links the code of every function a compiled function calls into that function's own
library and compiles it there again, and a parallel function is two libraries (its gufunc and
itself): a body called from a ``prange`` loop compiled twice, with the thread machinery's
analysis over all of it. Called by address instead (``call(address, args)``: the address is an
integer argument of the parallel function), the body compiles once, in its own library, and the
parallel function holds only the loop and the call. Each has a disk cache entry of its own,
keyed by types (an address is not part of any), so both load in a later process.

The body takes one tuple of arguments and returns int64 (0: its part ran; 1: its part did not
fit; the parallel function raises after the loop). Numba cannot check a pointer's signature:
``Body`` compiles the body for the types of example arguments, and a caller passes arguments of
exactly those types (``fits`` says whether an array has them; anything else is copied first).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic


class Body:
    """``f`` compiled for one tuple of arguments like ``examples``, when ``target`` is first asked
    for (a layer built before a run's shared compile leaves the body to it; under
    ``ahead.compile_jobs``' recorder that first call counts it among the jobs). Its address is found by its
    symbol's name, which Numba makes from the function's qualified name, its argument types and a
    counter of the process that compiled it: two functions of one name loaded from the disk cache
    can share a symbol, so each body needs a name of its own, and an address already given to
    another body is refused."""

    _given: dict = {}                   # address -> (function, argument types) it was given for

    def __init__(self, f, examples: tuple):
        self.f = f
        self.compiled = isinstance(f, Dispatcher)        # not under NUMBA_DISABLE_JIT
        self.args = (numba.typeof(examples),) if self.compiled else ()
        self._target = 0 if self.compiled else f

    @property
    def target(self):
        """What a parallel function calls: the compiled body's address, or ``f`` itself under
        NUMBA_DISABLE_JIT. 0 while ``ahead.compile_jobs``' recorder stands in for Numba's
        compiler (nothing compiled; a parallel function given 0 runs nothing)."""
        if not self._target:
            cres = self.f.overloads.get(self.args)
            if cres is None:                  # compile_jobs only recorded it: compile (or load) now
                self.f.compile(self.args)
                cres = self.f.overloads.get(self.args)
            if cres is None:
                return 0
            if cres.signature.return_type != types.int64:       # what call() was typed for
                raise TypeError(f"{self.f.py_func.__name__} returns {cres.signature.return_type}, not int64")
            address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            owner = Body._given.setdefault(address, (self.f, self.args))
            if owner[0] is not self.f or owner[1] != self.args:
                raise RuntimeError(f"{self.f.py_func.__qualname__} and {owner[0].py_func.__qualname__} compiled to one "
                                   f"symbol ({cres.fndesc.llvm_func_name[:60]}...); give each body function a name "
                                   f"of its own")
            self._target = address
        return self._target


@intrinsic
def _call(typingctx, address, args):
    if not (isinstance(address, types.Integer) and isinstance(args, types.BaseTuple)):
        return None

    def codegen(context, builder, sig, llargs):
        fnty = context.call_conv.get_function_type(types.int64, (args,))
        fn = builder.inttoptr(llargs[0], fnty.as_pointer())
        status, res = context.call_conv.call_function(builder, fn, types.int64, (args,), (llargs[1],))
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return res
    return types.int64(address, args), codegen


def _call_python(f, args):
    return f(args)


# call(body, args): the body's result for its tuple of arguments
call = _call_python if numba.config.DISABLE_JIT else _call


def fits(a, dtype, ndim: int) -> bool:
    """Whether ``a`` has the type a body compiled for: a writeable, aligned, C-contiguous ndarray
    of ``dtype`` with ``ndim`` dimensions."""
    if type(a) is not np.ndarray or a.dtype != dtype or a.ndim != ndim:
        return False
    flags = a.flags
    return flags.c_contiguous and flags.writeable and flags.aligned
