"""Static file servers standing in for public hosts (CRAN, conda channels).

``start_static_upstream(pki, root)`` serves ``root/<Host header>/<path>``
over HTTPS (the test CA's certificate for every public test name) and plain
HTTP, on ephemeral 127.0.0.1 ports. Its ``https_port`` / ``http_port`` plug
into ``start_proxy`` like :class:`support.upstream.Upstream`.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .pki import TestPKI
from .upstream import Upstream


def _handler(upstream: Upstream, root: Path):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            path = self.path.split("?", 1)[0]
            upstream.requests.append((host, path))
            target = (root / host / path.lstrip("/")).resolve()
            if root.resolve() not in target.parents or not target.is_file():
                body, status = f"not found: {host}{path}\n".encode(), 404
            else:
                body, status = target.read_bytes(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def start_static_upstream(pki: TestPKI, root: Path, host: str = "127.0.0.1") -> Upstream:
    """Start HTTPS and HTTP file servers on ``host`` (daemon threads); ``close()`` stops them."""
    upstream = Upstream(0, 0)
    handler = _handler(upstream, root)
    https = ThreadingHTTPServer((host, 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.cert_pem), str(pki.key_pem))
    https.socket = context.wrap_socket(https.socket, server_side=True)
    http = ThreadingHTTPServer((host, 0), handler)
    for server in (https, http):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        upstream.servers.append(server)
    upstream.https_port = https.server_address[1]
    upstream.http_port = http.server_address[1]
    return upstream
