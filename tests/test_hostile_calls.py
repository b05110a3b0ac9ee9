"""The backend modules' functions given what the contract rules out (tests/hostile.py): on every
backend each call ends in an exception wherever NumPy's reference raises one, and otherwise in
NumPy's answer or a fastdl error (stricter is allowed, looser is not); and never in a crash. Each
backend runs in a child process, so a crash fails the test naming the case instead of ending
the run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_or_skip
from hostile import CASES
from reliability import record

HERE = Path(__file__).parent


def outcomes(backend, out):
    out.mkdir(exist_ok=True)
    # the tests' helpers, this checkout, then the run's own path (a GPU check runs fastdl from PYTHONPATH)
    path = os.pathsep.join([str(HERE), str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    r = subprocess.run([sys.executable, str(HERE / "hostile.py"), backend, str(out)], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONPATH": path})
    got, started = {}, None
    for line in r.stdout.splitlines():
        word, _, rest = line.partition(" ")
        case = rest.split(" | ")[0]
        if word == "start":
            started = case
        elif word == "raised":
            _, kind, message = rest.split(" | ", 2)
            got[case] = ("raised", kind, message)
        elif word == "returned":
            n = next(i for i, c in enumerate(CASES) if c[0] == case)
            with np.load(out / f"{n}.npz") as f:
                got[case] = ("returned", {k: f[k] for k in f.files})
    if r.returncode != 0:
        pytest.fail(f"{backend}: the process ended with {r.returncode} during {started!r}\n{r.stderr[-3000:]}")
    return got


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return outcomes("numpy", tmp_path_factory.mktemp("numpy"))


# the cupy backend's code on the CPU emulator (tests/fake_cupy.py), where a C++ compiler is at hand,
# and on a GPU, where there is one
TARGETS = ["numba", "cupy-emulated", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_calls_end_as_numpy_does_or_in_an_error_never_in_a_crash(target, reference, tmp_path):
    if target in ("numba", "cupy"):
        load_or_skip(target)
    else:
        import fake_cupy
        if fake_cupy.CXX is None:
            pytest.skip("no C++ compiler: the CUDA kernels cannot run on the CPU here")
    got = outcomes(target, tmp_path / target)
    wrong = []
    for case, *_ in CASES:
        ref, mine = reference[case], got[case]
        expected = f"an error, as NumPy's {ref[1].split()[-1]}" if ref[0] == "raised" else "NumPy's answer, or an error"
        if mine[0] == "raised":
            outcome = mine[1].split()[-1]
            # an error raised by fastdl, NumPy or the backend's library; not the emulator's own
            # assertion that a kernel got what it cannot take (on a GPU nothing would stop it)
            ok = not (mine[1].startswith("builtins AssertionError") or (ref[0] == "returned" and "fastdl" not in mine[1]))
        elif "label" in case and any(np.isnan(v).any() for v in mine[1].values() if v.dtype.kind == "f"):
            # a CUDA kernel cannot raise: a row with a label outside the classes gets NaN instead
            # (the mean loss is NaN; a trainer stops there with DivergenceError)
            outcome, ok = "NaN loss (a kernel cannot raise)", target.startswith("cupy")
        elif ref[0] == "raised":
            outcome, ok = "returned (no error)", False
        else:
            ok = all(np.allclose(mine[1][k], v, rtol=1e-5, atol=1e-6, equal_nan=True) for k, v in ref[1].items())
            outcome = "NumPy's answer" if ok else "another answer"
        record("Memory safety: the backend modules called directly", case, target, expected, outcome, ok)
        if not ok:
            wrong.append(f"{case}: {outcome} ({mine[1:] if mine[0] == 'raised' else ''}; NumPy: {ref[0]} {ref[1] if ref[0] == 'raised' else ''})")
    assert not wrong, "\n".join(wrong)


def test_numba_refuses_indices_and_labels_that_are_not_integers_by_name():
    """Not a Numba typing error from deep inside a loop: a DTypeError that says what to pass."""
    from fastdl.errors import DTypeError
    bk = load_or_skip("numba")
    z = np.zeros((3, 4), np.float32)
    calls = [lambda: bk.gather_rows_(np.empty((2, 4), np.float32), z, np.array([0.0, 1.0])),
             lambda: bk.softmax_xent_(np.empty_like(z), z, np.array([0.0, 1.0, 2.0])),
             lambda: bk.softmax_cross_entropy_forward(z, np.array([0.5, 1.0, 2.0])),
             lambda: bk.OutputLayer(bk, np.zeros((4, 3), np.float32), np.zeros(3, np.float32), np.zeros((4, 3), np.float32),
                                    np.zeros(3, np.float32), 2, "relu").forward_backward(
                 np.zeros((2, 4), np.float32), np.zeros(4, np.float32), np.zeros((2, 4), np.float32), np.array([0.0, 1.0]))]
    for call in calls:
        with pytest.raises(DTypeError, match="must be an array of integers"):
            call()
