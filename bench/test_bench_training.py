"""End-to-end benchmarks: training steps and runs of the book's workload and of larger networks,
each also expressed as a fraction of its FLOP floor (the time of exactly its GEMMs at the
machine's measured rate, measured in the same run)."""

import importlib.util

import numpy as np
import pytest

import fastdl
from conftest import QUICK, ROUNDS, backend_info, measure_gemm_floor, settle, step_flops, timed, warm
from fastdl.backends import get_backend
from fastdl.optimizers import SGD

BOOK = dict(sizes=[784, 50, 10], batch=100, iterations=200 if QUICK else 10_000)
LARGE = dict(sizes=[784, 1000, 1000, 10], batch=256, iterations=20 if QUICK else 235)   # one epoch
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


def _trainer(bk, data, spec, steps, **kw):
    (x, t), _ = data
    net = fastdl.MultiLayerNet(spec["sizes"][0], spec["sizes"][1:-1], spec["sizes"][-1], backend=bk,
                               seed=0, weight_init_std=0.01 if len(spec["sizes"]) == 3 else "he")
    return fastdl.Trainer(net, SGD(lr=0.1), x, t, iterations=steps, batch_size=spec["batch"], seed=0,
                          progress=False, evaluate_train=False, **kw)


def _fit(bk, tr):
    tr.fit()
    bk.synchronize()


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


def test_interleaved_ratios(benchmark, mnist):
    """The book's 10,000-step run of each contender (fastdl's backends, a plain NumPy loop and the
    hand-written loops of bench/contenders.py), interleaved round by round, so that slow
    phases of a shared machine hit all of them alike, with the FLOP floor (the run's GEMMs alone
    on NumPy's BLAS) measured in each round too; reports the median of per-round ratios."""
    import statistics
    import contenders as hand_loops
    import plain_numpy
    from fastdl.backends import backend_status
    benchmark.group = f"interleaved ratios, 784-50-10 x{BOOK['iterations']}"
    (x, t), _ = mnist
    t64 = t.astype(np.int64)
    steps = BOOK["iterations"]
    init = fastdl.TwoLayerNet(784, 50, 10, seed=0).params_numpy()
    # name -> setup() returning the run to time: building a trainer (validation, moving data)
    # is set-up, like preparing the plain loop's arrays; the timed part is the training loop.
    def plain_setup():
        params = [init[k].copy() for k in ("W1", "b1", "W2", "b2")]
        return lambda: plain_numpy.train(x, t64, *params, iterations=steps)

    contenders = {"plain-numpy": plain_setup}
    # the hand-written loops fastdl is measured against (bench/contenders.py), each checked
    # against the plain loop's losses first: proof that they do the same work
    ref = plain_numpy.train(x, t64, *[init[k].copy() for k in ("W1", "b1", "W2", "b2")], iterations=50)
    hand = {"numba-hand-loop": (hand_loops.numba_loop, lambda: x),
            "numba-hand-loop-sparse": (hand_loops.numba_sparse_loop, lambda: hand_loops.csr(x))}
    if importlib.util.find_spec("torch"):     # optional: an outside reference, not a dependency
        hand["pytorch-manual-backward"] = (hand_loops.torch_manual, lambda: x)
    for name, (loop, data) in hand.items():
        d = data()
        losses = loop(d, t64, *[init[k].copy() for k in ("W1", "b1", "W2", "b2")], iterations=50)
        np.testing.assert_allclose(losses, ref, rtol=1e-5, atol=1e-6)
        contenders[name] = (lambda loop=loop, d=d: (lambda p=[init[k].copy() for k in ("W1", "b1", "W2", "b2")]:
                                                     loop(d, t64, *p, iterations=steps)))
    # "numpy": the trainer's default on NumPy (its fused step); "numpy-layer-path": fast_path=False
    for name, bk_name, fast in (("numpy", "numpy", True), ("numpy-layer-path", "numpy", False),
                                ("numba", "numba", True)):
        if backend_status(bk_name)[0]:
            bk = get_backend(bk_name)
            _fit(bk, _trainer(bk, mnist, BOOK, 50, fast_path=fast))      # compile + warm up
            contenders[name] = (lambda bk=bk, fast=fast:
                                (lambda tr=_trainer(bk, mnist, BOOK, steps, fast_path=fast): _fit(bk, tr)))
    times = {k: [] for k in contenders}
    times["gemm-floor"] = []
    times["gemm+gather-floor"] = []

    def rounds():
        import time as _t
        for _ in range(max(ROUNDS, 3)):
            # the FLOP floor of the run, measured in every round beside the runs it is compared
            # with: the same number of steps' GEMMs, back to back, on NumPy's BLAS; and the same
            # with each step's gather of 100 random training rows, which no step can skip
            settle()
            f = measure_gemm_floor(get_backend("numpy"), BOOK["sizes"], BOOK["batch"], repeats=steps)
            times["gemm-floor"].append(f["gemm_seconds_total"])
            settle()
            f = measure_gemm_floor(get_backend("numpy"), BOOK["sizes"], BOOK["batch"], repeats=steps, gather_from=x)
            times["gemm+gather-floor"].append(f["gemm_seconds_total"])
            for name, setup in contenders.items():
                run = setup()
                settle()                  # the previous contender's thread pools asleep first
                t0 = _t.perf_counter()
                run()
                times[name].append(_t.perf_counter() - t0)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
    info = {f"median_s_{k}": statistics.median(v) for k, v in times.items()}
    info["ratio_numpy_over_plain"] = ratio("numpy", "plain-numpy")
    info["ratio_numpy_over_numpy_layer_path"] = ratio("numpy", "numpy-layer-path")
    if "numba" in times:
        info["ratio_numba_over_numpy"] = ratio("numba", "numpy")
        info["ratio_numba_over_numpy_layer_path"] = ratio("numba", "numpy-layer-path")
        info["ratio_numba_over_floor"] = ratio("numba", "gemm-floor")
        info["ratio_numba_over_gemm_gather_floor"] = ratio("numba", "gemm+gather-floor")
        for name in hand:
            info[f"ratio_numba_over_{name}"] = ratio("numba", name)
    info["ratio_numpy_over_floor"] = ratio("numpy", "gemm-floor")
    info["rounds_s"] = times
    benchmark.extra_info.update(backend_info(get_backend("numpy")), **info, backend="interleaved", dtype="float32")
    print("\n" + ", ".join(f"{k} {v:.3f}" for k, v in info.items() if k != "rounds_s"))


@pytest.mark.parametrize("kind", ["float32 rows", "byte codes", "byte codes, no prefetch"])
def test_input_layer_forward(benchmark, kind, mnist, monkeypatch):
    """The numba step's first layer, forward: 100 random MNIST rows gathered (from the float32
    training set or from its byte codes, fastdl.backends.composed.byte_codes; with or without
    software prefetch), multiplied by W1, b1 added, split across the threads by input feature;
    a new batch each call, as in training."""
    try:
        bk = get_backend("numba")
    except fastdl.FastDLError as exc:
        pytest.skip(str(exc))
    from fastdl.backends.numba import gather
    if kind.endswith("no prefetch"):
        monkeypatch.setattr(gather, "PREFETCH_AHEAD", 0)
    benchmark.group = "numba input layer forward: gather 100 MNIST rows, x @ W1 (784x50)"
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


CH6 = dict(sizes=[784, 100, 100, 100, 100, 100, 10], batch=100, iterations=20 if QUICK else 600)


def test_chapter6_interleaved(benchmark, mnist):
    """The book's 5-layer network (784-100x5-10) with Batch Norm and Dropout 0.2, one epoch of
    SGD per round, numba and NumPy interleaved round by round (each through the trainer's fused
    step); reports the median of per-round ratios."""
    import statistics
    import time as _t
    from fastdl.backends import backend_status
    benchmark.group = f"chapter 6: 784-100x5-10, Batch Norm + Dropout, x{CH6['iterations']}"
    (x, t), _ = mnist
    names = [n for n in ("numpy", "numba") if backend_status(n)[0]]

    def trainer(bk, steps):
        net = fastdl.MultiLayerNet(784, [100] * 5, 10, batch_norm=True, dropout=0.2, backend=bk, seed=0)
        return fastdl.Trainer(net, SGD(lr=0.01), x, t, iterations=steps, batch_size=CH6["batch"], seed=0,
                              progress=False, evaluate_train=False)
    for name in names:
        _fit(get_backend(name), trainer(name, 20))            # compile + warm up
    times = {n: [] for n in names}

    def rounds():
        for _ in range(max(ROUNDS, 3)):
            for name in names:
                tr = trainer(name, CH6["iterations"])
                settle()
                t0 = _t.perf_counter()
                _fit(get_backend(name), tr)
                times[name].append(_t.perf_counter() - t0)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    info = {f"median_s_{k}": statistics.median(v) for k, v in times.items()}
    if len(names) == 2:
        info["ratio_numba_over_numpy"] = statistics.median(a / b for a, b in zip(times["numba"], times["numpy"]))
    info["rounds_s"] = times
    benchmark.extra_info.update(backend_info(get_backend("numpy")), **info, backend="interleaved", dtype="float32")
    print("\n" + ", ".join(f"{k} {v:.3f}" for k, v in info.items() if k != "rounds_s"))


def test_numpy_against_plain_loop_fine(benchmark, mnist):
    """The NumPy backend's trainer against the plain NumPy loop, in blocks of 300 steps
    alternating 60 times (each pair in swapped order every other time): this machine's slow
    phases last seconds and flip inside a 10,000-step run, so only short, paired blocks compare
    two contenders this close. Reports the median of the per-pair ratios."""
    import statistics
    import time as _t
    import plain_numpy
    benchmark.group = "NumPy backend vs plain NumPy loop, 300-step blocks, paired"
    (x, t), _ = mnist
    t64 = t.astype(np.int64)
    block, pairs = (50, 6) if QUICK else (300, 60)
    bk = get_backend("numpy")
    init = fastdl.TwoLayerNet(784, 50, 10, seed=0).params_numpy()

    def fastdl_block():
        tr = _trainer(bk, mnist, BOOK, block)              # built (validated) outside the timing
        return tr.fit

    def plain_block():
        p = [init[k].copy() for k in ("W1", "b1", "W2", "b2")]
        return lambda: plain_numpy.train(x, t64, *p, iterations=block)

    ratios, times = [], {"numpy": [], "plain-numpy": []}

    def run():
        for i in range(pairs):
            order = [("numpy", fastdl_block), ("plain-numpy", plain_block)]
            for name, make in (order if i % 2 == 0 else order[::-1]):
                f = make()
                t0 = _t.perf_counter()
                f()
                times[name].append(_t.perf_counter() - t0)
            ratios.append(times["numpy"][-1] / times["plain-numpy"][-1])

    benchmark.pedantic(run, rounds=1, iterations=1)
    info = {"ratio_numpy_over_plain": statistics.median(ratios),
            "ratio_numpy_over_plain_quartiles": statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios,
            "median_s_numpy": statistics.median(times["numpy"]),
            "median_s_plain-numpy": statistics.median(times["plain-numpy"]), "rounds_s": times}
    benchmark.extra_info.update(backend_info(bk), **{k: v for k, v in info.items() if k != "ratio_numpy_over_plain_quartiles"},
                                backend="interleaved", dtype="float32", block_steps=block, pairs=pairs,
                                quartiles_numpy_over_plain=info["ratio_numpy_over_plain_quartiles"])
    print(f"\nnumpy / plain: median {info['ratio_numpy_over_plain']:.3f}, quartiles "
          f"{', '.join(f'{q:.3f}' for q in info['ratio_numpy_over_plain_quartiles'])}")
