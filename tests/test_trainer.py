import numpy as np
import pytest

import fastdl
from fastdl.errors import DivergenceError, LabelError, ShapeError
from fastdl.optimizers import SGD
from toy_data import blobs


def make(backend="numpy", **kw):
    x, t = blobs(250)
    net = fastdl.TwoLayerNet(8, 16, 3, weight_init_std="he", backend=backend, seed=0)
    args = dict(batch_size=100, seed=0, progress=False)
    args.update(kw)
    return net, fastdl.Trainer(net, SGD(lr=0.1), x, t, x[:50], t[:50], **args)


def test_evaluates_at_true_epoch_boundaries():
    # 250 samples, batch 100: an epoch is 3 steps (the book's float modulo would use 2.5)
    net, tr = make(epochs=4)
    h = tr.fit()
    assert tr.steps_per_epoch == 3 and h.steps == 12
    assert h.epoch == [1, 2, 3, 4] and h.epoch_step == [3, 6, 9, 12]
    assert len(h.loss) == 12 and len(h.train_acc) == 4 and len(h.test_acc) == 4
    assert h.train_acc[-1] > 0.9


def test_iterations_end_with_a_partial_epoch_evaluated():
    _, tr = make(iterations=7)
    h = tr.fit()
    assert h.epoch_step == [3, 6, 7] and h.epoch[-1] == pytest.approx(7 / 3, abs=1e-6)


@pytest.mark.parametrize("sampling", ["shuffle", "replacement"])
def test_seeded_numpy_run_repeats_bit_for_bit(sampling):
    runs = []
    for _ in range(2):
        net, tr = make(iterations=20, sampling=sampling)
        h = tr.fit()
        runs.append((h.loss, net.params_numpy()))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])
    net, tr = make(iterations=20, sampling=sampling, seed=1)
    assert tr.fit().loss != runs[0][0]


def test_sync_every_past_an_epoch_syncs_at_epoch_ends(backend):
    """Blocks of steps never cross an epoch's end, so a huge sync_every (sync at epoch ends only)
    buffers one epoch; it asked for 373 GiB. The same run as syncing often."""
    _, often = make(backend=backend, iterations=10, sync_every=1)
    _, rarely = make(backend=backend, iterations=10, sync_every=10**9)
    assert rarely.fit().loss == often.fit().loss and rarely.history.epoch_step == [3, 6, 9, 10]


def test_progress_bar_on_a_terminal(monkeypatch):
    """progress=True draws tqdm's bar where stderr is a terminal: the steps, the loss and the
    test accuracy after each epoch (every test elsewhere trains without it)."""
    pytest.importorskip("tqdm")
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(sys, "stderr", Terminal())
    _, tr = make(iterations=7, progress=True)
    tr.fit()
    shown = sys.stderr.getvalue()
    assert "train [numpy]" in shown and "7/7" in shown and "loss=" in shown and "test_acc=" in shown


def test_shuffle_sees_every_sample_once_per_epoch():
    _, tr = make(epochs=1)
    idx = tr._epoch_indices()
    assert sorted(idx.tolist()) == list(range(250))


def test_history_records_the_run(backend):
    _, tr = make(backend=backend, iterations=6)
    h = tr.fit().to_dict()
    assert h["backend"] == backend.name and h["dtype"] == "float32" and h["device"] == backend.device
    assert h["seconds"] > 0 and h["final_test_acc"] is not None and len(h["loss"]) == 6
    shown = repr(tr.history)            # what a notebook shows of fit()'s value: a line, not every loss
    assert shown.startswith(f"History({backend.name}/float32, 6 steps of batch 100, 2 evaluations; loss ")
    assert f"test_acc {h['final_test_acc']:.4f}" in shown and "\n" not in shown and len(shown) < 200


def test_a_trainer_and_its_layers_show_what_they_are(backend):
    """What a notebook shows of them: the network, optimizer, data and progress; each layer's kind,
    shape and dtype (an object address said nothing)."""
    net, tr = make(backend=backend, iterations=6)
    assert repr(tr) == (f"Trainer({net!r}, SGD(lr=0.1), 250 training rows, 50 test rows, batch 100, "
                        f"step 0 of 6)")
    tr.fit()
    assert repr(tr).endswith("step 6 of 6)")
    b = repr(backend.name)
    assert repr(net.layers["Affine1"]) == f"Affine(8x16, dtype=float32, need_dx=False, backend={b})"
    assert repr(net.layers["Relu1"]) == f"Relu(backend={b})"
    deep = fastdl.MultiLayerNet(8, [4], 3, dropout=0.25, batch_norm=True, dtype="float64", backend=backend)
    assert repr(deep.layers["BatchNorm1"]) == f"BatchNormalization(4, momentum=0.9, dtype=float64, backend={b})"
    assert repr(deep.layers["Dropout1"]) == f"Dropout(dropout_ratio=0.25, backend={b})"


def test_same_batches_on_every_backend(backend):
    """Batches come from the host generator: every backend trains on the same sequence."""
    net_a, tr_a = make(backend=backend, iterations=30)
    net_b, tr_b = make(backend="numpy", iterations=30)
    la, lb = tr_a.fit().loss, tr_b.fit().loss
    np.testing.assert_allclose(la, lb, rtol=2e-4)


def test_non_finite_loss_stops_and_keeps_last_good_parameters():
    x, t = blobs(250)
    net = fastdl.TwoLayerNet(8, 16, 3, weight_init_std="he", seed=0)
    tr = fastdl.Trainer(net, SGD(lr=1e30), x, t, iterations=50, sync_every=5, progress=False, seed=0)
    with pytest.raises(DivergenceError, match=r"step \d+.*smaller learning rate") as err:
        tr.fit()
    assert err.value.step >= 1
    params = net.params_numpy()
    assert all(np.isfinite(v).all() for v in params.values())
    # the trainer stands at the step its parameters are from, as its history does
    assert tr.step == tr.history.steps == len(tr.history.loss) < err.value.step
    assert f"parameters from step {tr.step}," in str(err.value)


def test_a_weight_near_the_end_of_the_dtypes_range_stops_the_run(backend):
    """Equal huge output biases leave the loss finite and flat (softmax shifts them away), so only
    the weight check can see that one more product would overflow; explosion=None turns it off."""
    x, t = blobs(250)
    for explosion, stops in ((1e4, True), (None, False)):
        net = fastdl.TwoLayerNet(8, 16, 3, weight_init_std="he", seed=0, backend=backend)
        net.set_params({**net.params_numpy(), "b2": np.full(3, 1e20, np.float32)})
        tr = fastdl.Trainer(net, SGD(lr=0.01), x, t, iterations=10, sync_every=5, progress=False, seed=0,
                            explosion=explosion)
        if stops:
            with pytest.raises(DivergenceError, match=r"a weight reached 1e\+20, near the end of float32's range"):
                tr.fit()
        else:
            assert np.isfinite(tr.fit().loss).all()


def test_bad_training_data_is_rejected_up_front():
    x, t = blobs(250)
    net = fastdl.TwoLayerNet(8, 16, 3)
    with pytest.raises(LabelError):
        fastdl.Trainer(net, SGD(0.1), x, np.where(t == 0, 3, t), iterations=1)
    with pytest.raises(ShapeError, match="must match"):
        fastdl.Trainer(net, SGD(0.1), x, t[:-1], iterations=1)
    with pytest.raises(ValueError, match="exactly one of"):
        fastdl.Trainer(net, SGD(0.1), x, t)
    with pytest.raises(ValueError, match="sampling"):
        fastdl.Trainer(net, SGD(0.1), x, t, iterations=1, sampling="random")
    with pytest.raises(ValueError, match=f"batch_size={len(x) + 1} is larger than the training set"):
        fastdl.Trainer(net, SGD(0.1), x, t, iterations=1, batch_size=len(x) + 1)
    with pytest.raises(ValueError, match="give both x_test and t_test"):
        fastdl.Trainer(net, SGD(0.1), x, t, x, iterations=1)
    # the default batch of 100 shrinks to a smaller set instead
    assert fastdl.Trainer(net, SGD(0.1), x[:30], t[:30], iterations=1).batch_size == 30


def test_book_headline_on_real_mnist(mnist):
    """TwoLayerNet(784, 50, 10), ReLU, std 0.01, SGD 0.1, batch 100, 10,000 steps, float32."""
    (x, t), (xt, tt) = mnist
    net = fastdl.TwoLayerNet(784, 50, 10, weight_init_std=0.01, backend="numpy", seed=0)
    h = fastdl.Trainer(net, SGD(lr=0.1), x, t, xt, tt, iterations=10_000, batch_size=100,
                       sampling="replacement", seed=0, progress=False).fit()
    assert h.test_acc[-1] >= 0.97, h.test_acc
    assert len(h.test_acc) == 17             # 16 whole epochs + the final partial one
