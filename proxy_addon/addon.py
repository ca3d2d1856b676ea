"""The mitmproxy addon: hooks translate flows into ``Policy.decide`` calls and
decisions into responses; every decision goes to the observers (decision log,
metrics, learn recorder). No policy logic lives here.

Load it into mitmdump with ``mitmdump -s "$(azml-egress addon-path)"`` or run
``azml-egress run``. Options (``--set NAME=VALUE``):

* ``azml_policy``: policy file path or built-in name (empty: built-in default);
* ``azml_mode``: ``enforce``, ``simulate`` or ``learn`` (empty: the policy's);
* ``azml_decision_log``: also append decision lines to this file;
* ``azml_log_stdout``: write decision lines to stdout (default true);
* ``azml_resolve``: static name resolution entries ``NAME=ADDRESS``;
* ``azml_watch``: reload the policy when its file changes (default true;
  SIGHUP always reloads).

Data path of a CONNECT: ``http_connect`` decides on the authority (403 on deny);
``next_layer`` peeks at the tunnel's first bytes, checks the TLS SNI against
the CONNECT host and relays the tunnel as raw TCP (bytes counted, TLS never
intercepted); ``server_connect`` refuses any upstream connection without an
allow decision, resolves the name once, refuses private/loopback/link-local
addresses the policy does not list and connects to exactly the address it
checked. The upstream connection is opened lazily, after these checks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Callable

from mitmproxy import ctx, exceptions, http, tcp, tls
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layers, mode_specs, server_hooks
from mitmproxy.proxy.layers.tls import parse_client_hello

from .audit import DecisionEvent, DecisionLog
from .config import ConfigError
from .decision import Action, Decision, Reason
from .deny import deny_text
from .hostnames import InvalidHost, normalise_host, printable, split_authority
from .addresses import refusal
from .observers import Observer, classify_upstream_error
from .policy import MODES, Policy
from .policy_loader import load_policy
from .reload import PolicyFileWatch
from .resolver import Resolver, ResolveError

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
        self._allowed: dict[str, dict[tuple[str, int], DecisionEvent]] = {}
        """client connection id -> (host, port) targets with an allow decision."""
        self._decided: set[str] = set()
        """client connection ids that got at least one decision."""
        self._connecting: dict[str, DecisionEvent] = {}
        """server connection id -> the decision that allowed it (until connected)."""
        self.resolver = Resolver()
        self._watch: PolicyFileWatch | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tunnels: dict[str, Tunnel] = {}
        """client connection id -> its CONNECT tunnel."""

    # -- options --------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option("azml_policy", str, "", "Policy file path or built-in policy name; empty for the built-in default.")
        loader.add_option("azml_mode", str, "", "enforce, simulate or learn; empty to use the policy's mode.")
        loader.add_option("azml_decision_log", str, "", "Append one JSON decision line per decision to this file.")
        loader.add_option("azml_log_stdout", bool, True, "Write decision lines to stdout.")
        loader.add_option("azml_resolve", Sequence[str], [],
                          "Static name resolution: NAME=ADDRESS entries (NAME may be *.domain), like curl --resolve.")
        loader.add_option("azml_watch", bool, True, "Reload the policy when its file changes.")

    def configure(self, updated) -> None:
        if "azml_mode" in updated and ctx.options.azml_mode and ctx.options.azml_mode not in MODES:
            raise exceptions.OptionsError(f"azml_mode: {ctx.options.azml_mode!r} is not one of {', '.join(MODES)}")
        if {"azml_policy", "azml_mode"} & updated:
            if self._given_policy and not ctx.options.azml_policy:
                assert self.policy is not None  # the runtime handed us a validated policy
                self.mode = ctx.options.azml_mode or self.policy.mode
                self.policy.mode = self.mode
            else:
                try:
                    policy = load_policy(ctx.options.azml_policy or None, ctx.options.azml_mode or None)
                except ConfigError as e:
                    self.notify("on_policy", None, False, str(e))
                    raise exceptions.OptionsError(f"azml_policy: {ctx.options.azml_policy or 'default'}:\n{e}") from e
                self.install(policy)
        if "azml_resolve" in updated:
            try:
                self.resolver = Resolver(ctx.options.azml_resolve)
            except ValueError as e:
                raise exceptions.OptionsError(f"azml_resolve: {e}") from e
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
        self._loop = asyncio.get_running_loop()
        self._reload_lock = asyncio.Lock()
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            try:
                self._loop.add_signal_handler(signal.SIGHUP, self.schedule_reload, "SIGHUP")
            except (NotImplementedError, RuntimeError):
                logger.warning("azml-egress: SIGHUP reload is not available here")
        if ctx.options.azml_watch and self.policy is not None:
            try:
                self._watch = PolicyFileWatch(self.policy.source, lambda: self.schedule_reload("file change"))
                self._watch.start()
            except OSError as e:
                logger.warning(f"azml-egress: cannot watch {self.policy.source} for changes: {e}")
                self._watch = None

    def done(self) -> None:
        if self._watch:
            self._watch.stop()
        if self._log:
            self._log.close()

    # -- reload -----------------------------------------------------------------

    def schedule_reload(self, why: str = "request") -> None:
        """Reload the policy file on the event loop (thread-safe)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.reload(why)))

    async def reload(self, why: str = "request") -> bool:
        """Validate the policy file again and swap it in; a bad file is
        rejected, logged and reported, and the previous policy stays."""
        if self.policy is None:
            return False
        assert self._reload_lock is not None
        async with self._reload_lock:
            source, override = self.policy.source, ctx.options.azml_mode or None
            try:
                policy = await asyncio.get_running_loop().run_in_executor(None, load_policy, source, override)
            except ConfigError as e:
                logger.error(f"azml-egress: policy reload ({why}) rejected; keeping policy "
                             f"{self.policy.name!r} ({self.policy.sha256[:12]}):\n{e}")
                self.notify("on_policy", None, False, str(e))
                return False
            if policy.sha256 == self.policy.sha256 and policy.mode == self.policy.mode:
                return True
            logger.info(f"azml-egress: policy reloaded ({why})")
            self.install(policy)
            return True

    # -- deciding and reporting -------------------------------------------------

    decide_timer: Callable[[float], None] | None = None
    """Called with the seconds each ``Policy.decide`` took (the metrics' latency histogram)."""

    def decide(self, host: str, port: int, protocol: str, client_ip: str | None) -> Decision:
        """The policy's decision, or a fail-closed deny when there is none."""
        if self.policy is None:
            return Decision(Action.DENY, Reason.INTERNAL_ERROR, protocol, printable(host), port,
                            detail="no valid policy is loaded")
        timer = self.decide_timer
        if timer is None:
            return self.policy.decide(host, port, protocol, client_ip)
        start = time.perf_counter()
        decision = self.policy.decide(host, port, protocol, client_ip)
        timer(time.perf_counter() - start)
        return decision

    def notify(self, method: str, *args) -> None:
        """Call ``method`` on every observer; a failing observer is logged, not fatal."""
        for observer in ([self._log] if self._log else []) + self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception:  # noqa: BLE001 - an observer must never break deciding
                logger.exception(f"azml-egress: observer {type(observer).__name__}.{method} failed")

    def event_for(self, decision: Decision, client_conn, method: str, **extra) -> DecisionEvent:
        return DecisionEvent(decision=decision, mode=self.mode, client=_client(client_conn), method=method,
                             policy=self.policy.name if self.policy else "", extra=tuple(extra.items()))

    def has_decided(self, client_id: str) -> bool:
        """Whether the client connection got at least one decision."""
        return client_id in self._decided

    def mark_decided(self, client_id: str) -> None:
        self._decided.add(client_id)

    def _judge(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """Log the decision; deny in enforce mode, remember allowed targets."""
        event = self.event_for(decision, flow.client_conn, flow.request.method)
        flow.metadata[METADATA_KEY] = event
        self.notify("on_decision", event)
        self._decided.add(flow.client_conn.id)
        if decision.allowed or not event.enforced:
            target = (flow.request.host, flow.request.port)
            self._allowed.setdefault(flow.client_conn.id, {})[target] = event
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
        event = self.event_for(decision, flow.client_conn, flow.request.method)
        self.notify("on_decision", event)
        flow.response = self._response(replace(event, mode="enforce"))

    # -- HTTP hooks -------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            self._log_auth_failure(flow, "https")
            return
        try:
            self._judge(flow, self.decide(flow.request.host, flow.request.port, "https", _client_ip(flow.client_conn)))
        except Exception as e:  # noqa: BLE001 - fail closed
            self._fail_closed(flow, e)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT":
            return
        if flow.response is not None or flow.error is not None or not flow.live:
            self._log_auth_failure(flow, "http")
            return
        # credentials for the proxy never travel upstream
        flow.request.headers.pop("Proxy-Authorization", None)
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

    def _log_auth_failure(self, flow: http.HTTPFlow, protocol: str) -> None:
        """Log the 407 another addon (proxy authentication) answered with."""
        if flow.response is None or flow.response.status_code != 407 or METADATA_KEY in flow.metadata:
            return
        decision = Decision(Action.DENY, Reason.PROXY_AUTH_REQUIRED, protocol, printable(flow.request.host),
                            flow.request.port, detail="proxy authentication required")
        event = replace(self.event_for(decision, flow.client_conn, flow.request.method), mode="enforce")
        flow.metadata[METADATA_KEY] = event
        self._decided.add(flow.client_conn.id)
        self.notify("on_decision", event)

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
        nextlayer.layer = layers.TCPLayer(nextlayer.context)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        # Never intercept: tunnelled TLS passes through untouched, so clients need no extra CA.
        data.ignore_connection = True
        client = data.context.client
        if _transparent(client) and client.id not in self._tunnels:
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
            event = self.event_for(denied, client, "CONNECT", sni=sni)
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

    def client_disconnected(self, client) -> None:
        self._allowed.pop(client.id, None)
        self._tunnels.pop(client.id, None)
        self._decided.discard(client.id)

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
        self._judge(flow, self.decide(name, request.port, "http", _client_ip(flow.client_conn)))
