"""Where the numba backend keeps its compiled code, told without importing Numba.

One folder per version of the backend's sources and of Numba (a hash of them all): Numba checks
only the file that defines a function, not the modules it calls into, so after an edit of
loops.py the cached kernels of step.py would go on running the old loops; a changed file means a
fresh folder. Under NUMBA_CACHE_DIR when the user set one, else the user cache folder.
``fastdl.backends.numba.cache`` points Numba there. Here nothing imports Numba (0.3 s), so that
``fastdl train`` can ask ``first_use()`` before it loads the backend and start a first run's
compile helper at once (``fastdl.warmup``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

SOURCES = Path(__file__).parent / "numba"          # the backend's own modules


def cache_on() -> bool:
    """Whether the backend caches compiled code on disk (``FASTDL_NUMBA_CACHE=0`` turns it off)."""
    return os.environ.get("FASTDL_NUMBA_CACHE", "1").strip() not in ("0", "false", "no", "off")


def writable(path: str) -> bool:
    """Whether this process can write ``path`` (its nearest existing folder: Numba makes the rest).
    Where it cannot, Numba would cache beside the package's sources instead, checking only each
    defining file's time (the staleness this module's folders avoid): the backend caches nothing."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def numba_version() -> str:
    try:
        return importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:     # Numba without its metadata: ask it
        import numba
        return numba.__version__


def base(user_dir: str | None) -> Path:
    """The folder holding each version's folder; ``user_dir``: Numba's NUMBA_CACHE_DIR, if set."""
    if user_dir:
        return Path(user_dir) / "fastdl"
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("fastdl")) / "numba"


def folder(user_dir: str | None) -> str:
    """This version's folder."""
    h = hashlib.sha256(numba_version().encode())
    for f in sorted(SOURCES.glob("*.py")):
        h.update(f.read_bytes())
    return str(base(user_dir) / h.hexdigest()[:16])


def first_use() -> bool:
    """Whether this version of the backend has not compiled anything yet, so that a run would
    compile: no index of compiled code in its folder (Numba makes the folder when the backend is
    imported, and an index file, ``*.nbi``, for each function it compiles into it). Read from the
    environment as Numba reads it (a cache folder set in Numba's config file instead is not
    seen); a wrong guess costs only the early start."""
    if not cache_on() or os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        return False
    try:
        f = folder(os.environ.get("NUMBA_CACHE_DIR") or None)
        return writable(f) and next(Path(f).rglob("*.nbi"), None) is None
    except (OSError, ImportError):
        return False
