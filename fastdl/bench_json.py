"""Saved pytest-benchmark JSON, as ``fastdl bench`` reads it to report: checked whole first, so a
damaged or hand-edited file is refused naming the benchmark and field, never half reported."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FastDLError
from .validate import json_number

# extra_info keys the report reads, and what each must be there
_NUMBERS = ("floor_seconds", "peak_rss_mb")
_KERNEL = {"kernel": str, "n": int, "m": int, "dtype": str}
# extra_info keys of whole-experiment rows, shown as figures under their table
FIGURES = ("ratio_", "median_s_", "median_mb_", "peak_rss_mb_", "tree_peak_", "most_processes_")


def _round_cell(v) -> bool:
    """An interleaved round's entry: seconds, or a whole process's wall time (and its loop's and
    compile's)."""
    if isinstance(v, dict):
        return json_number(v.get("wall_s")) and all(json_number(v[k]) for k in ("loop_s", "compile_s") if k in v)
    return json_number(v)


def _problem(b) -> str | None:
    """What is wrong with one benchmark entry, in words; None when the report can read it."""
    if not isinstance(b, dict):
        return f"is a JSON {type(b).__name__}, not an object"
    for key in ("name", "fullname"):
        if not isinstance(b.get(key), str):
            return f"{key} is {b.get(key)!r}; expected a string"
    if not isinstance(b.get("group"), (str, type(None))):
        return f"group is {b['group']!r}; expected a string or null"
    stats = b.get("stats")
    if not (isinstance(stats, dict) and json_number(stats.get("median")) and stats["median"] > 0
            and isinstance(stats.get("rounds"), int) and not isinstance(stats["rounds"], bool)):
        return "stats lacks a positive median or an integer count of rounds"
    info = b.get("extra_info", {})
    if not isinstance(info, dict):
        return f"extra_info is a JSON {type(info).__name__}, not an object"
    if not isinstance(info.get("backend"), (str, type(None))):
        return f"extra_info backend is {info['backend']!r}; expected a string"
    for key in _NUMBERS + tuple(k for k in info if k.startswith(FIGURES)):
        if key in info and not json_number(info[key]):
            return f"extra_info {key} is {info[key]!r}; expected a number"
    if "kernel" in info:
        for key, kind in _KERNEL.items():
            if not isinstance(info.get(key), kind) or isinstance(info[key], bool):
                return f"extra_info {key} is {info.get(key)!r}; expected {kind.__name__} (a kernel row)"
    rounds = info.get("rounds_s")
    if rounds is not None and not (isinstance(rounds, dict) and all(
            isinstance(v, list) and all(_round_cell(c) for c in v) for v in rounds.values())):
        return "extra_info rounds_s is not a dict of lists of seconds"
    return None


def load(path) -> dict:
    """The file's results, checked: FastDLError naming the first entry the report cannot read."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FastDLError(f"cannot read benchmark results {path}: {exc}") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise FastDLError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' key)")
    if not isinstance(data["benchmarks"], list):
        raise FastDLError(f"{path}: 'benchmarks' is a JSON {type(data['benchmarks']).__name__}, not a list")
    machine = data.get("machine_info", {})
    if not (isinstance(machine, dict) and isinstance(machine.get("cpu", {}), dict)):
        raise FastDLError(f"{path}: 'machine_info' (or its 'cpu') is not a JSON object; not a file pytest-benchmark "
                          f"writes (rerun the benchmark, or restore the file)")
    for i, b in enumerate(data["benchmarks"]):
        problem = _problem(b)
        if problem:
            name = b.get("name") if isinstance(b, dict) and isinstance(b.get("name"), str) else "?"
            raise FastDLError(f"{path}: benchmark {i} ({name}): {problem}; not a result pytest-benchmark writes "
                              f"(rerun the benchmark, or restore the file)")
    return data


def load_skipped(path: Path) -> list[str] | None:
    """``skipped.json`` beside a run's results (what did not run, and why), if there is one."""
    if not path.is_file():
        return None
    try:
        skipped = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FastDLError(f"cannot read {path}: {exc}") from None
    if not (isinstance(skipped, list) and all(isinstance(s, str) for s in skipped)):
        raise FastDLError(f"{path}: expected a JSON list of strings (the skipped benchmarks' reasons)")
    return skipped
