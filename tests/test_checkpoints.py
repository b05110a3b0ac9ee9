"""Checkpoints: exact resume, and crash safety under SIGKILL while saving."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastdl
from fastdl.errors import FileFormatError
from fastdl.optimizers import Adam, SGD
from reliability import record
from toy_data import blobs


def trainer(opt, ckpt=None, every=None, steps=40, sampling="shuffle", backend="numpy"):
    x, t = blobs()
    net = fastdl.TwoLayerNet(8, 16, 3, weight_init_std="he", seed=0, backend=backend)
    return fastdl.Trainer(net, opt, x, t, x[:60], t[:60], iterations=steps, batch_size=50, seed=3, sampling=sampling,
                          progress=False, sync_every=5, checkpoint=ckpt, checkpoint_every=every)


@pytest.mark.parametrize("sampling", ["shuffle", "replacement"])
@pytest.mark.parametrize("make_opt", [lambda: SGD(0.1), lambda: Adam(0.01)], ids=["sgd", "adam"])
@pytest.mark.parametrize("stop_at", [15, 21])      # mid-epoch (7 steps per epoch), and right after one
def test_resume_is_bit_for_bit_the_uninterrupted_run(tmp_path, backend, make_opt, stop_at, sampling):
    """On every backend, through its fused step (which must pick up the restored optimizer
    state): the resumed run ends bit for bit where the uninterrupted one ends."""
    full = trainer(make_opt(), sampling=sampling, backend=backend)
    assert full.fast_path
    h_full = full.fit()
    ckpt = tmp_path / "c.npz"
    first = trainer(make_opt(), ckpt, every=5 if stop_at % 5 == 0 else None, steps=stop_at, sampling=sampling,
                    backend=backend)
    first.fit()
    second = trainer(make_opt(), sampling=sampling, backend=backend).resume(ckpt)
    assert second.step == stop_at
    h = second.fit()
    for k, v in full.network.params_numpy().items():
        np.testing.assert_array_equal(second.network.params_numpy()[k], v)
    assert h.loss == h_full.loss and h.test_acc == h_full.test_acc and h.epoch_step == h_full.epoch_step


def test_resume_refuses_a_different_run(tmp_path):
    ckpt = tmp_path / "c.npz"
    trainer(SGD(0.1), ckpt, steps=7).fit()
    with pytest.raises(FileFormatError, match="optimizer differs from this trainer's: lr 0.1 in the checkpoint, "
                                              "0.2 here; build the trainer as for the checkpointed run$"):
        trainer(SGD(0.2)).resume(ckpt)           # only what differs: not both configurations whole
    params = fastdl.save(trainer(SGD(0.1)).network, tmp_path / "p.npz")
    with pytest.raises(FileFormatError, match="expected 'fastdl-checkpoint'"):
        trainer(SGD(0.1)).resume(params)        # a parameter file is not a checkpoint (the reverse loads)
    with pytest.raises(ValueError, match="multiple of sync_every"):
        trainer(SGD(0.1), ckpt, every=7)


WRITER = textwrap.dedent("""
    import sys, numpy as np, fastdl
    path = sys.argv[1]
    net = fastdl.TwoLayerNet(64, 128, 10, seed=0)
    x = np.zeros((10, 64), np.float32); t = np.zeros(10, np.int64)
    tr = fastdl.Trainer(net, fastdl.optimizers.Momentum(0.1), x, t, iterations=1, progress=False)
    tr.fit()
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        for p in net.params.values():
            p[...] = i                       # every array says which save it belongs to
        tr.step = i
        tr.save_checkpoint(path)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL does not exist on this platform")
def test_sigkill_while_saving_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    kills, seen, lost = 25, set(), 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.01, 0.15)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        try:
            arrays, m = fastdl.io.read_arrays(path, expected_format="fastdl-checkpoint")
            step = m["step"]
            consistent = all((v == step).all() for key, v in arrays.items() if key.startswith("param."))
        except (FileFormatError, FileNotFoundError):
            consistent = False
        lost += not consistent
        seen.add(step if consistent else None)
        leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
        for p in leftovers:                      # a killed writer may leave its temp file; never the final path
            os.unlink(tmp_path / p)
    record("Crash safety", "SIGKILL during checkpoint saves", "numpy", "old or new checkpoint, intact",
           f"{kills - lost} of {kills} kills left a loadable, consistent file", lost == 0,
           kills=kills, files_lost=lost)
    assert lost == 0
    assert len(seen) > 1                         # the kills landed at different points
