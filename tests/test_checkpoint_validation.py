"""A checkpoint is validated whole before any of it is applied: each damaged field is refused
with FileFormatError naming it, and the trainer is left exactly as it was, on every backend.
Damage that would have reached a compiled kernel (indices out of range, state of the wrong
shape) is tried in a subprocess too: a clean error and exit, never a signal."""

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastdl
from fastdl.errors import FileFormatError
from fastdl.io import read_arrays, write_arrays
from fastdl.optimizers import Adam
from reliability import record
from toy_data import blobs


def trainer(backend, x=None, t=None, chapter6=False):
    if x is None:
        x, t = blobs()
    net = (fastdl.MultiLayerNet(8, [16], 3, batch_norm=True, dropout=0.2, seed=0, backend=backend) if chapter6 else
           fastdl.TwoLayerNet(8, 16, 3, weight_init_std="he", seed=0, backend=backend))
    return fastdl.Trainer(net, Adam(0.01), x, t, iterations=40, batch_size=50, seed=3, progress=False, sync_every=5)


def snapshot(tr):
    bk = tr.network.backend
    return (tr.network.params_numpy(), {s: {k: bk.to_numpy(v).copy() for k, v in d.items()} for s, d in tr.optimizer.state.items()},
            tr.optimizer.step, tr.step, tr._pos, copy.deepcopy(tr.rng.bit_generator.state), list(tr.history.loss),
            {k: v.tolist() for k, v in tr.network.buffers_numpy().items()}, tr.network.dropout_state())


def same(a, b):
    pa, sa, *ra = a
    pb, sb, *rb = b
    return (all(np.array_equal(pa[k], pb[k]) for k in pa) and ra == rb and sa.keys() == sb.keys()
            and all(np.array_equal(sa[s][k], sb[s][k]) for s in sa for k in sa[s]))


def damage(arrays, m, case):
    a, m = dict(arrays), copy.deepcopy(m)
    if case == "epoch indices out of range":
        a["trainer.epoch_indices"] = a["trainer.epoch_indices"].copy(); a["trainer.epoch_indices"][3] = 10**6
    elif case == "epoch indices negative":
        a["trainer.epoch_indices"] = a["trainer.epoch_indices"].copy(); a["trainer.epoch_indices"][0] = -1
    elif case == "epoch indices as floats":
        a["trainer.epoch_indices"] = a["trainer.epoch_indices"].astype(np.float64)
    elif case == "epoch indices too short":
        a["trainer.epoch_indices"] = a["trainer.epoch_indices"][:10]
    elif case == "epoch order not a permutation":
        a["trainer.epoch_indices"] = np.zeros_like(a["trainer.epoch_indices"])
    elif case == "optimizer state of another shape":
        a["opt.m.W1"] = np.zeros((4, 4), np.float32)
    elif case == "optimizer state NaN":
        a["opt.v.W1"] = a["opt.v.W1"].copy(); a["opt.v.W1"][0, 0] = np.nan
    elif case == "parameter NaN":
        a["param.W2"] = a["param.W2"].copy(); a["param.W2"][1, 1] = np.nan
    elif case == "parameter missing":
        del a["param.b1"]
    elif case == "unknown array":
        a["opt.q.W1"] = a["param.W1"]
    elif case == "step past the run":
        m["step"] = 10**9
    elif case == "position past the epoch":
        m["position"] = 99
    elif case == "step not an integer":
        m["step"] = "12"
    elif case == "RNG state of another generator":
        m["rng"] = {"bit_generator": "MT19937", "state": {"key": [0], "pos": 0}}
    elif case == "other training data, same size":
        m["data_fingerprint"] = "0" * 64
    elif case == "history damaged":
        m["history"] = {"epoch": []}
    elif case == "history epochs not a list":
        m["history"]["epoch"] = "0.5"
    elif case == "history step not an integer":
        m["history"]["epoch_step"] = [6.5]
    elif case == "history step past the checkpoint's":
        m["history"]["epoch_step"] = [10**6]
    elif case == "history accuracy above 1":
        m["history"]["train_acc"] = [7.0]
    elif case == "history curves of other lengths":
        m["history"]["test_acc"] = [0.5, 0.5, 0.5]
    elif case == "history seconds not a number":
        m["history"]["seconds"] = "fast"
    elif case == "history losses fewer than steps":
        a["history.loss"] = a["history.loss"][:3]
    elif case == "optimizer state partly missing":
        del a["opt.v.b2"]
    elif case == "epoch order missing mid-epoch":
        del a["trainer.epoch_indices"]
    elif case == "Dropout state for layers it lacks":
        m["dropout"] = [[7, 0]]
    elif case == "running variance NaN":
        a["buffer.running_var1"] = a["buffer.running_var1"].copy(); a["buffer.running_var1"][2] = np.nan
    elif case == "running variance negative":
        a["buffer.running_var1"] = a["buffer.running_var1"].copy(); a["buffer.running_var1"][0] = -1
    elif case == "running mean missing":
        del a["buffer.running_mean1"]
    elif case == "running mean of another shape":
        a["buffer.running_mean1"] = np.zeros(3, np.float32)
    elif case == "Dropout counter negative":
        m["dropout"] = [[m["dropout"][0][0], -1]]
    elif case == "Dropout state not pairs":
        m["dropout"] = [m["dropout"][0][0]]
    for k, v in a.items():
        m["arrays"][k] = {"shape": list(v.shape), "dtype": v.dtype.name}
    m["arrays"] = {k: v for k, v in m["arrays"].items() if k in a}
    return a, m


CASES = ["epoch indices out of range", "epoch indices negative", "epoch indices as floats", "epoch indices too short",
         "epoch order not a permutation", "optimizer state of another shape", "optimizer state NaN", "parameter NaN",
         "parameter missing", "unknown array", "step past the run", "position past the epoch", "step not an integer",
         "RNG state of another generator", "other training data, same size", "history damaged",
         "epoch order missing mid-epoch", "Dropout state for layers it lacks", "optimizer state partly missing",
         # what the run's history continues from: refused here, not after fit() began with it
         "history epochs not a list", "history step not an integer", "history step past the checkpoint's",
         "history accuracy above 1", "history curves of other lengths", "history seconds not a number",
         "history losses fewer than steps"]
# A network with Batch Norm and Dropout: their running averages and mask counters too
CHAPTER6_CASES = ["running variance NaN", "running variance negative", "running mean missing", "running mean of another shape",
                  "Dropout counter negative", "Dropout state not pairs"]


def checkpointed(tmp_path_factory, chapter6):
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    tr = trainer("numpy", chapter6=chapter6)
    tr.total_steps = 13                    # stop mid-epoch (7 steps per epoch)
    tr.fit()
    tr.save_checkpoint(path)
    return read_arrays(path, expected_format="fastdl-checkpoint")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return checkpointed(tmp_path_factory, chapter6=False)


@pytest.fixture(scope="module")
def good_chapter6(tmp_path_factory):
    return checkpointed(tmp_path_factory, chapter6=True)


@pytest.mark.parametrize("case", CASES + CHAPTER6_CASES)
def test_a_damaged_checkpoint_is_refused_and_changes_nothing(backend, good, good_chapter6, case, tmp_path):
    chapter6 = case in CHAPTER6_CASES
    path = tmp_path / "bad.npz"
    write_arrays(path, *damage(*(good_chapter6 if chapter6 else good), case))
    tr = trainer(backend, chapter6=chapter6)
    tr.fit() if case == "optimizer state NaN" else None          # a trainer with state of its own
    before = snapshot(tr)
    try:
        tr.resume(path)
        outcome, ok = "accepted", False
    except FileFormatError as exc:
        outcome, ok = f"FileFormatError: {str(exc)[len(str(path)) + 2:][:60]}", True
    unchanged = same(before, snapshot(tr))
    record("Checkpoints validated before use", case, backend.name, "FileFormatError, trainer unchanged",
           outcome + ("" if unchanged else "; TRAINER CHANGED"), ok and unchanged)
    assert ok, f"{case}: {outcome}"
    assert unchanged, f"{case}: the refused checkpoint changed the trainer"


def test_the_good_checkpoint_is_accepted(backend, good, tmp_path):
    path = tmp_path / "good.npz"
    write_arrays(path, *good)
    tr = trainer(backend).resume(path)
    assert tr.step == 13 and tr._pos == 6


CHILD = textwrap.dedent("""
    import sys, numpy as np, fastdl
    sys.path.insert(0, sys.argv[3])
    from test_checkpoint_validation import trainer
    try:
        trainer(sys.argv[1]).resume(sys.argv[2]).fit()
    except fastdl.FileFormatError as exc:
        print("refused:", exc)
        sys.exit(3)
""")


@pytest.mark.parametrize("case", ["epoch indices out of range", "optimizer state of another shape"])
def test_kernel_bound_damage_never_crashes_the_process(backend, good, case, tmp_path):
    path = tmp_path / "bad.npz"
    write_arrays(path, *damage(*good, case))
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", CHILD, backend.name, str(path), tests_dir],
                       capture_output=True, text=True, timeout=300)
    record("Memory safety (subprocess)", f"checkpoint: {case}", backend.name, "clean FileFormatError, exit 3",
           f"exit {r.returncode}", r.returncode == 3)
    assert r.returncode == 3, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "refused:" in r.stdout
