"""The benchmarks' process-tree memory sampler (bench/memory.py) against processes of known size."""

import importlib.util
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_memory", Path(__file__).parents[1] / "bench" / "memory.py")
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)

pytestmark = pytest.mark.skipif(not memory.available(), reason="needs Linux's /proc/PID/smaps_rollup")

# Holds `mb` MB of touched memory for 0.5 s; with `child`, a second process holding 80 MB as well,
# either at the same time (together) or only after this one has let its memory go.
PROG = """
import subprocess, sys, time
mb, child, together = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1"
hold = bytes(range(256)) * (mb * 4096)
kid = None
if child and together:
    kid = subprocess.Popen([sys.executable, "-c", sys.argv[4], "80", "0", "0", sys.argv[4]])
time.sleep(0.5)
del hold
if child and not together:
    kid = subprocess.Popen([sys.executable, "-c", sys.argv[4], "80", "0", "0", sys.argv[4]])
if kid:
    sys.exit(kid.wait())
"""


def _run(mb, child, together):
    r, peak = memory.run([sys.executable, "-c", PROG, str(mb), str(int(child)), str(int(together)), PROG])
    assert r.returncode == 0, r.stderr
    return peak


def test_one_process():
    peak = _run(120, False, False)
    assert 120 <= peak["tree_peak_rss_mb"] < 200 and peak["most_processes"] == 1
    assert peak["tree_peak_pss_mb"] <= peak["tree_peak_rss_mb"]


def test_processes_at_once_add_up():
    peak = _run(120, True, True)
    assert peak["tree_peak_pss_mb"] >= 200 and peak["most_processes"] == 2


def test_processes_one_after_the_other_do_not():
    peak = _run(120, True, False)
    assert peak["tree_peak_pss_mb"] < 200
