"""The folder a command writes its results into (``--out``): made and checked writable before
the work starts, and held while a run writes its fixed file names there, so that a second
``fastdl train`` into the same folder (the default ``runs/latest``, from another terminal) is
refused instead of mixing its params.npz, history.json and checkpoint with the first one's.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from .errors import FastDLError

LOCK = ".fastdl.lock"

try:                                # POSIX
    import fcntl

    def _lock(f) -> bool:
        """Whether the lock was taken; BlockingIOError where another process holds it."""
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise
        except OSError:             # a file system without locks (ENOLCK, ENOTSUP): run unguarded
            return False
        return True
except ImportError:                 # Windows
    import msvcrt

    def _lock(f) -> bool:
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):
                raise BlockingIOError(exc.errno, exc.strerror) from None
            return False
        return True


def out_folder(path: Path, what: str | None = None) -> Path:
    """``path`` as a writable folder, created if need be, or one line saying why not (never a
    traceback), naming it as ``what`` (by default the flag, ``--out PATH``; a function's
    argument, ``out='PATH'``); every command that writes a folder checks it before its work starts."""
    path = Path(path)
    what = what or f"--out {path}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FastDLError(f"{what}: that is a file, not a folder; give a folder for the run's files") from None
    except OSError as exc:
        raise FastDLError(f"{what}: cannot create that folder ({exc.strerror or exc}); give another path") from None
    probe = path / ".fastdl-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FastDLError(f"{what}: cannot write there ({exc.strerror or exc}); give a writable folder") from None
    return path


@contextlib.contextmanager
def held(path: Path, command: str):
    """Hold ``path`` (made by ``out_folder``) for ``command`` until the block ends. The lock is
    the operating system's on a file in the folder, so it goes when the process goes, however
    it ends: no stale lock to clear by hand. The file stays (removing it would race a second
    run opening it)."""
    try:
        f = open(Path(path) / LOCK, "a+")
    except OSError:                 # another user's lock file, say: the lock is a courtesy, run unguarded
        yield path
        return
    with f:
        f.seek(0)                   # Windows locks bytes from the file's position: the same first byte for all
        try:
            locked = _lock(f)
        except BlockingIOError:
            try:
                holder = f.read().strip()
            except OSError:         # Windows: the holder's locked byte cannot be read
                holder = ""
            raise FastDLError(f"--out {path}: another run is writing there now ({holder or 'a fastdl command'}); "
                              f"wait for it to end, or give another --out") from None
        if locked:                  # who holds it, for the message of a run refused
            f.seek(0)
            f.truncate()
            f.write(f"fastdl {command}, process {os.getpid()}\n")
            f.flush()
        yield path
