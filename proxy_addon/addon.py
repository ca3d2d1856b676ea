"""The mitmproxy addon: hooks translate flows into ``Policy.decide`` calls and
decisions into responses; every decision goes to the observers (decision log,
metrics, learn recorder). No policy logic lives here.

Load it into mitmdump with ``mitmdump -s "$(azml-egress addon-path)"`` or run
``azml-egress run``. Options (``--set NAME=VALUE``):

* ``azml_policy``: policy file path or built-in name (empty: built-in default);
* ``azml_mode``: ``enforce``, ``simulate`` or ``learn`` (empty: the policy's);
* ``azml_decision_log``: also append decision lines to this file;
* ``azml_log_stdout``: write decision lines to stdout (default true).

Data path of a CONNECT: ``http_connect`` decides on the authority (403 on deny);
``next_layer`` peeks at the tunnel's first bytes, checks the TLS SNI against
the CONNECT host and relays the tunnel as raw TCP (bytes counted, TLS never
intercepted); ``server_connect`` refuses any upstream connection without an
allow decision. The upstream connection is opened lazily, after these checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from mitmproxy import ctx, exceptions, http, tcp, tls
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layers, mode_specs, server_hooks
from mitmproxy.proxy.layers.tls import parse_client_hello

from .audit import DecisionEvent, DecisionLog
from .config import ConfigError
from .decision import Action, Decision, Reason
from .deny import deny_text
from .hostnames import InvalidHost, normalise_host, printable, split_authority
from .observers import Observer, classify_upstream_error
from .policy import MODES, Policy
from .policy_loader import load_policy

logger = logging.getLogger(__name__)

METADATA_KEY = "azml_egress"
"""``flow.metadata[METADATA_KEY]`` holds the flow's :class:`DecisionEvent`."""


def _client(conn: object) -> str:
    peer = getattr(conn, "peername", None)
    if not peer:
        return "unknown:0"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client_ip(conn: object) -> str | None:
    peer = getattr(conn, "peername", None)
    return peer[0] if peer else None


def _transparent(client: object) -> bool:
    """Whether the client connection came in through a transparent-mode listener."""
    return isinstance(getattr(client, "proxy_mode", None), mode_specs.TransparentMode)


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


class EgressPolicy:
    """The egress allowlist addon.

    ``policy`` may be given directly (``azml-egress run`` validates it before
    starting); otherwise it is loaded from the ``azml_policy`` option. Without
    a valid policy every request is denied with reason ``internal_error``.
    ``observers`` receive every decision and tunnel event.
    """

    def __init__(self, policy: Policy | None = None, observers: list[Observer] | None = None):
        self.policy: Policy | None = policy
        self.mode: str = policy.mode if policy else "enforce"
        self.observers: list[Observer] = list(observers or [])
        self._log: DecisionLog | None = None
        self._given_policy = policy is not None
        self._allowed: dict[str, set[tuple[str, int]]] = {}
        """client connection id -> (host, port) targets with an allow decision."""
        self._tunnels: dict[str, Tunnel] = {}
        """client connection id -> its CONNECT tunnel."""

    # -- options --------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option("azml_policy", str, "", "Policy file path or built-in policy name; empty for the built-in default.")
        loader.add_option("azml_mode", str, "", "enforce, simulate or learn; empty to use the policy's mode.")
        loader.add_option("azml_decision_log", str, "", "Append one JSON decision line per decision to this file.")
        loader.add_option("azml_log_stdout", bool, True, "Write decision lines to stdout.")

    def configure(self, updated) -> None:
        if "azml_mode" in updated and ctx.options.azml_mode and ctx.options.azml_mode not in MODES:
            raise exceptions.OptionsError(f"azml_mode: {ctx.options.azml_mode!r} is not one of {', '.join(MODES)}")
        if {"azml_policy", "azml_mode"} & updated:
            if self._given_policy and not ctx.options.azml_policy:
                assert self.policy is not None  # the runtime handed us a validated policy
                self.mode = ctx.options.azml_mode or self.policy.mode
            else:
                try:
                    policy = load_policy(ctx.options.azml_policy or None, ctx.options.azml_mode or None)
                except ConfigError as e:
                    self.notify("on_policy", None, False, str(e))
                    raise exceptions.OptionsError(f"azml_policy: {ctx.options.azml_policy or 'default'}:\n{e}") from e
                self.install(policy)
        if {"azml_decision_log", "azml_log_stdout"} & updated:
            try:
                log = DecisionLog(ctx.options.azml_decision_log or None, ctx.options.azml_log_stdout)
            except OSError as e:
                raise exceptions.OptionsError(f"azml_decision_log: cannot open {ctx.options.azml_decision_log}: {e}") from e
            old, self._log = self._log, log
            if old:
                old.close()

    def install(self, policy: Policy) -> None:
        """Swap in a validated policy (requests in flight keep their decision)."""
        self.policy = policy
        self.mode = policy.mode
        for warning in policy.warnings:
            logger.warning(warning)
        logger.info(f"azml-egress: policy {policy.name!r} from {policy.source} ({policy.rule_count} rules, "
                    f"catalog {policy.catalog.id} {policy.catalog.revision}), mode {self.mode}")
        self.notify("on_policy", policy, True)

    def running(self) -> None:
        if ctx.options.connection_strategy != "lazy":
            # upstream connections must wait until the tunnel's SNI is checked
            logger.info("azml-egress: setting connection_strategy=lazy")
            ctx.options.update(connection_strategy="lazy")
        if self.policy is not None and self._given_policy:
            self.notify("on_policy", self.policy, True)

    def done(self) -> None:
        if self._log:
            self._log.close()

    # -- deciding and reporting -------------------------------------------------

    def decide(self, host: str, port: int, protocol: str, client_ip: str | None) -> Decision:
        """The policy's decision, or a fail-closed deny when there is none."""
        if self.policy is None:
            return Decision(Action.DENY, Reason.INTERNAL_ERROR, protocol, printable(host), port,
                            detail="no valid policy is loaded")
        return self.policy.decide(host, port, protocol, client_ip)

    def notify(self, method: str, *args) -> None:
        """Call ``method`` on every observer; a failing observer is logged, not fatal."""
        for observer in ([self._log] if self._log else []) + self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception:  # noqa: BLE001 - an observer must never break deciding
                logger.exception(f"azml-egress: observer {type(observer).__name__}.{method} failed")

    def _event(self, decision: Decision, client_conn, method: str, **extra) -> DecisionEvent:
        return DecisionEvent(decision=decision, mode=self.mode, client=_client(client_conn), method=method,
                             policy=self.policy.name if self.policy else "", extra=tuple(extra.items()))

    def _judge(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """Log the decision; deny in enforce mode, remember allowed targets."""
        event = self._event(decision, flow.client_conn, flow.request.method)
        flow.metadata[METADATA_KEY] = event
        self.notify("on_decision", event)
        if decision.allowed or not event.enforced:
            target = (flow.request.host, flow.request.port)
            self._allowed.setdefault(flow.client_conn.id, set()).add(target)
            if flow.request.method == "CONNECT":
                self._tunnels[flow.client_conn.id] = Tunnel(target[0], target[1], event)
        else:
            flow.response = self._response(event)

    def _response(self, event: DecisionEvent) -> http.Response:
        status, headers, body = deny_text(event, self.policy.source if self.policy else None)
        return http.Response.make(status, body.encode("utf-8"), headers)

    def _fail_closed(self, flow: http.HTTPFlow, error: Exception) -> None:
        logger.exception("azml-egress: error in the decision path; denying")
        decision = Decision(Action.DENY, Reason.INTERNAL_ERROR, "https" if flow.request.method == "CONNECT" else "http",
                            printable(getattr(flow.request, "host", "?")), 0,
                            detail=f"internal error: {type(error).__name__}")
        event = self._event(decision, flow.client_conn, flow.request.method)
        self.notify("on_decision", event)
        flow.response = self._response(replace(event, mode="enforce"))

    # -- HTTP hooks -------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return
        try:
            self._judge(flow, self.decide(flow.request.host, flow.request.port, "https", _client_ip(flow.client_conn)))
        except Exception as e:  # noqa: BLE001 - fail closed
            self._fail_closed(flow, e)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or not flow.live or flow.request.method == "CONNECT":
            return
        try:
            if _transparent(flow.client_conn):
                self._transparent_http(flow)  # no absolute-form target: decide on the Host header
            else:
                self._plain_http(flow)
        except Exception as e:  # noqa: BLE001 - fail closed
            self._fail_closed(flow, e)

    def _plain_http(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        tunnel = self._tunnels.get(flow.client_conn.id)
        if tunnel is not None:
            # plain HTTP inside a CONNECT tunnel that was already decided: the
            # Host header must name the tunnel's target
            if request.host_header and not self._same_host(request.host_header, tunnel.host, tunnel.port, 80):
                self._judge(flow, self._host_mismatch(request.host_header, tunnel.host, tunnel.port, "http"))
            return
        protocol = request.scheme if request.scheme in ("http", "https") else "http"
        decision = self.decide(request.host, request.port, protocol, _client_ip(flow.client_conn))
        if decision.allowed and request.host_header is not None and not self._same_host(
            request.host_header, request.host, request.port, 443 if protocol == "https" else 80
        ):
            decision = self._host_mismatch(request.host_header, request.host, request.port, protocol)
        self._judge(flow, decision)

    @staticmethod
    def _same_host(header: str, host: str, port: int, default_port: int) -> bool:
        try:
            header_host, header_port = split_authority(header, default_port)
            return normalise_host(header_host) == normalise_host(host) and header_port == port
        except InvalidHost:
            return False

    def _host_mismatch(self, header: str, host: str, port: int, protocol: str) -> Decision:
        return replace(self.decide(host, port, protocol, None), action=Action.DENY, reason=Reason.HOST_MISMATCH,
                       detail=f"Host header {printable(header)!r} does not name the request target {host}:{port}")

    # -- tunnels ----------------------------------------------------------------

    def next_layer(self, nextlayer) -> None:
        """Check the SNI of a tunnel's ClientHello, then relay it as raw TCP."""
        if nextlayer.layer is not None:
            return
        tunnel = self._tunnels.get(nextlayer.context.client.id)
        if tunnel is None or tunnel.checked:
            return
        data = nextlayer.data_client()
        if not data:
            return
        try:
            if starts_like_tls_record(data):
                try:
                    hello = parse_client_hello(data)
                except ValueError:
                    hello = None
                    sni_ok = self._check_sni(nextlayer.context.client, tunnel, None, malformed=True)
                else:
                    if hello is None:
                        return  # ClientHello spans more reads: tls_clienthello checks it
                    sni_ok = self._check_sni(nextlayer.context.client, tunnel, hello.sni)
                if not sni_ok:
                    self._deny_tunnel(nextlayer.context.client, tunnel)
            tunnel.checked = True
            nextlayer.layer = layers.TCPLayer(nextlayer.context)
        except Exception:  # noqa: BLE001 - fail closed
            logger.exception("azml-egress: error while checking a tunnel; closing it")
            self._deny_tunnel(nextlayer.context.client, tunnel)
            tunnel.checked = True
            nextlayer.layer = layers.TCPLayer(nextlayer.context)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        # Never intercept: tunnelled TLS passes through untouched, so clients need no extra CA.
        data.ignore_connection = True
        if _transparent(data.context.client) and data.context.client.id not in self._tunnels:
            self._transparent_tls(data)  # no CONNECT: decide on the SNI
        tunnel = self._tunnels.get(data.context.client.id)
        if tunnel is not None and not tunnel.checked:
            tunnel.checked = True
            if not self._check_sni(data.context.client, tunnel, data.client_hello.sni):
                self._deny_tunnel(data.context.client, tunnel)

    def _deny_tunnel(self, client, tunnel: Tunnel) -> None:
        tunnel.denied = True
        self._allowed.pop(client.id, None)

    def _check_sni(self, client, tunnel: Tunnel, sni: str | None, malformed: bool = False) -> bool:
        """Whether the tunnel may go on; logs a deny decision when it may not."""
        if self.policy is not None and tunnel.event.decision.allowed:
            decision = tunnel.event.decision
            if sni is None:
                if self.policy.options.get("sni_missing") == "allow" and not malformed:
                    return True
                detail = "the ClientHello is malformed" if malformed else "SNI TLS extension was missing"
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
            event = self._event(denied, client, "CONNECT", sni=sni)
            self.notify("on_decision", event)
            return not event.enforced
        return True

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        tunnel = self._tunnels.get(flow.client_conn.id)
        if tunnel is not None and not tunnel.denied:
            flow.metadata[METADATA_KEY] = tunnel.event
            self.notify("on_tunnel_open", tunnel.event)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        message = flow.messages[-1]
        event = flow.metadata.get(METADATA_KEY)
        if event is not None:
            size = len(message.content)
            self.notify("on_tunnel_bytes", event, size if message.from_client else 0,
                        0 if message.from_client else size)
        flow.messages.clear()  # relay only: never keep tunnel contents in memory

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        event = flow.metadata.pop(METADATA_KEY, None)
        if event is not None:
            self.notify("on_tunnel_close", event)

    tcp_error = tcp_end

    # -- upstream connections ---------------------------------------------------

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Backstop: refuse any upstream connection without an allow decision."""
        try:
            address = data.server.address
            if address is not None and tuple(address) in self._allowed.get(data.client.id, set()):
                return
            tunnel = self._tunnels.get(data.client.id)
            if tunnel is not None and tunnel.denied and (tunnel.host, tunnel.port) == tuple(address or ()):
                data.server.error = "azml-egress: tunnel denied"  # the deny was logged by the SNI check
                return
            decision = Decision(Action.DENY, Reason.INTERNAL_ERROR, "https", printable(address[0] if address else "?"),
                                address[1] if address else 0, detail="server connection without an allow decision")
            event = self._event(decision, data.client, "CONNECT")
            self.notify("on_decision", event)
            if event.enforced:
                data.server.error = "azml-egress: no allow decision for this server connection"
        except Exception:  # noqa: BLE001 - fail closed
            logger.exception("azml-egress: error in server_connect; refusing the connection")
            data.server.error = "azml-egress: internal error"

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        message = str(data.server.error or "")
        if message.startswith("azml-egress:"):
            return
        tunnel = self._tunnels.get(data.client.id)
        self.notify("on_upstream_error", tunnel.event if tunnel else None, classify_upstream_error(message), message)

    def client_disconnected(self, client) -> None:
        self._allowed.pop(client.id, None)
        self._tunnels.pop(client.id, None)

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
                decision = self.decide(sni, port, "https", _client_ip(client))
            elif self.policy is not None and self.policy.options.get("sni_missing") == "allow":
                decision = self.decide(ip, port, "https", _client_ip(client))
            else:
                decision = Decision(Action.DENY, Reason.SNI_MISSING, "https", printable(ip), port,
                                    detail="SNI TLS extension was missing; a redirected connection is decided on it")
            event = self._event(decision, client, "TLS", sni=sni, dst=f"{ip}:{port}")
            self.notify("on_decision", event)
            allowed = decision.allowed or not event.enforced
            self._tunnels[client.id] = Tunnel(ip, port, event, checked=True, denied=not allowed)
            if allowed:
                self._allowed.setdefault(client.id, set()).add((ip, port))
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
        self._judge(flow, self.decide(name, request.port, "http", _client_ip(flow.client_conn)))
