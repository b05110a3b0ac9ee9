"""SIGTERM, the way schedulers, ``kill`` and ``timeout`` stop a program, handled as Ctrl-C is.

Python's default for SIGTERM ends the process on the spot: no message, a sweep's worker
processes left running on their own, a sweep's running trial left "running" in its study for
good. Inside ``stop_on_sigterm()`` the signal raises ``Terminated`` instead, a KeyboardInterrupt,
so every path that handles Ctrl-C handles it too (and ``except Exception`` does not swallow it).
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM. Not a ``FastDLError``: like Ctrl-C's KeyboardInterrupt it
    must pass through ``except Exception`` (a sweep's trial catches those and goes on)."""


def _raise(signum, frame):
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM raises ``Terminated`` inside the block; the previous handler comes back after it.
    Only the main thread can set a handler (signals go there); elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def how_stopped(exc: KeyboardInterrupt) -> tuple[str, int]:
    """(the word for it, the exit status a shell expects: 128 + the signal's number)."""
    return ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
