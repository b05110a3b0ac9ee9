import subprocess
import sys

import pytest

import fastdl
from fastdl import backends
from fastdl.errors import BackendUnavailableError, UnknownBackendError


def test_import_pulls_in_neither_numba_nor_cupy():
    code = "import sys, fastdl; fastdl.TwoLayerNet(4, 3, 2); print(sorted(m for m in ('numba', 'cupy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_default_is_numpy():
    assert fastdl.get_backend().name == "numpy"


def test_env_var_is_stripped_and_case_insensitive(monkeypatch):
    monkeypatch.setenv("FASTDL_BACKEND", "  NumPy \n")
    assert fastdl.get_backend().name == "numpy"


def test_empty_env_var_counts_as_unset(monkeypatch):
    monkeypatch.setenv("FASTDL_BACKEND", "   ")
    assert fastdl.get_backend().name == "numpy"


def test_unknown_env_name_lists_names_suggests_and_names_source(monkeypatch):
    monkeypatch.setenv("FASTDL_BACKEND", "nunba")
    with pytest.raises(UnknownBackendError) as err:
        fastdl.get_backend()
    msg = str(err.value)
    assert "FASTDL_BACKEND='nunba'" in msg
    assert "numpy, numba, cupy" in msg
    assert "Did you mean 'numba'" in msg


def test_unknown_explicit_name_names_the_argument():
    with pytest.raises(UnknownBackendError, match=r"backend='pytorch'.*Valid names"):
        fastdl.TwoLayerNet(4, 3, 2, backend="pytorch")


def test_set_backend_rejects_unknown_and_keeps_previous():
    with pytest.raises(UnknownBackendError, match=r"set_backend\('torch'\)"):
        fastdl.set_backend("torch")
    assert fastdl.get_backend().name == "numpy"


def _usable_other_than_numpy():
    others = [n for n in fastdl.available_backends() if n != "numpy"]
    if not others:
        pytest.skip("only the numpy backend can run here; precedence needs a second one")
    return others[0]


def test_precedence_explicit_over_context_over_global_over_env(monkeypatch):
    other = _usable_other_than_numpy()
    monkeypatch.setenv("FASTDL_BACKEND", other)
    assert fastdl.get_backend().name == other                      # env
    fastdl.set_backend("numpy")
    assert fastdl.get_backend().name == "numpy"                    # set_backend beats env
    with fastdl.use_backend(other):
        assert fastdl.get_backend().name == other                  # use_backend beats set_backend
        with fastdl.use_backend("numpy"):
            assert fastdl.get_backend().name == "numpy"            # innermost wins
        assert fastdl.get_backend().name == other
        assert fastdl.get_backend("numpy").name == "numpy"         # explicit beats all
        assert fastdl.TwoLayerNet(4, 3, 2, backend="numpy").backend.name == "numpy"
    assert fastdl.get_backend().name == "numpy"


def test_a_block_holds_in_its_own_thread_only():
    """As README says: a thread started inside a use_backend block begins from the process
    default, and a block in another thread does not leak into this one."""
    import threading
    other = _usable_other_than_numpy()
    fastdl.set_backend("numpy")
    seen, entered, leave = {}, threading.Event(), threading.Event()

    def inner():
        seen["started inside"] = fastdl.get_backend().name

    def elsewhere():
        with fastdl.use_backend(other):
            entered.set()
            leave.wait(10)
    try:
        with fastdl.use_backend(other):
            t = threading.Thread(target=inner)
            t.start()
            t.join()
        u = threading.Thread(target=elsewhere)
        u.start()
        entered.wait(10)
        seen["here, while another thread is in a block"] = fastdl.get_backend().name
    finally:
        leave.set()
        fastdl.set_backend(None)
    u.join()
    assert seen == {"started inside": "numpy", "here, while another thread is in a block": "numpy"}


def test_precedence_with_numpy_only(monkeypatch):
    monkeypatch.setenv("FASTDL_BACKEND", "nope")
    fastdl.set_backend("numpy")          # set_backend outranks the (bad) env value
    assert fastdl.get_backend().name == "numpy"
    fastdl.set_backend(None)
    with fastdl.use_backend("NUMPY"):
        assert fastdl.get_backend().name == "numpy"


def test_unavailable_backend_gives_reason_and_install_command(monkeypatch):
    monkeypatch.setattr(backends, "_loaded", {k: v for k, v in backends._loaded.items() if k != "numba"})
    monkeypatch.setattr(backends, "_failed", {"numba": "ModuleNotFoundError: No module named 'numba'"})
    with pytest.raises(BackendUnavailableError) as err:
        fastdl.get_backend("numba")
    msg = str(err.value)
    assert "No module named 'numba'" in msg
    assert 'pip install "fastdl[numba]"' in msg
    assert "numba" not in fastdl.available_backends()


def test_no_silent_fallback_from_env(monkeypatch):
    monkeypatch.setattr(backends, "_loaded", {k: v for k, v in backends._loaded.items() if k != "cupy"})
    monkeypatch.setattr(backends, "_failed", {"cupy": "CUDARuntimeError: no CUDA-capable device is detected"})
    monkeypatch.setenv("FASTDL_BACKEND", "cupy")
    with pytest.raises(BackendUnavailableError, match=r"FASTDL_BACKEND='cupy'.*no CUDA-capable device.*fastdl\[cuda12\]"):
        fastdl.TwoLayerNet(4, 3, 2)


def test_backend_module_passes_through():
    bk = fastdl.get_backend("numpy")
    assert fastdl.get_backend(bk) is bk


def test_a_name_that_is_not_text_is_refused_naming_the_valid_ones(monkeypatch):
    monkeypatch.delenv("FASTDL_BACKEND", raising=False)
    with pytest.raises(UnknownBackendError, match=r"backend names are strings, got int 5 .*valid names: numpy, numba, cupy"):
        fastdl.get_backend(5)


def test_available_backends_and_the_current_name(monkeypatch):
    """Usable ones in registry order (NumPy always), the same answer on a second call; the current
    name follows the precedence rules without loading anything."""
    monkeypatch.setenv("FASTDL_BACKEND", "NUMPY ")
    first = backends.available_backends()
    assert first[0] == "numpy" and first == backends.available_backends()
    assert set(first) == {n for n in backends.NAMES if backends.backend_status(n)[0]}
    assert backends.current_backend_name() == "numpy"
    with fastdl.use_backend("numpy"):
        assert backends.current_backend_name() == "numpy"
