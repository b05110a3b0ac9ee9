"""The numba backend's compiled code: cached on disk per version of its sources, older versions'
folders pruned, counted by `fastdl info`, never recompiled in the loop, and a first use told
without importing Numba (``backends.compile_likely``)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import load_or_skip


@pytest.fixture
def nb():
    return load_or_skip("numba")


def test_no_recompiles_in_the_loop(nb):
    """After the first steps, more steps (including an epoch's partial last batch) add no new
    compiled signatures; float64 adds its own once."""
    import fastdl
    rng = np.random.default_rng(0)

    def run(dtype, steps):
        x = rng.standard_normal((250, 12)).astype(dtype)
        net = fastdl.TwoLayerNet(12, 8, 3, backend="numba", dtype=dtype, seed=0)
        fastdl.Trainer(net, fastdl.optimizers.Adam(0.01), x, rng.integers(0, 3, 250), iterations=steps,
                       batch_size=100, progress=False).fit()

    def signatures():
        return sum(len(f.signatures) for f in nb.jitted())

    for dtype in (np.float32, np.float64):
        run(dtype, 3)
        after_first = signatures()
        run(dtype, 12)
        assert signatures() == after_first


def test_compiled_code_is_cached_per_version_of_the_sources(nb):
    """Numba checks only a function's own file for staleness; fastdl's cache folder is keyed by
    all of the backend's sources, so an edit anywhere gives a fresh folder, and the user's own
    Numba cache setting is left as it was."""
    import numba
    from fastdl.backends.numba import cache, first_layer, loops, step
    if not loops.CACHE or numba.config.DISABLE_JIT:
        pytest.skip("FASTDL_NUMBA_CACHE=0 or NUMBA_DISABLE_JIT: nothing is compiled or cached")
    folder = cache.folder()
    # the per-activation and per-optimizer functions are made after import: in the same folder
    for f in (loops.add_bias, first_layer.split_body(1), first_layer.split_layer(), step.output_layer(2), step.update_parts("adam_update")):
        assert f._cache._cache_path.startswith(folder)
    assert numba.config.CACHE_DIR == cache.USER_CACHE_DIR


def test_old_versions_cache_folders_are_pruned(nb, tmp_path, monkeypatch):
    """Folders of other source versions unused for KEEP_DAYS go; recent ones (another install
    may use them), this version's and anything not named like ours stay."""
    import time
    from fastdl.backends.numba import cache
    monkeypatch.setattr(cache, "USER_CACHE_DIR", str(tmp_path))
    base = tmp_path / "fastdl"
    current, old, recent, other = (base / n for n in ("a" * 16, "0123456789abcdef", "fedcba9876543210", "notours"))
    monkeypatch.setattr(cache, "FOLDER", str(current))
    long_ago = time.time() - (cache.KEEP_DAYS + 1) * 86400
    for d in (current, old, recent, other):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f.nbi").write_bytes(b"x")
    for d in (current, old, other):
        for p in (d, d / "sub", d / "sub" / "f.nbi"):
            os.utime(p, (long_ago, long_ago))
    os.utime(recent, (long_ago, long_ago))          # an old folder with a fresh file inside stays
    assert cache.prune() == [old]
    assert current.is_dir() and recent.is_dir() and other.is_dir() and not old.exists()


def test_info_counts_the_cached_signatures(nb, tmp_path):
    """`fastdl info`'s disk-cache line counts what a run compiled into the cache (Numba keeps the
    files in a folder of its own inside ours)."""
    import numba
    from fastdl.backends.numba import loops
    if not loops.CACHE or numba.config.DISABLE_JIT:
        pytest.skip("FASTDL_NUMBA_CACHE=0 or NUMBA_DISABLE_JIT: nothing is compiled or cached")
    script = ("import numpy as np, fastdl\n"
              "b = fastdl.get_backend('numba')\n"
              "print(b.describe()['disk_cache'])\n"
              "b.relu_forward(np.ones((3, 4), np.float32))\n"
              "print(b.describe()['disk_cache'])\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    before, after = (int(line.split()[0]) for line in out.stdout.split("\n")[:2])
    assert before == 0 and after >= 1, out.stdout


def test_serial_and_parallel_builds_keep_apart_in_the_disk_cache(nb):
    """Numba's disk cache keys code by function name and types, not by parallel=: under one name
    the serial build loaded the parallel code from the cache (and ran at the launch's cost)."""
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: plain Python functions, nothing cached")
    from fastdl.backends.numba import first_layer, step
    for build in (first_layer.split_layer, lambda p: step.update_parts("sgd_update", p)):
        serial, parallel = build(False), build(True)
        assert serial.targetoptions.get("parallel") in (None, False) and parallel.targetoptions["parallel"]
        assert serial.py_func.__qualname__ != parallel.py_func.__qualname__


# -- telling a first run before the backend loads ------------------------------------------------

PROBE = """
import json, sys
from fastdl import backends
from fastdl.backends import numba_cache
likely = {n: backends.compile_likely(n) for n in ("numba", "numpy", "no-such")}
loaded = "numba" in sys.modules
from fastdl.backends.numba import cache
import numba
print(json.dumps({"likely": likely, "loaded": loaded, "same": numba_cache.folder(numba.config.CACHE_DIR) == cache.FOLDER}))
"""


def test_a_first_run_is_told_without_loading_numba(nb, tmp_path):
    """backends.compile_likely reads only the environment and the disk: numba's first use with a
    new cache folder is likely to compile, with one it has used (its version's folder there) not,
    numpy never, nor with the cache or the JIT off. The folder it looks for is the backend's."""
    import shutil
    from pathlib import Path

    def probe(**env):
        r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FASTDL_NUMBA_CACHE": "1",
                                "NUMBA_DISABLE_JIT": "0", **env})
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout)

    first = probe()
    assert first["likely"] == {"numba": True, "numpy": False, "no-such": False}
    assert not first["loaded"] and first["same"]
    assert probe()["likely"]["numba"] is True              # importing the backend made its folder, no more
    from fastdl.backends import numba_cache
    folder = Path(numba_cache.folder(str(tmp_path / "cache")))
    (folder / "numba_x").mkdir(parents=True, exist_ok=True)
    (folder / "numba_x" / "loops.add_bias-62.py311.nbi").write_bytes(b"")   # what a compile leaves
    assert probe()["likely"]["numba"] is False
    shutil.rmtree(folder)
    assert probe(FASTDL_NUMBA_CACHE="0")["likely"]["numba"] is False
    assert probe(NUMBA_DISABLE_JIT="1")["likely"]["numba"] is False


def test_a_cache_folder_that_cannot_be_written_turns_the_disk_cache_off_and_says_so(nb, tmp_path):
    """Numba would otherwise cache beside the package's sources, where it checks only the defining
    file's time (stale loops after an edit of a module they call) or, where those cannot be
    written either, warn for every function. The backend compiles in memory instead, warns once,
    `fastdl info` says why, and a first run is not announced as one that fills the cache."""
    import numba
    from pathlib import Path
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: nothing is compiled or cached")
    blocker = tmp_path / "a-file"                  # a file where the folder's parent should be
    blocker.write_text("not a folder")
    package_cache = Path(nb.__file__).parent / "__pycache__"
    before = set(package_cache.glob("*.nbi"))
    script = ("import warnings, numpy as np, fastdl\n"
              "from fastdl.backends import numba_cache\n"
              "with warnings.catch_warnings(record=True) as caught:\n"
              "    warnings.simplefilter('always')\n"
              "    b = fastdl.get_backend('numba')\n"
              "from fastdl.backends.numba import loops\n"
              "b.relu_forward(np.ones((3, 4), np.float32))\n"
              "print(loops.CACHE, numba_cache.first_use())\n"
              "print(b.describe()['disk_cache'])\n"
              "print([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(blocker), "FASTDL_NUMBA_CACHE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cache_on, status, warned = out.stdout.splitlines()[:3]
    assert cache_on == "False False"
    assert status.startswith(f"off ({blocker}") and "cannot be written; set NUMBA_CACHE_DIR" in status
    assert "compiles its kernels in every process" in warned and warned.count("cannot be written") == 1
    assert set(package_cache.glob("*.nbi")) == before           # nothing cached beside the sources
    r = subprocess.run([sys.executable, "-m", "fastdl", "info"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "fastdl info: warning: Numba's cache folder" in r.stderr     # a command's words,
    assert "importlib" not in r.stderr and "warnings.warn" not in r.stderr                 # no Python source
