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
import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Callable

from mitmproxy import ctx, exceptions, http

from .audit import DecisionEvent, DecisionLog
from .config import ConfigError
from .connections import client_address, client_ip, is_transparent
from .decision import Action, Decision, Reason
from .deny import deny_text
from .hostnames import InvalidHost, normalise_host, printable, split_authority
from .observers import Observer
from .policy import MODES, Policy
from .policy_loader import load_policy
from .reload import PolicyFileWatch
from .resolver import Resolver
from .tunnels import METADATA_KEY, Tunnel, TunnelHooks
from .upstream import UpstreamHooks

logger = logging.getLogger(__name__)

class EgressPolicy(TunnelHooks, UpstreamHooks):
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
        loader.add_option("azml_allow_unauthenticated", bool, False,
                          "Serve clients beyond loopback although proxy authentication (proxyauth) is off.")

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
            except Exception as e:  # noqa: BLE001 - any failure keeps the previous policy
                problem = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
                logger.error(f"azml-egress: policy reload ({why}) rejected; keeping policy "
                             f"{self.policy.name!r} ({self.policy.sha256[:12]}):\n{problem}")
                self.notify("on_policy", None, False, problem)
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
        return DecisionEvent(decision=decision, mode=self.mode, client=client_address(client_conn), method=method,
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
            if self._refuse_unauthenticated(flow, "https"):
                return
            self._judge(flow, self.decide(flow.request.host, flow.request.port, "https", client_ip(flow.client_conn)))
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
            if not is_transparent(flow.client_conn) and self._refuse_unauthenticated(flow, "http"):
                return
            if is_transparent(flow.client_conn):
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
        decision = self.decide(request.host, request.port, protocol, client_ip(flow.client_conn))
        if decision.allowed and request.host_header is not None and not self._same_host(
            request.host_header, request.host, request.port, 443 if protocol == "https" else 80
        ):
            decision = self._host_mismatch(request.host_header, request.host, request.port, protocol)
        self._judge(flow, decision)

    def _refuse_unauthenticated(self, flow: http.HTTPFlow, protocol: str) -> bool:
        """Refuse a client from beyond loopback when the proxy has no proxy
        authentication and was not told to allow that (``mitmdump`` listens
        on every interface by default). Returns whether it refused."""
        ip = client_ip(flow.client_conn)
        if getattr(ctx.options, "proxyauth", None) or ctx.options.azml_allow_unauthenticated or ip is None:
            return False
        try:
            address = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            address = None
        if address is not None and (address.is_loopback or (address.version == 6 and address.ipv4_mapped
                                                             and address.ipv4_mapped.is_loopback)):
            return False
        decision = Decision(Action.DENY, Reason.PROXY_AUTH_REQUIRED, protocol, printable(flow.request.host),
                            flow.request.port, detail="clients beyond loopback need proxy authentication "
                            "(proxyauth) or azml_allow_unauthenticated")
        event = replace(self.event_for(decision, flow.client_conn, flow.request.method), mode="enforce")
        flow.metadata[METADATA_KEY] = event
        self._decided.add(flow.client_conn.id)
        self.notify("on_decision", event)
        flow.response = self._response(event)
        return True

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

    def client_disconnected(self, client) -> None:
        self._allowed.pop(client.id, None)
        self._tunnels.pop(client.id, None)
        self._decided.discard(client.id)
