"""Host-side checks at the public surface, identical for every backend.

They run before any kernel, so a bad input fails the same way on NumPy, Numba and CuPy, with a
message that shows what was received and what was expected. The training loop validates its data
once up front and then calls unchecked internals, so these checks cost nothing per step.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import DeviceError, DTypeError, LabelError, NonFiniteError, ShapeError

FLOAT_DTYPES = ("float32", "float64")


def as_float_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"dtype {dtype!r} is not a dtype; use 'float32' or 'float64'") from exc
    if dt.name not in FLOAT_DTYPES:
        raise DTypeError(f"dtype {dt.name} is not supported; use 'float32' (default) or 'float64'")
    return dt


def host_view(a, backend, what: str) -> np.ndarray:
    """The array as NumPy for checking. Host arrays are fine for any backend (they are moved);
    an array of another library or device raises DeviceError instead of a cryptic kernel error."""
    if isinstance(a, np.ndarray):
        return a
    if backend.is_backend_array(a):
        return backend.to_numpy(a)
    if isinstance(a, (list, tuple)) or np.isscalar(a):
        return np.asarray(a)
    mod = type(a).__module__.split(".")[0]
    raise DeviceError(
        f"{what} is a {mod}.{type(a).__name__}, which backend {backend.name!r} (device "
        f"{backend.device}) cannot read; pass a NumPy array, or convert it with "
        f"backend.asarray(...) after moving it to the host")


def check_features(x, n_features: int | None, what: str = "x", dtype=None, bytes_ok: bool = False) -> None:
    """Rank 2, non-empty batch, right feature count, float dtype, all finite (also once cast to
    ``dtype``: float64 values beyond float32's range would become inf there). ``bytes_ok``: the
    caller takes ``fastdl.ByteImages`` too, which a uint8 array's message then offers."""
    if x.dtype == object or x.dtype.kind not in "f":
        kind = {"b": "bool", "i": "integer", "u": "unsigned integer", "c": "complex",
                "O": "object", "U": "string", "S": "bytes"}.get(x.dtype.kind, x.dtype.name)
        raise DTypeError(
            f"{what} has dtype {x.dtype} ({kind}); expected float32 or float64. "
            f"Convert first, e.g. {what}.astype('float32') (and scale pixels to [0, 1])"
            + (f", or pass pixel bytes as fastdl.ByteImages({what}) (byte k stands for k / 255; a quarter of "
               f"float32's memory)" if bytes_ok and x.dtype == np.uint8 else ""))
    if x.ndim != 2:
        expected = f"(N, {n_features})" if n_features is not None else "(N, D)"
        hint = f"; flatten images with {what}.reshape(len({what}), -1)" if x.ndim > 2 else ""
        raise ShapeError(f"{what} has shape {x.shape} (rank {x.ndim}); expected rank 2 {expected}{hint}")
    if x.shape[0] == 0:
        raise ShapeError(f"{what} has shape {x.shape}: an empty batch; pass at least one row")
    if n_features is not None and x.shape[1] != n_features:
        raise ShapeError(f"{what} has shape {x.shape}; expected (N, {n_features}): the network's input size is {n_features}")
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise NonFiniteError(
            f"{what} contains NaN or Inf (first at index {tuple(int(i) for i in bad)}, value {x[tuple(bad)]}); "
            f"clean or impute the data first")
    if dtype is not None and np.dtype(dtype).itemsize < x.dtype.itemsize:
        limit = np.finfo(dtype).max
        big = np.abs(x) > limit
        if big.any():
            bad = tuple(int(i) for i in np.argwhere(big)[0])
            raise NonFiniteError(f"{what} holds {x[bad]!r} at index {bad}, beyond {np.dtype(dtype).name}'s range "
                                 f"(+-{limit:.3g}): it would become inf in this {np.dtype(dtype).name} network; "
                                 f"rescale the data")


def check_labels(t, n_classes: int, n_rows: int | None = None, what: str = "t") -> np.ndarray:
    """Validate int indices (N,) or one-hot rows (N, C); return int64 indices on the host."""
    t = np.asarray(t)
    if t.dtype == object or t.dtype.kind not in "biuf":
        raise LabelError(f"{what} has dtype {t.dtype}; expected integer class indices (N,) or one-hot rows (N, {n_classes})")
    if t.ndim == 1:
        if t.shape[0] == 0:
            raise ShapeError(f"{what} has shape {t.shape}: no labels; pass at least one")
        if t.dtype.kind == "b":
            raise LabelError(f"{what} has dtype bool; expected integer class indices in [0, {n_classes})")
        if t.dtype.kind == "f":
            if not np.isfinite(t).all() or (t != np.round(t)).any():
                bad = t[~np.isfinite(t) | (t != np.round(t))][0]
                raise LabelError(f"{what} holds non-integer label {float(bad)!r}; expected integer class indices "
                                 f"in [0, {n_classes})")
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise LabelError(
                f"{what} holds label {bad} outside [0, {n_classes}) (range seen: {lo}..{hi}); "
                f"there are {n_classes} classes, one per output")
        idx = t.astype(np.int64)
    elif t.ndim == 2:
        if t.shape[1] != n_classes:
            raise ShapeError(f"{what} has shape {t.shape}; one-hot labels must be (N, {n_classes})")
        if t.shape[0] == 0:
            raise ShapeError(f"{what} has shape {t.shape}: no labels; pass at least one")
        ones = t == 1
        zeros = t == 0
        rows_ok = (ones | zeros).all(axis=1) & (ones.sum(axis=1) == 1)
        if not rows_ok.all():
            r = int(np.argmin(rows_ok))
            raise LabelError(
                f"{what} row {r} is {t[r].tolist()[:12]}{'...' if n_classes > 12 else ''}, not one-hot "
                f"(exactly one 1, the rest 0); pass class indices or true one-hot rows")
        idx = ones.argmax(axis=1).astype(np.int64)
    else:
        raise ShapeError(f"{what} has shape {t.shape}; expected class indices (N,) or one-hot rows (N, {n_classes})")
    if n_rows is not None and idx.shape[0] != n_rows:
        raise ShapeError(f"x has {n_rows} rows but {what} has {idx.shape[0]} labels; they must match one to one")
    return idx


def check_param(value: np.ndarray, name: str, shape, dtype, kind: str = "parameter") -> None:
    """A value for parameter (or ``kind``) ``name``: real numbers (cast to ``dtype`` when copied),
    of ``shape``, finite."""
    if value.dtype.kind not in "fiu":
        raise DTypeError(f"{kind} {name} holds {value.dtype} values; {kind}s are real numbers "
                         f"(copied as {np.dtype(dtype).name})")
    if tuple(value.shape) != tuple(shape):
        raise ShapeError(f"{kind} {name} has shape {tuple(value.shape)}; this network expects {tuple(shape)}")
    bad = value.size - int(np.count_nonzero(np.isfinite(value)))
    if bad:
        raise NonFiniteError(f"{kind} {name} holds {bad} non-finite value(s) (NaN or inf); a network's "
                             f"{kind}s must be finite (a diverged run's? load a checkpoint from before it)")
    top = np.finfo(dtype).max
    if value.size and (value.max() > top or value.min() < -top):
        raise NonFiniteError(f"{kind} {name} holds values beyond {np.dtype(dtype).name}'s range (up to "
                             f"{max(abs(float(value.max())), abs(float(value.min()))):.3g}): copied, they would be inf")


def check_buffers(buffers, expected: dict, dtype, backend) -> dict:
    """Values for a network's running averages (``expected``: its buffers by name), checked whole:
    the same names, each of its buffer's shape, finite real numbers, no negative variance.
    Returns them as host arrays."""
    if not isinstance(buffers, dict):
        raise TypeError(f"buffers must be a dict of arrays by name (as network.buffers), not {type(buffers).__name__}")
    if set(buffers) != set(expected):
        raise ValueError(f"buffer names differ: got {sorted(buffers)}, expected {sorted(expected)}")
    host = {}
    for k, v in buffers.items():
        host[k] = a = host_view(v, backend, f"buffer {k}")
        check_param(a, k, expected[k].shape, dtype, kind="buffer")
        if k.startswith("running_var") and a.size and a.min() < 0:
            raise ValueError(f"buffer {k} holds a negative variance ({float(a.min()):.3g}); variances are >= 0")
    return host


def check_dropout_state(state, n_layers: int) -> list:
    """One [seed, calls] pair of non-negative integers per Dropout layer, as a network's
    ``dropout_state()`` gives them."""
    ok = lambda v: (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                    and 0 <= int(v) < 2**64)
    try:
        pairs = [list(p) for p in state]
    except TypeError:
        pairs = None
    if pairs is None or len(pairs) != n_layers or not all(len(p) == 2 and all(map(ok, p)) for p in pairs):
        raise ValueError(f"Dropout state {state!r} does not fit this network's {n_layers} Dropout layer(s): give "
                         f"one [seed, calls] pair of non-negative integers per layer, as dropout_state() returns")
    return [[int(seed), int(calls)] for seed, calls in pairs]


def book_alias(ours, ours_name: str, book, book_name: str, default=None):
    """fastdl's keyword or the book's spelling of it (not both)."""
    if book is not None:
        if ours is not None:
            raise TypeError(f"give {ours_name}= or the book's {book_name}=, not both")
        return book
    return default if ours is None else ours


def json_number(v, whole: bool = False) -> bool:
    """Whether ``v``, read from a JSON file, is a finite number (an integer where ``whole``; a bool
    is not one, though Python counts it as an int)."""
    return not isinstance(v, bool) and isinstance(v, int if whole else (int, float)) and math.isfinite(v)


def positive_int(value, what: str) -> int:
    """``value`` as an int, if it is a positive integer (not a bool, not a float such as 2.5)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        # 1e4 is a float: say how to write it rather than only refusing it
        whole = isinstance(value, (float, np.floating)) and value >= 1 and float(value).is_integer()
        raise ValueError(f"{what} must be a positive integer, got {value!r}"
                         + (f" (a float: write {int(value)}, or int({value!r}))" if whole else ""))
    return int(value)


def check_seed(seed, what: str = "seed"):
    """``seed`` as NumPy's generators take it: None, or an integer >= 0 (not a bool)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what}={seed!r} must be an integer >= 0, or None for a fresh random one")
    return int(seed)


def check_parts(network, optimizer) -> None:
    """A Trainer's network and optimizer are fastdl's own (anything else failed deep inside)."""
    from .networks import MultiLayerNet     # here: both modules import this one
    from .optimizers import Optimizer
    if not isinstance(network, MultiLayerNet):
        raise TypeError(f"network={network!r} is not a fastdl network; build one, e.g. fastdl.TwoLayerNet(784, 50, 10)")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer={optimizer!r} is not a fastdl optimizer; pass one such as SGD(lr=0.1), "
                        f"or fastdl.optimizers.get_optimizer('sgd', lr=0.1) to choose it by name")


def check_run_options(epochs, iterations, batch_size, sampling, sync_every, explosion, checkpoint,
                      checkpoint_every, seed=None, callbacks=()) -> None:
    """The Trainer's options, checked before any data moves (``fastdl.Trainer`` says what each
    means)."""
    check_seed(seed)
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks={callbacks!r} must be a list of functions cb(trainer, record)") from None
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks holds {cb!r}, which is not callable; give functions cb(trainer, record)")
    if (epochs is None) == (iterations is None):
        raise ValueError("give exactly one of epochs= or iterations= (e.g. iterations=10000 as in the book)")
    positive_int(batch_size, "batch_size")
    if sampling not in ("shuffle", "replacement"):
        raise ValueError(f"sampling={sampling!r}: choose 'shuffle' (a permutation per epoch) or 'replacement' (the book's)")
    positive_int(sync_every, "sync_every")
    if iterations is not None:
        positive_int(iterations, "iterations")
    elif not (isinstance(epochs, (int, float, np.number)) and math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"epochs must be a positive finite number, got {epochs!r}")
    if checkpoint is not None and os.path.isdir(checkpoint):
        raise ValueError(f"checkpoint={str(checkpoint)!r} is a folder; give a file path such as "
                         f"{os.path.join(str(checkpoint), 'checkpoint.npz')!r}")
    if not (explosion is None or (isinstance(explosion, (int, float)) and math.isfinite(explosion) and explosion > 1)):
        raise ValueError(f"explosion={explosion!r} must be a finite number above 1, or None to turn the check off")
    if checkpoint_every is not None and (checkpoint_every < 1 or checkpoint_every % sync_every):
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive multiple of sync_every={sync_every} "
                         f"(checkpoints are written only where the losses were checked finite)")
