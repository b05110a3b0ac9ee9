"""The one-off compile before a trainer times its run, shared with a helper process.

``warm_up`` runs two steps and an evaluation on a copy of the network, so every kernel the run
needs is compiled (or loaded from the disk cache) before training is timed; ``Trainer.warm_up``
(which ``fit()`` calls first, and ``fastdl train`` with its announcements) runs it through
``Sharing``. Numba compiles one
kernel at a time: about 4 s on a first run. Where the backend declares ``compile_ahead``,
``Sharing`` learns the warm-up's compile jobs from a dry run of it (``bk.compile_jobs``; none
with a warm cache; ``fastdl train`` announces their count) and, if there are any and a core is
spare, starts a helper, ``python -m fastdl.warmup BACKEND``, that learns the same list the same
way (``fastdl train`` starts it sooner, before loading anything, where
``backends.compile_likely`` guesses a first run: its imports then overlap the run's; unused, it
is ended). The list comes longest job first, and each of the two compiles the next job nobody
has taken (list scheduling: the long ones start first, the short ones fill in at the end), so
neither repeats the other's work and they end close together. The helper's code reaches this
process through the disk cache, and the warm-up proper then only loads it.

Between the two, one line each way: the run sends the warm-up's inputs (``spec``) and its list of
jobs, as JSON; the helper, having learned every job of that warm-up (cached or not: the run may
have compiled some by then), answers ``jobs DIGEST`` of the run's list when it can do each one;
then for each ``take I`` it compiles job I and answers ``done I``; the end of its input stops it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import threading
import time

import numpy as np

from . import helpers
from .backends import compile_likely, current_backend_name
from .backends.contract import COMPILE_AHEAD
from .errors import DivergenceError
from .images import ByteImages, byte_codes

TEST_ROWS = 1100        # more than one of evaluation's blocks, so whatever it compiles compiles here
WAIT = 120              # seconds to wait for the helper's last job before compiling it here


def sample(x, t, xt, tt, batch_size: int):
    """The slices of the run's data the warm-up trains and evaluates on (without test data, the
    training set's first rows stand in: evaluation compiles the same kernels for either)."""
    if xt is None:
        xt, tt = x, t
    n = min(len(x), 2 * batch_size)
    cut = lambda a, k: a.subset(slice(k)) if isinstance(a, ByteImages) else a[:k]
    return cut(x, n), t[:n], cut(xt, TEST_ROWS), tt[:TEST_ROWS]


def twin(opt):
    """A fresh optimizer like ``opt`` (its class and hyperparameters, none of its state)."""
    out = copy.copy(opt)
    out.state = {name: {} for name in opt.state_names}
    out.step, out.scalar_source = 0, None
    return out


def warm_up(net, opt, data, batch_size: int, fast_path: bool = True) -> None:
    """Two steps and an evaluation of a copy of ``net`` (``data``: ``sample(...)``), on the fused
    step or, ``fast_path=False``, the layer path."""
    from . import networks
    from .trainer import Trainer
    clone = networks.network_from_config(net.config(), dtype=net.dtype, backend=net.backend, seed=0)
    x, t, xt, tt = data
    tr = Trainer(clone, twin(opt), x, t, xt, tt, iterations=2, batch_size=min(batch_size, len(x)), progress=False,
                 fast_path=fast_path, warm_up=False)
    try:
        tr.fit()
    except DivergenceError:     # the user's learning rate, or a dry run's meaningless numbers
        with clone.backend.train_scope(), np.errstate(all="ignore"):
            tr._evaluate()      # what evaluation compiles still compiles here


def for_trainer(tr, sharing=None, announce=None) -> float:
    """``Trainer.warm_up``: its run's kernels on a sample of its data; the seconds it took. By
    default, with the trainer's ``progress`` on, a first compile says so on stderr, as its bar would."""
    if announce is None and tr.progress:
        name = tr.backend.name
        announce = lambda n: n and print(f"fastdl: compiling {n} {name} kernel{'s' if n > 1 else ''} (once; "
                                         f"cached on disk)...", file=sys.stderr, flush=True)
    data = sample(tr.x_train, tr.t_train, tr.x_test, tr.t_test, tr.batch_size)
    with (sharing if sharing is not None else Sharing()) as s:
        s.start(tr.backend.name)      # at once where a first compile is likely (as fastdl train)
        return s.warm_up(tr.network, tr.optimizer, data, tr.batch_size, announce, tr.fast_path)


def spec(net, opt, data, batch_size: int, fast_path: bool = True) -> dict:
    """What the helper needs to run the same warm-up: the network, the optimizer, the path, and
    the data's types and shapes (its values do not change what compiles)."""
    def like(a):                       # read-only arrays compile apart from writable ones
        if isinstance(a, ByteImages):
            return {"bytes": list(a.shape), "scale": float(a.scale), "writeable": a.codes.flags.writeable}
        d = {"shape": list(a.shape), "dtype": a.dtype.str, "writeable": a.flags.writeable}
        if a.dtype.kind == "f":        # k/255 floats train through the byte-coded gather: say which
            d["codes"] = byte_codes(a, np) is not None
        return d
    return {"network": net.config(), "dtype": net.dtype.name, "optimizer": opt.config(),
            "batch_size": batch_size, "fast_path": bool(fast_path), "data": [like(a) for a in data]}


def from_spec(s: dict, backend):
    """The network, optimizer and data of ``spec``'s warm-up, built on ``backend``."""
    from . import networks, optimizers
    net = networks.network_from_config(s["network"], dtype=s["dtype"], backend=backend, seed=0)
    hyper = dict(s["optimizer"])
    opt = optimizers.get_optimizer(hyper.pop("name"), **hyper)
    data = []
    for d in s["data"]:
        a = np.zeros(d["bytes"] if "bytes" in d else d["shape"], np.uint8 if "bytes" in d else np.dtype(d["dtype"]))
        if d.get("codes") is False:
            a[...] = 0.5                 # no k/255 (nor integer) value: the plain gather, as the run's
        a.flags.writeable = d["writeable"]
        data.append(ByteImages(a, d["scale"], dtype=s["dtype"]) if "bytes" in d else a)
    return net, opt, data, s["batch_size"]


def digest(jobs) -> str:
    return hashlib.sha256("\n".join(name for name, _ in jobs).encode()).hexdigest()[:16]


class Sharing(helpers.Owner):
    """The compile helper of one run (see the module's notes); ``with`` ends it in any case."""

    def __init__(self):
        self.proc = None
        self.jobs = 0                   # compile jobs shared
        self.helper_jobs = 0            # of those, the helper's

    def start(self, name: str | None) -> None:
        """Start the helper for backend ``name`` now, before the run loads anything, where a
        first run is likely (``backends.compile_likely``): its imports (~0.5 s) then overlap the
        run's own instead of the run's first compile job (a first run ready about 0.15 s sooner,
        timed ad hoc). ``warm_up`` ends it unused where there turn out to be no jobs."""
        if self.proc is None and compile_likely(name) and helpers.spare_cores() >= 1:
            self.proc = self._spawn(current_backend_name(name))

    @staticmethod
    def _spawn(name: str):
        return helpers.spawn("fastdl.warmup", name, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def warm_up(self, net, opt, data, batch_size: int, announce=None, fast_path: bool = True) -> float:
        """``warm_up`` with the compile shared; returns its seconds. ``announce(n)``, if given,
        is called before any compiling with the number of kernels the backend says are left
        to compile (0 with a warm cache; also 0 where it cannot tell, as with its cache off)."""
        t0 = time.perf_counter()
        bk = net.backend
        jobs = []
        if COMPILE_AHEAD in bk.CAPABILITIES:
            jobs = bk.compile_jobs(lambda: warm_up(net, opt, data, batch_size, fast_path))
        if announce is not None:
            announce(len(jobs))
        if jobs and helpers.spare_cores() >= 1:     # a warm cache has none: no helper then
            if self.proc is None:
                self.proc = self._spawn(bk.name)
            if self.proc is not None:
                self.jobs = len(jobs)
                self._share(jobs, spec(net, opt, data, batch_size, fast_path))
        self.close()
        warm_up(net, opt, data, batch_size, fast_path)     # what no job compiled, and the loading of the rest
        return time.perf_counter() - t0

    def _share(self, jobs, s: dict) -> None:
        taken = [False] * len(jobs)
        lock = threading.Lock()
        state = {"in_flight": None, "closed": False}
        first_free = lambda: next((k for k in range(len(jobs)) if not taken[k]), None)   # under lock

        def serve():                    # the helper's jobs: the next nobody has taken
            try:
                self._send(json.dumps(dict(s, jobs=[name for name, _ in jobs])))
                if self._read() != f"jobs {digest(jobs)}":
                    return              # it learned other jobs: this process compiles them all
                while True:
                    with lock:
                        j = first_free()
                        if j is None or state["closed"]:
                            return
                        taken[j], state["in_flight"] = True, j
                    self._send(f"take {j}")
                    if self._read() != f"done {j}":
                        return          # it failed: the warm-up proper compiles that one
                    with lock:
                        state["in_flight"] = None
                        self.helper_jobs += 1
            except OSError:             # it ended early: the warm-up proper compiles what is left
                return
            except Exception as exc:  # noqa: BLE001 - a fault of ours (a spec JSON cannot hold, say): one line, not a trace
                print(f"fastdl: the compile helper was not used ({type(exc).__name__}: {exc}); this process "
                      f"compiles everything", file=sys.stderr)

        server = threading.Thread(target=serve, name="fastdl-compile-helper", daemon=True)
        server.start()
        while True:                     # this process's jobs: the same rule
            with lock:
                i = first_free()
                if i is None:
                    break
                taken[i] = True
            jobs[i][1]()
        with lock:
            state["closed"] = True
            waiting = state["in_flight"] is not None
        if waiting:
            server.join(WAIT)

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def _read(self) -> str:
        return self.proc.stdout.readline().decode().strip()



def _helper(backend_name: str) -> int:
    from .backends import get_backend
    bk = get_backend(backend_name)
    if COMPILE_AHEAD not in bk.CAPABILITIES:
        return 0
    line = sys.stdin.readline()
    if not line:
        return 0
    s = json.loads(line)
    net, opt, data, batch_size = from_spec(s, bk)
    mine = dict(bk.compile_jobs(lambda: warm_up(net, opt, data, batch_size, s["fast_path"]), cached=True))
    if not all(name in mine for name in s["jobs"]):
        print("jobs other", flush=True)     # the run then compiles them all itself
        return 0
    jobs = [(name, mine[name]) for name in s["jobs"]]
    print(f"jobs {digest(jobs)}", flush=True)
    for line in sys.stdin:
        word, _, index = line.partition(" ")
        if word != "take":
            break
        jobs[int(index)][1]()
        print(f"done {int(index)}", flush=True)
    return 0


if __name__ == "__main__":
    helpers.quick_exit(_helper(sys.argv[1]))
