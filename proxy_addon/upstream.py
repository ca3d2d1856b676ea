"""Upstream-connection hooks of the egress addon: the backstop and the destination check.

Every upstream connection needs an allow decision for its host and port (the
backstop); its name is resolved once, every address is checked
(:mod:`proxy_addon.addresses`) and the connection is pinned to the checked
address, so a DNS answer that changes between check and connect cannot slip
through. Failed connections get their own decision-log line.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mitmproxy.proxy import server_hooks

from .addresses import refusal
from .audit import DecisionEvent
from .decision import Action, Decision, Reason
from .hostnames import printable
from .observers import classify_upstream_error
from .resolver import ResolveError

logger = logging.getLogger(__name__)


class UpstreamHooks:
    """Mixin of :class:`~proxy_addon.addon.EgressPolicy`: the upstream hooks."""

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Backstop and destination check for every upstream connection.

        Refuses a connection without an allow decision; resolves the name once,
        refuses addresses the policy does not allow (private, loopback,
        link-local, ...) and pins the connection to the checked address.
        """
        try:
            address = data.server.address
            event = self._allowed.get(data.client.id, {}).get(tuple(address)) if address else None
            if event is None:
                self._refuse_undecided(data)
                return
            await self._check_destination(data, event)
        except Exception:  # noqa: BLE001 - fail closed
            logger.exception("azml-egress: error in server_connect; refusing the connection")
            data.server.error = "azml-egress: internal error"

    def _refuse_undecided(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        tunnel = self._tunnels.get(data.client.id)
        if tunnel is not None and tunnel.denied and (tunnel.host, tunnel.port) == tuple(address or ()):
            data.server.error = "azml-egress: tunnel denied"  # the deny was logged by the SNI check
            return
        decision = Decision(Action.DENY, Reason.INTERNAL_ERROR, "https", printable(address[0] if address else "?"),
                            address[1] if address else 0, detail="server connection without an allow decision")
        event = self.event_for(decision, data.client, "CONNECT")
        self.notify("on_decision", event)
        if event.enforced:
            data.server.error = "azml-egress: no allow decision for this server connection"

    async def _check_destination(self, data: server_hooks.ServerConnectionHookData, event: DecisionEvent) -> None:
        host, port = data.server.address
        try:
            addresses = await self.resolver.resolve(host, port)
        except ResolveError as e:
            self._refuse_destination(data, event, Reason.DNS_FAILURE, str(e))
            return
        allowed = self.policy.private_ranges_allowed if self.policy else ()
        refusals = [(a, refusal(a, allowed)) for a in addresses]
        usable = [a for a, why in refusals if why is None]
        if usable:
            data.server.address = (str(usable[0]), port)
            self._connecting[data.server.id] = event
            return
        first, why = refusals[0]
        self._refuse_destination(data, event, Reason.PRIVATE_ADDRESS,
                                 f"{event.decision.host} resolves to {first} ({why}), which the policy does not allow "
                                 "(options.private_ranges_allowed)", pin=first)

    def _refuse_destination(self, data, event: DecisionEvent, reason: Reason, detail: str, pin=None) -> None:
        denied = replace(event.decision, action=Action.DENY, reason=reason, detail=detail)
        denied_event = self.event_for(denied, data.client, event.method)
        self.notify("on_decision", denied_event)
        if denied_event.enforced:
            data.server.error = f"azml-egress: {reason.value}: {detail}"
        elif pin is not None:
            data.server.address = (str(pin), data.server.address[1])

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        """A failed upstream connection gets its own decision-log line."""
        message = str(data.server.error or "")
        if message.startswith("azml-egress:"):
            return
        kind = classify_upstream_error(message)
        original = self._connecting.pop(data.server.id, None)
        self.notify("on_upstream_error", original, kind, message)
        if original is not None:
            reason = Reason.DNS_FAILURE if kind == "dns" else Reason.UPSTREAM_ERROR
            failed = replace(original.decision, action=Action.DENY, reason=reason,
                             detail=f"upstream connection failed ({kind}): {printable(message, 200)}")
            self.notify("on_decision", self.event_for(failed, data.client, original.method))

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._connecting.pop(data.server.id, None)
