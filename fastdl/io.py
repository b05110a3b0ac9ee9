"""Parameter files that cannot run code: ``.npz`` read with ``allow_pickle=False`` + a JSON manifest.

Layout of a file written by :func:`save`: a standard NumPy ``.npz`` (a zip of ``.npy`` files) with
one entry per parameter (W1, b1, ...) and one entry ``__manifest__``: the UTF-8 bytes of a JSON
object stored as a uint8 array, naming the format, the architecture, the dtype and every
parameter's shape. Loading checks the zip directory and every ``.npy`` header against the manifest
*before* reading any data, so a hostile header cannot make us allocate a huge array, and object
arrays are refused.

Writes are atomic: a temporary file in the same folder, fsync, rename, fsync of the folder. A crash
at any point leaves either the old file or the new one at the final path, never a mix.
"""

from __future__ import annotations

import errno
import io as _io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import FileFormatError

FORMAT = "fastdl-params"
CHECKPOINT_FORMAT = "fastdl-checkpoint"       # the trainer's (fastdl.checkpoints)
VERSION = 1
MANIFEST = "__manifest__"
MAX_MANIFEST_BYTES = 1 << 20


_UMASK = None


def _umask() -> int:
    """The process's umask, read once: Linux reports it in /proc; elsewhere it can only be read
    by setting it, which briefly changes it for every thread, so that happens once, not per file."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status") as f:
                _UMASK = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0)
            os.umask(_UMASK)
    return _UMASK


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    if path.is_dir():           # checked first: the temporary file would go into the folder's parent
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder; give the path of a file (in that folder, say)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError) as exc:     # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write {path}: {path.parent} or a folder above it is "
                                                f"a file") from exc
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp's 0600 would hide results from the user's group
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some platforms cannot fsync a folder
        pass


def _naming(exc: OSError, path: Path) -> OSError:
    """The same kind of error, naming the file asked for, not the temporary one beside it."""
    return type(exc)(exc.errno, f"cannot write {path} ({exc.strerror or exc})")


def write_arrays(path, arrays: dict, manifest: dict) -> None:
    """Atomically write ``arrays`` (host NumPy) and ``manifest`` (JSON-able) as one ``.npz``."""
    if MANIFEST in arrays:
        raise ValueError(f"{MANIFEST!r} is reserved")
    payload = dict(arrays)
    payload[MANIFEST] = np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), dtype=np.uint8)
    buf = _io.BytesIO()
    np.savez(buf, **payload)
    atomic_write_bytes(path, buf.getvalue())


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
        except (ValueError, EOFError, SyntaxError) as exc:
            raise FileFormatError(f"{where}: entry {info.filename!r} has a malformed .npy header ({exc})") from exc
    if dtype.hasobject:
        raise FileFormatError(f"{where}: entry {info.filename!r} holds Python objects (dtype {dtype}); "
                              f"refused, since loading it could run code")
    count = 1
    for d in shape:
        count *= d
    if offset + count * dtype.itemsize != info.file_size:
        raise FileFormatError(f"{where}: entry {info.filename!r} declares shape {shape} ({dtype}) "
                              f"but holds {info.file_size - offset} bytes of data")
    return shape, dtype


def named_file(path, usual: str) -> Path:
    """``path``, a file that exists; FileNotFoundError saying which of a run's files to give when
    it names a folder (``usual``: the one fastdl train writes there), or nothing."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder; give the file inside it "
                                f"(e.g. {path / usual}, which fastdl train writes)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def read_arrays(path, expected_format: str | tuple = FORMAT) -> tuple[dict, dict]:
    """(arrays, manifest) from a file written by :func:`write_arrays` in ``expected_format`` (or
    one of several); never unpickles."""
    kind = {CHECKPOINT_FORMAT: "checkpoint", FORMAT: "parameter"}.get(expected_format, "parameter or checkpoint")
    path = named_file(path, "checkpoint.npz" if kind == "checkpoint" else "params.npz")
    where = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise FileFormatError(f"{where}: not a fastdl {kind} file (not a valid .npz/zip: {exc})") from exc
    try:
        with zf:
            return _read_zip(zf, path, where, expected_format)
    except FileFormatError:
        raise
    except (ValueError, OSError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RuntimeError,
            NotImplementedError, EOFError, zipfile.BadZipFile) as exc:
        # Damaged zip structures surface as any of these, from zipfile or from NumPy's reader.
        raise FileFormatError(f"{where}: damaged file ({type(exc).__name__}: {exc})") from exc


def _read_zip(zf, path, where, expected_format):
    infos = {i.filename: i for i in zf.infolist()}
    if f"{MANIFEST}.npy" not in infos:
        raise FileFormatError(f"{where}: no {MANIFEST} entry; not written by fastdl.save "
                              f"(a plain .npz can be loaded with numpy.load(..., allow_pickle=False))")
    headers = {}
    for fname, info in infos.items():
        if not fname.endswith(".npy") or "/" in fname:
            raise FileFormatError(f"{where}: unexpected entry {fname!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            # fastdl.save stores; a compressed entry could inflate far beyond the file's size
            raise FileFormatError(f"{where}: entry {fname!r} is compressed; fastdl files store their arrays "
                                  f"uncompressed, so this one was not written by fastdl.save")
        headers[fname[:-4]] = _npy_header(zf, info, where)
    mshape, mdtype = headers[MANIFEST]
    if mdtype != np.uint8 or len(mshape) != 1 or mshape[0] > MAX_MANIFEST_BYTES:
        raise FileFormatError(f"{where}: manifest entry is not a small byte string")
    with np.load(path, allow_pickle=False) as npz:
        manifest = json.loads(npz[MANIFEST].tobytes().decode())
        formats = expected_format if isinstance(expected_format, tuple) else (expected_format,)
        if not isinstance(manifest, dict) or manifest.get("format") not in formats:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise FileFormatError(f"{where}: manifest names format {found!r}, expected "
                                  f"{' or '.join(map(repr, formats))}")
        if not isinstance(manifest.get("version", 0), int) or manifest.get("version", 0) > VERSION:
            raise FileFormatError(f"{where}: format version {manifest.get('version')!r} is not one this fastdl "
                                  f"reads (<= {VERSION}); upgrade fastdl")
        declared = manifest.get("arrays")
        stored = set(headers) - {MANIFEST}
        if not isinstance(declared, dict) or set(declared) != stored:
            listed = sorted(declared) if isinstance(declared, dict) else declared
            raise FileFormatError(f"{where}: manifest lists arrays {listed}, file holds {sorted(stored)}")
        arrays = {}
        for key, spec in declared.items():
            shape, dtype = headers[key]
            if not isinstance(spec, dict) or list(shape) != list(spec.get("shape", [])) or dtype.name != spec.get("dtype"):
                raise FileFormatError(f"{where}: {key} is {dtype.name}{list(shape)}, manifest says {spec!r}")
            arrays[key] = npz[key]
    return arrays, manifest


# -- networks --------------------------------------------------------------------------------------

def save(network, path) -> Path:
    """Save a network's architecture and parameters to ``path`` (``.npz``), atomically."""
    path = Path(path)
    arrays = network.params_numpy()
    arrays.update({f"buffer.{k}": v for k, v in network.buffers_numpy().items()})   # Batch Norm's averages
    manifest = {
        "format": FORMAT, "version": VERSION,
        "architecture": network.config(),
        "dtype": network.dtype.name,
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in arrays.items()},
    }
    write_arrays(path, arrays, manifest)
    return path


def _check_architecture(path, arch, arrays) -> None:
    """The declared architecture must match the stored arrays *before* anything is allocated for
    it: a file cannot make us build a network bigger than the data it holds."""
    try:
        sizes = [int(arch["input_size"]), *[int(h) for h in arch["hidden_sizes"]], int(arch["output_size"])]
    except (TypeError, KeyError, ValueError) as exc:
        raise FileFormatError(f"{path}: manifest architecture {arch!r} is malformed ({exc})") from exc
    expected = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        expected[f"W{i}"], expected[f"b{i}"] = (a, b), (b,)
        if arch.get("batch_norm") and i < len(sizes) - 1:
            for name in ("gamma", "beta", "buffer.running_mean", "buffer.running_var"):
                expected[f"{name}{i}"] = (b,)
    got = {k: tuple(v.shape) for k, v in arrays.items()}
    if got != expected:
        raise FileFormatError(f"{path}: arrays {got} do not fit the declared architecture {sizes} (expected {expected})")


def load(path, backend=None, dtype=None):
    """A network rebuilt from a file written by :func:`save`, on ``backend`` (any backend); or
    the network as a checkpoint holds it (a run stopped before it wrote its params.npz)."""
    from .backends import get_backend
    from .networks import network_from_config
    from .validate import as_float_dtype
    # the caller's arguments first: a mistake there is not the file's (it was blamed on the file)
    backend = get_backend(backend)
    dtype = None if dtype is None else as_float_dtype(dtype)
    arrays, manifest = read_arrays(path, (FORMAT, CHECKPOINT_FORMAT))
    if manifest["format"] == CHECKPOINT_FORMAT:         # its network's arrays, named as a params file names them
        arrays = {k[len("param."):] if k.startswith("param.") else k: v for k, v in arrays.items()
                  if k.startswith(("param.", "buffer."))}
    arch = manifest.get("architecture")
    _check_architecture(path, arch, arrays)
    try:
        net = network_from_config(arch, dtype=dtype or manifest["dtype"], backend=backend, seed=0)
    except (TypeError, KeyError, ValueError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(f"{path}: manifest architecture {arch!r} is not usable ({exc})") from exc
    bad = [k for k, v in arrays.items() if v.dtype.kind != "f" or not np.isfinite(v).all()]
    if bad:
        raise FileFormatError(f"{path}: parameters {bad} are not finite floats; the file is damaged")
    try:
        net.set_params({k: v for k, v in arrays.items() if not k.startswith("buffer.")})
        net.set_buffers({k[len("buffer."):]: v for k, v in arrays.items() if k.startswith("buffer.")})
    except ValueError as exc:
        raise FileFormatError(f"{path}: parameters do not fit the declared architecture ({exc})") from exc
    return net
