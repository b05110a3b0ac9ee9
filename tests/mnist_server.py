"""MNIST's download path under test: tiny IDX files (``idx_bytes``) and an HTTP server on
127.0.0.1 (``Server``) whose routes the tests set, faults included. The fixtures ``tiny_mnist``
and ``server`` (conftest.py) build on these."""

import http.server
import threading

import numpy as np


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


class Server:
    """A loopback HTTP server; ``routes`` maps a path to (status, content-type, body)."""

    def __init__(self):
        self.routes, self.hits = {}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                route = outer.routes.get(self.path, (404, "text/plain", b"not found"))
                if callable(route):
                    return route(self)
                status, ctype, body = route
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, mirror, files, transform=lambda name, body: (200, "application/gzip", body)):
        for name, body in files.items():
            self.routes[f"/{mirror}/{name}.gz"] = transform(name, body)


def mirrors_env(monkeypatch, server, *names):
    monkeypatch.setenv("FASTDL_MNIST_MIRRORS", " ".join(f"{server.url}/{n}/" for n in names))


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
