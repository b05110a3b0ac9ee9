"""Numba's disk cache pointed at this version's folder (``fastdl.backends.numba_cache`` says
which, and why one per version), and older versions' folders pruned."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

import numba

from .. import numba_cache


KEEP_DAYS = 30          # a version's folder unused this long is removed (another install may use it)


def folder() -> str:
    return numba_cache.folder(USER_CACHE_DIR)


def _base() -> Path:
    return numba_cache.base(USER_CACHE_DIR)


def prune(keep_days: float = KEEP_DAYS, now: float | None = None) -> list[Path]:
    """Remove the folders of other source versions not written to for ``keep_days`` (each
    version of fastdl compiles into its own; without this they would pile up). Never this
    version's folder; errors (a folder in use elsewhere, permissions) leave things as they are.
    Returns what was removed."""
    removed, now = [], time.time() if now is None else now
    try:
        others = [p for p in _base().iterdir() if p.is_dir() and str(p) != FOLDER and len(p.name) == 16
                  and all(c in "0123456789abcdef" for c in p.name)]
    except OSError:
        return removed
    for p in others:
        try:
            newest = max([p.stat().st_mtime] + [f.stat().st_mtime for f in p.rglob("*")])
            if now - newest > keep_days * 86400:
                shutil.rmtree(p)
                removed.append(p)
        except OSError:
            pass
    return removed


USER_CACHE_DIR = numba.config.CACHE_DIR
_lock = threading.RLock()       # the backend's import holds it while it makes twins (loops.inner)


@contextlib.contextmanager
def ours():
    """Numba reads its cache folder when a function is decorated: functions decorated inside
    this block cache in ours; the user's own setting is restored after."""
    with _lock:
        numba.config.CACHE_DIR = FOLDER
        try:
            yield
        finally:
            numba.config.CACHE_DIR = USER_CACHE_DIR


FOLDER = folder()
