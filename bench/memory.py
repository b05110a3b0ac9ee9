"""The memory a command takes with all of its processes, sampled while it runs (Linux).

A run of ``fastdl train`` is up to three processes at once (itself, its plotting helper and, on a
first numba run, its compile helper). Adding each one's own peak overstates what they hold
together: the peaks fall at different times, and the libraries they share (NumPy, OpenBLAS,
LLVM) count once per process in RSS. So ``run`` samples the whole process tree every few
milliseconds and keeps the largest sums seen of RSS (shared pages counted in every process: an
upper bound) and of PSS (each shared page split between the processes mapping it: what the tree
takes from the machine). A peak shorter than the interval can be missed; the processes' own
high-water marks (VmHWM) bound it from above.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

INTERVAL = 0.01         # seconds between samples (a sample of three processes reads ~0.7 ms)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KB; zeros once it has gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def available() -> bool:
    return Path("/proc/self/smaps_rollup").exists()


def run(cmd: list[str], **popen) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``cmd`` to its end, sampling its process tree; returns the completed process (output
    captured as text) and {"tree_peak_rss_mb", "tree_peak_pss_mb", "most_processes"}."""
    peak = {"tree_peak_rss_mb": 0.0, "tree_peak_pss_mb": 0.0, "most_processes": 0}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **popen)
        while proc.poll() is None:
            pids = _tree(proc.pid)
            sizes = [_kb(p) for p in pids]
            peak["tree_peak_rss_mb"] = max(peak["tree_peak_rss_mb"], sum(s[0] for s in sizes) / 1024)
            peak["tree_peak_pss_mb"] = max(peak["tree_peak_pss_mb"], sum(s[1] for s in sizes) / 1024)
            peak["most_processes"] = max(peak["most_processes"], sum(1 for s in sizes if s[0]))
            time.sleep(INTERVAL)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    return done, peak
