"""Ctrl-C and SIGTERM during ``Trainer.fit()``: the run stops between two steps with every step
done counted, so ``fit()`` again (or a checkpoint saved then) ends where an uninterrupted run ends.

The signals are raised inside the run itself (``signal.raise_signal`` from a wrapped step or
evaluation), so they land at a known point, on every backend.
"""

import signal
import threading

import numpy as np
import pytest

import fastdl
from fastdl.optimizers import Adam
from fastdl.signals import Terminated, stop_on_sigterm
from toy_data import blobs

STEPS, SYNC = 40, 5          # 330 samples, batch 50: 7 steps an epoch


def trainer(backend, **kw):
    x, t = blobs()
    net = fastdl.TwoLayerNet(8, 16, 3, weight_init_std="he", seed=0, backend=backend)
    return fastdl.Trainer(net, Adam(0.01), x, t, x[:60], t[:60], iterations=STEPS, batch_size=50, seed=3,
                          progress=False, sync_every=SYNC, **kw)


def signal_at_step(tr, k, sig=signal.SIGINT, times=1):
    """The trainer's step ``k`` (1-based) raises ``sig`` ``times`` times, after its work is done
    (run step by step: a captured block, cupy's, would not call the wrapper)."""
    real, calls = tr._fused, [0]

    def step(idx):
        loss = real(idx)
        calls[0] += 1
        if calls[0] == k:
            for _ in range(times):
                signal.raise_signal(sig)
        return loss
    step.uncapturable = "a test's wrapper"
    tr._fused = step


def assert_same_run(a, b):
    for k, v in a.network.params_numpy().items():
        np.testing.assert_array_equal(b.network.params_numpy()[k], v, err_msg=k)
    ha, hb = a.history, b.history
    assert (ha.loss, ha.epoch_step, ha.train_acc, ha.test_acc) == (hb.loss, hb.epoch_step, hb.train_acc, hb.test_acc)


@pytest.fixture(autouse=True)
def _python_handlers(request):
    """The dispositions a program starts with (a test runner may have others). Signals reach only
    the main thread: where a runner runs tests elsewhere, the tests that send them skip."""
    if threading.current_thread() is not threading.main_thread():
        if "stop_from" not in request.node.name:
            pytest.skip("this test runner runs tests off the main thread, where no signal handler runs")
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("k", [3, 7, 12, 40])   # inside a sync block; an epoch's last step; a block's last; the run's last
def test_ctrl_c_stops_after_the_running_step_and_fit_again_continues_exactly(backend, k):
    full = trainer(backend)
    full.fit()
    tr = trainer(backend)
    signal_at_step(tr, k)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert tr.step == k and tr.stopped_between_steps and len(tr.history.loss) == k
    assert tr.history.epoch_step == [s for s in full.history.epoch_step if s <= k]   # its epoch end evaluated
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler            # put back
    tr.fit()
    assert_same_run(full, tr)


def test_the_trainers_checkpoint_holds_the_stop_and_resumes_exactly(backend, tmp_path):
    full = trainer(backend)
    full.fit()
    tr = trainer(backend, checkpoint=tmp_path / "c.npz")
    signal_at_step(tr, 13)                     # mid-epoch, not a multiple of sync_every: checked all the same
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    again = trainer(backend).resume(tmp_path / "c.npz")
    assert again.step == 13
    again.fit()
    assert_same_run(full, again)


def test_sigterm_under_stop_on_sigterm_stops_alike():
    full = trainer("numpy")
    full.fit()
    tr = trainer("numpy")
    signal_at_step(tr, 9, signal.SIGTERM)
    with stop_on_sigterm(), pytest.raises(Terminated):
        tr.fit()
    assert tr.step == 9 and tr.stopped_between_steps
    tr.fit()
    assert_same_run(full, tr)


def test_a_second_ctrl_c_stops_at_once():
    tr = trainer("numpy")
    signal_at_step(tr, 4, times=2)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert not tr.stopped_between_steps and tr.step == 0       # raised inside step 4, uncounted


def test_ctrl_c_during_an_evaluation_lets_it_finish():
    full = trainer("numpy")
    full.fit()
    tr = trainer("numpy")
    real, calls = tr.network._accuracy, [0]

    def accuracy(x, t):
        calls[0] += 1
        if calls[0] == 3:                      # the second evaluation's train set
            signal.raise_signal(signal.SIGINT)
        return real(x, t)
    tr.network._accuracy = accuracy
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert tr.step == 14 and tr.history.epoch_step == [7, 14] and len(tr.history.test_acc) == 2
    tr.fit()
    assert_same_run(full, tr)


def test_handlers_of_the_caller_are_left_alone():
    """A handler the caller installed (or an ignored SIGINT) stays in charge during fit()."""
    seen = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    tr = trainer("numpy")
    signal_at_step(tr, 4)
    tr.fit()
    assert seen == [signal.SIGINT] and tr.step == STEPS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tr = trainer("numpy")
    signal_at_step(tr, 4)
    tr.fit()
    assert tr.step == STEPS and signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_stop_from_a_callback_returns_and_fit_again_goes_on(backend, tmp_path):
    """Early stopping: a callback's ``trainer.stop()`` makes fit() return (no exception) after
    that evaluation, checkpointed; fit() again ends where an unstopped run ends."""
    full = trainer(backend)
    full.fit()
    tr = trainer(backend, checkpoint=tmp_path / "c.npz",
                 callbacks=[lambda t, record: t.stop() if record["step"] == 14 else None])
    h = tr.fit()
    assert tr.step == h.steps == 14 and h.epoch_step == [7, 14] and tr.stopped_between_steps
    assert trainer(backend).resume(tmp_path / "c.npz").step == 14
    tr.fit()
    assert tr.step == STEPS and not tr.stopped_between_steps
    assert_same_run(full, tr)


def test_stop_from_another_thread_ends_the_run_within_a_step():
    tr = trainer("numpy")
    real, calls = tr._fused, [0]

    def step(idx):
        loss = real(idx)
        calls[0] += 1
        if calls[0] == 3:                       # the third step: another thread asks, and is done
            t = threading.Thread(target=tr.stop)
            t.start()
            t.join()
        return loss
    step.uncapturable = "a test's wrapper"
    tr._fused = step
    tr.fit()
    assert tr.step == 3 and len(tr.history.loss) == 3
