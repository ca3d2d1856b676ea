"""Tunnel hooks of the egress addon: SNI checks, raw relaying with byte counts,
and connections redirected in transparent mode.

A CONNECT that the policy allowed (or only logged, in simulate and learn
modes) becomes a :class:`Tunnel`. Its first bytes are peeked at: a TLS
ClientHello whose SNI names another host than the CONNECT target is denied
(``sni_mismatch``), one without SNI is denied like Azure Firewall does
(``sni_missing``) unless the policy allows it; then the tunnel is relayed as raw
TCP - TLS is never intercepted - and every chunk's size goes to the observers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from mitmproxy import http, tcp, tls
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import events, layers
from mitmproxy.proxy.layers.tcp import TcpMessageInjected
from mitmproxy.proxy.utils import expect
from mitmproxy.proxy.layers.tls import parse_client_hello

from .audit import DecisionEvent
from .connections import client_ip, is_transparent
from .decision import Action, Decision, Reason
from .hostnames import InvalidHost, normalise_host, printable, split_authority

logger = logging.getLogger(__name__)

METADATA_KEY = "azml_egress"
"""``flow.metadata[METADATA_KEY]`` holds the flow's :class:`DecisionEvent`."""


@dataclass
class Tunnel:
    """An allowed (or simulated) CONNECT tunnel of one client connection."""

    host: str
    port: int
    event: DecisionEvent
    checked: bool = False
    """Whether the tunnel's first bytes (TLS SNI) were checked."""
    denied: bool = False
    """Whether the SNI check denied the tunnel (enforce mode)."""


class CountingRelay(layers.TCPLayer):
    """The raw relay of a checked tunnel: bytes pass through untouched, with no
    TCP flow and no ``tcp_*`` hooks (as mitmproxy's own pass-through); their
    sizes go to the observers inline (``on_tunnel_open``, ``on_tunnel_bytes``,
    ``on_tunnel_close``)."""

    def __init__(self, context, egress, event: DecisionEvent):
        super().__init__(context, ignore=True)
        self.egress = egress
        self.event = event
        self.opened = False

    @expect(events.DataReceived, events.ConnectionClosed, TcpMessageInjected)
    def relay_messages(self, event: events.Event):
        if not self.opened:
            self.opened = True
            self.egress.notify("on_tunnel_open", self.event)
        if isinstance(event, events.DataReceived):
            size = len(event.data)
            upstream = event.connection == self.context.client
            self.egress.notify("on_tunnel_bytes", self.event, size if upstream else 0, 0 if upstream else size)
        yield from super().relay_messages(event)
        if self._handle_event == self.done and self.opened:
            self.opened = False
            self.egress.notify("on_tunnel_close", self.event)


class TunnelHooks:
    """Mixin of :class:`~proxy_addon.addon.EgressPolicy`: the tunnel hooks."""

    def next_layer(self, nextlayer) -> None:
        """Check the SNI of a tunnel's ClientHello, then relay it as raw TCP."""
        if nextlayer.layer is not None:
            return
        tunnel = self._tunnels.get(nextlayer.context.client.id)
        if tunnel is None or tunnel.checked:
            return
        data = nextlayer.data_client()
        if not data or not starts_like_tls_record(data):
            return  # plain HTTP (Host header checked) or raw TCP: mitmproxy's layer choice
        client = nextlayer.context.client
        try:
            try:
                hello = parse_client_hello(data)
            except ValueError:
                sni_ok = self._check_sni(client, tunnel, None, malformed=True)
            else:
                if hello is None:
                    return  # the ClientHello spans more reads: tls_clienthello checks it
                sni_ok = self._check_sni(client, tunnel, hello.sni)
            if not sni_ok:
                self._deny_tunnel(client, tunnel)
        except Exception:  # noqa: BLE001 - fail closed
            logger.exception("azml-egress: error while checking a tunnel; closing it")
            self._deny_tunnel(client, tunnel)
        tunnel.checked = True
        if tunnel.denied:
            nextlayer.layer = layers.TCPLayer(nextlayer.context, ignore=True)  # the backstop refuses it
        else:
            nextlayer.layer = CountingRelay(nextlayer.context, self, tunnel.event)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        # Never intercept: tunnelled TLS passes through untouched, so clients need no extra CA.
        data.ignore_connection = True
        client = data.context.client
        if is_transparent(client) and client.id not in self._tunnels:
            self._transparent_tls(data)  # no CONNECT: decide on the SNI
        tunnel = self._tunnels.get(client.id)
        if tunnel is None and data.context.server.address is None and client.id not in self._decided:
            # TLS spoken to the proxy port itself (an https:// proxy URL): refuse
            self._decided.add(client.id)
            decision = Decision(Action.DENY, Reason.INVALID_REQUEST, "https", printable(data.client_hello.sni or "-"),
                                0, detail="TLS was spoken to the proxy port; use an http:// proxy URL")
            self.notify("on_decision", replace(self.event_for(decision, client, "-"), mode="enforce"))
            client.error = "azml-egress: TLS to the proxy port; use an http:// proxy URL"
            return
        if tunnel is not None and not tunnel.checked:
            tunnel.checked = True
            if not self._check_sni(data.context.client, tunnel, data.client_hello.sni):
                self._deny_tunnel(data.context.client, tunnel)

    def _deny_tunnel(self, client, tunnel: Tunnel) -> None:
        tunnel.denied = True
        self._allowed.pop(client.id, None)

    def _check_sni(self, client, tunnel: Tunnel, sni: str | None, malformed: bool = False,
                   detail: str = "") -> bool:
        """Whether the tunnel may go on; logs a deny decision when it may not."""
        if self.policy is not None and tunnel.event.decision.allowed:
            decision = tunnel.event.decision
            if sni is None:
                if self.policy.options.get("sni_missing") == "allow" and not malformed:
                    return True
                detail = detail or ("the ClientHello is malformed" if malformed else "SNI TLS extension was missing")
                denied = replace(decision, action=Action.DENY, reason=Reason.SNI_MISSING, detail=detail)
            else:
                try:
                    same = normalise_host(sni) == normalise_host(tunnel.host) or normalise_host(tunnel.host).ip is not None
                except InvalidHost:
                    same = False
                if same:
                    return True
                denied = replace(decision, action=Action.DENY, reason=Reason.SNI_MISMATCH,
                                 detail=f"TLS SNI {printable(sni)!r} does not name the CONNECT host {tunnel.host}")
            event = self.event_for(denied, client, "CONNECT", sni=sni)
            self.notify("on_decision", event)
            return not event.enforced
        return True

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """mitmproxy chose a raw relay for a tunnel before its first bytes could
        be checked (a first read too short to classify, or neither a TLS
        ClientHello nor HTTP): an application rule needs the SNI or the Host
        header, so the tunnel is refused like a ClientHello without SNI."""
        tunnel = self._tunnels.get(flow.client_conn.id)
        if tunnel is None or tunnel.checked:
            return
        tunnel.checked = True
        if not self._check_sni(flow.client_conn, tunnel, None, malformed=True,
                               detail="the tunnel's first bytes are neither a TLS ClientHello nor an HTTP "
                                      "request, so there is no SNI or Host header to check"):
            self._deny_tunnel(flow.client_conn, tunnel)

    # -- transparent mode (--set mode=transparent) --------------------------------
    # Redirected connections carry no CONNECT: the original destination
    # (context.server.address) is an IP, so the name decided on is the TLS SNI
    # or the HTTP Host header, and the upstream is that original destination.

    def _transparent_tls(self, data: tls.ClientHelloData) -> None:
        """Decide a redirected TLS connection on its SNI and the original port.

        Allowed: the original destination is marked allowed for this client.
        Denied (enforce): a denied :class:`Tunnel` makes ``server_connect``
        refuse the upstream connection, so the client's connection is closed.
        The decision is logged with ``sni`` and ``dst`` (original ``ip:port``).
        """
        client = data.context.client
        address = data.context.server.address
        try:
            ip, port = address[0], address[1]
            sni = data.client_hello.sni
            if sni:
                decision = self.decide(sni, port, "https", client_ip(client))
            elif self.policy is not None and self.policy.options.get("sni_missing") == "allow":
                decision = self.decide(ip, port, "https", client_ip(client))
            else:
                decision = Decision(Action.DENY, Reason.SNI_MISSING, "https", printable(ip), port,
                                    detail="SNI TLS extension was missing; a redirected connection is decided on it")
            event = self.event_for(decision, client, "TLS", sni=sni, dst=f"{ip}:{port}")
            self.notify("on_decision", event)
            self._decided.add(client.id)
            allowed = decision.allowed or not event.enforced
            self._tunnels[client.id] = Tunnel(ip, port, event, checked=True, denied=not allowed)
            if allowed:
                self._allowed.setdefault(client.id, {})[(ip, port)] = event
        except Exception:  # noqa: BLE001 - fail closed: no allow decision, the backstop refuses
            logger.exception("azml-egress: error while deciding a redirected TLS connection; refusing it")

    def _transparent_http(self, flow: http.HTTPFlow) -> None:
        """Decide a redirected plain-HTTP request on its Host header name and the
        original destination port (``flow.request.host`` is the original IP)."""
        request = flow.request
        header = request.host_header or ""
        try:
            name, _ = split_authority(header, request.port)
        except InvalidHost:
            name = header
        self._judge(flow, self.decide(name, request.port, "http", client_ip(flow.client_conn)))
