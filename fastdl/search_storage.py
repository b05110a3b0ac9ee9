"""Where a sweep's study lives: Optuna's journal file in ``--out`` (or another path), or a database
URL; opened before anything loads, and a storage that cannot be opened said in one line."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from .errors import FastDLError


def optuna_module():
    """Optuna, or the extra to install for it."""
    try:
        import optuna
    except ImportError as exc:
        raise FastDLError('the sweep needs Optuna: pip install "fastdl[sweep]"') from exc
    return optuna


def storage_for(url: str | None, out: Path):
    """What Optuna opens: a database URL as given, else a journal file (``out``/study.log by
    default), checked first."""
    optuna_module()
    if url and "://" in url:
        return url                                            # a database Optuna's RDB storage takes
    path = Path(url) if url else out / "study.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_journal(path)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    return JournalStorage(JournalFileBackend(str(path)))


def _check_journal(path: Path) -> None:
    """Each whole line of an existing journal a JSON record, before Optuna opens it: it passes over
    a bad last line and appends after it, which leaves a bad line inside, the study unreadable.
    A last line without its newline is one that another worker is writing now: left to Optuna."""
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                ok = not line.endswith(b"\n") or isinstance(json.loads(line), dict)
            except ValueError:                          # not JSON, or not text
                ok = False
            if not ok:
                raise ValueError(f"line {n} is not a journal record (another file, or damaged); remove that "
                                 f"line to go on with the study")


def make_study(cfg, storage):
    """The sweep's study in ``storage``, made or joined, with the pruner and sampler ``cfg`` names."""
    optuna = optuna_module()
    pruner = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=cfg["startup"], n_warmup_steps=1),
              "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
              "none": lambda: optuna.pruners.NopPruner()}[cfg["pruner"]]()
    sampler = optuna.samplers.TPESampler(seed=cfg["worker_seed"], n_startup_trials=cfg["startup"])
    return optuna.create_study(study_name=cfg["study"], storage=storage, direction="maximize", pruner=pruner,
                               sampler=sampler, load_if_exists=True)


def open_study(cfg, out: Path):
    """The study, opened before anything loads: a storage that cannot be opened (a mistyped URL,
    its database driver not installed, the server down) is said in one line, password hidden."""
    try:
        return make_study(cfg, storage_for(cfg["storage"], out))
    except Exception as exc:
        where = re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", cfg["storage"] or str(out / "study.log"))
        why = (str(exc).strip().splitlines() or [""])[0].rstrip(".")
        advice = ("the URL (a path for a journal file, or a database URL such as sqlite:///sweep.db or "
                  "postgresql://user:password@host/db), that the database's driver is installed (psycopg2-binary "
                  "for PostgreSQL) and that its server answers" if "://" in (cfg["storage"] or "") else
                  "that the file is a study journal a sweep wrote; a damaged one (or another file) can be moved "
                  "away, and the sweep then starts a new study there")
        raise FastDLError(f"cannot open the study {cfg['study']!r} in {where}: {type(exc).__name__}: {why}. "
                          f"Check {advice}") from exc
