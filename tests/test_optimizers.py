"""Optimizers as the book's scripts use them: in place on any array layout, on Python numbers,
refusing what the kernels cannot take (before changing anything), hyperparameters checked at
construction."""

import numpy as np
import pytest

from fastdl import optimizers
from fastdl.errors import DTypeError, ShapeError

NAMES = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


@pytest.mark.parametrize("layout", ["fortran", "column slice"])
@pytest.mark.parametrize("name", NAMES)
def test_updates_in_place_on_any_layout(backend, ref, name, layout):
    """A Fortran-ordered parameter or a column slice is updated in place on every backend, as
    NumPy's reference does (never on a silent copy)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    g = rng.standard_normal((6, 4) if layout == "column slice" else (6, 8)).astype(np.float32)
    results = []
    for B in (backend, ref):
        whole = B.asarray(base.copy())
        if layout == "fortran":
            whole = B.xp.asfortranarray(whole)
        p = whole[:, :4] if layout == "column slice" else whole
        opt = optimizers.get_optimizer(name, lr=0.1)
        for _ in range(2):
            opt.update({"p": p}, {"p": B.asarray(g)}, B)
        results.append(B.to_numpy(whole))
    assert not np.array_equal(results[0][:, :4], base[:, :4]), "the update was lost"
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)
    if layout == "column slice":
        np.testing.assert_array_equal(results[0][:, 4:], base[:, 4:])     # the rest untouched


def test_python_number_parameters_as_in_the_book():
    """ch06/optimizer_compare_naive.py: params = {'x': -7.0, 'y': 2.0}; the entries move by the
    book's formulas and stay numbers."""
    for name, lr in (("SGD", 0.95), ("Momentum", 0.1), ("AdaGrad", 1.5), ("Adam", 0.3), ("Nesterov", 0.1),
                     ("RMSprop", 0.1)):
        opt = optimizers.get_optimizer(name, lr=lr)
        params = {"x": -7.0, "y": 2.0}
        arrays = {"x": np.array([-7.0]), "y": np.array([2.0])}
        twin = optimizers.get_optimizer(name, lr=lr)
        for _ in range(30):
            grads = {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}
            opt.update(params, grads)
            twin.update(arrays, {k: np.array([v]) for k, v in grads.items()})
        assert isinstance(params["x"], float) and isinstance(params["y"], float)
        np.testing.assert_allclose([params["x"], params["y"]], [arrays["x"][0], arrays["y"][0]], rtol=1e-12)
    opt = optimizers.SGD(lr=0.1)
    params = {"w": 1.0}
    opt.update(params, {"w": 2})                     # an int gradient, as df() may return
    assert params["w"] == pytest.approx(0.8)


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_gradients_are_refused_before_any_change(backend, name):
    """Same error on every backend, naming the array, and nothing updated (no step counted)."""
    p = {"W": backend.asarray(np.ones((4, 3), np.float32)), "b": backend.asarray(np.ones(3, np.float32))}
    opt = optimizers.get_optimizer(name, lr=0.1)
    for bad, err, words in ((np.ones((3, 4), np.float32), ShapeError, "gradient 'b'"),
                            (np.ones(3, np.float64), DTypeError, "gradient 'b' is float64"),
                            ([1.0, 1.0, 1.0], DTypeError, "gradient 'b' is a list")):
        grads = {"W": backend.asarray(np.ones((4, 3), np.float32)),
                 "b": bad if isinstance(bad, list) else backend.asarray(bad)}
        with pytest.raises(err, match=words):
            opt.update(p, grads, backend)
        assert opt.step == 0
        np.testing.assert_array_equal(backend.to_numpy(p["W"]), 1)
    with pytest.raises(KeyError, match="grads lacks"):
        opt.update(p, {"W": p["W"]}, backend)


@pytest.mark.parametrize("name", ["Momentum", "Adam"])
def test_state_of_another_network_is_refused(backend, name):
    """An optimizer reused for a network of other shapes: its state would be read out of bounds
    by a compiled kernel; it is refused, naming the state and the parameter."""
    opt = optimizers.get_optimizer(name, lr=0.1)
    a = {"W1": backend.asarray(np.ones((4, 3), np.float32))}
    opt.update(a, {"W1": backend.asarray(np.ones((4, 3), np.float32))}, backend)
    b = {"W1": backend.asarray(np.ones((40, 30), np.float32))}
    with pytest.raises(ShapeError, match="parameter 'W1'.*use a new optimizer"):
        opt.update(b, {"W1": backend.asarray(np.ones((40, 30), np.float32))}, backend)


@pytest.mark.parametrize("make, words", [
    (lambda: optimizers.SGD(lr=float("inf")), "lr=inf must be a positive finite number"),
    (lambda: optimizers.SGD(lr=-1), "lr=-1"),
    (lambda: optimizers.Adam(lr=0), r"lr=0 must be a positive finite number \(Adam's default is 0.001\)"),
    (lambda: optimizers.Momentum(momentum=1.0), r"momentum=1.0 must be a finite number in \[0, 1\)"),
    (lambda: optimizers.Adam(beta1=-0.1), r"beta1=-0.1 .* \[0, 1\)"),
    (lambda: optimizers.Adam(beta2=float("nan")), "beta2=nan"),
    (lambda: optimizers.AdaGrad(eps=0), r"eps=0 must be a finite number in \(0, inf\)"),
    (lambda: optimizers.RMSprop(decay=2), "decay=2"),
])
def test_hyperparameters_are_checked_at_construction(make, words):
    with pytest.raises(ValueError, match=words):
        make()


@pytest.mark.parametrize("name", NAMES)
def test_bound_update_matches_update_and_checks_once(backend, name):
    """bind(): the same numbers as update() step by step (lr changed between steps included),
    everything update() refuses refused when binding, before any step."""
    rng = np.random.default_rng(1)
    p0 = {"W": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    gs = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in p0.items()} for _ in range(3)]
    a = {k: backend.asarray(v.copy()) for k, v in p0.items()}
    b = {k: backend.asarray(v.copy()) for k, v in p0.items()}
    grads = {k: backend.asarray(np.zeros_like(v)) for k, v in p0.items()}
    ra, rb = optimizers.get_optimizer(name, lr=0.1), optimizers.get_optimizer(name, lr=0.1)
    step = rb.bind(b, grads, backend)
    for i, g in enumerate(gs):
        ra.lr = rb.lr = 0.1 / (i + 1)
        ra.update(a, {k: backend.asarray(v) for k, v in g.items()}, backend)
        for k, v in g.items():
            grads[k][...] = backend.asarray(v)
        step()
        for k in p0:
            np.testing.assert_array_equal(backend.to_numpy(a[k]), backend.to_numpy(b[k]))
    assert ra.step == rb.step == 3
    opt = optimizers.get_optimizer(name, lr=0.1)
    with pytest.raises(KeyError, match="grads lacks"):
        opt.bind(a, {"W": grads["W"]}, backend)
    with pytest.raises(ShapeError, match="must match exactly"):
        opt.bind(a, {"W": grads["W"], "b": backend.asarray(np.zeros(4, np.float32))}, backend)
    with pytest.raises(DTypeError, match="must match exactly"):          # the shape right, the dtype not
        opt.bind(a, {"W": grads["W"], "b": backend.asarray(backend.to_numpy(grads["b"]).astype(np.float64))}, backend)
    with pytest.raises(TypeError, match="give a dict of arrays by name"):
        opt.bind(list(a.values()), grads, backend)
    with pytest.raises(DTypeError, match="Python numbers"):
        opt.bind({"w": 1.0}, {"w": 0.5}, backend)
    assert opt.step == 0          # and any state made on the way is still zeros, as if new
    assert all(not backend.to_numpy(v).any() for s in opt.state_names for v in opt.state[s].values())


def test_get_optimizer_names_what_an_optimizer_does_not_take():
    with pytest.raises(TypeError, match="RMSprop takes no momentum; its hyperparameters are lr, decay, eps, decay_rate"):
        optimizers.get_optimizer("rmsprop", lr=0.1, momentum=0.9)
    assert optimizers.get_optimizer("rmsprop", lr=0.1, decay_rate=0.9).decay == 0.9       # the book's name
