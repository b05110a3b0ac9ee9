"""A first look at the cupy backend on a GPU, before the test suite: the book's network trained
briefly from ByteImages with SGD and Adam, its blocks replayed as CUDA graphs and uncaptured; prints
each run's time, replay count, capture notes and warnings, and whether the two runs' losses agree
bit for bit. Run by bench/gpu_check.sh; ``python bench/gpu_smoke.py emulated`` runs it on the CPU
emulator of the test suite."""

import sys
import time
import traceback
import warnings

import numpy as np

import fastdl
from fastdl.datasets import load_mnist
from fastdl.backends import backend_status, get_backend
from fastdl.backends.contract import GRAPH_REPLAY
from fastdl.optimizers import SGD, Adam


def run(bk, data, opt, graphs, steps):
    caps = bk.CAPABILITIES
    bk.CAPABILITIES = caps if graphs else caps - {GRAPH_REPLAY}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = fastdl.MultiLayerNet(784, [50], 10, backend=bk, seed=0)
            tr = fastdl.Trainer(net, opt(lr=0.01 if opt is Adam else 0.1), *data, iterations=steps, batch_size=100,
                                seed=0, progress=False, evaluate_train=False)
            t0 = time.perf_counter()
            h = tr.fit()
            bk.synchronize()
            dt = time.perf_counter() - t0
    finally:
        bk.CAPABILITIES = caps
    rp = tr._replay
    print(f"{opt.__name__} graphs={graphs}: {dt:.2f} s for {steps} steps, replays={rp.replays if rp else None}, "
          f"notes={tr.capture_note!r} / {rp.note if rp else None!r}, test acc {h.test_acc[-1]:.4f}, "
          f"warnings={[str(w.message) for w in caught]}", flush=True)
    return np.asarray(h.loss)


def main(bk, steps=1200):
    (x, t), (xt, tt) = load_mnist(as_bytes=True)
    data = (x, t, xt, tt)
    for opt in (SGD, Adam):
        runs = {}
        for graphs in (True, False):
            try:
                runs[graphs] = run(bk, data, opt, graphs, steps)
            except Exception:                               # noqa: BLE001 - report and go on
                traceback.print_exc()
        if len(runs) == 2:
            print(f"{opt.__name__}: losses bit for bit: {np.array_equal(runs[True], runs[False])}, "
                  f"max difference {np.max(np.abs(runs[True] - runs[False])):.3g}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["emulated"]:
        sys.path.insert(0, "tests")
        import fake_cupy
        with fake_cupy.emulated_backend() as emu:
            main(emu, steps=300)
    else:
        print("cupy:", backend_status("cupy"), flush=True)
        print("gemm:", get_backend("cupy").gemm_path, flush=True)
        main(get_backend("cupy"))
