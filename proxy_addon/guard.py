"""Connection limits: concurrent connections, header timeout, idle timeout.

A mitmproxy addon placed *before* :class:`~proxy_addon.addon.EgressPolicy`.
Every refused or expired connection gets a decision-log line through the
egress addon, so nothing is dropped silently:

* past ``azml_max_connections`` concurrent clients a new one is refused
  (``too_many_connections``);
* a client that sends no complete request within ``azml_header_timeout``
  seconds (a slow or stalled client) is disconnected (``invalid_request``);
  a plain-HTTP keep-alive connection gets the same time for each next request;
* a request mitmproxy rejects before any decision (a malformed request line,
  an over-long or lower-case one, headers cut off by a disconnect; seen through
  mitmproxy's own connection log and ``error`` hook) gets an
  ``invalid_request`` line (TLS spoken to the proxy port is logged by the
  egress addon); a bare TCP connect-and-close is not a request and is not
  logged as a decision;
* idle connections are closed after ``azml_idle_timeout`` seconds (mitmproxy's
  connection watchdog).
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions
from mitmproxy.proxy import server as mitmproxy_server

from .addon import EgressPolicy
from .decision import Action, Decision, Reason

logger = logging.getLogger(__name__)

PROTOCOL_ERRORS = (
    "Bad HTTP request line",
    "HTTP/1 protocol error",
    "Client closed connection before completing request headers",
    "Invalid HTTP",
    "Received invalid",
)
"""Connection-log messages of mitmproxy that mean "request rejected before any hook"."""


class _ProtocolErrorHandler(logging.Handler):
    def __init__(self, guard: "ConnectionGuard"):
        super().__init__(logging.DEBUG)
        self.guard = guard

    def emit(self, record: logging.LogRecord) -> None:
        peer = getattr(record, "client", None)
        if peer is None:
            return
        message = record.getMessage()
        if any(marker in message for marker in PROTOCOL_ERRORS):
            self.guard.protocol_error(tuple(peer), message)


class ConnectionGuard:
    """Refuses and expires client connections; see the module docstring."""

    def __init__(self, egress: EgressPolicy):
        self.egress = egress
        self._clients: dict[str, object] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._handler = _ProtocolErrorHandler(self)

    def load(self, loader) -> None:
        loader.add_option("azml_max_connections", int, 4096, "Most concurrent client connections; more are refused.")
        loader.add_option("azml_header_timeout", int, 30,
                          "Seconds a client may take to send its first complete request.")
        loader.add_option("azml_idle_timeout", int, 600, "Seconds of inactivity after which a connection is closed.")

    def running(self) -> None:
        logging.getLogger("mitmproxy.proxy.server").addHandler(self._handler)

    def done(self) -> None:
        logging.getLogger("mitmproxy.proxy.server").removeHandler(self._handler)

    def protocol_error(self, peername: tuple, message: str) -> None:
        """Log an ``invalid_request`` decision for a request mitmproxy rejected."""
        for client_id, client in self._clients.items():
            if getattr(client, "peername", None) and tuple(client.peername) == peername:
                if not self.egress.has_decided(client_id):
                    self.egress.mark_decided(client_id)
                    detail = message.split(": ", 1)[-1] if message.startswith(f"{peername[0]}:") else message
                    self._log(client, Reason.INVALID_REQUEST, f"request rejected: {detail[:200]}")
                return

    def configure(self, updated) -> None:
        if "azml_max_connections" in updated and ctx.options.azml_max_connections < 1:
            raise exceptions.OptionsError("azml_max_connections: must be at least 1")
        if "azml_header_timeout" in updated and ctx.options.azml_header_timeout <= 0:
            raise exceptions.OptionsError("azml_header_timeout: must be at least 1 second")
        if "azml_idle_timeout" in updated:
            if ctx.options.azml_idle_timeout < 1:
                raise exceptions.OptionsError("azml_idle_timeout: must be at least 1 second")
            # read by every new connection handler
            mitmproxy_server.TCP_TIMEOUT = ctx.options.azml_idle_timeout

    def _log(self, client, reason: Reason, detail: str) -> None:
        decision = Decision(Action.DENY, reason, "https", "-", 0, detail=detail)
        event = self.egress.event_for(decision, client, "-")
        self.egress.notify("on_decision", event)

    def client_connected(self, client) -> None:
        if len(self._clients) >= ctx.options.azml_max_connections:
            client.error = "azml-egress: too many connections"
            self._log(client, Reason.TOO_MANY_CONNECTIONS,
                      f"more than {ctx.options.azml_max_connections} concurrent connections")
            return
        self._clients[client.id] = client
        self._start_timer(client.id)

    def _start_timer(self, client_id: str) -> None:
        self._cancel_timer(client_id)
        loop = asyncio.get_running_loop()
        self._timers[client_id] = loop.call_later(ctx.options.azml_header_timeout, self._expire, client_id)

    def _cancel_timer(self, client_id: str) -> None:
        timer = self._timers.pop(client_id, None)
        if timer:
            timer.cancel()

    def http_connect(self, flow) -> None:
        self._cancel_timer(flow.client_conn.id)

    def requestheaders(self, flow) -> None:
        self._cancel_timer(flow.client_conn.id)

    def response(self, flow) -> None:
        """A plain-HTTP keep-alive connection waits for its next request: the
        header timeout applies again (tunnels never come back here)."""
        if flow.request.method != "CONNECT" and flow.client_conn.id in self._clients:
            self._start_timer(flow.client_conn.id)

    def client_disconnected(self, client) -> None:
        self._cancel_timer(client.id)
        self._clients.pop(client.id, None)

    def error(self, flow) -> None:
        """A request that failed inside mitmproxy before the egress addon decided."""
        client = getattr(flow, "client_conn", None)
        if client is None or self.egress.has_decided(client.id) or "azml_egress" in flow.metadata:
            return
        self.egress.mark_decided(client.id)
        self._log(client, Reason.INVALID_REQUEST, f"request failed: {flow.error.msg if flow.error else 'error'}")

    def _expire(self, client_id: str) -> None:
        self._timers.pop(client_id, None)
        client = self._clients.pop(client_id, None)
        if client is None:
            return
        if self.egress.has_decided(client_id):
            # a keep-alive connection idle (or dripping) past the header timeout
            logger.info(f"azml-egress: closing {client.peername}: no next request within "
                        f"{ctx.options.azml_header_timeout:g} seconds")
        else:
            self.egress.mark_decided(client_id)
            self._log(client, Reason.INVALID_REQUEST,
                      f"no complete request within {ctx.options.azml_header_timeout:g} seconds")
        self._close(client_id)

    @staticmethod
    def _close(client_id: str) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        for handler in list(getattr(proxyserver, "connections", {}).values()):
            if getattr(handler, "client", None) is not None and handler.client.id == client_id:
                asyncio.ensure_future(handler.on_timeout())
                return
        logger.warning("azml-egress: could not find an expired connection to close")
