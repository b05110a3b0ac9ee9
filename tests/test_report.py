import json

import pytest

from fastdl.cli import main
from fastdl.errors import FastDLError
from fastdl.report import compare, load, markdown


K = dict(kernel="relu_forward", n=100, m=50, dtype="float32")


def fake_run(scale=1.0):
    def bench(name, group, backend, median, **extra):
        return {"name": name, "fullname": f"bench/x.py::{name}", "group": group,
                "stats": {"median": median * scale, "rounds": 3}, "extra_info": {"backend": backend, **extra}}
    return {"machine_info": {"python_version": "3.11", "cpu": {"brand_raw": "Test CPU", "count": 2}},
            "datetime": "2026-11-29", "benchmarks": [
                bench("test_kernel[numpy-relu]", "relu_forward N=100 M=50 float32", "numpy", 2e-5, **K),
                bench("test_kernel[numba-relu]", "relu_forward N=100 M=50 float32", "numba", 1e-5, **K),
                bench("test_training_run[numpy]", "train 784-50-10 batch 100 x10000", "numpy", 2.0, floor_seconds=1.0),
                bench("test_training_run[numba]", "train 784-50-10 batch 100 x10000", "numba", 1.25, floor_seconds=1.0)]}


def test_markdown_has_speedups_and_floor_fractions():
    md = markdown(fake_run(), "t")
    assert "| numba | 10 us | 2.00x | - | 3 |" in md
    assert "| numba | 1.25 s | 1.60x | 0.80 | 3 |" in md


def test_compare_two_runs():
    md = compare(fake_run(), fake_run(0.5))
    assert "| 0.50 |" in md


def test_cli_reports_saved_json_with_charts(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(fake_run()))
    b.write_text(json.dumps(fake_run(0.9)))
    assert main(["bench", str(a), str(b), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "speed-up vs numpy" in report and "Comparison" in report
    pytest.importorskip("matplotlib")
    assert (tmp_path / "rep" / "speedup_by_kernel.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "training_time_by_backend.png").stat().st_size > 1000


def test_not_a_benchmark_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(FastDLError, match="not a pytest-benchmark"):
        load(p)
