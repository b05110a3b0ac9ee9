"""The contract's argument check, in front of a backend's kernels, updates and hooks.

``contract.ARGS`` states each argument's shape (its dimensions named, so that "x:ND W:DM" ties
x's columns to W's rows) and kind. A backend whose loops or kernels trust what they are given
(numba's compile a loop for whatever types arrive and index by the shapes they are told; CUDA
kernels read whatever memory they are pointed at, sized by the call's integers) puts
``guard_module`` over its module: a call with an array of another rank, sizes that do not agree,
a float array of another dtype than the call's others (or not float32/float64), integers or
booleans where they do not belong, or a hyperparameter that is not a number, then raises
fastdl's ShapeError or DTypeError naming the argument, before anything runs. NumPy's reference
takes all of these that NumPy can (it is the oracle, not a gate). A few microseconds a call the
first time, about one after: a call whose arrays have the shapes and dtypes of one already let
through is let through again (``_plain``).
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .contract import ENTRIES, arg_specs

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
GUARDED = ("kernel", "update", "hook")
KINDS = {"i": ("iu", "integers"), "m": ("b", "booleans")}
# Each guarded function's own, for ``unchecked``. Not ``__wrapped__`` and ``inspect.unwrap``: a
# Numba dispatcher carries ``__wrapped__`` too (its Python source function), and unwrapping one
# runs the fused step's loops in the interpreter, 10-25x slower.
GUARDS: dict = {}
MEMO = 256                  # keys of passed calls remembered per function; forgotten all at once past it


def guarded(entry, f, array_type):
    """``f`` (the backend's ``entry.name``) behind the check. Numbers given as one-element arrays
    reach it as numbers, but where ``contract.ARGS`` says "#~d" a device array stays one."""
    specs = arg_specs(entry.name)
    names = [arg for arg, _ in specs]
    shapes = " ".join(f"{arg}:" + "|".join(s for s, _ in forms) for arg, forms in specs if forms[0][1][0] != "#")
    device_type = None if array_type is np.ndarray else array_type
    numbers = [forms[0][1][0] == "#" for _, forms in specs]

    def refuse(error, args, why):
        raise error(f"{entry.name}: {why} ({_types(names, args)}; it takes {entry.signature.split(' ->')[0]}, "
                    f"shapes {shapes})")

    passed = {}                     # keys of calls the check let through unchanged (see _plain)

    def call(*args, **named):
        key = None
        if not named:
            key = tuple([(a.shape, a.dtype) if type(a) is array_type else type(a) for a in args])
            if key in passed:
                return f(*args)
        else:                       # keywords in the positions the signature gives them, while they run on
            extra = []
            for n in names[len(args):]:
                if n not in named:
                    break
                extra.append(named.pop(n))
            args = (*args, *extra)
        sizes, floats, shared, same, chosen, out = {}, None, None, None, None, list(args)
        for i, ((arg, forms), a) in enumerate(zip(specs, args)):
            kind = forms[0][1]
            if kind[0] == "#":
                if isinstance(a, (int, float)):
                    continue
                if not (isinstance(a, (np.integer, np.floating, np.bool_))
                        or isinstance(a, (np.ndarray, array_type)) and a.size == 1 and a.dtype.kind in "biuf"):
                    refuse(DTypeError, args, f"{arg} must be a real number")
                if not (kind == "#d" and device_type is not None and isinstance(a, device_type)):
                    out[i] = a.item()               # a device array stays where allowed: read when it runs
                continue
            if not isinstance(a, array_type):
                refuse(DTypeError, args, f"{arg} must be a {array_type.__module__}.{array_type.__name__}, "
                                         f"not {type(a).__name__}")
            ndim = a.ndim
            for form, (shape, kind) in enumerate(forms):
                if shape in "*=" or len(shape) == ndim:
                    break
            else:
                refuse(ShapeError, args, f"{arg} has {ndim} dimension(s)")
            if len(forms) > 1:
                if chosen not in (None, form):
                    refuse(ShapeError, args, "the arguments that may take several shapes must all take the same one")
                chosen = form
            if shape == "=":
                if same not in (None, a.shape):
                    refuse(ShapeError, args, "the parameter (or average), its gradient and its state must have one shape")
                same = a.shape
            elif shape != "*":
                for letter, size in zip(shape, a.shape):
                    bound = sizes.setdefault(letter, (size, arg))
                    if bound[0] != size:
                        refuse(ShapeError, args, f"{arg}'s {letter} is {size} where {bound[1]}'s is {bound[0]}")
            dt = a.dtype
            # "is not None", never "not in (None, dt)": a dtype equals None where it is float64
            # (np.dtype(None) is float64), so a float64 first array let any dtype after it through
            if kind == "f":
                if dt not in FLOATS or (floats is not None and dt != floats):
                    refuse(DTypeError, args, "its arrays must be float32 or float64, one dtype")
                floats = dt
            elif kind == "a":
                if shared is not None and dt != shared:
                    refuse(DTypeError, args, f"{arg} is {dt} where the others are {shared}")
                shared = dt
            elif dt.kind not in KINDS[kind][0]:
                refuse(DTypeError, args, f"{arg} is {dt}; it must be an array of {KINDS[kind][1]}")
        if key is not None and _plain(args, numbers, array_type):      # (then nothing was converted)
            if len(passed) >= MEMO:
                passed.clear()
            passed[key] = True
        return f(*out, **named)                 # what is left of the keywords: f's to take or refuse
    call.__name__ = call.__qualname__ = entry.name
    call.__doc__ = f"{entry.signature}: {entry.rule}"
    GUARDS[call] = f
    return call


def _plain(args, numbers, array_type) -> bool:
    """Whether the check's verdict on ``args`` follows from their key alone: each array exactly
    of ``array_type`` (the check reads only its shape and dtype) and each number exactly an int
    or a float (which it lets through as it is, where it converts any other number). Then a call with the same key is let through
    without checking again: the same answer, ~3x faster (~1 us a call, timed ad hoc)."""
    return all(type(a) in (int, float) if number else type(a) is array_type
               for a, number in zip(args, numbers)) and len(args) <= len(numbers)


def unchecked(f):
    """The function behind ``f``'s guard (``f`` itself where it has none)."""
    return GUARDS.get(f, f)


def _types(names, args) -> str:
    return ", ".join(f"{n}={a.dtype}{list(a.shape)}" if hasattr(a, "dtype") and hasattr(a, "shape")
                     else f"{n}={a!r}" for n, a in zip(names, args))


def guard_module(namespace: dict, array_type) -> None:
    """Every kernel, update and hook a backend module's ``namespace`` holds, guarded."""
    for entry in ENTRIES:
        if entry.kind in GUARDED and entry.name in namespace:
            namespace[entry.name] = guarded(entry, namespace[entry.name], array_type)


class Unchecked:
    """A backend module seen past its guard, for a caller whose arrays were all checked when it
    was built (the fused step's own buffers): ~2 us less a call (timed ad hoc)."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        value = unchecked(getattr(self._module, name))
        setattr(self, name, value)          # later lookups are plain attribute reads
        return value
