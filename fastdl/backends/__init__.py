"""The backend registry: one name -> one module meeting the kernel contract.

A backend is a module (``fastdl.backends.numpy``, ``.numba``, ``.cupy``) providing every entry of
the contract (``fastdl/backends/contract.py``) that its ``CAPABILITIES`` call for; a module that
lacks one is refused at load, naming what is missing. Modules are imported lazily, on first use,
so ``import fastdl`` pulls in neither numba nor cupy.

Which backend runs, highest precedence first:
  1. an explicit ``backend=`` argument (networks, layers, trainer, ``get_backend(name)``);
  2. the innermost ``with use_backend(name):`` block (per thread / async task);
  3. ``set_backend(name)``;
  4. the environment variable ``FASTDL_BACKEND`` (stripped, case-insensitive, empty = unset);
  5. ``"numpy"``.
There is never a silent fallback: a name that cannot be honoured raises.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import os
import types
from typing import Iterator

from ..errors import BackendUnavailableError, UnknownBackendError
from . import contract

NAMES = ("numpy", "numba", "cupy")
DEFAULT = "numpy"
ENV_VAR = "FASTDL_BACKEND"

INSTALL_HINTS = {
    "numpy": 'pip install --force-reinstall fastdl',
    "numba": 'pip install "fastdl[numba]"',
    "cupy": 'pip install "fastdl[cuda12]" (CUDA 12 driver) or pip install "fastdl[cuda13]" (CUDA 13 driver)',
}

# Backends whose first use compiles, and a module that tells whether it is still ahead without
# importing the backend (``first_use() -> bool``): ``fastdl train`` then starts a first run's
# compile helper before loading anything (``fastdl.warmup``)
FIRST_USE = {"numba": "fastdl.backends.numba_cache"}

_loaded: dict[str, types.ModuleType] = {}
_failed: dict[str, str] = {}
_misset: set[str] = set()          # of those, the ones that failed on a setting, not an install
_global: str | None = None
_scoped: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("fastdl_backend_stack", default=())


def _normalize(name: object, source: str) -> str:
    if not isinstance(name, str):
        raise UnknownBackendError(
            f"backend names are strings, got {type(name).__name__} {name!r} from {source}; "
            f"valid names: {', '.join(NAMES)}")
    key = name.strip().lower()
    if key not in NAMES:
        close = difflib.get_close_matches(key, NAMES, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownBackendError(
            f"unknown backend {name!r} (from {source}). Valid names: {', '.join(NAMES)}.{hint}")
    return key


def _load(key: str, source: str) -> types.ModuleType:
    module = _loaded.get(key)
    if module is not None:
        return module
    if key in _failed:
        reason = _failed[key]
    else:
        try:
            module = importlib.import_module(f"{__name__}.{key}")
            lacking = contract.missing(module)
            if lacking:
                raise TypeError(f"the module does not meet fastdl's kernel contract: it lacks {', '.join(lacking)}")
            module.check_usable()  # raises with the hardware/driver reason
            _loaded[key] = module
            return module
        except Exception as exc:  # ImportError, CUDA runtime errors, ...
            reason = f"{type(exc).__name__}: {exc}"
            _failed[key] = reason
            if isinstance(exc, ValueError):        # a setting of the user's: FASTDL_NUM_THREADS='abc'
                _misset.add(key)
    hint = install_hint(key)
    raise BackendUnavailableError(
        f"backend {key!r} (from {source}) cannot run here: {reason}. " + (f"To use it: {hint}. " if hint else "") +
        f"Available now: {', '.join(available_backends()) or 'none'}.")


def install_hint(key: str) -> str | None:
    """The command that installs a backend which failed to load; None where it failed on a
    setting (its reason says what to change; installing again would not help)."""
    return None if key in _misset else INSTALL_HINTS[key]


def _resolve_name(name: str | None) -> tuple[str, str]:
    """Return (normalized name, where it came from) following the precedence rules."""
    if name is not None:
        return _normalize(name, f"backend={name!r}"), f"backend={name!r}"
    stack = _scoped.get()
    if stack:
        return stack[-1], f"use_backend({stack[-1]!r})"
    if _global is not None:
        return _global, f"set_backend({_global!r})"
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        source = f"{ENV_VAR}={os.environ[ENV_VAR]!r}"
        return _normalize(env, source), source
    return DEFAULT, "the default"


def get_backend(name: "str | types.ModuleType | None" = None) -> types.ModuleType:
    """The backend module for ``name``, or the current one when ``name`` is None.

    A backend module passes through unchanged, so ``get_backend(network.backend)`` is cheap.
    """
    if isinstance(name, types.ModuleType):
        return name
    key, source = _resolve_name(name)
    return _load(key, source)


def compile_likely(name: str | None = None) -> bool:
    """Whether using backend ``name`` (as ``get_backend`` resolves it) would compile first: a guess
    made in a few milliseconds without importing it (``FIRST_USE``), False for a backend that
    never compiles or a name that does not resolve (``get_backend`` then says why)."""
    try:
        key, _ = _resolve_name(name)
    except UnknownBackendError:
        return False
    probe = FIRST_USE.get(key)
    return probe is not None and importlib.import_module(probe).first_use()


def current_backend_name(name: str | None = None) -> str:
    """The name the precedence rules pick now for ``name`` (None: the current backend's), without
    loading it."""
    return _resolve_name(name)[0]


def set_backend(name: str | None) -> types.ModuleType | None:
    """Make ``name`` the process-wide default (None clears it). Raises if it cannot run here."""
    global _global
    if name is None:
        _global = None
        return None
    key = _normalize(name, f"set_backend({name!r})")
    module = _load(key, f"set_backend({name!r})")
    _global = key
    return module


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[types.ModuleType]:
    """``with use_backend("numba") as bk:`` selects a backend for the block (nests, thread-safe).
    It holds in the thread (or asyncio task) that entered it; a thread started inside the block
    begins from the process default, as context variables do."""
    key = _normalize(name, f"use_backend({name!r})")
    module = _load(key, f"use_backend({name!r})")
    token = _scoped.set(_scoped.get() + (key,))
    try:
        yield module
    finally:
        _scoped.reset(token)


def backend_status(name: str) -> tuple[bool, str]:
    """(usable, reason) for one backend name; loads it if it was not loaded yet."""
    key = _normalize(name, f"backend_status({name!r})")
    try:
        _load(key, "backend_status")
        return True, "ok"
    except BackendUnavailableError:
        return False, _failed[key]


def available_backends() -> list[str]:
    """Names of the backends that can run in this process, in registry order."""
    usable = []
    for key in NAMES:
        if key in _loaded:
            usable.append(key)
        elif key not in _failed:
            try:
                _load(key, "available_backends()")
                usable.append(key)
            except BackendUnavailableError:
                pass
    return usable
