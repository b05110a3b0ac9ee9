"""Trainer checkpoints: everything needed to continue a run exactly, in the safe ``.npz`` +
manifest format of ``fastdl.io`` (never pickle), written atomically.

``load_checkpoint`` is all or nothing: every field is checked against the trainer it is loaded
into (architecture, optimizer, data fingerprint, shapes, dtypes, finiteness, index ranges, step
and position, RNG state) before any of it is applied, so a refused file leaves the trainer exactly
as it was, and nothing from a file reaches a compiled kernel unchecked.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np

from .errors import FileFormatError
from .history import check_curves
from .io import CHECKPOINT_FORMAT, VERSION, read_arrays, write_arrays
from .validate import check_buffers, check_dropout_state

FINGERPRINT_ROWS = 256
REBUILD = "build the trainer as for the checkpointed run"     # fastdl train says it in flags
HISTORY = ("epoch", "epoch_step", "train_acc", "test_acc", "seconds", "train_seconds")


def data_fingerprint(trainer) -> str:
    """SHA-256 of the training set's shape and dtype, every label, and 256 evenly spaced rows:
    another data set of the same size is told apart without hashing all of it (188 MB for
    MNIST) at every checkpoint. Computed once per trainer."""
    fp = trainer._fingerprint
    if fp is None:
        x, bk = trainer.x_train, trainer.network.backend
        rows = np.unique(np.linspace(0, x.shape[0] - 1, FINGERPRINT_ROWS).astype(np.int64))
        h = hashlib.sha256(f"{tuple(x.shape)} {x.dtype}".encode())
        h.update(np.ascontiguousarray(bk.to_numpy(trainer.t_train), dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(bk.to_numpy(x[bk.asarray(rows)])).tobytes())
        fp = trainer._fingerprint = h.hexdigest()
    return fp


def _is_own(trainer, path) -> bool:
    """Whether ``path`` is the trainer's own ``checkpoint=`` file (the one its run keeps)."""
    return trainer.checkpoint is not None and Path(path).resolve() == Path(trainer.checkpoint).resolve()


def save_checkpoint(trainer, path):
    net, opt, h = trainer.network, trainer.optimizer, trainer.history
    to_np = net.backend.to_numpy
    arrays = {f"param.{k}": to_np(v) for k, v in net.params.items()}
    arrays.update({f"buffer.{k}": v for k, v in net.buffers_numpy().items()})
    for state, per_param in opt.state.items():
        for k, v in per_param.items():
            arrays[f"opt.{state}.{k}"] = to_np(v)
    if trainer._epoch_host is not None:
        arrays["trainer.epoch_indices"] = np.asarray(trainer._epoch_host, dtype=np.int64)
    arrays["history.loss"] = np.asarray(h.loss, dtype=np.float64)
    manifest = {
        "format": CHECKPOINT_FORMAT, "version": VERSION,
        "architecture": net.config(), "dtype": net.dtype.name,
        "optimizer": opt.config(), "optimizer_step": opt.step,
        "step": trainer.step, "position": trainer._pos, "total_steps": trainer.total_steps,
        "batch_size": trainer.batch_size, "sampling": trainer.sampling, "n_train": trainer.n_train,
        "data_fingerprint": data_fingerprint(trainer), "dropout": net.dropout_state(),
        "rng": trainer.rng.bit_generator.state,
        "history": {k: getattr(h, k) for k in HISTORY},
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in arrays.items()},
    }
    write_arrays(path, arrays, manifest)
    trainer.checkpoint_written |= _is_own(trainer, path)
    return path


def _int(m, key, low, high, path) -> int:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise FileFormatError(f"{path}: checkpoint {key} is {v!r}; expected an integer in [{low}, {high}]")
    return v


def _difference(saved, now) -> str:
    """What differs, in words; of two dicts (an architecture has eight keys) only the keys that do."""
    if not (isinstance(saved, dict) and isinstance(now, dict)):
        return f"{saved!r} in the checkpoint, {now!r} here"
    keys = [k for k in (*now, *(k for k in saved if k not in now)) if saved.get(k, _NONE) != now.get(k, _NONE)]
    return "; ".join(f"{k} {saved.get(k, _NONE)!r} in the checkpoint, {now.get(k, _NONE)!r} here" for k in keys)


class _NoneGiven:
    def __repr__(self) -> str:
        return "(none)"


_NONE = _NoneGiven()


def _validated(trainer, arrays: dict, m: dict, path) -> dict:
    """Everything the checkpoint would set, checked; raises FileFormatError naming the field."""
    net, opt = trainer.network, trainer.optimizer
    checks = {"architecture": (m.get("architecture"), net.config()), "dtype": (m.get("dtype"), net.dtype.name),
              "optimizer": (m.get("optimizer"), opt.config()), "batch_size": (m.get("batch_size"), trainer.batch_size),
              "sampling": (m.get("sampling"), trainer.sampling), "n_train": (m.get("n_train"), trainer.n_train)}
    if "data_fingerprint" in m:                  # older checkpoints carry only the size
        checks["training data"] = (m["data_fingerprint"], data_fingerprint(trainer))
    for what, (saved, now) in checks.items():
        if saved != now:
            differs = "another data set of the same size" if what == "training data" else _difference(saved, now)
            raise FileFormatError(f"{path}: checkpoint {what} differs from this trainer's: {differs}; {REBUILD}")
    spe, total = trainer.steps_per_epoch, trainer.total_steps
    out = {"step": _int(m, "step", 0, total, path), "position": _int(m, "position", 0, spe, path),
           "optimizer_step": _int(m, "optimizer_step", 0, 2**62, path)}
    state_keys = {f"opt.{s}.{k}" for s in opt.state_names for k in net.params}
    known = {f"param.{k}" for k in net.params} | state_keys
    known |= {"trainer.epoch_indices", "history.loss"} | {f"buffer.{k}" for k in net.buffers}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise FileFormatError(f"{path}: checkpoint holds arrays this trainer has no place for: {unknown}")
    # The optimizer's state is made at its first update: a checkpoint holds all of it or none
    if set(arrays) & state_keys and not state_keys <= set(arrays):
        raise FileFormatError(f"{path}: checkpoint lacks optimizer state {sorted(state_keys - set(arrays))} "
                              f"(it holds the rest)")
    params, state = {}, {}
    for k, p in net.params.items():
        for key, into in ((f"param.{k}", params),) + tuple((f"opt.{s}.{k}", state) for s in opt.state_names):
            if key not in arrays:
                if into is params:
                    raise FileFormatError(f"{path}: checkpoint lacks parameter {k}")
                continue
            v = arrays[key]
            if v.shape != tuple(p.shape) or v.dtype.kind != "f" or not np.isfinite(v).all():
                raise FileFormatError(f"{path}: checkpoint array {key} is {v.dtype} {v.shape}, or not finite; "
                                      f"expected finite {net.dtype.name} {tuple(p.shape)}")
            into[key] = v
    try:
        buffers = check_buffers({k[len("buffer."):]: v for k, v in arrays.items() if k.startswith("buffer.")},
                                net.buffers, net.dtype, net.backend)
        dropout = check_dropout_state(m.get("dropout", []), len(net.dropout_state()))
    except (ValueError, TypeError) as exc:
        raise FileFormatError(f"{path}: checkpoint {exc}") from None
    idx = arrays.get("trainer.epoch_indices")
    if idx is not None:
        n, want = trainer.n_train, (trainer.n_train if trainer.sampling == "shuffle" else spe * trainer.batch_size)
        if (idx.dtype.kind not in "iu" or idx.shape != (want,) or (idx.size and (idx.min() < 0 or idx.max() >= n))
                or (trainer.sampling == "shuffle" and not (np.bincount(idx, minlength=n) == 1).all())):
            raise FileFormatError(f"{path}: checkpoint epoch order is {idx.dtype} {idx.shape}; expected {want} "
                                  f"integer indices in [0, {n})" + (", each once" if trainer.sampling == "shuffle" else ""))
    elif out["position"] != 0:
        raise FileFormatError(f"{path}: checkpoint is at position {out['position']} of an epoch but lacks its order")
    out["epoch_indices"] = None if idx is None else idx.astype(np.int64)
    loss = arrays.get("history.loss")
    hist = m.get("history")
    if (loss is None or loss.ndim != 1 or not np.isfinite(loss).all() or not isinstance(hist, dict)
            or set(hist) != set(HISTORY)):
        raise FileFormatError(f"{path}: checkpoint history is missing or damaged")
    if loss.shape[0] != out["step"]:
        raise FileFormatError(f"{path}: checkpoint history holds {loss.shape[0]} losses for {out['step']} steps; "
                              f"expected one a step")
    try:
        check_curves(hist, out["step"])
    except ValueError as exc:
        raise FileFormatError(f"{path}: checkpoint history {exc}") from None
    rng = copy.deepcopy(trainer.rng)
    try:
        rng.bit_generator.state = m.get("rng")
    except (TypeError, ValueError, KeyError) as exc:
        raise FileFormatError(f"{path}: checkpoint RNG state does not fit this trainer's generator ({exc})") from exc
    out.update(params=params, state=state, rng=rng.bit_generator.state, loss=loss.tolist(), history=hist,
               buffers=buffers, dropout=dropout)
    return out


def load_checkpoint(trainer, path) -> None:
    """Restore ``trainer`` (built with the same network architecture, optimizer and data) from a
    checkpoint; refuses one that does not match, saying what differs, and then changes nothing."""
    arrays, m = read_arrays(path, expected_format=CHECKPOINT_FORMAT)
    v = _validated(trainer, arrays, m, path)
    net, opt, bk = trainer.network, trainer.optimizer, trainer.network.backend
    net.set_params({k[len("param."):]: a for k, a in v["params"].items()})
    net.set_buffers(v["buffers"])
    net.set_dropout_state(v["dropout"])
    for key, a in v["state"].items():
        _, name, k = key.split(".", 2)
        # in place, into the arrays a fused step already holds (creating them if none exists yet)
        opt.state_arrays(k, net.params[k], bk.xp)[opt.state_names.index(name)][...] = bk.asarray(a)
    opt.step = v["optimizer_step"]
    trainer.step, trainer._pos, trainer._epoch_host = v["step"], v["position"], v["epoch_indices"]
    trainer.rng.bit_generator.state = v["rng"]
    trainer.checkpoint_written |= _is_own(trainer, path)
    h = trainer.history
    h.loss = v["loss"]
    for k, val in v["history"].items():
        setattr(h, k, val)
    # An evaluation made because the checkpointed run ended mid-epoch is not one this longer run
    # makes: drop it, so the resumed history equals an uninterrupted run's.
    if h.epoch_step and h.epoch_step[-1] % trainer.steps_per_epoch and h.epoch_step[-1] < trainer.total_steps:
        n = len(h.epoch_step)
        for values in (h.epoch, h.epoch_step, h.train_acc, h.test_acc):
            if len(values) == n:
                values.pop()
