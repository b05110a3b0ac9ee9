"""numba's bodies called by address (``fastdl/backends/numba/by_address.py``): the call computes
what a direct call does, an exception in the body reaches the caller, and the split first layer's
parallel function holds none of its body's code (the point: that code compiles once)."""

import numpy as np
import pytest

from fastdl.backends import backend_status

pytestmark = pytest.mark.skipif(not backend_status("numba")[0], reason=f"numba unavailable: {backend_status('numba')[1]}")


@pytest.fixture(scope="module")
def ba():
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: nothing is compiled, bodies are called as Python functions")
    from fastdl.backends.numba import by_address
    return by_address


def _scaled_sum(args):
    x, k = args
    if k < 0:
        raise ValueError("negative scale")
    s = 0.0
    for v in x:
        s += v
    return np.int64(s * k)


def test_a_call_by_address_computes_what_a_direct_call_does_and_passes_its_exception_on(ba):
    from numba import njit
    body_f = njit(_scaled_sum)

    @njit
    def caller(address, x, k):
        return ba.call(address, (x, k))

    x = np.arange(5, dtype=np.float64)
    body = ba.Body(body_f, (x, np.int64(3)))
    assert caller(body.target, x, np.int64(3)) == _scaled_sum((x, 3)) == 30
    assert caller(body.target, x * 2, np.int64(1)) == 20          # the arguments of this call
    with pytest.raises(ValueError, match="negative scale"):
        caller(body.target, x, np.int64(-1))


def test_a_body_returning_other_than_int64_is_refused_before_any_call(ba):
    from numba import njit
    body = ba.Body(njit(lambda args: args[0] * 0.5), (np.float64(1.0),))
    with pytest.raises(TypeError, match="not int64"):
        body.target


def test_fits_says_which_arrays_have_the_bodys_exact_type(ba):
    a = np.zeros((4, 3), np.float32)
    assert ba.fits(a, np.float32, 2)
    ro = a.copy()
    ro.flags.writeable = False
    for other in (a[:, ::2], a.T, ro, a.astype(np.float64), a.reshape(-1), [[0.0]]):
        assert not ba.fits(other, np.float32, 2)


def test_the_split_layers_parallel_function_holds_none_of_its_bodys_code(ba):
    from fastdl.backends import get_backend
    from fastdl.backends.numba import first_layer
    bk = get_backend("numba")
    rng = np.random.default_rng(0)
    W = rng.standard_normal((12, 5)).astype(np.float32)
    layer = first_layer.InputLayer(bk, W, np.zeros(5, np.float32), np.zeros_like(W),
                            rng.standard_normal((20, 12)).astype(np.float32), 4, "relu")
    y = np.empty((4, 5), np.float32)
    layer.forward(np.arange(4), y)
    expect = np.maximum(layer.src[:4] @ W, 0)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-6)
    # compiled again outside the disk cache (cached code cannot show its LLVM IR)
    from numba import njit
    shell_jit = njit(error_model="numpy", parallel=True)(first_layer.split_layer().py_func)
    shell_jit.compile(first_layer.split_layer().signatures[0])
    body_jit = njit(error_model="numpy")(first_layer.split_body(0).py_func)
    body_jit.compile(first_layer.split_body(0).signatures[0])
    shell_code = "".join(c.library.get_llvm_str() for c in shell_jit.overloads.values())
    body_code = "".join(c.library.get_llvm_str() for c in body_jit.overloads.values())
    assert "gather_part" in body_code and "gather_part" not in shell_code     # called, not compiled in


def test_the_layer_hands_its_body_only_the_types_it_compiled_for(ba):
    """Whatever forward() and backward() are given (read-only or strided indices, other integer
    types, strided or read-only outputs and gradients), the parallel function is called with the
    body's own types: no signature compiled anew, and NumPy's answers."""
    from fastdl.backends import get_backend
    from fastdl.backends.numba import first_layer
    bk, ref = get_backend("numba"), get_backend("numpy")
    rng = np.random.default_rng(1)
    W = rng.standard_normal((12, 5)).astype(np.float32)
    x = rng.standard_normal((20, 12)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    layer = first_layer.InputLayer(bk, W, b, np.zeros_like(W), x, 4, "relu")
    oracle = ref.InputLayer(ref, W, b, np.zeros_like(W), x, 4, "relu")
    layer.forward(np.arange(4), np.empty((4, 5), np.float32))      # the layer's own types, compiled
    compiled = set(first_layer.split_layer().signatures)
    ro = np.array([3, 1, 4, 1])
    ro.flags.writeable = False
    for idx in (np.arange(4), ro, np.arange(8)[::2], np.array([5, 9, 2, 6], np.uint16), np.array([0, 7, 19, 3], np.int32)):
        for y in (np.empty((4, 5), np.float32), np.empty((4, 10), np.float32)[:, ::2]):
            dz = rng.standard_normal((4, 10)).astype(np.float32)[:, ::2]
            expect_y = np.empty((4, 5), np.float32)
            oracle.forward(idx, expect_y)
            oracle.backward(np.ascontiguousarray(dz))
            layer.forward(idx, y)
            layer.backward(dz)
            np.testing.assert_allclose(y, expect_y, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(layer.dW, oracle.dW, rtol=1e-5, atol=1e-5)
    assert set(first_layer.split_layer().signatures) == compiled           # nothing compiled anew


LAYER = """
import sys, numpy as np, fastdl
nb, ref = fastdl.get_backend("numba"), fastdl.get_backend("numpy")
rng = np.random.default_rng(0)
x = rng.standard_normal((300, 23)).astype(np.float32)
W, b = rng.standard_normal((23, 7)).astype(np.float32), rng.standard_normal(7).astype(np.float32)
worst = 0.0
for act in sys.argv[1:]:
    idx = rng.integers(0, 300, 40)
    y, want = np.empty((40, 7), np.float32), np.empty((40, 7), np.float32)
    with nb.train_scope():
        nb.InputLayer(nb, W, b, np.zeros_like(W), x, 40, act).forward(idx, y)
    ref.InputLayer(ref, W, b, np.zeros_like(W), x, 40, act).forward(idx, want)
    worst = max(worst, float(np.abs(y - want).max()))
print("worst", worst)
"""


def test_each_activations_body_is_its_own_when_loaded_from_the_cache(ba, tmp_path):
    """Two activations' bodies compiled in two processes (each the first function compiled there)
    and loaded from the disk cache into a third: they had one symbol name, and the layer of the
    one called the other's body (ReLU applied where none should be). Each is its own now."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), FASTDL_NUMBA_CACHE="1")
    env.pop("NUMBA_CACHE_DIR", None)
    run = lambda *acts: subprocess.run([sys.executable, "-c", LAYER, *acts], env=env, capture_output=True,
                                       text=True, timeout=600)
    # the first process compiles the parallel function; each later one its body alone, first
    for act in ("sigmoid", "relu", "identity"):
        assert run(act).returncode == 0
    r = run("identity", "relu", "identity")      # both loaded from it; a layer made after both
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.split()[-1]) < 1e-4, r.stdout


def test_an_address_given_to_another_body_is_refused(ba, monkeypatch):
    """Where two bodies still shared a symbol, the second would call the first's code: refused."""
    from numba import njit
    x = np.arange(3, dtype=np.float64)
    def _count(args):
        x, k = args
        return np.int64(x.shape[0])
    first, second = njit(_scaled_sum), njit(_count)
    address = ba.Body(second, (x, 2.0)).target
    monkeypatch.setitem(ba.Body._given, address, (first, (ba.numba.typeof((x, 2.0)),)))
    with pytest.raises(RuntimeError, match="give each body function a name of its own"):
        ba.Body(second, (x, 2.0)).target
