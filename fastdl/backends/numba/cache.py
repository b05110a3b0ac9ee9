"""Where the numba backend's compiled code is cached on disk.

Numba checks only the file that defines a function, not the modules it calls into, so after an
edit of loops.py the cached kernels of step.py would go on running the old loops. The cache lives
in a folder per version of this package's sources instead (a hash of them all): a changed file
means a fresh folder. Under NUMBA_CACHE_DIR when the user set one, else the user cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
from pathlib import Path

import numba


KEEP_DAYS = 30          # a version's folder unused this long is removed (another install may use it)


def folder() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    return str(_base() / h.hexdigest()[:16])


def _base() -> Path:
    if USER_CACHE_DIR:
        return Path(USER_CACHE_DIR) / "fastdl"
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("fastdl")) / "numba"


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
