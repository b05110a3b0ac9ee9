"""Where the numba backend's compiled code is cached on disk.

Numba checks only the file that defines a function, not the modules it calls into, so after an
edit of loops.py the cached kernels of step.py would go on running the old loops. The cache lives
in a folder per version of this package's sources instead (a hash of them all): a changed file
means a fresh folder. Under NUMBA_CACHE_DIR when the user set one, else the user cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path

import numba


def folder() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    if USER_CACHE_DIR:
        base = Path(USER_CACHE_DIR) / "fastdl"
    else:
        from platformdirs import user_cache_dir
        base = Path(user_cache_dir("fastdl")) / "numba"
    return str(base / h.hexdigest()[:16])


USER_CACHE_DIR = numba.config.CACHE_DIR
_lock = threading.Lock()


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
