"""The GPU benchmarks' headline table from one pytest-benchmark JSON of bench/test_bench_gpu.py:
per workload, each contender's median, microseconds per step, achieved TFLOP/s, its ratio to
PyTorch eager and to PyTorch's CUDA graph (same group, same run), and for the larger networks the
ratio to their GEMM floor at the step's shapes and to the GPU's float32 GEMM rate (8192^3).

    python bench/gpu_table.py results.json > table.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from conftest import step_flops


def _sizes(info):
    return [int(s) for s in str(info["network"]).split("-")]


def table(data) -> str:
    groups, sgemm = defaultdict(list), None
    for b in data["benchmarks"]:
        group, info = b.get("group") or "", b.get("extra_info", {})
        if group == "gpu sgemm":
            sgemm = info["flops"] / b["stats"]["median"]
        elif group.startswith(("gpu book", "gpu large")) and "network" in info:
            groups[group].append(b)
    lines = ["| workload | contender | median | us/step | TFLOP/s | speed-up vs PyTorch eager | speed-up vs PyTorch graph "
             "| / GEMM floor | / sgemm roof |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for group, rows in sorted(groups.items(), key=lambda g: (g[0].startswith("gpu large"), g[0])):
        med = {r["extra_info"]["backend"]: r["stats"]["median"] for r in rows}
        eager, graph = med.get("pytorch-cuda-eager"), med.get("pytorch-cuda-graph")
        for r in sorted(rows, key=lambda r: r["stats"]["median"]):
            info, t = r["extra_info"], r["stats"]["median"]
            steps = int(info["steps"])
            flops = step_flops(_sizes(info), int(info["batch"])) * steps
            floor = info.get("floor_seconds")
            cells = [group.removeprefix("gpu "), info["backend"], f"{t:.3g} s", f"{t / steps * 1e6:.1f}",
                     f"{flops / t / 1e12:.2f}", f"{eager / t:.2f}x" if eager else "-",
                     f"{graph / t:.2f}x" if graph else "-",
                     f"{t / float(floor):.2f}" if floor and group.startswith("gpu large") else "-",
                     f"{t / (flops / sgemm):.2f}" if sgemm and group.startswith("gpu large") else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    head = [f"float32 GEMM rate (8192^3, cuBLAS): {sgemm / 1e12:.1f} TFLOP/s" if sgemm else "no sgemm row", ""]
    return "\n".join(head + lines) + "\n"


if __name__ == "__main__":
    print(table(json.load(open(sys.argv[1]))))
