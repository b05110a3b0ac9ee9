"""``fastdl bench``: run the benchmark suites, or read saved pytest-benchmark JSON, and write a
Markdown report (time per backend, speed-up over NumPy, fraction of the FLOP floor) with PNG
charts. Given two JSON files it also compares them benchmark by benchmark."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from .bench_json import FIGURES, load, load_skipped
from .curves import agg_figure
from .errors import FastDLError


def suite_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "bench"
    if (here / "conftest.py").is_file():
        return here
    raise FastDLError("the benchmark suites (bench/) ship with the source, not the wheel: run "
                      "`fastdl bench` from a checkout of fastdl, or pass saved JSON files")


def run_suite(out: Path, quick: bool, select: str | None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "bench.json"
    cmd = [sys.executable, "-m", "pytest", str(suite_dir()), "-v", "-rs", "-p", "no:cacheprovider",
           f"--benchmark-json={json_path}", "--benchmark-columns=median,rounds", "--benchmark-max-time=0.5"]
    if select:
        cmd += ["-k", select]
    env = dict(os.environ)
    if quick:
        env["FASTDL_BENCH_QUICK"] = "1"
    print("running:", " ".join(cmd), flush=True)
    skipped = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:          # progress: one line per benchmark as it finishes
            if "::" in line and ("PASSED" in line or "SKIPPED" in line or "FAILED" in line):
                print(line.rstrip(), flush=True)
            elif line.startswith("SKIPPED ["):            # -rs summary: what did not run, and why
                skipped.append(skip_entry(line))
        rc = proc.wait()
    (out / "skipped.json").write_text(json.dumps(skipped, indent=1))
    if rc == 5 and select:                # pytest: nothing collected
        raise FastDLError(f"no benchmark matches --select {select!r}; list their names with "
                          f"`python -m pytest {suite_dir()} --collect-only -q`")
    if rc != 0 or not json_path.is_file():
        raise FastDLError(f"the benchmark run failed (pytest exit {rc}); rerun the command above to see why")
    strip_raw_timings(json_path)
    return json_path


def skip_entry(line: str) -> str:
    """pytest's ``-rs`` line ``SKIPPED [3] bench/x.py:40: reason`` (the line number absent for a
    whole module's skip) as ``3x reason``, what ``markdown`` counts."""
    return re.sub(r"^SKIPPED \[(\d+)\] [^:]+(?::\d+)?: ", r"\1x ", line.strip())


def strip_raw_timings(path: Path) -> None:
    """Drop pytest-benchmark's per-round samples (hundreds of MB for the kernel suite); the
    statistics stay, and they are what the report and comparisons use."""
    data = json.loads(path.read_text())
    for b in data.get("benchmarks", []):
        b.get("stats", {}).pop("data", None)
    path.write_text(json.dumps(data, indent=1))


def _label(b) -> str:
    info = b.get("extra_info", {})
    return info.get("backend") or re.sub(r".*\[|\].*", "", b["name"])


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def rows_by_group(data) -> dict:
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b.get("group") or b["name"]].append(b)
    return dict(sorted(groups.items()))


def _whole_experiment(rows) -> bool:
    """Rows whose time is not one contender's: interleaved rounds of several, or a subprocess
    timed only to read its peak memory. A speed-up between them would mean nothing."""
    return any(k in r.get("extra_info", {}) for r in rows for k in ("rounds_s", "peak_rss_mb"))


def rounds_table(rounds: dict) -> list[str]:
    """Interleaved rounds, one row each, a column per contender: the machine's noise moves whole
    rounds, so a reader can compare contenders within the calm ones. A cell is the round's
    seconds, or for a whole process its wall time with the loop's and the compile's."""
    def cell(v):
        if isinstance(v, dict):
            parts = [f"loop {v['loop_s']:.2f}"] if "loop_s" in v else []
            parts += [f"compile {v['compile_s']:.2f}"] if v.get("compile_s") else []
            return f"{v['wall_s']:.2f}" + (f" ({', '.join(parts)})" if parts else "")
        return f"{v:.3f}"
    names = list(rounds)
    lines = ["seconds per interleaved round:", "", "| round | " + " | ".join(names) + " |",
             "| ---: |" + " ---: |" * len(names)]
    for i in range(max(len(v) for v in rounds.values())):
        lines.append(f"| {i + 1} | " + " | ".join(cell(rounds[n][i]) if i < len(rounds[n]) else "-" for n in names) + " |")
    return lines


def is_quick(data) -> bool:
    return any(b.get("extra_info", {}).get("quick") in (True, "True") for b in data["benchmarks"])


def markdown(data, title: str, skipped=None) -> str:
    info = data.get("machine_info", {})
    quick = is_quick(data)
    lines = [f"# {title}", "",
             f"Machine: {info.get('cpu', {}).get('brand_raw', info.get('processor', '?'))}, "
             f"{info.get('cpu', {}).get('count', '?')} CPUs; Python {info.get('python_version', '?')}; "
             f"run {data.get('datetime', '?')}.", "",
             "Median of the rounds. Speed-up is NumPy's median over this row's (same group, same run). "
             "Floor fraction = the time of exactly the run's GEMMs at the measured GEMM rate, over the "
             "measured time (1.0 would be pure GEMM).", ""]
    if quick:
        lines += ["**A quick smoke run** (`FASTDL_BENCH_QUICK=1`): one small round per benchmark, to show that "
                  "every suite runs. Its times are not measurements; no speed-ups or ratios are given.", ""]
    for group, rows in rows_by_group(data).items():
        base = None if (quick or _whole_experiment(rows)) else next((r for r in rows if _label(r) == "numpy"), None)
        lines += [f"### {group}", "", "| backend | median | speed-up vs numpy | floor fraction | rounds |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for r in sorted(rows, key=lambda r: r["stats"]["median"]):
            med = r["stats"]["median"]
            speed = f"{base['stats']['median'] / med:.2f}x" if base else "-"
            floor = r.get("extra_info", {}).get("floor_seconds")
            frac = f"{floor / med:.2f}" if floor and not quick else "-"
            lines.append(f"| {_label(r)} | {_fmt(med)} | {speed} | {frac} | {r['stats']['rounds']} |")
        for r in rows:
            ratios = {k: v for k, v in r.get("extra_info", {}).items() if k.startswith(FIGURES)}
            if ratios and not quick:
                lines += ["", "| figure | value |", "| --- | ---: |"]
                lines += [f"| {k.replace('_', ' ')} | {v:.3f} |" for k, v in ratios.items()]
            rounds = r.get("extra_info", {}).get("rounds_s")
            if isinstance(rounds, dict) and rounds and not quick:
                lines += [""] + rounds_table(rounds)
        peaks = [r["extra_info"] for r in rows if r.get("extra_info", {}).get("peak_rss_mb")]
        if peaks:
            lines.append("\npeak RSS: " + ", ".join(f"{e.get('backend')} {e['peak_rss_mb']:.0f} MB" for e in peaks))
        lines.append("")
    blas = {r.get("extra_info", {}).get("blas") for r in data["benchmarks"]} - {None}
    if blas:
        lines += ["BLAS: " + "; ".join(sorted(blas)), ""]
    if skipped:
        counts = defaultdict(int)
        for s in skipped:                 # "3x reason" (run_suite's), or a reason alone
            m = re.match(r"(\d+)x (.*)", s)
            counts[m.group(2) if m else s] += int(m.group(1)) if m else 1
        lines += ["## Not run here", ""] + [f"- {n} benchmarks: {reason}" for reason, n in counts.items()] + [""]
    return "\n".join(lines)


def compare(old, new) -> str:
    o = {b["fullname"]: b["stats"]["median"] for b in old["benchmarks"]}
    lines = ["# Comparison (new / old median; < 1 is faster)", "", "| benchmark | old | new | ratio |",
             "| --- | ---: | ---: | ---: |"]
    for b in new["benchmarks"]:
        if b["fullname"] in o:
            a, n = o[b["fullname"]], b["stats"]["median"]
            lines.append(f"| {b['fullname']} | {_fmt(a)} | {_fmt(n)} | {n / a:.2f} |")
    return "\n".join(lines) + "\n"


def charts(data, out: Path) -> list[Path]:
    try:
        import matplotlib.colors
        import matplotlib.ticker
    except ImportError:
        return []
    made = []
    groups = rows_by_group(data)
    kernel_rows = [b for b in data["benchmarks"] if "kernel" in b.get("extra_info", {})]
    if kernel_rows:
        made.append(_kernel_heatmaps(kernel_rows, out, matplotlib))
    train = {g: r for g, r in groups.items() if g.startswith(("train ", "gpu "))}
    if train:
        fig = agg_figure(figsize=(8, 1.2 + 1.1 * sum(len(r) for r in train.values()) / 2))
        axes = fig.subplots(len(train), 1, squeeze=False)
        for ax, (g, rows) in zip(axes[:, 0], train.items()):
            rows = sorted(rows, key=lambda r: r["stats"]["median"])
            ax.barh([_label(r) for r in rows], [r["stats"]["median"] for r in rows], color="tab:blue")
            for i, r in enumerate(rows):
                ax.text(r["stats"]["median"], i, " " + _fmt(r["stats"]["median"]), va="center", fontsize=8)
            ax.set_title(g, fontsize=9)
            ax.set_xlabel("seconds (median)")
        fig.tight_layout()
        path = out / "training_time_by_backend.png"
        fig.savefig(path, dpi=110)
        made.append(path)
    return made


def _kernel_heatmaps(rows, out: Path, matplotlib) -> Path:
    """Speed-up over NumPy as heatmaps: kernels down, sizes across, one panel per backend and dtype."""
    import numpy as np
    med = {}
    for b in rows:
        e = b["extra_info"]
        med[(_label(b), e["kernel"], int(e["n"]), int(e["m"]), e["dtype"])] = b["stats"]["median"]
    kernels = sorted({k[1] for k in med})
    sizes = sorted({(k[2], k[3]) for k in med})
    panels = sorted({(k[0], k[4]) for k in med if k[0] != "numpy"})
    if not panels:
        panels = [("numpy", sorted({k[4] for k in med})[0])]
    fig = agg_figure(figsize=(1.0 + 0.75 * len(sizes) * len(panels) + 2, 0.4 * len(kernels) + 2.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    norm = matplotlib.colors.LogNorm(vmin=0.25, vmax=4)
    for col, (ax, (bk, dt)) in enumerate(zip(axes[0], panels)):
        grid = np.full((len(kernels), len(sizes)), np.nan)
        for i, k in enumerate(kernels):
            for j, (n, m) in enumerate(sizes):
                base, this = med.get(("numpy", k, n, m, dt)), med.get((bk, k, n, m, dt))
                if base and this:
                    grid[i, j] = base / this
        im = ax.imshow(grid, cmap="RdYlGn", norm=norm, aspect="auto")
        for i in range(len(kernels)):
            for j in range(len(sizes)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2g}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([f"N={n}\nM={m}" for n, m in sizes], fontsize=7)
        ax.set_yticks(range(len(kernels)))
        ax.set_yticklabels(kernels if col == 0 else [], fontsize=8)
        ax.set_title(f"{bk} vs numpy, {dt}", fontsize=10)
    bar = fig.colorbar(im, ax=axes[0].tolist(), label="speed-up over numpy (x)", shrink=0.8)
    bar.set_ticks([0.25, 0.5, 1, 2, 4])
    bar.set_ticklabels(["0.25x", "0.5x", "1x", "2x", "4x"])
    bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    path = out / "speedup_by_kernel.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def run_bench(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = [Path(p) for p in args.json]
    if len(files) > 2:
        raise FastDLError("give at most two JSON files (one to report on, two to compare)")
    if not files:
        files = [run_suite(out, args.quick, args.select)]
    data = [load(p) for p in files]
    skipped = load_skipped(files[-1].parent / "skipped.json")
    report = markdown(data[-1], f"fastdl benchmarks ({files[-1].name})", skipped)
    if len(data) == 2:
        report += "\n" + compare(data[0], data[1])
    pngs = [] if is_quick(data[-1]) else charts(data[-1], out)     # no speed-up charts from a smoke run
    report += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
    (out / "report.md").write_text(report)
    print(f"wrote {out / 'report.md'}" + "".join(f", {p}" for p in pngs))
    return 0
