"""The contract table (fastdl/backends/contract.py) is what the backends provide, what the
registry enforces, what the tests run, and what the CUDA sources read."""

import json
import subprocess
import sys
import types

import pytest

import fastdl
from conftest import load_or_skip
from fastdl import backends
from fastdl.backends import contract
from fastdl.cuda_sources import combined_source
from fastdl.errors import BackendUnavailableError


def test_every_backend_provides_what_it_declares(backend):
    assert isinstance(backend.CAPABILITIES, frozenset)
    assert contract.missing(backend) == []
    for entry in contract.required(backend.CAPABILITIES):
        assert hasattr(backend, entry.name), f"{backend.name} lacks {entry.name}"


def test_numpy_is_the_oracle_for_every_entry(ref):
    assert ref.CAPABILITIES == contract.CAPABILITIES
    assert contract.missing(ref) == []


def test_the_registry_refuses_a_backend_that_lacks_a_declared_hook(monkeypatch):
    fake = types.ModuleType("fastdl.backends.numba")
    numpy_backend = fastdl.get_backend("numpy")
    for entry in contract.required(numpy_backend.CAPABILITIES):
        setattr(fake, entry.name, getattr(numpy_backend, entry.name))
    del fake.softmax_xent_                                   # declared (fused_step), not provided
    monkeypatch.setattr(backends, "_loaded", {k: v for k, v in backends._loaded.items() if k != "numba"})
    monkeypatch.setattr(backends, "_failed", {})
    monkeypatch.setattr(backends.importlib, "import_module", lambda name: fake)
    with pytest.raises(BackendUnavailableError, match="kernel contract: it lacks softmax_xent_"):
        fastdl.get_backend("numba")


def test_undeclared_or_unknown_capabilities_are_reported():
    fake = types.ModuleType("x")
    assert contract.missing(fake) == ["CAPABILITIES (a frozenset)"]
    fake.CAPABILITIES = frozenset({"warp_drive"})
    assert "unknown capability 'warp_drive'" in contract.missing(fake)


def test_hooks_follow_the_naming_rule():
    for entry in contract.ENTRIES:
        assert entry.name.endswith("_") == (entry.kind == "hook"), entry.name
        if entry.kind in ("hook", "update"):
            assert entry.writes, f"{entry.name} must say what it writes"
            first = entry.signature.split("(")[1].split(",")[0]
            assert first == entry.writes.split(",")[0].strip(), f"{entry.name}: outputs come first"


def test_every_kernel_update_and_hook_states_its_arguments_in_the_signatures_order():
    from fastdl.backends import guard
    guarded = [e for e in contract.ENTRIES if e.kind in guard.GUARDED]
    assert {e.name for e in guarded} == set(contract.ARGS)
    for entry in guarded:
        params = [p.split("=")[0].strip() for p in entry.signature.split("(", 1)[1].split(")")[0].split(",")]
        assert [arg for arg, _ in contract.arg_specs(entry.name)] == params, entry.name


@pytest.mark.parametrize("name", ["numba", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_the_trusting_backends_guard_every_kernel_update_and_hook(name):
    """numba's loops and the CUDA kernels trust their arguments' ranks and dtypes: each public
    entry stands behind the contract's argument check (tests/test_kernel_fuzz.py tries it)."""
    from fastdl.backends import guard
    bk = load_or_skip(name)
    for entry in contract.ENTRIES:
        if entry.kind in guard.GUARDED:
            assert guard.unchecked(getattr(bk, entry.name)) is not getattr(bk, entry.name), entry.name


def test_past_the_guard_are_the_compiled_loops_themselves():
    """The fused step calls past the guard: what it gets must be the backend's own (compiled)
    function; unwrapping a Numba dispatcher through ``__wrapped__`` gave its Python source, and
    the step ran in the interpreter, 10-25x slower."""
    from fastdl.backends import guard
    bk = load_or_skip("numba")
    from fastdl.backends.numba import loops
    past = guard.Unchecked(bk)
    for name, loop in (("bias_relu_", loops.bias_relu), ("colsum_", loops.colsum),
                       ("relu_grad_colsum_", loops.relu_grad_colsum), ("add_bias_", loops.add_bias)):
        assert getattr(past, name) is loop, name
    assert past.xp is bk.xp and past.name == bk.name


def test_every_hook_and_builder_has_a_parity_test():
    import test_hooks
    assert set(test_hooks.CASES) == set(contract.names("hook")) | set(contract.names("builder"))


def test_the_cuda_sources_read_the_contract_codes():
    src = combined_source()
    for act, code in contract.ACT_CODES.items():
        assert f"#define FASTDL_ACT_{act.upper()} {code}" in src
    assert f"#define FASTDL_SOFTMAX_GRAD {contract.SOFTMAX_GRAD}" in src
    assert src.index("#define FASTDL_ACT_RELU") < src.index("grad_colsum_impl")


PROBE = """
import json, sys
import scipy.linalg, numpy as np          # SciPy's BLAS loaded before anything, as in a user's program
from threadpoolctl import threadpool_info
import fastdl
from fastdl.cli import main
def blas():
    return sorted((p["filepath"], p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas")
before = blas()
fastdl.available_backends()
main(["info"])
net = fastdl.TwoLayerNet(20, 8, 3, backend="numba", seed=0)
after_building = blas()
x = np.random.default_rng(0).standard_normal((64, 20)).astype(np.float32)
tr = fastdl.Trainer(net, fastdl.optimizers.SGD(0.1), x, np.arange(64) % 3, iterations=3, progress=False)
inside = []
tr.callbacks.append(lambda trainer, record: inside.append(blas()))
tr.fit()
print(json.dumps({"before": before, "after_building": after_building, "after_fit": blas(), "inside": inside[0]}))
"""


def test_backends_leave_the_process_blas_settings_alone():
    """Loading backends, `fastdl info` and building a network change no thread pool; training on
    numba pins SciPy's BLAS for the run only and restores it after."""
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("scipy")
    ok, why = backends.backend_status("numba")
    if not ok:
        pytest.skip(f"numba backend unavailable: {why}")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["after_building"] == res["before"]
    assert res["after_fit"] == res["before"]
    from fastdl.backends.numba import threads
    scipy_own = {lib.filepath for lib in threads.scipy_blas()}
    inside = [n for path, n in res["inside"] if path in scipy_own]
    assert inside == [1] * len(scipy_own), "inside fit() SciPy's own BLAS runs single-threaded"


def test_the_guard_lets_a_call_through_unchecked_only_where_the_check_would(monkeypatch):
    """The guard remembers the shapes and dtypes of calls it let through unchanged and lets
    those through again without checking; nothing it would refuse or convert gets past that way
    (the check reads only an array's shape and dtype), and what it remembers stays bounded."""
    import numpy as np

    from fastdl.backends import guard
    from fastdl.errors import DTypeError, ShapeError
    entry = next(e for e in contract.ENTRIES if e.name == "sgd_update")
    got = []
    call = guard.guarded(entry, lambda p, g, lr: got.append((p, g, lr)), np.ndarray)
    passed = dict(zip(call.__code__.co_freevars, (c.cell_contents for c in call.__closure__)))["passed"]
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    for _ in range(2):                               # checked, then remembered: the same objects arrive
        call(p, g, 0.1)
        assert got.pop()[2] == 0.1 and len(passed) == 1
    with pytest.raises(ShapeError):
        call(p, np.ones(5, np.float32), 0.1)
    with pytest.raises(DTypeError):
        call(p, np.ones(4, np.float16), 0.1)
    with pytest.raises(DTypeError):
        call(p, g, "0.1")
    for _ in range(2):                               # converted each time, never remembered
        call(p, g, np.float32(0.5))
        assert type(got.pop()[2]) is float
        call(p, g, np.array([0.5], np.float32))
        assert type(got.pop()[2]) is float

    class Sub(np.ndarray):
        pass
    call(p.view(Sub), g.view(Sub), 0.1)             # passes the check, but is not remembered
    with pytest.raises(ShapeError):
        call(p.view(Sub), np.ones(5, np.float32).view(Sub), 0.1)
    assert len(passed) == 1
    monkeypatch.setattr(guard, "MEMO", 3)
    for n in range(1, 10):
        call(np.ones(n, np.float64), np.ones(n, np.float64), 0.1)
        assert len(passed) <= 3
