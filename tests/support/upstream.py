"""Upstream servers on 127.0.0.1 that stand in for public hosts.

One HTTPS server (certificate for every public name the tests use, signed by
the test CA) and one plain HTTP server. Both answer by ``Host`` header:

* ``pypi.org``: a PEP 503 simple index whose files live on
  ``files.pythonhosted.org`` (like the real index);
* ``files.pythonhosted.org``: the wheel files;
* any other host: ``hello from HOST`` (and ``/bytes/N`` returns N bytes).
"""

from __future__ import annotations

import hashlib
import io
import ssl
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .pki import TestPKI

PACKAGE = "azmltestpkg"
VERSION = "1.0"


def make_wheel(name: str = PACKAGE, version: str = VERSION) -> tuple[str, bytes]:
    """A minimal valid pure-Python wheel: ``(filename, content)``."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, content in files.items():
            z.writestr(path, content)
    return f"{dist}-py3-none-any.whl", buf.getvalue()


@dataclass
class Upstream:
    https_port: int
    http_port: int
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(Host header, path) of every request served."""
    headers: list[dict[str, str]] = field(default_factory=list)
    """Headers of every request served."""
    connections: int = 0
    """TCP connections accepted by either server."""
    servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def _handler(upstream: Upstream, wheel: tuple[str, bytes]):
    wheel_name, wheel_bytes = wheel
    digest = hashlib.sha256(wheel_bytes).hexdigest()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            host = (self.headers.get("Host") or "").split(":")[0]
            upstream.requests.append((host, self.path))
            upstream.headers.append(dict(self.headers))
            if host == "pypi.org" and self.path.rstrip("/") in ("/simple", f"/simple/{PACKAGE}"):
                if self.path.rstrip("/") == "/simple":
                    body = f'<html><body><a href="/simple/{PACKAGE}/">{PACKAGE}</a></body></html>'
                else:
                    url = f"https://files.pythonhosted.org/packages/aa/bb/{wheel_name}#sha256={digest}"
                    body = f'<html><body><a href="{url}">{wheel_name}</a></body></html>'
                self._send(200, body.encode(), "text/html")
            elif host == "files.pythonhosted.org" and self.path.endswith(wheel_name):
                self._send(200, wheel_bytes, "application/octet-stream")
            elif self.path.startswith("/bytes/"):
                self._send(200, b"x" * int(self.path.split("/")[2]), "application/octet-stream")
            else:
                self._send(200, f"hello from {host}\n".encode())

    return Handler


def start_upstream(pki: TestPKI) -> Upstream:
    """Start both servers on ephemeral 127.0.0.1 ports (daemon threads)."""
    upstream = Upstream(0, 0)
    handler = _handler(upstream, make_wheel())

    class CountingServer(ThreadingHTTPServer):
        def get_request(self):
            upstream.connections += 1
            return super().get_request()

    https = CountingServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.cert_pem), str(pki.key_pem))
    https.socket = context.wrap_socket(https.socket, server_side=True)
    http = CountingServer(("127.0.0.1", 0), handler)
    for server in (https, http):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        upstream.servers.append(server)
    upstream.https_port = https.server_address[1]
    upstream.http_port = http.server_address[1]
    return upstream
