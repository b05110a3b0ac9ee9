"""The MNIST loader, including its real download code against a server on 127.0.0.1."""

import gzip
import json

import numpy as np
import pytest

from fastdl import datasets
from fastdl.errors import DatasetError, FileFormatError
from mnist_server import idx_bytes, leftovers, mirrors_env
from reliability import record


def test_good_download_then_cached(tiny_mnist, server, monkeypatch, tmp_path):
    server.serve("a", tiny_mnist)
    mirrors_env(monkeypatch, server, "a")
    (x, t), (xt, tt) = datasets.load_mnist(root=tmp_path)
    assert x.shape == (6, 784) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert xt.shape == (4, 784) and t.shape == (6,)
    assert leftovers(tmp_path) == sorted(f"{n}.gz" for n in tiny_mnist)
    hits = len(server.hits)
    datasets.load_mnist(root=tmp_path)              # second load: from disk, no requests
    assert len(server.hits) == hits


def test_a_verified_download_that_cannot_be_written_says_where_to_point_instead(tiny_mnist, server, monkeypatch,
                                                                               tmp_path):
    """A full disk (or a folder that refuses writes) after a good download: one clear error naming
    the folder and the way out, not an OSError from deep inside; nothing half-written left."""
    from fastdl import download

    def full_disk(path, data):
        raise OSError(28, "No space left on device")
    server.serve("a", tiny_mnist)
    mirrors_env(monkeypatch, server, "a")
    monkeypatch.setattr(download, "atomic_write_bytes", full_disk)
    with pytest.raises(DatasetError, match=r"downloaded and verified .* but cannot write it to .*No space left.*"
                                           r"FASTDL_DATA"):
        datasets.load_mnist(root=tmp_path)
    assert leftovers(tmp_path) == []


def test_bit_flipped_file_falls_back_to_next_mirror(tiny_mnist, server, monkeypatch, tmp_path):
    def flip(name, body):
        raw = bytearray(gzip.decompress(body))
        raw[-1] ^= 0x01
        return 200, "application/gzip", gzip.compress(bytes(raw))
    server.serve("bad", tiny_mnist, flip)
    server.serve("good", tiny_mnist)
    mirrors_env(monkeypatch, server, "bad", "good")
    datasets.load_mnist(root=tmp_path)
    assert any(h.startswith("/bad/") for h in server.hits) and any(h.startswith("/good/") for h in server.hits)


@pytest.mark.parametrize("fault", ["bitflip", "truncated", "html", "403"])
def test_each_fault_alone_fails_clearly_and_leaves_no_file(tiny_mnist, server, monkeypatch, tmp_path, fault):
    def broken(name, body):
        if fault == "bitflip":
            raw = bytearray(gzip.decompress(body)); raw[-1] ^= 0x40
            return 200, "application/gzip", gzip.compress(bytes(raw))
        if fault == "truncated":
            return 200, "application/gzip", body[: len(body) // 2]
        if fault == "html":
            return 200, "text/html", b"<!DOCTYPE html><html><body>Please log in</body></html>"
        return 403, "text/plain", b"forbidden"
    server.serve("m", tiny_mnist, broken)
    mirrors_env(monkeypatch, server, "m")
    with pytest.raises(DatasetError, match="could not download") as err:
        datasets.load_mnist(root=tmp_path)
    left = leftovers(tmp_path)
    record("Downloads under faults", {"bitflip": "one bit flipped", "truncated": "truncated file",
                                      "html": "HTML page with status 200", "403": "HTTP 403"}[fault], "-",
           "DatasetError, no partial file", f"DatasetError; files left {len(left)}",
           f"{server.url}/m/" in str(err.value) and left == [], files_lost=len(left))
    assert f"{server.url}/m/" in str(err.value)
    assert left == []                                # nothing partial, not even a temp file


def test_403_on_first_mirror_falls_back_to_second(tiny_mnist, server, monkeypatch, tmp_path):
    server.serve("first", tiny_mnist, lambda n, b: (403, "text/plain", b"forbidden"))
    server.serve("second", tiny_mnist)
    mirrors_env(monkeypatch, server, "first", "second")
    (x, _), _ = datasets.load_mnist(root=tmp_path)
    assert x.shape == (6, 784)


def test_html_with_status_200_is_not_taken_for_the_file(tiny_mnist, server, monkeypatch, tmp_path):
    server.serve("portal", tiny_mnist, lambda n, b: (200, "text/html; charset=utf-8", b"<html>captive portal</html>"))
    server.serve("real", tiny_mnist)
    mirrors_env(monkeypatch, server, "portal", "real")
    datasets.load_mnist(root=tmp_path)
    assert all(p.read_bytes()[:2] == b"\x1f\x8b" for p in tmp_path.iterdir())


def test_offline_without_files_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError) as err:
        datasets.load_mnist(download=False)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "FASTDL_DATA" in msg


def test_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    assert datasets.resolve_root(tmp_path / "arg")[0] == tmp_path / "arg"
    assert datasets.resolve_root(None)[0] == tmp_path / "env"
    monkeypatch.delenv("FASTDL_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = datasets.resolve_root(None)[0]
    assert root == tmp_path / "cache" / "fastdl" / "mnist"
    assert "site-packages" not in str(root)


def test_corrupt_local_file_is_refused(tiny_mnist, tmp_path):
    for name, body in tiny_mnist.items():
        (tmp_path / f"{name}.gz").write_bytes(body)
    name = next(iter(tiny_mnist))
    raw = bytearray(gzip.decompress(tiny_mnist[name])); raw[-5] ^= 1
    (tmp_path / f"{name}.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(FileFormatError, match="SHA-256"):
        datasets.load_mnist(root=tmp_path, download=False)


def test_idx_header_is_checked_strictly():
    good = idx_bytes(np.zeros((2, 3), np.uint8))
    assert datasets.parse_idx(good).shape == (2, 3)
    with pytest.raises(FileFormatError, match="magic"):
        datasets.parse_idx(b"\x01" + good[1:])
    with pytest.raises(FileFormatError, match="unsigned byte"):
        datasets.parse_idx(good[:2] + b"\x0d" + good[3:])
    with pytest.raises(FileFormatError, match="holds|has"):
        datasets.parse_idx(good[:-1])
    with pytest.raises(FileFormatError):
        datasets.parse_idx(good + b"\x00")
    huge = bytes([0, 0, 8, 2]) + (2**31).to_bytes(4, "big") * 2    # claims 2^62 bytes
    with pytest.raises(FileFormatError):
        datasets.parse_idx(huge)
    with pytest.raises(FileFormatError, match="expected"):
        datasets.parse_idx(good, expected_shape=(3, 2))


def test_real_mnist_download_over_loopback(mnist_root, server, monkeypatch, tmp_path):
    """The real files through the real download path, checked against the published checksums."""
    files = {name: (mnist_root / f"{name}.gz").read_bytes() for name, _, _ in datasets.FILES.values()
             if (mnist_root / f"{name}.gz").is_file()}
    if len(files) < 4:
        pytest.skip("the MNIST folder holds uncompressed files only")
    server.serve("mnist", files)
    mirrors_env(monkeypatch, server, "mnist")
    (x, t), (xt, tt) = datasets.load_mnist(root=tmp_path, one_hot=True)
    assert x.shape == (60000, 784) and xt.shape == (10000, 784) and t.shape == (60000, 10)
    assert (t.sum(axis=1) == 1).all() and x.dtype == np.float32


def test_real_mnist_shapes_and_options(mnist_root):
    (x, t), (xt, tt) = datasets.load_mnist(root=mnist_root, flatten=False, normalize=False, dtype="uint8", download=False)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    assert t.dtype == np.uint8 and set(np.unique(t)) == set(range(10))


def test_second_load_reads_the_verified_cache_and_a_damaged_one_is_rebuilt(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDL_MNIST_CACHE", str(tmp_path / "cache"))
    for name, body in tiny_mnist.items():
        (tmp_path / f"{name}.gz").write_bytes(body)
    first = datasets.load_mnist(root=tmp_path, download=False)
    inflated = []
    real = datasets._inflate
    monkeypatch.setattr(datasets, "_inflate", lambda data, what: inflated.append(what) or real(data, what))
    second = datasets.load_mnist(root=tmp_path, download=False)
    assert inflated == []                                       # nothing decompressed: all from the cache
    for a, b in zip(first, second):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    entry = datasets._cache_entry("train_images")
    damaged = bytearray(entry.read_bytes()); damaged[-1] ^= 0xFF
    entry.write_bytes(bytes(damaged))
    third = datasets.load_mnist(root=tmp_path, download=False)
    np.testing.assert_array_equal(third[0][0], first[0][0])
    assert len(inflated) == 1 and entry.read_bytes() != bytes(damaged)     # rebuilt from the original


def test_a_replaced_original_is_not_hidden_by_the_cache(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDL_MNIST_CACHE", str(tmp_path / "cache"))
    for name, body in tiny_mnist.items():
        (tmp_path / f"{name}.gz").write_bytes(body)
    datasets.load_mnist(root=tmp_path, download=False)
    name = next(iter(tiny_mnist))
    raw = bytearray(gzip.decompress(tiny_mnist[name])); raw[-5] ^= 1
    (tmp_path / f"{name}.gz").write_bytes(gzip.compress(bytes(raw)) + b"")
    with pytest.raises(FileFormatError, match="Delete"):
        datasets.load_mnist(root=tmp_path, download=False)
    monkeypatch.setenv("FASTDL_MNIST_CACHE", "0")
    assert datasets._cache_entry("train_images") is None


def test_a_cache_that_is_off_unwritable_or_unreadable_only_costs_speed(tiny_mnist, tmp_path, monkeypatch):
    """The verified cache is best effort: turned off it writes nothing; where it cannot be
    written (its folder's place taken by a file) the load still succeeds; an entry whose stamp
    is missing or garbled is not trusted, and is made again."""
    for name, body in tiny_mnist.items():
        (tmp_path / f"{name}.gz").write_bytes(body)
    want = datasets.load_mnist(root=tmp_path, download=False, as_bytes=True)

    def same(got):
        for a, b in zip(want, got):
            for u, v in zip(a, b):
                np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    monkeypatch.setenv("FASTDL_MNIST_CACHE", "0")
    before = sorted(p.name for p in tmp_path.iterdir())
    same(datasets.load_mnist(root=tmp_path, download=False, as_bytes=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"")
    monkeypatch.setenv("FASTDL_MNIST_CACHE", str(blocked))
    same(datasets.load_mnist(root=tmp_path, download=False, as_bytes=True))
    assert blocked.is_file() and blocked.read_bytes() == b""

    monkeypatch.setenv("FASTDL_MNIST_CACHE", str(tmp_path / "cache"))
    datasets.load_mnist(root=tmp_path, download=False)
    entry = datasets._cache_entry("train_images")
    inflated = []
    real = datasets._inflate
    monkeypatch.setattr(datasets, "_inflate", lambda data, what: inflated.append(what) or real(data, what))
    for stamp in (None, b"{not json"):
        if stamp is None:
            entry.with_suffix(".json").unlink()
        else:
            entry.with_suffix(".json").write_bytes(stamp)
        inflated.clear()
        same(datasets.load_mnist(root=tmp_path, download=False, as_bytes=True))
        assert len(inflated) == 1                      # that file from its original, the others cached
        assert json.loads(entry.with_suffix(".json").read_text())["size"] > 0     # and its stamp rewritten


def test_oversized_local_files_are_refused_before_reading(tiny_mnist, tmp_path):
    name, key = datasets.FILES["train_images"][0], "train_images"
    (tmp_path / name).write_bytes(bytes(datasets._raw_size(key) + 1))
    with pytest.raises(FileFormatError, match="bytes; the uncompressed MNIST file is"):
        datasets.load_mnist(root=tmp_path, download=False)


def test_an_oversized_gz_is_refused_before_reading(tmp_path):
    """A .gz larger than any MNIST file (a sparse file here: nothing is written) is refused by its
    size alone, before a byte of it is read or inflated."""
    with open(tmp_path / f"{datasets.FILES['train_images'][0]}.gz", "wb") as f:
        f.truncate(datasets.MAX_RAW_BYTES + 1)
    with pytest.raises(FileFormatError, match="more than any MNIST file; not an MNIST file"):
        datasets.load_mnist(root=tmp_path, download=False)


def test_missing_files_with_download_off_say_what_to_do(tmp_path):
    with pytest.raises(DatasetError) as err:
        datasets.load_mnist(root=tmp_path, download=False)        # the folder exists, empty
    msg = str(err.value)
    assert "not found in" in msg and str(tmp_path) in msg and "download=True" in msg and "FASTDL_DATA" in msg


@pytest.mark.parametrize("kw,exc_type,words", [
    (dict(one_hot=True, one_hot_label=False), TypeError, "not both"),
    (dict(dtype="uint8"), ValueError, "pass normalize=False with it"),
    (dict(dtype="int32"), TypeError, "dtype int32 is not supported"),
    (dict(dtype=object()), TypeError, "is not a dtype"),
    (dict(as_bytes=True, flatten=False), ValueError, "a float dtype, not flatten=False; drop it, or drop as_bytes"),
    (dict(as_bytes=True, dtype="uint8", normalize=False, flatten=False), ValueError,
     "not dtype='uint8' and flatten=False; drop them, or drop as_bytes"),     # it named dtype='uint8' when not given
])
def test_contradictory_or_bad_options_are_refused_before_any_file_is_read(tmp_path, kw, exc_type, words):
    with pytest.raises(exc_type, match=words):
        datasets.load_mnist(root=tmp_path / "absent", download=False, **kw)
