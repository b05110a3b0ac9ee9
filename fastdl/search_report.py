"""What a sweep leaves behind: every trial as CSV and JSON, the best parameters with the command
that retrains them on the full training set and evaluates on the test set, and the book's plot
(validation accuracy over learning rate and weight decay, and the best trials' curves)."""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path

from .curves import agg_figure
from .io import atomic_write_bytes
from .search_space import TRIAL_DEFAULTS


def rows(study) -> list[dict]:
    out = []
    for t in study.get_trials(deepcopy=False):
        curve = t.user_attrs.get("val_acc", [])
        out.append({"number": t.number, "state": t.state.name, "val_acc": t.value, "epochs_run": len(curve),
                    **{f"param_{k}": v for k, v in t.params.items()}, "error": t.user_attrs.get("error", ""),
                    "val_acc_curve": curve})
    return out


def retrain_command(cfg, params) -> str:
    """The `fastdl train` command that trains the best configuration on the full training set."""
    p = {**TRIAL_DEFAULTS, **cfg["fixed"], **params}
    init = "he" if p["init"] == "relu" else p["init"]       # the same He scale, in the flag's words
    cmd = ["fastdl", "train", "--backend", cfg["backend"], "--hidden", *map(str, cfg["hidden"]),
           "--epochs", f"{cfg['epochs']:g}", "--init", str(init)]
    flags = {"lr": "--lr", "weight_decay": "--weight-decay", "dropout": "--dropout", "batch_size": "--batch-size",
             "optimizer": "--optimizer", "momentum": "--momentum", "activation": "--activation"}
    for k, flag in flags.items():
        if k in p:
            cmd += [flag, f"{p[k]:.6g}" if isinstance(p[k], float) else str(p[k])]
    if p.get("batch_norm"):
        cmd.append("--batch-norm")
    return shlex.join(cmd)


def write(study, cfg, out: Path) -> dict:
    table = rows(study)
    done = [r for r in table if r["state"] == "COMPLETE"]
    best = max(done, key=lambda r: r["val_acc"]) if done else None
    summary = {"study": cfg["study"], "trials": len(table),
               "states": {s: sum(r["state"] == s for r in table) for s in {r["state"] for r in table}},
               "best": None}
    if best is not None:
        params = {k[len("param_"):]: v for k, v in best.items() if k.startswith("param_")}
        summary["best"] = {"number": best["number"], "val_acc": best["val_acc"], "params": params,
                           "retrain": retrain_command(cfg, params)}
    atomic_write_bytes(out / "trials.json", json.dumps({"config": {k: v for k, v in cfg.items() if k != "backend"} |
                                                        {"backend": str(cfg["backend"])}, "trials": table},
                                                       indent=1, default=str).encode())
    keys = sorted({k for r in table for k in r if k != "val_acc_curve"}, key=lambda k: (not k.startswith(("n", "s")), k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(table)
    atomic_write_bytes(out / "trials.csv", buf.getvalue().encode())
    plotted = _plot(table, out / "sweep.png")
    summary["plot"] = plotted.name if plotted else None      # None: matplotlib is not installed
    atomic_write_bytes(out / "best.json", json.dumps(summary, indent=1, default=str).encode())
    return summary


def _plot(table, path: Path):
    try:
        fig = agg_figure(figsize=(11, 4))
    except ImportError:
        return None
    done = [r for r in table if r["state"] in ("COMPLETE", "PRUNED") and r["epochs_run"]]
    a, b = fig.subplots(1, 2)
    pts = [r for r in done if "param_lr" in r and "param_weight_decay" in r]
    if pts:
        sc = a.scatter([r["param_lr"] for r in pts], [r["param_weight_decay"] for r in pts],
                       c=[r["val_acc_curve"][-1] for r in pts], cmap="viridis", vmin=0, vmax=1,
                       marker="o", edgecolors=["k" if r["state"] == "COMPLETE" else "none" for r in pts])
        a.set_xscale("log"); a.set_yscale("log"); a.set_xlabel("learning rate"); a.set_ylabel("weight decay")
        fig.colorbar(sc, ax=a, label="validation accuracy (last epoch run)")
    a.set_title("trials (outlined: completed; others pruned)")
    for r in sorted(done, key=lambda r: -(r["val_acc_curve"][-1]))[:10]:
        b.plot(range(1, r["epochs_run"] + 1), r["val_acc_curve"], label=f"#{r['number']}")
    b.set_xlabel("epoch"); b.set_ylabel("validation accuracy"); b.set_title("the 10 best trials")
    if done:                             # no finished trial: no curves to name
        b.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
