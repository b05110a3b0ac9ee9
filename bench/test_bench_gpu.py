"""GPU benchmarks (skipped without a usable cupy backend): the book's workload on cupy, with its
blocks of steps replayed as CUDA graphs (the trainer's default) and uncaptured, against PyTorch
eager autograd and PyTorch's CUDA graphs on the same GPU, at batch 100, 1000 and 10,000; how a
cupy step splits into GPU time and launch overhead; and larger networks (784-1000-1000-10 and
784-4096-4096-10 at batch 256 and 4096) against the GEMM floor of their shapes and the GPU's
float32 GEMM rate, all measured in the same run."""

import time

import numpy as np
import pytest

import fastdl
from conftest import QUICK, backend_info, measure_gemm_floor, step_flops
from fastdl.backends import backend_status, get_backend
from fastdl.optimizers import SGD

ok, why = backend_status("cupy")
pytestmark = pytest.mark.skipif(not ok, reason=f"cupy backend unavailable: {why}")

BOOK_STEPS = 500 if QUICK else 10_000
BOOK_BATCHES = [100, 1000, 10_000]
EAGER_ROUNDS = 2          # uncaptured runs of the book's workload take seconds each: two rounds
LARGE = [(sizes, batch) for sizes in ([784, 1000, 1000, 10], [784, 4096, 4096, 10]) for batch in (256, 4096)]
LARGE_IDS = [f"{'-'.join(map(str, s))}-b{b}" for s, b in LARGE]


def _epoch_steps(batch):
    """One epoch of MNIST's 60,000 training images (10 steps in a quick run)."""
    return 10 if QUICK else -(-60_000 // batch)


def _large_group(sizes, batch):
    return f"gpu large {'-'.join(map(str, sizes))} batch {batch} x{_epoch_steps(batch)}"


def _book_group(batch):
    return f"gpu book 784-50-10 batch {batch} x{BOOK_STEPS}"


def _train(bk_name, data, sizes, batch, steps):
    (x, t), _ = data
    net = fastdl.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], backend=bk_name, seed=0,
                               weight_init_std=0.01 if len(sizes) == 3 else "he")
    return fastdl.Trainer(net, SGD(lr=0.1), x, t, iterations=steps, batch_size=batch, seed=0, progress=False,
                          evaluate_train=False, warm_up=False)      # compiled by an untimed run before


def _fit(tr):
    tr.fit()
    tr.backend.synchronize()


def _info(benchmark, bk, sizes, batch, steps):
    f = measure_gemm_floor(bk, sizes, batch)
    benchmark.extra_info.update(backend_info(bk), network="-".join(map(str, sizes)), batch=batch, steps=steps,
                                floor_seconds=f["gemm_seconds_per_step"] * steps, gemm_rate_gflops=f["gemm_rate_gflops"],
                                gflop_per_step=step_flops(sizes, batch) / 1e9)


@pytest.mark.parametrize("batch", BOOK_BATCHES)
@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_cupy_book_workload(benchmark, mnist, mode, batch, monkeypatch):
    """The book's run on cupy: blocks of 100 steps replayed as CUDA graphs (the default), or every
    step launched from Python (the graph_replay capability taken away)."""
    from fastdl.backends.contract import GRAPH_REPLAY
    bk = get_backend("cupy")
    if mode == "eager":
        monkeypatch.setattr(bk, "CAPABILITIES", bk.CAPABILITIES - {GRAPH_REPLAY})
    benchmark.group = _book_group(batch)
    warm = _train("cupy", mnist, [784, 50, 10], batch, 300)
    _fit(warm)
    replays = warm._replay.replays if warm._replay is not None else 0
    assert (replays > 0) == (mode == "graph"), warm.capture_note or (warm._replay and warm._replay.note)
    _info(benchmark, bk, [784, 50, 10], batch, BOOK_STEPS)
    benchmark.extra_info.update(backend=f"cupy ({'CUDA graphs' if mode == 'graph' else 'uncaptured'})",
                                mode=mode, capture_note=str(warm.capture_note))
    benchmark.pedantic(_fit, setup=lambda: ((_train("cupy", mnist, [784, 50, 10], batch, BOOK_STEPS),), {}),
                       rounds=3 if mode == "graph" else EAGER_ROUNDS, iterations=1)


TORCH_CASES = [([784, 50, 10], b) for b in BOOK_BATCHES] + LARGE
TORCH_IDS = [f"784-50-10-b{b}" for b in BOOK_BATCHES] + LARGE_IDS


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "cuda-graph"])
@pytest.mark.parametrize("sizes,batch", TORCH_CASES, ids=TORCH_IDS)
def test_torch_gpu(benchmark, mnist, sizes, batch, graph):
    """PyTorch on the same GPU, same network, batches and hyperparameters: eager autograd, or the
    whole step (forward, backward, SGD) captured once with torch.cuda.graphs and replayed with the
    batch copied into its static input."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False      # full float32 GEMMs, as cuBLAS gives CuPy
    steps = BOOK_STEPS if sizes[1] == 50 else _epoch_steps(batch)
    benchmark.group = _book_group(batch) if sizes[1] == 50 else _large_group(sizes, batch)
    (x, t), _ = mnist
    dev = torch.device("cuda")
    X, T = torch.from_numpy(x).to(dev), torch.from_numpy(t.astype(np.int64)).to(dev)
    init = fastdl.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], seed=0,
                                weight_init_std=0.01 if len(sizes) == 3 else "he").params_numpy()
    n, L = len(X), len(sizes) - 1

    def setup():
        ps = [torch.from_numpy(init[f"{k}{i}"].copy()).to(dev).requires_grad_() for i in range(1, L + 1) for k in "Wb"]
        return (ps,), {}

    def loss_of(ps, x, t):
        h = x
        for i in range(L):
            h = h @ ps[2 * i] + ps[2 * i + 1]
            if i < L - 1:
                h = torch.relu(h)
        return torch.nn.functional.cross_entropy(h, t)

    def captured(ps, opt):
        """The step as a CUDA graph over static batch tensors (PyTorch's whole-network recipe:
        warm up on a side stream, capture with the gradients left in place)."""
        sx, st = X[:batch].clone(), T[:batch].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                loss_of(ps, sx, st).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g):
            static_loss = loss_of(ps, sx, st)
            static_loss.backward()
            opt.step()
        return g, sx, st

    def run(ps, steps=steps):
        rng = np.random.default_rng(0)
        opt = torch.optim.SGD(ps, lr=0.1)
        if graph:
            g, sx, st = captured(ps, opt)
        spe = -(-n // batch)
        done = 0
        while done < steps:
            perm = torch.from_numpy(rng.permutation(n)).to(dev)
            for s in range(min(spe, steps - done)):
                idx = perm[s * batch:(s + 1) * batch]
                if graph and idx.shape[0] == batch:
                    torch.index_select(X, 0, idx, out=sx)
                    torch.index_select(T, 0, idx, out=st)
                    g.replay()
                else:                  # eager, and the graph's partial last batch of an epoch
                    loss = loss_of(ps, X[idx], T[idx])
                    opt.zero_grad(set_to_none=not graph)
                    loss.backward()
                    opt.step()
                done += 1
        torch.cuda.synchronize()

    run(setup()[0][0], steps=min(steps, 300))                # warm-up: kernels loaded, allocator filled
    benchmark.extra_info.update(backend=f"pytorch-cuda-{'graph' if graph else 'eager'}", torch=torch.__version__,
                                device=torch.cuda.get_device_name(), network="-".join(map(str, sizes)),
                                batch=batch, steps=steps, dtype="float32")
    benchmark.pedantic(run, setup=setup, rounds=3 if graph else EAGER_ROUNDS, iterations=1)


@pytest.mark.parametrize("sizes,batch", LARGE, ids=LARGE_IDS)
def test_large_network_epoch(benchmark, mnist, sizes, batch):
    """One epoch of a larger network on cupy (the trainer's default: CUDA-graph replay), against
    the floor of its GEMMs at the step's shapes on this GPU (extra_info floor_seconds)."""
    steps = _epoch_steps(batch)
    benchmark.group = _large_group(sizes, batch)
    _fit(_train("cupy", mnist, sizes, batch, 5))
    _info(benchmark, get_backend("cupy"), sizes, batch, steps)
    benchmark.pedantic(_fit, setup=lambda: ((_train("cupy", mnist, sizes, batch, steps),), {}), rounds=3, iterations=1)


def test_sgemm_rate(benchmark):
    """The GPU's float32 GEMM rate on a large square product (8192^3 through cuBLAS, TF32 off as
    in training): the roof the larger networks are measured against."""
    import cupy as cp
    n = 2048 if QUICK else 8192
    rng = cp.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=cp.float32) for _ in range(2))
    c = cp.empty((n, n), dtype=cp.float32)

    def run():
        cp.matmul(a, b, out=c)
        cp.cuda.get_current_stream().synchronize()

    benchmark.group = "gpu sgemm"
    for _ in range(3):
        run()
    benchmark.extra_info.update(backend_info(get_backend("cupy")), shape=f"{n}x{n}x{n}", flops=2 * n ** 3)
    benchmark.pedantic(run, rounds=10, iterations=1)


def test_cupy_step_split(benchmark, mnist):
    """Time per step of the book's workload on cupy, split into GPU time (CUDA events around the
    step) and host-side launch overhead (wall time minus GPU time)."""
    import cupy as cp
    benchmark.group = "gpu step split"
    tr = _train("cupy", mnist, [784, 50, 10], 100, 1)
    idx = tr.backend.asarray(np.random.default_rng(0).permutation(60000)[:100])
    step = lambda: tr._fused(idx)
    for _ in range(50):
        step()
    cp.cuda.get_current_stream().synchronize()
    n = 2000
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    end.record()
    end.synchronize()
    wall = (time.perf_counter() - t0) / n
    gpu = cp.cuda.get_elapsed_time(start, end) / 1e3 / n
    kernel = []
    for _ in range(20):                       # GPU time of one isolated step: the kernels alone
        s, e = cp.cuda.Event(), cp.cuda.Event()
        s.record(); step(); e.record(); e.synchronize()
        kernel.append(cp.cuda.get_elapsed_time(s, e) / 1e3)
    benchmark.extra_info.update(backend_info(get_backend("cupy")), wall_us_per_step=wall * 1e6,
                                stream_us_per_step=gpu * 1e6, isolated_step_gpu_us=float(np.median(kernel)) * 1e6)
    print(f"\ncupy step: {wall * 1e6:.1f} us wall, stream busy {gpu * 1e6:.1f} us/step, "
          f"an isolated step's GPU time {np.median(kernel) * 1e6:.1f} us")
    benchmark.pedantic(lambda: (step(), cp.cuda.get_current_stream().synchronize()), rounds=200, iterations=1)


def test_cupy_first_kernel_build(benchmark):
    """A first build of the whole CUDA module (NVRTC + load), apart from run time: a unique
    comment in the source defeats CuPy's on-disk cache, so every round compiles for real."""
    import uuid

    import cupy as cp
    from fastdl.cuda_sources import combined_source
    benchmark.group = "compile"
    source = combined_source()

    def setup():
        return (f"// build {uuid.uuid4()}\n" + source,), {}

    def build(src):
        module = cp.RawModule(code=src, options=("--std=c++14",))
        module.get_function("sgd_f32")            # forces compilation and loading
        cp.cuda.get_current_stream().synchronize()

    benchmark.extra_info.update(backend_info(get_backend("cupy")))
    benchmark.pedantic(build, setup=setup, rounds=3, iterations=1)
