"""MNIST's real download code under network faults, against a server on 127.0.0.1: each fails
with one clear error and leaves no partial file, and a later good download still works."""

import pytest

from fastdl import datasets
from fastdl.errors import DatasetError
from mnist_server import leftovers, mirrors_env
from reliability import record


def _reset_midway(body):
    def handler(h):
        import socket
        import struct
        h.send_response(200)
        h.send_header("Content-Type", "application/gzip")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[: len(body) // 2])
        h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()                          # RST: connection reset by peer
    return handler


def _stall(body):
    def handler(h):
        import time
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[:10])
        h.wfile.flush()
        time.sleep(2.0)                               # bounded: the client gives up after 0.3 s
    return handler


def _short(body):
    def handler(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body) + 1000))
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True
    return handler


FAULTS = {"connection reset mid-file": _reset_midway, "stalled server (timeout)": _stall,
          "wrong length (short body)": _short}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_download_faults_fail_clearly_then_a_good_download_succeeds(tiny_mnist, server, monkeypatch, tmp_path, fault):
    monkeypatch.setenv("FASTDL_DOWNLOAD_TIMEOUT", "0.3")
    for name, body in tiny_mnist.items():
        server.routes[f"/bad/{name}.gz"] = FAULTS[fault](body)
    mirrors_env(monkeypatch, server, "bad")
    with pytest.raises(DatasetError, match="could not download") as err:
        datasets.load_mnist(root=tmp_path)
    left = leftovers(tmp_path)
    server.serve("good", tiny_mnist)
    mirrors_env(monkeypatch, server, "bad", "good")
    (x, _), _ = datasets.load_mnist(root=tmp_path)
    ok = left == [] and x.shape == (6, 784)
    record("Downloads under faults", fault, "-", "DatasetError, no partial file; a later download works",
           f"DatasetError; files left {len(left)}; retry {'succeeded' if x.shape == (6, 784) else 'failed'}", ok,
           files_lost=len(left))
    assert left == [], left
    assert "could not download" in str(err.value)


def test_all_mirrors_failing_names_each_and_says_what_next(tiny_mnist, server, monkeypatch, tmp_path):
    server.serve("a", tiny_mnist, lambda n, b: (500, "text/plain", b"oops"))
    server.serve("b", tiny_mnist, lambda n, b: (200, "text/html", b"<html>maintenance</html>"))
    mirrors_env(monkeypatch, server, "a", "b")
    with pytest.raises(DatasetError) as err:
        datasets.load_mnist(root=tmp_path)
    msg = str(err.value)
    ok = f"{server.url}/a/" in msg and f"{server.url}/b/" in msg and "by hand" in msg and leftovers(tmp_path) == []
    record("Downloads under faults", "all mirrors failing (HTTP 500, HTML page)", "-", "DatasetError naming each mirror",
           "DatasetError" + (" naming both mirrors" if ok else ""), ok, files_lost=len(leftovers(tmp_path)))
    assert ok, msg


def test_a_trickling_server_cannot_hold_a_download_forever(tiny_mnist, server, monkeypatch, tmp_path):
    """An overall deadline per file (FASTDL_DOWNLOAD_DEADLINE), then the next mirror."""
    import time

    def trickle(name, body):
        def handler(req):
            req.send_response(200)
            req.send_header("Content-Type", "application/gzip")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            for i in range(0, len(body), 64):
                req.wfile.write(body[i:i + 64])
                req.wfile.flush()
                time.sleep(0.05)
        return handler
    server.serve("slow", tiny_mnist, trickle)
    server.serve("good", tiny_mnist)
    mirrors_env(monkeypatch, server, "slow", "good")
    monkeypatch.setenv("FASTDL_DOWNLOAD_DEADLINE", "0.3")
    t0 = time.monotonic()
    (x, _), _ = datasets.load_mnist(root=tmp_path)
    assert x.shape == (6, 784) and time.monotonic() - t0 < 20
    assert any(h.startswith("/good/") for h in server.hits)


def test_a_body_larger_than_any_mnist_file_is_cut_off_and_refused(tiny_mnist, server, monkeypatch, tmp_path):
    """A server that sends more than the largest MNIST file (a mirror gone wrong, or hostile): the
    client stops reading past the cap, keeps nothing, and goes to the next mirror. The cap is
    lowered here so that a small body crosses it."""
    import fastdl.download as download
    monkeypatch.setattr(download, "MAX_RAW_BYTES", 20_000)

    def endless(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/gzip")
        h.end_headers()                               # no length: it streams
        try:
            for _ in range(256):
                h.wfile.write(b"\0" * 1024)
        except OSError:                               # the client hung up
            pass
        h.close_connection = True
    for name in tiny_mnist:
        server.routes[f"/big/{name}.gz"] = endless
    server.serve("good", tiny_mnist)
    mirrors_env(monkeypatch, server, "big", "good")
    (x, _), _ = datasets.load_mnist(root=tmp_path)    # the next mirror serves the real files
    assert x.shape == (6, 784) and sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.gz" for n in tiny_mnist)
    mirrors_env(monkeypatch, server, "big")
    (tmp_path / "again").mkdir()
    with pytest.raises(DatasetError) as err:
        datasets.load_mnist(root=tmp_path / "again")
    assert "more than 20000 bytes served; not an MNIST file" in str(err.value)
    assert leftovers(tmp_path / "again") == []


@pytest.mark.parametrize("name", ["FASTDL_DOWNLOAD_TIMEOUT", "FASTDL_DOWNLOAD_DEADLINE"])
@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_bad_time_limit_is_refused_before_any_mirror(server, monkeypatch, tmp_path, name, value):
    """It was reported as every mirror failing ('could not convert string to float'), or, for 0
    and negative values, as socket errors."""
    monkeypatch.setenv(name, value)
    mirrors_env(monkeypatch, server, "nowhere")
    with pytest.raises(ValueError, match=f"{name}='{value}' must be a positive number of seconds"):
        datasets.load_mnist(root=tmp_path)
    assert server.hits == []                    # no mirror was asked
