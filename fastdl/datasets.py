"""MNIST: find, download, verify and parse the original IDX files. No pickle anywhere.

Where the files are looked for (the first that is given wins):
  1. the ``root=`` argument;
  2. the environment variable ``FASTDL_DATA``;
  3. the user cache folder, ``$XDG_CACHE_HOME/fastdl/mnist`` on Linux (``platformdirs`` picks the
     platform's equivalent elsewhere). Never the package folder.

A folder holds the four files under their original names, gzip-compressed (``*.gz``) or not.
Every file is checked on every load: the SHA-256 of the *decompressed* bytes must match the
published content (so a re-compressed copy is as good as the original), and the IDX header is
checked strictly (magic, dimensions, exact length) before a single element is read.

A verified file is also kept decompressed in a cache (``FASTDL_MNIST_CACHE``, default the user
cache's ``fastdl/mnist-verified``; ``0`` turns it off), tied to the size and time of the file it
came from: the next load reads it instead of inflating the ``.gz`` (a fraction of the time; see
``bench/test_bench_data.py``), still checking its SHA-256, and a damaged or stale entry is
rebuilt from the original. Plain bytes and JSON: nothing in it can run code.

Missing files are downloaded (``fastdl.download``: the mirrors in turn, any failure moving on to
the next). A download is written to a temporary file beside its
final path and renamed into place only once verified, so a crash never leaves a partial file there.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError, FileFormatError
from .images import ByteImages
from .io import atomic_write_bytes
from .validate import as_float_dtype

# SHA-256 of the decompressed IDX bytes, and the exact shape each file must declare.
FILES = {
    "train_images": ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", (60000, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", (60000,)),
    "test_images": ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", (10000, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", (10000,)),
}

MAX_RAW_BYTES = 64 << 20       # the largest MNIST file is 47 MB; refuse anything that inflates further
IDX_UBYTE = 0x08


def default_root() -> Path:
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("fastdl", appauthor=False)) / "mnist"


def resolve_root(root=None) -> tuple[Path, str]:
    """(folder, where that choice came from)."""
    if root is not None:
        return Path(root).expanduser(), f"root={str(root)!r}"
    env = os.environ.get("FASTDL_DATA", "").strip()
    if env:
        return Path(env).expanduser(), f"FASTDL_DATA={env!r}"
    return default_root(), "the user cache folder"


def _named_folder(folder: Path, source: str) -> None:
    """A folder the user named must exist: a typo is not a place to download 50 MB into (only the
    default cache folder is created on demand)."""
    if source != "the user cache folder" and not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DatasetError(f"the MNIST folder {folder} (from {source}) {what}; create it (the files are then "
                           f"downloaded into it) or name the folder that holds the four MNIST .gz files")


# -- bytes -----------------------------------------------------------------------------------------

def _inflate(data: bytes, what: str) -> bytes:
    """gunzip with a size cap, so a hostile file cannot make us allocate gigabytes."""
    if data[:2] != b"\x1f\x8b":
        return data  # not gzip: taken as raw IDX, and checked as such
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_RAW_BYTES + 1)
    except zlib.error as exc:
        raise FileFormatError(f"{what}: corrupt gzip data ({exc})") from exc
    if len(out) > MAX_RAW_BYTES or d.unconsumed_tail:
        raise FileFormatError(f"{what}: inflates to more than {MAX_RAW_BYTES} bytes; not an MNIST file")
    if not d.eof:
        raise FileFormatError(f"{what}: gzip stream is truncated")
    return out


def parse_idx(raw: bytes, what: str = "IDX data", expected_shape: tuple | None = None) -> np.ndarray:
    """A uint8 IDX file as an array (a view of ``raw``), after checking the header strictly.

    Layout: two zero bytes, a type byte (0x08 = unsigned byte), a rank byte, then one big-endian
    uint32 per dimension, then exactly prod(dims) bytes.
    """
    if len(raw) < 4:
        raise FileFormatError(f"{what}: {len(raw)} bytes is too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise FileFormatError(f"{what}: bad magic {raw[:4].hex()} (expected 0000 08 0N); not an IDX file")
    if raw[2] != IDX_UBYTE:
        raise FileFormatError(f"{what}: element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    if not 1 <= ndim <= 4:
        raise FileFormatError(f"{what}: rank {ndim} is not 1-4")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FileFormatError(f"{what}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if expected_shape is not None and dims != tuple(expected_shape):
        raise FileFormatError(f"{what}: header declares shape {dims}, expected {tuple(expected_shape)}")
    count = 1
    for d in dims:
        count *= d
    if len(raw) - header != count:
        raise FileFormatError(
            f"{what}: header declares shape {dims} = {count} bytes of data, file has {len(raw) - header}")
    # frombuffer makes a view: nothing is allocated on the header's say-so.
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=header).reshape(dims)


def _verified_raw(data: bytes, key: str, what: str) -> bytes:
    name, sha, shape = FILES[key]
    raw = _inflate(data, what)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha:
        # Parse first: a header error explains more than a checksum mismatch.
        parse_idx(raw, what, shape)
        raise FileFormatError(f"{what}: SHA-256 of the content is {digest}, expected {sha} (corrupt or not MNIST)")
    return raw


# -- loading ---------------------------------------------------------------------------------------

def _cache_entry(key: str) -> Path | None:
    setting = os.environ.get("FASTDL_MNIST_CACHE", "").strip()
    if setting.lower() in ("0", "off", "no", "false"):
        return None
    folder = Path(setting).expanduser() if setting else default_root().parent / "mnist-verified"
    name, sha, _ = FILES[key]
    return folder / f"{name}-{sha[:16]}"


def _stamp(src: Path) -> dict:
    st = src.stat()
    return {"source": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _cached(key: str, src: Path) -> bytes | None:
    """The decompressed bytes of ``src`` from the cache, if present, made from ``src`` as it is
    now, and intact (their SHA-256 is the published one); else None (a bad entry is removed)."""
    entry = _cache_entry(key)
    if entry is None or not entry.is_file():
        return None
    try:
        if json.loads(entry.with_suffix(".json").read_text()) != _stamp(src):
            return None
        raw = entry.read_bytes()
    except (OSError, ValueError):
        return None
    if hashlib.sha256(raw).hexdigest() != FILES[key][1]:
        entry.unlink(missing_ok=True)              # damaged: rebuilt from the original below
        return None
    return raw


def _keep(key: str, src: Path, raw: bytes) -> None:
    """Store verified bytes in the cache; best effort (a read-only cache only costs speed)."""
    entry = _cache_entry(key)
    if entry is None:
        return
    try:
        atomic_write_bytes(entry, raw)
        atomic_write_bytes(entry.with_suffix(".json"), json.dumps(_stamp(src)).encode())
    except OSError:
        pass


def _raw_size(key: str) -> int:
    shape = FILES[key][2]
    return 4 + 4 * len(shape) + int(np.prod(shape))


def _read_checked(candidate: Path, key: str) -> bytes:
    """A local file's bytes, its size checked before reading: a .gz no larger than the cap, an
    uncompressed file exactly the size its IDX header must declare."""
    try:
        size = candidate.stat().st_size
        if candidate.suffix == ".gz" and size > MAX_RAW_BYTES:
            raise FileFormatError(f"{candidate}: {size} bytes, more than any MNIST file; not an MNIST file")
        if candidate.suffix != ".gz" and size != _raw_size(key):
            raise FileFormatError(f"{candidate}: {size} bytes; the uncompressed MNIST file is {_raw_size(key)}")
        return candidate.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {candidate}: {exc.strerror or exc}; check its permissions") from None


def _read_local(key: str, folder: Path) -> bytes | None:
    name = FILES[key][0]
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            raw = _cached(key, candidate)
            if raw is not None:
                return raw
            try:
                raw = _verified_raw(_read_checked(candidate, key), key, str(candidate))
                _keep(key, candidate, raw)
                return raw
            except FileFormatError as exc:
                raise FileFormatError(f"{exc}. Delete {candidate} (it is downloaded again) or replace it with "
                                      f"the original file") from exc
    return None


def load_raw(key: str, root=None, download_missing: bool = True) -> np.ndarray:
    """The verified uint8 array of one MNIST file (``key`` in ``FILES``)."""
    folder, source = resolve_root(root)
    _named_folder(folder, source)
    raw = _read_local(key, folder)
    if raw is None:
        name = FILES[key][0]
        if not download_missing:
            raise DatasetError(
                f"MNIST file {name}(.gz) not found in {folder} (from {source}) and download=False. "
                f"Put the four MNIST .gz files there, point FASTDL_DATA at a folder that holds them, "
                f"or allow download=True")
        from .download import download
        print(f"downloading {name} into {folder}", file=sys.stderr, flush=True)
        raw = download(key, folder)
    return parse_idx(raw, f"{FILES[key][0]} in {folder}", FILES[key][2])


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot: bool | None = None,
               dtype="float32", root=None, download: bool = True, *, one_hot_label: bool | None = None,
               as_bytes: bool = False):
    """``((x_train, t_train), (x_test, t_test))`` as NumPy arrays, like the book's loader.

    normalize: pixels scaled to [0, 1] (else 0-255 in ``dtype``). flatten: images as (N, 784)
    (else (N, 1, 28, 28)). one_hot (the book's ``one_hot_label``): labels as (N, 10) rows of
    ``dtype`` (else uint8 indices). ``dtype="uint8"`` with ``normalize=False`` returns the raw
    pixels without conversion. ``as_bytes=True``: images as ``fastdl.ByteImages`` standing for
    the same floats, kept as bytes (a quarter of the memory) until a backend reads them.
    """
    if one_hot is not None and one_hot_label is not None and bool(one_hot) != bool(one_hot_label):
        raise TypeError("give one_hot= or the book's one_hot_label=, not both")
    one_hot = bool(one_hot if one_hot is not None else one_hot_label)
    dt = np.dtype(dtype) if str(dtype) == "uint8" else as_float_dtype(dtype)
    if dt == np.uint8 and normalize:
        raise ValueError("dtype='uint8' keeps raw pixels; pass normalize=False with it")
    if as_bytes and (dt == np.uint8 or not flatten):
        given = " and ".join(w for w, on in (("dtype='uint8'", dt == np.uint8), ("flatten=False", not flatten)) if on)
        raise ValueError(f"as_bytes=True gives flat images decoded to a float dtype, not {given}; drop "
                         f"{'them' if ' and ' in given else 'it'}, or drop as_bytes")
    out = []
    for split in ("train", "test"):
        images = load_raw(f"{split}_images", root, download)
        labels = load_raw(f"{split}_labels", root, download)
        if images.shape[0] != labels.shape[0]:
            raise FileFormatError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
        if as_bytes:
            x = ByteImages(images.reshape(len(images), -1), 255 if normalize else 1, dt)
        else:
            # one pass, a fresh writable array: the same k / 255 in dt as converting, then dividing
            x = np.divide(images, dt.type(255), dtype=dt) if normalize else images.astype(dt)
            x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, 28, 28)
        if one_hot:
            t = np.zeros((len(labels), 10), dtype=dt if dt != np.uint8 else np.float32)
            t[np.arange(len(labels)), labels] = 1
        else:
            t = labels.copy()
        out.append((x, t))
    return tuple(out)
