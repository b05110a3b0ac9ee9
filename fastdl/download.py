"""Downloading MNIST: each file from the mirrors in turn, with a progress bar, a stall timeout
and an overall deadline per file, verified (``fastdl.datasets``) before it is written into place.

Mirrors: ``MIRRORS`` in order, or ``FASTDL_MNIST_MIRRORS`` (space separated). Any failure (HTTP
error, timeout, a file that takes longer than ``FASTDL_DOWNLOAD_DEADLINE`` seconds, an HTML page
served with status 200, wrong length, bad checksum) moves on to the next mirror.
"""

from __future__ import annotations

import http.client
import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from .datasets import FILES, MAX_RAW_BYTES, _keep, _verified_raw
from .errors import DatasetError, FileFormatError
from .io import atomic_write_bytes

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

TIMEOUT = 30.0                 # seconds without progress before a mirror counts as stalled (FASTDL_DOWNLOAD_TIMEOUT)
DEADLINE = 300.0               # seconds for one whole file, however it trickles (FASTDL_DOWNLOAD_DEADLINE)


def mirrors() -> list[str]:
    env = os.environ.get("FASTDL_MNIST_MIRRORS", "").split()
    urls = env or list(MIRRORS)
    return [u if u.endswith("/") else u + "/" for u in urls]


def seconds(name: str, default: float) -> float:
    """The positive number of seconds the environment variable ``name`` gives (``default`` when it
    is unset or empty); ValueError, saying why, otherwise. Read before any mirror is tried, so a
    typo is not reported as every mirror failing."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        s = float(value)
    except ValueError:
        s = math.nan
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"{name}={value!r} must be a positive number of seconds (or unset: {default:g})")
    return s


def _read_with_progress(resp, url: str, length, limit: float) -> bytes:
    """The body in 64 KiB pieces, with a progress bar on a terminal (tqdm turns itself off
    elsewhere), capped at MAX_RAW_BYTES + 1, within ``limit`` seconds."""
    from tqdm.auto import tqdm
    total = int(length) if length is not None and length.isdigit() else None
    deadline = time.monotonic() + limit
    chunks, got = [], 0
    with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=None, leave=False,
              postfix={"from": url.split("/")[2]}) as bar:
        while got <= MAX_RAW_BYTES:
            chunk = resp.read(min(1 << 16, MAX_RAW_BYTES + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            bar.update(len(chunk))
            if time.monotonic() > deadline:      # a server that trickles cannot hold us forever
                raise TimeoutError(f"not finished after {limit:g} s ({got} bytes so far; "
                                   f"FASTDL_DOWNLOAD_DEADLINE sets the limit)")
    return b"".join(chunks)


def _fetch(url: str, timeout: float, limit: float) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "fastdl (MNIST loader)"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        ctype = resp.headers.get("Content-Type", "")
        length = resp.headers.get("Content-Length")
        data = _read_with_progress(resp, url, length, limit)
    if len(data) > MAX_RAW_BYTES:
        raise FileFormatError(f"more than {MAX_RAW_BYTES} bytes served; not an MNIST file")
    if length is not None and length.isdigit() and int(length) != len(data):
        raise FileFormatError(f"got {len(data)} bytes, the server announced {length} (connection cut?)")
    if "html" in ctype.lower() or data.lstrip()[:1] == b"<":
        raise FileFormatError(f"the server sent a web page ({ctype or 'text'}), not the file")
    return data


def download(key: str, folder: Path, urls: list[str] | None = None) -> bytes:
    """Download one file, trying each mirror in order; return its verified raw IDX bytes."""
    name = FILES[key][0]
    timeout, limit = seconds("FASTDL_DOWNLOAD_TIMEOUT", TIMEOUT), seconds("FASTDL_DOWNLOAD_DEADLINE", DEADLINE)
    failures = []
    for base in urls if urls is not None else mirrors():
        url = f"{base}{name}.gz"
        try:
            data = _fetch(url, timeout, limit)
            raw = _verified_raw(data, key, "the download")
        except (urllib.error.URLError, OSError, http.client.HTTPException, FileFormatError, ValueError) as exc:
            reason = getattr(exc, "reason", None) if isinstance(exc, urllib.error.URLError) else None
            failures.append(f"{url}: {reason or exc}")
            continue
        try:
            atomic_write_bytes(folder / f"{name}.gz", data)
        except OSError as exc:
            raise DatasetError(
                f"downloaded and verified {name}, but cannot write it to {folder}: {exc}. "
                f"Pass root= (or set FASTDL_DATA) to a writable folder") from exc
        _keep(key, folder / f"{name}.gz", raw)
        return raw
    raise DatasetError(
        f"could not download {name} from any mirror:\n  " + "\n  ".join(failures) +
        f"\nCheck your connection, or download the four MNIST .gz files by hand into {folder} "
        f"(or point FASTDL_DATA at a folder holding them)")
