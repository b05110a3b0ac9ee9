"""A trainer compiles before it times anything (``Trainer.warm_up``, which ``fit()`` calls first):
its steps then compile nothing, whichever path and optimizer, with numba's disk cache on or off;
the compile's time is ``History.compile_seconds``, apart from the steps'."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fastdl import Trainer, TwoLayerNet, helpers
from fastdl.backends import backend_status, get_backend
from fastdl.optimizers import SGD

needs_numba = pytest.mark.skipif(not backend_status("numba")[0], reason=f"numba unavailable: {backend_status('numba')[1]}")

# In a fresh process with an empty compile cache: every Dispatcher.compile (a kernel compiled, or
# loaded from the disk cache, for new argument types) is logged with the phase it happened in.
_RUN = """
import json, sys
import numpy as np
from numba.core.dispatcher import Dispatcher
import fastdl
from fastdl import warmup
from fastdl.optimizers import SGD, Adam

class Halving(SGD):                    # a user's own optimizer: no name get_optimizer knows
    pass

fast_path, optimizer, share = sys.argv[1] == "fused", sys.argv[2], sys.argv[3] == "share"
phase, log = ["build"], []
real = Dispatcher.compile
Dispatcher.compile = lambda self, sig: log.append(phase[0]) or real(self, sig)
rng = np.random.default_rng(0)
x = rng.random((400, 784), dtype=np.float32)
if sys.argv[4:] == ["pixels"]:         # k/255 values: held as bytes on numba (images.held_as_bytes)
    x = np.divide(rng.integers(0, 256, x.shape), np.float32(255), dtype=np.float32)
t = rng.integers(0, 10, 400)
net = fastdl.TwoLayerNet(784, 30, 10, backend="numba", seed=0)
opt = {"adam": lambda: Adam(lr=0.001), "halving": lambda: Halving(lr=0.1)}[optimizer]()
tr = fastdl.Trainer(net, opt, x, t, x[:200], t[:200], iterations=30, batch_size=50, seed=0, progress=False,
                    fast_path=fast_path)
phase[0] = "warm_up"
sharing = warmup.Sharing() if share else None
tr.warm_up(sharing)
phase[0] = "fit"
h = tr.fit()
print(json.dumps({"log": log, "compile_seconds": h.compile_seconds, "train_seconds": h.train_seconds,
                  "helper_jobs": sharing.helper_jobs if share else 0, "jobs": sharing.jobs if share else 0,
                  "loss": h.loss[-1], "acc": h.test_acc[-1]}))
"""


def _fresh(tmp_path, *args, cache=True):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTDL_NUMBA_CACHE="1" if cache else "0")
    r = subprocess.run([sys.executable, "-c", _RUN, *args], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


@needs_numba
@pytest.mark.parametrize("path, optimizer, cache", [("fused", "adam", True), ("layers", "adam", True),
                                                    ("fused", "halving", False)])
def test_after_the_warm_up_the_steps_compile_nothing(tmp_path, path, optimizer, cache):
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: nothing compiles")
    run = _fresh(tmp_path, path, optimizer, "alone", cache=cache)
    assert "build" not in run["log"]               # building the trainer compiles nothing (left to the warm-up)
    assert run["log"].count("warm_up") >= 3        # a fresh process: the warm-up compiled the run's kernels...
    assert "fit" not in run["log"]                 # ...all of them: the timed steps compile none
    assert run["compile_seconds"] > 0 and np.isfinite(run["loss"]) and run["acc"] > 0


@needs_numba
@pytest.mark.skipif(helpers.spare_cores() < 1, reason="one core: no helper process is started")
def test_a_trainers_first_compile_is_shared_with_a_helper_even_for_a_users_own_optimizer(tmp_path):
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: nothing compiles")
    run = _fresh(tmp_path, "fused", "adam", "share")
    assert run["jobs"] >= 4 and 1 <= run["helper_jobs"] < run["jobs"] and "fit" not in run["log"]
    # a helper cannot rebuild an optimizer class it does not know: the run compiles it all itself
    own = _fresh(tmp_path / "own", "fused", "halving", "share")
    assert own["jobs"] >= 4 and own["helper_jobs"] == 0 and "fit" not in own["log"]
    # float pixels the trainer holds as bytes: the helper is told so (its spec is JSON) and shares
    pixels = _fresh(tmp_path / "pixels", "fused", "adam", "share", "pixels")
    assert pixels["jobs"] >= 4 and 1 <= pixels["helper_jobs"] < pixels["jobs"] and "fit" not in pixels["log"]


def test_the_warm_up_changes_nothing_the_run_computes(backend):
    """The warm-up trains a copy: the network, the optimizer's state and the losses are those of a
    trainer that skips it (on numpy, which compiles nothing, fit() does not warm up at all)."""
    rng = np.random.default_rng(1)
    x = rng.random((300, 784), dtype=np.float32)
    t = rng.integers(0, 10, 300)
    runs = []
    for warm in (True, False):
        net = TwoLayerNet(784, 20, 10, backend=backend.name, seed=3)
        tr = Trainer(net, SGD(lr=0.1), x, t, x[:100], t[:100], iterations=12, batch_size=50, seed=0,
                     progress=False, warm_up=warm)
        runs.append((tr.fit(), net))
    (warmed, net_w), (cold, net_c) = runs
    assert warmed.loss == cold.loss and warmed.test_acc == cold.test_acc
    for k in net_w.params:
        np.testing.assert_array_equal(backend.to_numpy(net_w.params[k]), backend.to_numpy(net_c.params[k]))
    assert cold.compile_seconds == 0
    assert (warmed.compile_seconds > 0) == get_backend(backend.name).COMPILES


_SAY = """
import numpy as np, fastdl
from fastdl.optimizers import SGD
rng = np.random.default_rng(0)
x, t = rng.random((200, 784), dtype=np.float32), rng.integers(0, 10, 200)
net = fastdl.TwoLayerNet(784, 12, 10, backend="numba", seed=0)
fastdl.Trainer(net, SGD(lr=0.1), x, t, iterations=2, batch_size=50, progress=True).fit()
"""


@needs_numba
def test_a_first_compile_says_so_with_progress_on_and_a_warm_one_says_nothing(tmp_path):
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: nothing compiles")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTDL_NUMBA_CACHE="1")
    said = [subprocess.run([sys.executable, "-c", _SAY], capture_output=True, text=True, env=env, timeout=600)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in said), said[0].stderr[-2000:]
    assert re.search(r"fastdl: compiling (1 numba kernel|[2-9]\d* numba kernels) \(once; cached on disk\)", said[0].stderr)
    assert "compiling" not in said[1].stderr              # loaded from the disk cache: nothing to say


def test_fastdl_num_threads_caps_the_cores_a_run_may_spare_for_helpers(monkeypatch):
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    monkeypatch.delenv("FASTDL_NUM_THREADS", raising=False)
    assert helpers.spare_cores() == cores - 1
    monkeypatch.setenv("FASTDL_NUM_THREADS", "1")         # a sweep worker's share, or a user's
    assert helpers.spare_cores() == 0
    monkeypatch.setenv("FASTDL_NUM_THREADS", str(cores + 7))
    assert helpers.spare_cores() == cores - 1             # never more than the process may run on
    monkeypatch.setenv("FASTDL_NUM_THREADS", "two")       # the backend refuses it, with the reason
    assert helpers.spare_cores() == cores - 1
