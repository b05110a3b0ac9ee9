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


class Deferred:
    """Inside the ``with`` block Ctrl-C, and SIGTERM under ``stop_on_sigterm``, only ask to stop:
    ``pending`` holds what they would have raised, and ``raise_if_asked()`` raises it where the
    caller's state is whole (the trainer: between two steps, never halfway through an update).
    A second signal raises at once: the way out of a step that hangs. Only Python's own Ctrl-C
    handler and ``stop_on_sigterm``'s are replaced, on the main thread only; a caller's own
    handlers (a sweep's ``Stop``) and ignored signals stay as they are."""

    def __init__(self):
        self.pending: KeyboardInterrupt | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig, raising in ((signal.SIGINT, signal.default_int_handler),
                                 (getattr(signal, "SIGTERM", None), _raise)):
                if sig is not None and signal.getsignal(sig) is raising:
                    self._previous[sig] = signal.signal(sig, self._ask)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _ask(self, signum, frame):
        if self.pending is not None:
            raise self.pending
        self.pending = Terminated("SIGTERM") if signum == getattr(signal, "SIGTERM", None) else KeyboardInterrupt()

    def raise_if_asked(self) -> None:
        if self.pending is not None:
            raise self.pending
