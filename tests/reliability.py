"""Bookkeeping for the reliability catalogue: tests record each case here, and when
``FASTDL_RELIABILITY_REPORT`` names a file, the session writes docs/reliability.md from it.

    FASTDL_RELIABILITY_REPORT=docs/reliability.md .venv/bin/python -m pytest tests/test_reliability.py \
        tests/test_fuzz.py tests/test_checkpoints.py tests/test_checkpoint_validation.py tests/test_reliability_training.py tests/test_datasets.py tests/test_download_faults.py tests/test_hostile_calls.py
"""

from __future__ import annotations

import datetime
import os
import platform
from collections import defaultdict

RECORDS: list[dict] = []


def record(area: str, case: str, backend: str, expected: str, outcome: str, ok: bool, **figures):
    RECORDS.append(dict(area=area, case=case, backend=backend, expected=expected, outcome=outcome, ok=ok, **figures))


def write_report(path: str) -> None:
    import fastdl
    by_area = defaultdict(list)
    for r in RECORDS:
        by_area[r["area"]].append(r)
    tried = len(RECORDS)
    good = sum(r["ok"] for r in RECORDS)
    lost = sum(r.get("files_lost", 0) for r in RECORDS)
    silent = sum(r["outcome"] == "no error (silent result)" for r in RECORDS)
    lines = [
        "# Reliability: bad input and faults",
        "",
        "Every case below is a test. This page is written by the test run itself:",
        "",
        "```sh",
        "FASTDL_RELIABILITY_REPORT=docs/reliability.md .venv/bin/python -m pytest \\",
        "    tests/test_reliability.py tests/test_fuzz.py tests/test_checkpoints.py tests/test_checkpoint_validation.py tests/test_reliability_training.py tests/test_datasets.py tests/test_download_faults.py tests/test_hostile_calls.py",
        "```",
        "",
        f"Last run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, fastdl {fastdl.__version__}, "
        f"Python {platform.python_version()}, backends {', '.join(fastdl.available_backends())}.",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| cases tried (case x backend) | {tried} |",
        f"| outcome as documented | {good} ({100 * good / max(tried, 1):.0f}%) |",
        f"| silent results | {silent} |",
        f"| files lost or corrupted | {lost} |",
        "",
        "Documented exception types (all in `fastdl.errors`, all subclasses of `FastDLError` and of the",
        "built-in named): `ShapeError` (ValueError), `DTypeError` (TypeError), `NonFiniteError` (ValueError),",
        "`LabelError` (ValueError), `DeviceError` (TypeError), `DivergenceError` (FloatingPointError),",
        "`DatasetError` (OSError), `FileFormatError` (ValueError), `UnknownBackendError` (ValueError),",
        "`BackendUnavailableError` (RuntimeError); plain `ValueError` for bad hyperparameters.",
        "",
    ]
    for area, rows in by_area.items():
        lines += [f"## {area}", "", "| case | backend | expected | outcome | as documented |", "| --- | --- | --- | --- | :---: |"]
        for r in rows:
            extra = ", ".join(f"{k} {v}" for k, v in r.items()
                              if k not in ("area", "case", "backend", "expected", "outcome", "ok"))
            outcome = r["outcome"] + (f" ({extra})" if extra else "")
            lines.append(f"| {r['case']} | {r['backend']} | {r['expected']} | {outcome} | {'yes' if r['ok'] else 'NO'} |")
        lines.append("")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
