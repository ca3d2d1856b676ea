"""What the addon tells its sinks (decision log, metrics, learn recorder).

Every sink subclasses :class:`Observer` and overrides what it needs; the addon
calls each method for every sink, and a sink that raises is logged and skipped,
never breaking a decision. All events carry the same immutable
:class:`~proxy_addon.audit.DecisionEvent` the decision log writes.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .audit import DecisionEvent
    from .policy import Policy

UPSTREAM_ERROR_KINDS = ("dns", "refused", "timeout", "tls", "reset", "other")
"""Fixed set of upstream connection error kinds (metric label values)."""


def classify_upstream_error(message: str) -> str:
    """Map a connection error message to one of :data:`UPSTREAM_ERROR_KINDS`."""
    text = message.lower()
    number = re.search(r"\[errno (-?\d+)\]", text)
    if number:
        code = int(number.group(1))
        if code == errno.ECONNREFUSED:
            return "refused"
        if code == errno.ETIMEDOUT:
            return "timeout"
        if code in (errno.ECONNRESET, errno.EPIPE):
            return "reset"
        if code in (-2, -3, -5):  # EAI_NONAME, EAI_AGAIN, EAI_NODATA
            return "dns"
    if any(s in text for s in ("name or service not known", "getaddrinfo", "nodename nor servname",
                                "no address associated", "temporary failure in name resolution", "dns")):
        return "dns"
    if "refused" in text:
        return "refused"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "tls" in text or "ssl" in text or "certificate" in text:
        return "tls"
    if "reset" in text or "broken pipe" in text:
        return "reset"
    return "other"


class Observer:
    """Base class of decision sinks; every method is a no-op here."""

    def on_decision(self, event: DecisionEvent) -> None:
        """A decision was taken (one call per decision-log line)."""

    def on_tunnel_open(self, event: DecisionEvent) -> None:
        """An allowed (or simulated) CONNECT tunnel starts relaying bytes."""

    def on_tunnel_bytes(self, event: DecisionEvent, sent: int, received: int) -> None:
        """Bytes relayed through a tunnel since the last call: ``sent`` from
        client to server, ``received`` from server to client."""

    def on_tunnel_close(self, event: DecisionEvent) -> None:
        """A tunnel that :meth:`on_tunnel_open` announced has ended."""

    def on_upstream_error(self, event: DecisionEvent | None, kind: str, message: str) -> None:
        """Connecting to an upstream server failed; ``kind`` is one of
        :data:`UPSTREAM_ERROR_KINDS`."""

    def on_policy(self, policy: Policy | None, ok: bool, error: str = "") -> None:
        """A policy load or reload finished: ``ok`` with the new ``policy``, or
        failed with ``error`` (the previous policy stays in force)."""
