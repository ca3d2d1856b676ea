"""The HTTP server for Prometheus and health checks, in a daemon thread.

Paths (GET or HEAD):

* ``/metrics``: the registry in the Prometheus text format (or OpenMetrics,
  when the scraper asks for it), served by prometheus_client's
  ``make_wsgi_app``;
* ``/healthz``: ``200 ok`` while the process serves requests;
* ``/readyz``: ``200 ready`` when ``problems()`` returns nothing, otherwise
  ``503`` with one problem per line (e.g. no valid policy is loaded);
* anything else: ``404``.

The server binds only the address it is given (``127.0.0.1`` by default, never
all interfaces by accident) and logs no requests. This module imports
prometheus_client, never mitmproxy.
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
"""Default port of ``azml-egress run --metrics-port`` and the ``azml_metrics_port`` option."""

Problems = Callable[[], list[str]]
"""Returns why the proxy is not ready; an empty list means ready."""

_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def make_app(registry: CollectorRegistry, problems: Problems) -> Callable:
    """A WSGI app serving ``/metrics`` of ``registry``, ``/healthz`` and
    ``/readyz`` (ready when ``problems()`` is empty; a raising ``problems`` is
    reported as not ready)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", _TEXT + [("Allow", "GET, HEAD")])
            return [b"method not allowed\n"]
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n", method)
        if path == "/readyz":
            try:
                found = problems()
            except Exception as e:  # noqa: BLE001 - a broken check means not ready
                found = [f"readiness check failed: {type(e).__name__}: {e}"]
            if not found:
                return _text(start_response, "200 OK", "ready\n", method)
            return _text(start_response, "503 Service Unavailable",
                         "not ready\n" + "".join(f"{p}\n" for p in found), method)
        if path == "/":
            return _text(start_response, "200 OK", "azml-egress: /metrics /healthz /readyz\n", method)
        return _text(start_response, "404 Not Found", "not found: try /metrics, /healthz or /readyz\n", method)

    return app


def _text(start_response: Callable, status: str, body: str, method: str) -> list[bytes]:
    data = body.encode("utf-8")
    start_response(status, _TEXT + [("Content-Length", str(len(data)))])
    return [] if method == "HEAD" else [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


def _family(host: str, port: int) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror:
        return socket.AF_INET  # bind() then reports the bad name


class MetricsServer:
    """Serves :func:`make_app` on ``host``:``port`` in a daemon thread.

    ``port`` 0 picks a free port (read :attr:`port` after :meth:`start`).
    :meth:`start` raises :class:`OSError` when the address cannot be bound
    (e.g. the port is in use); :meth:`stop` is idempotent and waits for the
    thread (at most about ``poll_interval`` seconds).
    """

    def __init__(self, registry: CollectorRegistry, problems: Problems, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, poll_interval: float = 0.1) -> None:
        self.registry = registry
        self.problems = problems
        self.host = host
        self.port = port
        self.poll_interval = poll_interval
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        server_class = type("_Server", (_Server,), {"address_family": _family(self.host, self.port)})
        server = make_server(self.host, self.port, make_app(self.registry, self.problems),
                             server_class=server_class, handler_class=_QuietHandler)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": self.poll_interval},
                                        name=f"azml-egress-metrics-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
