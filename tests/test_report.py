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


def damaged(case):
    run = fake_run()
    b = run["benchmarks"][1]
    if case == "name not a string":
        b["name"] = 3
    elif case == "stats a string":
        b["stats"] = "fast"
    elif case == "median zero":
        b["stats"]["median"] = 0
    elif case == "rounds missing":
        del b["stats"]["rounds"]
    elif case == "kernel width a string":
        b["extra_info"]["m"] = "50"
    elif case == "floor a string":
        run["benchmarks"][3]["extra_info"]["floor_seconds"] = "1"
    elif case == "figure not a number":
        b["extra_info"]["ratio_numba"] = None
    elif case == "rounds not lists":
        b["extra_info"]["rounds_s"] = {"numba": 3}
    elif case == "entry not an object":
        run["benchmarks"][1] = [1]
    elif case == "benchmarks not a list":
        run["benchmarks"] = "all"
    elif case == "machine a string":
        run["machine_info"] = "Test CPU"
    return run


@pytest.mark.parametrize("case", ["name not a string", "stats a string", "median zero", "rounds missing",
                                  "kernel width a string", "floor a string", "figure not a number", "rounds not lists",
                                  "entry not an object", "benchmarks not a list", "machine a string"])
def test_a_damaged_results_file_is_refused_naming_the_entry(tmp_path, case, capsys):
    """The report read such files part way and stopped with a traceback."""
    p = tmp_path / "bench.json"
    p.write_text(json.dumps(damaged(case)))
    with pytest.raises(FastDLError, match=r"bench\.json: (benchmark 1 \(test_kernel\[numba-relu\]\)|benchmark 3|benchmark 1 \(\?\)|'benchmarks' is|'machine_info')"):
        load(p)
    assert main(["bench", str(p), "--out", str(tmp_path / "rep")]) == 2
    assert "fastdl bench: error:" in capsys.readouterr().err and not (tmp_path / "rep" / "report.md").exists()


def test_every_committed_result_is_read_by_the_report():
    """What the checks accept includes every file the suites wrote (the committed runs)."""
    from pathlib import Path
    files = sorted((Path(__file__).parent.parent / "bench" / "results").glob("*/*.json"))
    runs = [f for f in files if f.name != "skipped.json"]
    if not runs:
        pytest.skip("no bench/results in this tree")
    for f in runs:
        markdown(load(f), f.name)


def whole_process_run(quick=False):
    """A run like the startup benchmark's: one interleaved row holding every contender's rounds."""
    rounds = {"numpy": [{"wall_s": 4.6, "loop_s": 3.1, "compile_s": 0.0}, {"wall_s": 8.0, "loop_s": 5.6, "compile_s": 0.0}],
              "numba": [{"wall_s": 5.2, "loop_s": 1.6, "compile_s": 2.0}, {"wall_s": 5.9, "loop_s": 2.1, "compile_s": 2.0}]}
    run = fake_run()
    run["benchmarks"] = [{"name": "test_fastdl_train_process", "fullname": "bench/x.py::t", "group": "whole process",
                          "stats": {"median": 111.0, "rounds": 1},
                          "extra_info": {"backend": "interleaved", "quick": quick, "rounds_s": rounds,
                                         "median_s_wall_numpy": 6.3, "ratio_wall_numba_over_numpy": 0.88}}]
    return run


def test_whole_experiment_rows_get_no_speedup_but_their_rounds():
    md = markdown(whole_process_run(), "t")
    assert "| interleaved | 111 s | - | - | 1 |" in md              # the whole experiment's time: no ratio
    assert "| ratio wall numba over numpy | 0.880 |" in md
    assert "| round | numpy | numba |" in md
    assert "| 1 | 4.60 (loop 3.10) | 5.20 (loop 1.60, compile 2.00) |" in md
    assert "| 2 | 8.00 (loop 5.60) | 5.90 (loop 2.10, compile 2.00) |" in md


def test_a_quick_run_says_so_and_gives_no_ratios():
    run = fake_run()
    for b in run["benchmarks"]:
        b["extra_info"]["quick"] = True
    md = markdown(run, "t")
    assert "A quick smoke run" in md
    assert "| numba | 1.25 s | - | - | 3 |" in md                  # neither speed-up nor floor fraction
    quick_whole = markdown(whole_process_run(quick=True), "t")
    assert "ratio wall" not in quick_whole and "| round |" not in quick_whole


def test_skipped_contenders_are_listed_with_their_reasons():
    md = markdown(fake_run(), "t", skipped=["2x cupy unavailable: no GPU", "torch not installed"])
    assert "## Not run here" in md
    assert "- 2 benchmarks: cupy unavailable: no GPU" in md and "- 1 benchmarks: torch not installed" in md


def test_pytests_skip_lines_become_counted_reasons():
    from fastdl.report import skip_entry
    assert skip_entry("SKIPPED [2] bench/test_bench_gpu.py:40: cupy unavailable: no GPU\n") == "2x cupy unavailable: no GPU"
    assert skip_entry("SKIPPED [1] bench/test_bench_torch.py: torch is not installed") == "1x torch is not installed"
    md = markdown(fake_run(), "t", skipped=[skip_entry("SKIPPED [3] bench/b.py:9: max 2 threads here")])
    assert "- 3 benchmarks: max 2 threads here" in md
