"""How a sweep stops on Ctrl-C and on SIGTERM (a scheduler's stop, ``kill``, ``timeout``).

* The first Ctrl-C lets the running trial finish and stops there.
* SIGTERM abandons the running trial at its next epoch end (a scheduler allows little time
  before it kills): the trial is recorded as failed, with the reason, not left "running" in the
  study for good.
* A second signal of either kind stops at once.

A ``--jobs`` parent passes each signal on to its worker processes: SIGTERM as SIGTERM, Ctrl-C as
``RELAY`` (SIGUSR1), since the workers ignore SIGINT itself. So a SIGINT sent to the parent alone
(``kill -INT``, ``timeout -s INT``) stops them too, and a terminal's Ctrl-C, which reaches every
process of the group, counts once in each, not twice. (Where there is no SIGUSR1, Windows, the
workers take Ctrl-C as it comes.) A worker counts a SIGTERM after a SIGTERM once: a stop sent to
the whole group (systemd's default, Slurm at its time limit) reaches it directly and from the
parent, and would otherwise stop it at once instead of at its trial's epoch end; the parent's own
second signal reaches the workers as ``RELAY`` (``stop_at_once``).

The handlers only set flags, which the trial's epoch callback and Optuna's trial callback read:
a signal raised inside one of Optuna's storage writes could leave the journal's lock behind or
its last record cut.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from .signals import Terminated

SIGTERM = getattr(signal, "SIGTERM", None)
RELAY = getattr(signal, "SIGUSR1", None)         # a parent's Ctrl-C, passed on to its workers


class Stop:
    """The flags, installed as the SIGINT, SIGTERM and ``RELAY`` handlers for the ``with`` block
    (main thread only: signals go there). ``say``: print what happens; ``forward``: worker
    processes to pass the signals on to; ``relayed``: in such a worker (SIGINT left ignored,
    ``ignore_ctrl_c``). Installed whatever the signals' dispositions were: a sweep started in the
    background of a script, where SIGINT comes ignored, still stops on ``kill -INT``."""

    def __init__(self, say: bool, forward=(), relayed: bool = False):
        self.requested = False          # stop after the running trial
        self.abandon = False            # ... and abandon it at its next epoch end (SIGTERM)
        self.say, self.forward, self.relayed, self.previous = say, list(forward), relayed, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, SIGTERM, RELAY):
                if sig is None or (sig == signal.SIGINT and self.relayed and RELAY is not None):
                    continue            # a worker's Ctrl-C comes from its parent, as RELAY
                self.previous[sig] = signal.signal(sig, self._handle)
            logging.getLogger("optuna.study._optimize").addFilter(_no_traceback_when_abandoned)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        logging.getLogger("optuna.study._optimize").removeFilter(_no_traceback_when_abandoned)

    def _handle(self, signum, frame):
        term = signum == SIGTERM
        if self.requested:
            if term and self.abandon and self.relayed:
                return                      # the group's SIGTERM and the parent's: one request
            raise Terminated("SIGTERM") if term else KeyboardInterrupt
        self.requested, self.abandon = True, term
        for p in self.forward:
            if p.is_alive():
                if term:
                    p.terminate()           # SIGTERM: each worker abandons its trial alike
                elif RELAY is not None:
                    os.kill(p.pid, RELAY)   # each worker finishes its trial and stops
        if self.say:
            print("fastdl sweep: " + ("SIGTERM: abandoning the running trial at its next epoch end" if term else
                                      "stopping after the running trial (Ctrl-C again to abandon it)"),
                  file=sys.stderr, flush=True)

    def epoch_end(self, trial, curve) -> None:
        """In the trial's epoch callback: abandon the trial now if SIGTERM asked for it."""
        if self.abandon:
            trial.set_user_attr("error", "abandoned: the sweep received SIGTERM")
            trial.set_user_attr("val_acc", curve)
            raise Terminated("SIGTERM")

    def callback(self, study, trial):
        """Optuna's callback after each trial."""
        if self.requested:
            study.stop()

    def exception(self):
        """What the sweep raises once its report is written: None if no signal stopped it."""
        if not self.requested:
            return None
        return Terminated("SIGTERM") if self.abandon else KeyboardInterrupt()


def stop_at_once(p) -> None:
    """A parent's second signal, passed on to worker process ``p``: it stops now."""
    if RELAY is not None and p.is_alive():
        os.kill(p.pid, RELAY)       # the worker's second signal, whatever its first was
    else:
        p.terminate()


def ignore_ctrl_c() -> None:
    """In a --jobs worker: Ctrl-C comes from the parent, as ``RELAY`` (see the module's notes)."""
    if RELAY is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _no_traceback_when_abandoned(record) -> bool:
    """Optuna logs a failed trial with its traceback; an abandoned one's would read like a crash."""
    if record.exc_info and isinstance(record.exc_info[1], Terminated):
        record.exc_info, record.exc_text = None, None
    return True
