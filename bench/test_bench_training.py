"""End-to-end benchmarks: training steps and runs of the book's workload and of larger networks,
each also expressed as a fraction of its FLOP floor (the time of exactly its GEMMs at the
machine's measured rate, measured in the same run)."""

import numpy as np
import pytest

import fastdl
from conftest import BOOK, LARGE, ROUNDS, backend_info, measure_gemm_floor, settle, step_flops, timed, warm
from conftest import fit_synced as _fit
from conftest import make_trainer as _trainer
from fastdl.backends import get_backend

_floors = {}


def floor(bk, sizes, batch):
    key = (bk.name, tuple(sizes), batch)
    if key not in _floors:
        _floors[key] = measure_gemm_floor(bk, sizes, batch)
    return _floors[key]


def _record(benchmark, bk, spec, steps):
    f = floor(bk, spec["sizes"], spec["batch"])
    benchmark.extra_info.update(backend_info(bk), network="-".join(map(str, spec["sizes"])),
                                batch=spec["batch"], steps=steps, dtype="float32",
                                floor_seconds=f["gemm_seconds_per_step"] * steps,
                                gemm_rate_gflops=f["gemm_rate_gflops"],
                                step_gflop=step_flops(spec["sizes"], spec["batch"]) / 1e9)


@pytest.mark.parametrize("spec", [BOOK, LARGE], ids=["784-50-10", "784-1000-1000-10"])
def test_training_run(benchmark, backend, mnist, spec):
    """The whole run through fastdl.Trainer (the book's: 10,000 steps; the large net: one epoch)."""
    steps = spec["iterations"]
    benchmark.group = f"train {'-'.join(map(str, spec['sizes']))} batch {spec['batch']} x{steps}"
    _fit(backend, _trainer(backend, mnist, spec, min(steps, 50)))     # compile + warm up, untimed
    _record(benchmark, backend, spec, steps)

    def setup():
        tr = _trainer(backend, mnist, spec, steps)
        settle()                          # after the floor's GEMMs, before each round
        return (tr,), {}

    benchmark.pedantic(lambda tr: _fit(backend, tr), setup=setup, rounds=ROUNDS, iterations=1)


@pytest.mark.parametrize("path", ["fused", "layer"])
def test_training_step(benchmark, backend, mnist, path):
    """One step of the book's workload (gather, forward, backward, update) as the trainer runs it:
    its fused step, or the layer-by-layer path (``fast_path=False``)."""
    benchmark.group = f"train step 784-50-10 batch 100, {path} path"
    tr = _trainer(backend, mnist, BOOK, 1, fast_path=(path == "fused"))
    # a new batch every call, as in training (one reused batch would sit in the caches)
    batches = [backend.asarray(b) for b in np.random.default_rng(0).permutation(60000).reshape(600, 100)]
    it = iter(range(10**12))
    if tr._fused is not None:
        step = lambda: tr._fused(batches[next(it) % 600])
    else:
        def step():
            idx = batches[next(it) % 600]
            return tr.network.train_step(tr.x_train[idx], tr.t_train[idx], tr.optimizer)
    call = timed(backend, step)
    _record(benchmark, backend, BOOK, 1)
    with backend.train_scope():                 # as in Trainer.fit()
        settle()
        warm(call, 20)
        benchmark(call)


def test_plain_numpy_loop(benchmark, mnist):
    """The yardstick: the same 10,000 steps written by hand in NumPy (group of test_training_run)."""
    import plain_numpy
    benchmark.group = f"train 784-50-10 batch 100 x{BOOK['iterations']}"
    (x, t), _ = mnist
    t = t.astype(np.int64)
    bk = get_backend("numpy")

    def setup():
        net = fastdl.TwoLayerNet(784, 50, 10, seed=0)
        settle()
        return tuple(net.params_numpy()[k] for k in ("W1", "b1", "W2", "b2")), {}

    # Same numbers as the trainer: proof that both do the same work.
    (W1, b1, W2, b2), _ = setup()
    losses = plain_numpy.train(x, t, W1, b1, W2, b2, iterations=50)
    ref = _trainer(bk, mnist, BOOK, 50).fit().loss
    np.testing.assert_allclose(losses, ref, rtol=1e-5)
    _record(benchmark, bk, BOOK, BOOK["iterations"])
    benchmark.extra_info["backend"] = "plain-numpy"
    benchmark.pedantic(lambda *p: plain_numpy.train(x, t, *p, iterations=BOOK["iterations"]), setup=setup,
                       rounds=ROUNDS, iterations=1)


def test_pytorch_cpu(benchmark, mnist):
    """PyTorch on the CPU, same network, hyperparameters and batches (optional outside reference)."""
    torch = pytest.importorskip("torch")
    benchmark.group = f"train 784-50-10 batch 100 x{BOOK['iterations']}"
    (x, t), _ = mnist
    X, T = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
    n = len(X)

    def setup():
        net = fastdl.TwoLayerNet(784, 50, 10, seed=0).params_numpy()
        W1, b1, W2, b2 = (torch.from_numpy(net[k].copy()).requires_grad_() for k in ("W1", "b1", "W2", "b2"))
        settle()
        return (W1, b1, W2, b2), {}

    def run(W1, b1, W2, b2):
        rng = np.random.default_rng(0)
        opt = torch.optim.SGD([W1, b1, W2, b2], lr=0.1)
        done = 0
        while done < BOOK["iterations"]:
            perm = torch.from_numpy(rng.permutation(n))
            for s in range(min(600, BOOK["iterations"] - done)):
                idx = perm[s * 100:(s + 1) * 100]
                z = torch.relu(X[idx] @ W1 + b1) @ W2 + b2
                loss = torch.nn.functional.cross_entropy(z, T[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1

    info = backend_info(get_backend("numpy"))
    info.update(backend="pytorch-cpu", dtype="float32", torch=torch.__version__, torch_threads=torch.get_num_threads())
    benchmark.extra_info.update(info)
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)


def test_numba_cold_compile(benchmark):
    """A cold JIT compile of the softmax-cross-entropy loop (no cache), apart from run time."""
    nb = pytest.importorskip("numba")
    try:
        bk = get_backend("numba")
    except fastdl.FastDLError as exc:
        pytest.skip(str(exc))
    benchmark.group = "compile"
    z = np.random.default_rng(0).standard_normal((100, 10)).astype(np.float32)
    t = np.zeros(100, np.int64)
    dz = np.empty_like(z)

    from fastdl.backends.numba import loops

    def setup():
        return (nb.njit(cache=False, error_model="numpy", fastmath={"reassoc"})(loops.softmax_rows.py_func),), {}

    benchmark.extra_info.update(backend_info(bk), dtype="float32")
    benchmark.pedantic(lambda f: f(dz, z, t, True), setup=setup, rounds=ROUNDS, iterations=1)


@pytest.mark.parametrize("kind", ["float32 rows", "byte codes", "byte codes, no prefetch"])
def test_input_layer_forward(benchmark, kind, mnist, monkeypatch):
    """The numba step's first layer, forward, split across the threads by input feature: 100
    random MNIST rows gathered from the float32 training set and multiplied by W1, or read in
    place from its byte codes (fastdl.images.byte_codes) over their non-zero codes only
    (numba/nonzero_layer.py), with or without software prefetch of the rows ahead; b1 added; a
    new batch each call, as in training."""
    try:
        bk = get_backend("numba")
    except fastdl.FastDLError as exc:
        pytest.skip(str(exc))
    from fastdl.backends.numba import gather
    if kind.endswith("no prefetch"):
        monkeypatch.setattr(gather, "PREFETCH_AHEAD", 0)
    benchmark.group = "numba input layer forward: 100 random MNIST rows, x @ W1 (784x50)"
    (x, _), _ = mnist
    batches = np.random.default_rng(0).integers(0, x.shape[0], (1000, 100))
    W = np.random.default_rng(1).standard_normal((x.shape[1], 50)).astype(x.dtype)
    b = np.zeros(50, dtype=x.dtype)
    layer = bk.InputLayer(bk, W, b, np.empty_like(W), x, 100, "identity", byte_coded=kind.startswith("byte codes"))
    assert layer.byte_coded is kind.startswith("byte codes")
    z = np.empty((100, 50), dtype=x.dtype)
    it = iter(range(10**9))
    call = lambda: layer.forward(batches[next(it) % 1000], z)
    with bk.train_scope():                      # as in training: split, BLAS pinned
        layer.forward(batches[1], z)
        np.testing.assert_allclose(z, x[batches[1]] @ W, rtol=1e-4, atol=1e-4)
        warm(call, 50)
        benchmark.extra_info.update(backend_info(bk), backend=f"numba, {kind}", dtype="float32", parts=len(layer._cut) - 1,
                                    prefetch_ahead=gather.PREFETCH_AHEAD)
        benchmark(call)


@pytest.mark.parametrize("kind", ["float32 rows", "byte codes"])
def test_input_layer_wide(benchmark, kind, mnist):
    """The numba step's first layer of the larger network (784x1000, batch 256), forward and
    backward on a new batch each call: the gather and GEMM from float32 rows, or, from byte
    codes, each row's list of non-zero codes and a tile of columns at a time
    (numba/nonzero_wide.py)."""
    try:
        bk = get_backend("numba")
    except fastdl.FastDLError as exc:
        pytest.skip(str(exc))
    benchmark.group = "numba input layer forward + backward: 256 random MNIST rows, 784x1000"
    (x, _), _ = mnist
    batches = np.random.default_rng(0).integers(0, x.shape[0], (200, 256))
    rng = np.random.default_rng(1)
    W = (rng.standard_normal((x.shape[1], 1000)) * 0.05).astype(x.dtype)
    dz = rng.standard_normal((256, 1000)).astype(x.dtype)
    layer = bk.InputLayer(bk, W, np.zeros(1000, dtype=x.dtype), np.empty_like(W), x, 256, "identity",
                          byte_coded=kind == "byte codes")
    assert layer.nonzero is (kind == "byte codes")
    z = np.empty((256, 1000), dtype=x.dtype)
    it = iter(range(10**9))

    def call():
        layer.forward(batches[next(it) % 200], z)
        layer.backward(dz)
    with bk.train_scope():
        layer.forward(batches[1], z)
        np.testing.assert_allclose(z, x[batches[1]] @ W, rtol=1e-4, atol=1e-4)
        layer.backward(dz)
        np.testing.assert_allclose(layer.dW, x[batches[1]].T @ dz, rtol=1e-3, atol=1e-3)
        warm(call, 10)
        benchmark.extra_info.update(backend_info(bk), backend=f"numba, {kind}", dtype="float32",
                                    parts=len(layer._cut) - 1)
        benchmark(call)
