"""GPU benchmarks (skipped without a usable cupy backend): the book's workload on cupy against
PyTorch eager autograd on the same GPU, how a cupy step splits into GPU time and launch overhead,
and larger networks against the GPU's measured GEMM rate and the numba backend on the CPU."""

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
LARGE = [([784, 1000, 1000, 10], 1024), ([784, 4096, 4096, 10], 1024)]


def _train(bk_name, data, sizes, batch, steps):
    (x, t), _ = data
    net = fastdl.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], backend=bk_name, seed=0,
                               weight_init_std=0.01 if len(sizes) == 3 else "he")
    return fastdl.Trainer(net, SGD(lr=0.1), x, t, iterations=steps, batch_size=batch, seed=0, progress=False,
                          evaluate_train=False)


def _fit(tr):
    tr.fit()
    tr.backend.synchronize()


def _info(benchmark, bk, sizes, batch, steps):
    f = measure_gemm_floor(bk, sizes, batch)
    benchmark.extra_info.update(backend_info(bk), network="-".join(map(str, sizes)), batch=batch, steps=steps,
                                floor_seconds=f["gemm_seconds_per_step"] * steps, gemm_rate_gflops=f["gemm_rate_gflops"],
                                achieved_gflops_per_step=step_flops(sizes, batch) / 1e9)


@pytest.mark.parametrize("name", ["cupy", "numba"])
@pytest.mark.parametrize("sizes,batch", LARGE, ids=["784-1000-1000-10", "784-4096-4096-10"])
def test_large_network_epoch(benchmark, mnist, name, sizes, batch):
    """One epoch (59 steps of 1024) of a larger network: cupy against numba on the CPU."""
    if name == "numba" and sizes[1] == 4096:
        pytest.skip("784-4096-4096-10 on 2 CPU cores takes minutes; compared on 784-1000-1000-10")
    ok_, why_ = backend_status(name)
    if not ok_:
        pytest.skip(why_)
    steps = 10 if QUICK else 59
    benchmark.group = f"gpu large {'-'.join(map(str, sizes))} batch {batch} x{steps}"
    _fit(_train(name, mnist, sizes, batch, 5))
    _info(benchmark, get_backend(name), sizes, batch, steps)
    benchmark.pedantic(_fit, setup=lambda: ((_train(name, mnist, sizes, batch, steps),), {}), rounds=3, iterations=1)


def test_cupy_book_workload(benchmark, mnist):
    benchmark.group = f"gpu book 784-50-10 batch 100 x{BOOK_STEPS}"
    _fit(_train("cupy", mnist, [784, 50, 10], 100, 200))
    _info(benchmark, get_backend("cupy"), [784, 50, 10], 100, BOOK_STEPS)
    benchmark.pedantic(_fit, setup=lambda: ((_train("cupy", mnist, [784, 50, 10], 100, BOOK_STEPS),), {}),
                       rounds=3, iterations=1)


@pytest.mark.parametrize("sizes,batch", [([784, 50, 10], 100)] + LARGE, ids=["784-50-10", "784-1000-1000-10", "784-4096-4096-10"])
def test_torch_gpu_eager(benchmark, mnist, sizes, batch):
    """PyTorch eager autograd on the same GPU, same network, batches and hyperparameters."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    steps = BOOK_STEPS if sizes[1] == 50 else (10 if QUICK else 59)
    benchmark.group = (f"gpu book 784-50-10 batch 100 x{BOOK_STEPS}" if sizes[1] == 50 else
                       f"gpu large {'-'.join(map(str, sizes))} batch {batch} x{steps}")
    (x, t), _ = mnist
    dev = torch.device("cuda")
    X, T = torch.from_numpy(x).to(dev), torch.from_numpy(t.astype(np.int64)).to(dev)
    init = fastdl.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], seed=0,
                                weight_init_std=0.01 if len(sizes) == 3 else "he").params_numpy()
    n, L = len(X), len(sizes) - 1

    def setup():
        ps = [torch.from_numpy(init[f"{k}{i}"].copy()).to(dev).requires_grad_() for i in range(1, L + 1) for k in "Wb"]
        return (ps,), {}

    def run(ps):
        rng = np.random.default_rng(0)
        opt = torch.optim.SGD(ps, lr=0.1)
        spe = -(-n // batch)
        done = 0
        while done < steps:
            perm = torch.from_numpy(rng.permutation(n)).to(dev)
            for s in range(min(spe, steps - done)):
                idx = perm[s * batch:(s + 1) * batch]
                h = X[idx]
                for i in range(L):
                    h = h @ ps[2 * i] + ps[2 * i + 1]
                    if i < L - 1:
                        h = torch.relu(h)
                loss = torch.nn.functional.cross_entropy(h, T[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
        torch.cuda.synchronize()

    run(setup()[0][0])
    benchmark.extra_info.update(backend="pytorch-cuda-eager", torch=torch.__version__, device=torch.cuda.get_device_name(),
                                network="-".join(map(str, sizes)), batch=batch, steps=steps)
    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)


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
