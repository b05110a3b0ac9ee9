"""Benchmarks that interleave their contenders round by round (or block by block), so that the
slow phases of a shared machine hit all of them alike: the book's run against a plain NumPy
loop, the hand-written loops of bench/contenders.py and two FLOP floors; the NumPy backend
against the plain loop in short paired blocks; chapter 6's network; the larger network against
its floor measured in each round. Each reports medians of per-round ratios."""

import importlib.util

import numpy as np

import fastdl
from conftest import BOOK, LARGE, QUICK, ROUNDS, backend_info, measure_gemm_floor, settle
from conftest import fit_synced as _fit
from conftest import make_trainer as _trainer
from fastdl.backends import get_backend
from fastdl.optimizers import SGD


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
                              progress=False, evaluate_train=False, warm_up=False)    # compiled below
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


def test_large_network_interleaved(benchmark, mnist):
    """784-1000-1000-10, batch 256, one epoch: NumPy and numba through the trainer and the run's
    GEMMs alone (its FLOP floor, on NumPy's BLAS), all three in every round; reports each
    backend's median per-round floor fraction (floor / run; target for numba: 0.9 or more)."""
    import statistics
    import time as _t
    from fastdl.backends import backend_status
    steps = LARGE["iterations"]
    benchmark.group = f"interleaved, 784-1000-1000-10 batch 256 x{steps}"
    names = [n for n in ("numpy", "numba") if backend_status(n)[0]]
    for name in names:
        _fit(get_backend(name), _trainer(get_backend(name), mnist, LARGE, 5))      # compile + warm up
    times = {n: [] for n in names + ["gemm-floor"]}

    def rounds():
        for _ in range(ROUNDS if QUICK else max(ROUNDS, 3)):
            settle()
            f = measure_gemm_floor(get_backend("numpy"), LARGE["sizes"], LARGE["batch"], repeats=steps)
            times["gemm-floor"].append(f["gemm_seconds_total"])
            for name in names:
                bk = get_backend(name)
                tr = _trainer(bk, mnist, LARGE, steps)
                settle()
                t0 = _t.perf_counter()
                _fit(bk, tr)
                times[name].append(_t.perf_counter() - t0)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    info = {f"median_s_{k}": statistics.median(v) for k, v in times.items()}
    for name in names:
        info[f"ratio_floor_over_{name}"] = statistics.median(f / r for f, r in zip(times["gemm-floor"], times[name]))
    info["rounds_s"] = times
    benchmark.extra_info.update(backend_info(get_backend("numpy")), **info, backend="interleaved", dtype="float32")
    print("\n" + ", ".join(f"{k} {v:.3f}" for k, v in info.items() if k != "rounds_s"))
