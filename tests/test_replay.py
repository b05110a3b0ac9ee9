"""Blocks of steps captured once and replayed (fastdl.replay): on the emulated GPU (CUDA graphs
recorded and replayed on the CPU) and on NumPy, the run is the uncaptured one, bit for bit; what
cannot be captured falls back with a stated reason and the same numbers."""

import numpy as np
import pytest

import fastdl
import fake_cupy
from fastdl.backends.contract import GRAPH_REPLAY
from fastdl.optimizers import get_optimizer


def data(n=437, d=20, c=5, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    return (rng.standard_normal((c, d))[t] * 2 + rng.standard_normal((n, d))).astype(np.float32), t


def train(backend, opt="SGD", replay=True, monkeypatch=None, epochs=3, n=437, **net_kw):
    """A run of 437 rows in batches of 50 (a partial batch per epoch), 3 steps a block."""
    if not replay:
        monkeypatch.setattr(backend, "CAPABILITIES", backend.CAPABILITIES - {GRAPH_REPLAY})
    x, t = data(n)
    net = fastdl.MultiLayerNet(20, [16, 12], 5, weight_init_std="he", backend=backend, seed=0, **net_kw)
    tr = fastdl.Trainer(net, get_optimizer(opt, lr=0.05), x, t, x[:100], t[:100], epochs=epochs, batch_size=50,
                        seed=1, sync_every=3, progress=False)
    h = tr.fit()
    if not replay:
        monkeypatch.undo()
    return tr, (h.loss, h.train_acc, h.test_acc, net.params_numpy())


def identical(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2]
    for k in a[3]:
        np.testing.assert_array_equal(a[3][k], b[3][k])


@pytest.mark.parametrize("opt", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_replayed_blocks_are_the_uncaptured_run_bit_for_bit(emu, opt, monkeypatch):
    tr, replayed = train(emu, opt)
    assert tr.capture_note is None and tr._replay.note is None
    # 9 steps an epoch: blocks of 3, 3, 3 (the last one ends in the partial batch: uncaptured);
    # the first block warms up, the second is captured and replayed, every later full one replayed
    assert tr._replay.replays == 3 * 2 - 1
    identical(replayed, train(emu, opt, replay=False, monkeypatch=monkeypatch)[1])


def test_each_block_length_is_captured_once(emu, monkeypatch):
    """400 rows: 8 full steps an epoch, blocks of 3, 3 and 2 (the epoch ends first): two graphs,
    every block after the first replayed."""
    tr, replayed = train(emu, "Momentum", n=400)
    assert sorted(tr._replay.graphs) == [2, 3] and tr._replay.replays == 3 * 3 - 1
    identical(replayed, train(emu, "Momentum", replay=False, monkeypatch=monkeypatch, n=400)[1])


def test_byte_images_are_replayed_too(emu, monkeypatch):
    """ByteImages' gather (CuPy's take) and decode kernel inside the captured steps."""
    x, t = data()
    codes = np.clip(np.rint((x - x.min()) * 20), 0, 255).astype(np.uint8)

    def run(replay):
        if not replay:
            monkeypatch.setattr(emu, "CAPABILITIES", emu.CAPABILITIES - {GRAPH_REPLAY})
        net = fastdl.TwoLayerNet(20, 16, 5, weight_init_std="he", backend=emu, seed=0)
        tr = fastdl.Trainer(net, get_optimizer("SGD", lr=0.05), fastdl.ByteImages(codes), t, epochs=2,
                            batch_size=50, seed=1, sync_every=3, progress=False)
        h = tr.fit()
        monkeypatch.undo()
        return tr, h.loss, net.params_numpy()
    tr, loss, params = run(True)
    assert tr._replay.replays == 3 and tr._fused.byte_coded
    _, want_loss, want = run(False)
    assert loss == want_loss
    for k in want:
        np.testing.assert_array_equal(params[k], want[k])


def test_a_graph_replays_kernels_on_the_same_memory_and_runs_nothing_while_captured(emu):
    """The emulator's capture itself: launches and writes recorded, not run; the replay runs them."""
    z, b = emu.asarray(np.zeros((4, 3), np.float32)), emu.asarray(np.ones(3, np.float32))
    out = fake_cupy.zeros((), np.float32)

    def work():
        emu.add_bias_(z, b)
        fake_cupy.mean(z, out=out)
    replay = emu.capture(work)
    assert float(out) == 0 and not z.any()
    replay()
    replay()
    assert float(out) == 2 and (np.asarray(z) == 2).all()


@pytest.mark.parametrize("what", ["allocate", "host copy", "synchronize"])
def test_what_a_graph_cannot_hold_is_refused_while_capturing(emu, what):
    z = emu.asarray(np.ones((4, 3), np.float32))
    work = {"allocate": lambda: z.sum(), "host copy": lambda: emu.to_numpy(z), "synchronize": emu.synchronize}[what]
    with pytest.raises(fake_cupy.CaptureError, match="capture"):
        emu.capture(work)
    assert fake_cupy._CAPTURE is None                    # the capture was ended
    emu.synchronize()


def test_a_failed_capture_runs_uncaptured_with_the_reason(emu, monkeypatch):
    """A step that allocates cannot be captured: the run warns, says why, and its numbers are the
    uncaptured run's."""
    want = train(emu, replay=False, monkeypatch=monkeypatch)[1]
    real = emu.add_bias_
    monkeypatch.setattr(emu, "add_bias_", lambda z, b: (real(z, b), z.copy()))      # a stray allocation
    with pytest.warns(RuntimeWarning, match="capturing a block of steps failed.*new device array"):
        tr, got = train(emu)
    assert "uncaptured" in tr._replay.note and tr._replay.replays == 0
    identical(got, want)


def test_a_changed_learning_rate_is_captured_again(emu, monkeypatch):
    def run(replay):
        if not replay:
            monkeypatch.setattr(emu, "CAPABILITIES", emu.CAPABILITIES - {GRAPH_REPLAY})
        x, t = data()
        net = fastdl.TwoLayerNet(20, 16, 5, weight_init_std="he", backend=emu, seed=0)
        opt = get_optimizer("Momentum", lr=0.05)
        tr = fastdl.Trainer(net, opt, x, t, iterations=30, batch_size=50, seed=1, sync_every=3, progress=False,
                            callbacks=[lambda tr, rec: setattr(opt, "lr", opt.lr / 2)])       # at each epoch's end
        tr.fit()
        monkeypatch.undo()
        return tr, net.params_numpy()
    tr, got = run(True)
    assert tr._replay.graphs[3][1]["lr"] == 0.05 / 2 ** 3
    want = run(False)[1]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("case", ["batch norm", "dropout", "weight decay"])
def test_what_is_never_captured_says_why(emu, case):
    kw = {"batch norm": {"batch_norm": True}, "dropout": {"dropout": 0.2}, "weight decay": {"weight_decay": 0.01}}[case]
    tr, _ = train(emu, "SGD", epochs=1, **kw)
    assert tr._replay is None
    assert tr.capture_note == "Batch Norm, Dropout and weight decay allocate in every step"


def test_an_optimizer_that_does_not_declare_its_step_scalars_is_not_captured(emu):
    class Mine(fastdl.optimizers.SGD):
        step_scalars = None
    x, t = data()
    tr = fastdl.Trainer(fastdl.TwoLayerNet(20, 8, 5, backend=emu, seed=0), Mine(lr=0.1), x, t, iterations=9,
                        batch_size=50, sync_every=3, progress=False)
    tr.fit()
    assert tr._replay is None and "does not declare which of its kernel scalars" in tr.capture_note


@pytest.mark.parametrize("where", ["numpy", "emulated"])
def test_adam_reads_a_device_step_size_when_it_runs(emu, where):
    """The contract's adam_update with lr_t as a 0-d array: the value it holds when the update
    runs (what a replayed block writes there before each replay), equal to passing the number."""
    bk = emu if where == "emulated" else fastdl.get_backend("numpy")
    rng = np.random.default_rng(0)
    p, g, m, v = (rng.standard_normal(37).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    want = [a.copy() for a in (p, m, v)]
    fastdl.get_backend("numpy").adam_update(*want[:1], g, *want[1:], 0.003, 0.1, 0.001, 1e-7)
    dev = [bk.asarray(a) for a in (p, g, m, v)]
    slot = bk.asarray(np.array([9.0, 0.003, 9.0], np.float32))[1:2].reshape(())
    if where == "emulated":
        slot[...] = np.float32(9.0)              # captured while it held another value
        replay = bk.capture(lambda: bk.adam_update(*dev, slot, 0.1, 0.001, 1e-7))
        slot[...] = np.float32(0.003)
        replay()
    else:
        bk.adam_update(*dev, slot, 0.1, 0.001, 1e-7)
    for got, w in zip((dev[0], dev[2], dev[3]), want):
        np.testing.assert_array_equal(bk.to_numpy(got), w)


def test_numpy_replays_by_calling_the_steps_again(monkeypatch):
    """NumPy's capture is the reference: the block logic runs there too, with the same numbers."""
    np_backend = fastdl.get_backend("numpy")
    tr, replayed = train(np_backend, "Momentum")
    assert tr._replay.replays == 5
    identical(replayed, train(np_backend, "Momentum", replay=False, monkeypatch=monkeypatch)[1])


def test_numba_declares_no_replay():
    nb = pytest.importorskip("numba") and fastdl.get_backend("numba")
    x, t = data()
    tr = fastdl.Trainer(fastdl.TwoLayerNet(20, 8, 5, backend=nb, seed=0), get_optimizer("SGD", lr=0.1), x, t,
                        iterations=3, progress=False)
    tr.fit()
    assert tr._replay is None and tr.capture_note == "backend 'numba' replays nothing"


def test_every_backend_that_replays_gives_the_uncaptured_run(backend, monkeypatch):
    """On each real backend (on a GPU: real CUDA graphs, cuBLAS inside): replayed blocks against
    the same run uncaptured, bit for bit; a backend that does not replay says so."""
    tr, got = train(backend, "Momentum")
    if GRAPH_REPLAY not in backend.CAPABILITIES:
        assert tr._replay is None and "replays nothing" in tr.capture_note
        return
    assert tr._replay.note is None and tr._replay.replays == 5
    identical(got, train(backend, "Momentum", replay=False, monkeypatch=monkeypatch)[1])
