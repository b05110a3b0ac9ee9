"""The CPU emulator of the CUDA kernels sees the bugs a GPU would show: each mutation below, made
to a copy of kernels/*.cu or of the cupy backend, makes the suite's kernel checks fail, while the
code as it is passes them. And the emulated fused step trains the book's network on real MNIST
with NumPy's losses."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cuda_build
import fake_cupy
import fastdl
from conftest import tol
from fastdl import cuda_sources
from test_cupy_emulated import test_every_contract_kernel_matches_numpy as contract_kernel_check
from test_hooks import CASES

pytestmark = pytest.mark.skipif(fake_cupy.CXX is None, reason="no C++ compiler (g++, clang++ or $CXX) to run the CUDA kernels on the CPU")

MUTATIONS = {
    # name: (file, original text, mutated text)
    "ReLU inverted": ("activations.cu", "z[i] = v > T(0) ? v : T(0);", "z[i] = v < T(0) ? v : T(0);"),
    "column sum's grid too small": ("cupy.py", "((math.ceil(m / 32), count), (32, 8),", "((max(1, m // 32), count), (32, 8),"),
    "column sum's first part of the rows dropped": ("activations.cu", "for (int p = 0; p < count; ++p)",
                                                    "for (int p = 1; p < count; ++p)"),
    "softmax row count off by one": ("softmax_xent.cu", "if (row >= n) return;", "if (row >= n - 1) return;"),
    "__syncthreads() removed from the column sum": ("activations.cu", "    __syncthreads();\n", "\n"),
    "warp reduction's shuffle offset starts at 8": ("common.cuh", "for (int off = 16; off > 0; off >>= 1) v += ",
                                                     "for (int off = 8; off > 0; off >>= 1) v += "),
}


def kernel_check_failures(emu) -> list[str]:
    """Run the suite's kernel and hook checks against ``emu``; the names of those that fail."""
    ref = fastdl.get_backend("numpy")
    failed = []
    checks = [(f"hook {h}", lambda h=h: CASES[h](emu, ref, np.float32)) for h in sorted(CASES)]
    checks += [(f"kernels {n}x{m}", lambda n=n, m=m: contract_kernel_check(emu, np.float32, n, m))
               for n, m in [(37, 13), (100, 70)]]
    for name, check in checks:
        try:
            with np.errstate(all="ignore"):
                check()
        except (AssertionError, RuntimeError, FloatingPointError):
            failed.append(name)
    return failed


@pytest.fixture
def mutated(tmp_path, monkeypatch):
    """A context that loads the emulated backend with one mutation applied."""
    def load(name):
        file, old, new = MUTATIONS[name]
        folder = tmp_path / "kernels"
        shutil.copytree(cuda_sources.kernel_dir(), folder)
        source = fake_cupy.BACKEND_SOURCE.read_text()
        target = folder / file
        text = source if file == "cupy.py" else target.read_text()
        assert text.count(old) == 1, f"the mutation's anchor is not unique in {file}: {old!r}"
        text = text.replace(old, new)
        if file == "cupy.py":
            source = text
        else:
            target.write_text(text)
        monkeypatch.setattr(cuda_sources, "kernel_dir", lambda: folder)
        return fake_cupy.emulated_backend(source)
    return load


def test_the_code_as_it_is_passes_the_checks():
    with fake_cupy.emulated_backend() as emu:
        assert kernel_check_failures(emu) == []


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_is_caught(mutated, name):
    with mutated(name) as emu:
        failed = kernel_check_failures(emu)
    assert failed, f"mutation {name!r} went unnoticed by every kernel check"


# A read one element past the bias that changes no value: only a bounds check can see it.
SILENT_OVERREAD = ("activations.cu", "        T v = z[i] + b[i % m];\n        z[i] = v > T(0) ? v : T(0);",
                   "        T v = z[i] + b[i % m];\n        volatile T past = b[m];\n        (void)past;\n"
                   "        z[i] = v > T(0) ? v : T(0);")
SANITIZERS = [subprocess.run(["g++", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
              if shutil.which("g++") else "" for lib in ("libasan.so", "libubsan.so")]

_CHECK_MUTATED = """
import sys
sys.path.insert(0, sys.argv[1])
import fake_cupy, test_cuda_emulator as t
from fastdl import cuda_sources
from pathlib import Path
cuda_sources.kernel_dir = lambda: Path(sys.argv[2])
with fake_cupy.emulated_backend() as emu:
    print("failed checks:", t.kernel_check_failures(emu))
"""


@pytest.mark.skipif(not all(Path(lib).is_file() for lib in SANITIZERS), reason="no libasan/libubsan beside g++")
def test_the_sanitizer_build_stops_a_read_past_an_array_that_the_value_checks_miss(tmp_path):
    """``.ci/run`` runs the emulated kernels built with AddressSanitizer (FASTDL_EMU_SANITIZE=1)."""
    file, old, new = SILENT_OVERREAD
    folder = tmp_path / "kernels"
    shutil.copytree(cuda_sources.kernel_dir(), folder)
    text = (folder / file).read_text()
    assert text.count(old) == 1
    (folder / file).write_text(text.replace(old, new))
    run = lambda **env: subprocess.run([sys.executable, "-c", _CHECK_MUTATED, str(Path(__file__).parent), str(folder)],
                                       capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    plain = run(FASTDL_EMU_SANITIZE="0", LD_PRELOAD="")
    assert plain.returncode == 0 and "failed checks: []" in plain.stdout, plain.stderr[-2000:]
    checked = run(FASTDL_EMU_SANITIZE="1", LD_PRELOAD=" ".join(SANITIZERS), ASAN_OPTIONS="detect_leaks=0")
    assert checked.returncode != 0
    assert "heap-buffer-overflow" in checked.stderr and "bias_relu_impl" in checked.stderr, checked.stderr[-2000:]


def test_a_barrier_in_a_kernel_run_without_fibers_is_an_error(monkeypatch):
    """The emulator is told which kernels synchronise; a wrong guess fails loudly, never runs
    a barrier as a no-op."""
    monkeypatch.setattr(cuda_build, "uses_barriers", lambda code: set())
    with fake_cupy.emulated_backend() as emu:
        dh = emu.asarray(np.ones((40, 5), np.float32))
        db = emu.asarray(np.zeros(5, np.float32))
        with pytest.raises(RuntimeError, match="without fibers"):
            emu.colsum_(db, dh)


def test_fused_step_trains_the_books_network_on_mnist_like_numpy(mnist):
    """784-50-10, batch 100, 300 steps of the emulated fused step (every kernel of kernels/*.cu
    on the CPU) against the NumPy backend: the same losses within float32 tolerance."""
    (x, t), _ = mnist
    x, t = x[:20000], t[:20000]
    losses = []
    with fake_cupy.emulated_backend() as emu:
        for backend in (emu, "numpy"):
            net = fastdl.TwoLayerNet(784, 50, 10, backend=backend, seed=0)
            tr = fastdl.Trainer(net, fastdl.optimizers.SGD(lr=0.1), x, t, iterations=300, batch_size=100, seed=0,
                                progress=False, evaluate_train=False)
            assert tr.fast_path
            losses.append(np.array(tr.fit().loss))
    np.testing.assert_allclose(losses[0], losses[1], rtol=tol(np.float32)["rtol"])      # measured: 3e-7
    assert losses[0][-20:].mean() < 0.6 * losses[0][:20].mean()
