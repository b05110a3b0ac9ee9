"""Helper processes of ``fastdl train``: ``python -m fastdl.<module>`` beside the run.

Two helpers shorten a run on a machine with a core to spare: ``fastdl.curves`` imports matplotlib
while the run imports its backend, and ``fastdl.warmup`` compiles half of a first run's kernels.
Both import fastdl from where this process found it, whatever the helper's sys.path would be.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from pathlib import Path


def requested_threads() -> int | None:
    """``FASTDL_NUM_THREADS``: None when unset (or empty); ValueError, saying why, when it is not
    a positive integer."""
    value = os.environ.get("FASTDL_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"FASTDL_NUM_THREADS={value!r} must be a positive integer (or unset: all cores)")
    return n


def spare_cores() -> int:
    """Cores this process may run on, less the one it runs on. ``FASTDL_NUM_THREADS`` caps them:
    a process told to use n threads (a ``fastdl sweep --jobs`` worker, a user's own share of the
    machine) starts no helper that would take an n+1-th core. An invalid value counts as unset
    here (the backend that reads it refuses it, saying why)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        n = os.cpu_count() or 1
    try:
        cap = requested_threads()
    except ValueError:
        cap = None
    return (n if cap is None else min(n, cap)) - 1


def spawn(module: str, *args: str, **popen) -> subprocess.Popen | None:
    """Start ``python -m module args`` with stdin a pipe (plus ``popen``); None if the system
    cannot start a process now (the caller then does the work itself)."""
    # This very fastdl first on the helper's path: ``-m`` would put the working folder there,
    # where another checkout of fastdl may sit (whose compile cache is another folder: the run
    # would then compile every kernel itself, and the plot helper might speak another protocol).
    root = str(Path(__file__).resolve().parents[1])
    code = f"import runpy, sys; sys.path.insert(0, {root!r}); runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    try:
        return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, **popen)
    except OSError:
        return None


def end(proc: subprocess.Popen | None) -> None:
    """Stop ``proc`` if it still runs, reap it and close its pipes (left to the garbage
    collector, each would hold a descriptor until then)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:          # unsent bytes to a helper that is gone
                pass


class Owner:
    """Base of a run's helper handles: owns ``self.proc`` (or None); ``close()`` or leaving the
    ``with`` block ends it, whatever ended the run."""

    proc: subprocess.Popen | None = None

    def close(self) -> None:
        end(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def quick_exit(code: int) -> None:
    """Exit with ``code`` without freeing the process's objects one by one: with Numba and LLVM
    loaded that teardown took 0.12-0.2 s (timed ad hoc), matplotlib's ~0.05 s, and the system
    frees it all at once anyway. Exit handlers still run and output is flushed; where a
    non-daemon thread still runs, or the interpreter is not CPython, the exit is the usual one."""
    if sys.implementation.name != "cpython" or any(
            t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()          # what the interpreter runs first at exit: logging, finalizers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):    # the reader left (a broken pipe) or the stream is closed
            pass
    os._exit(code)


class Beside:
    """``fn()`` run in a daemon thread from now on; ``result()`` waits for it and hands its value
    over (keeping no reference: the caller may free it) or raises its exception. For work that
    spends its time outside the interpreter (``fastdl train`` reads and checks MNIST, file reads
    and SHA-256 without the GIL, while its own thread imports the backend). Abandoned (an error
    before ``result()``), it ends with the process."""

    def __init__(self, fn):
        self._value, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="fastdl-beside", daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        value, self._value = self._value, None
        return value
