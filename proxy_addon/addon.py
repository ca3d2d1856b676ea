"""The mitmproxy addon: hooks translate flows into ``Policy.decide`` calls and
decisions into responses; every decision goes to the sinks (decision log,
metrics, learn recorder). No policy logic lives here.

Load it into mitmdump with ``mitmdump -s proxy_addon/mitm_script.py`` or run
``azml-egress run``. Options (``--set NAME=VALUE``):

* ``azml_policy``: policy file path or built-in name (empty: built-in default);
* ``azml_mode``: ``enforce``, ``simulate`` or ``learn`` (empty: the policy's);
* ``azml_decision_log``: also append decision lines to this file;
* ``azml_log_stdout``: write decision lines to stdout (default true).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.proxy import server_hooks

from .audit import DecisionEvent, DecisionLog
from .config import ConfigError
from .decision import Action, Decision, Reason
from .deny import deny_text
from .hostnames import InvalidHost, normalise_host, printable, split_authority
from .policy import MODES, Policy
from .policy_loader import load_policy

logger = logging.getLogger(__name__)

METADATA_KEY = "azml_egress"
"""``flow.metadata[METADATA_KEY]`` holds the flow's :class:`DecisionEvent`."""

Sink = Callable[[DecisionEvent], None]


def _client(conn: object) -> str:
    peer = getattr(conn, "peername", None)
    if not peer:
        return "unknown:0"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EgressPolicy:
    """The egress allowlist addon.

    ``policy`` may be given directly (the ``azml-egress run`` runtime loads and
    validates it before starting); otherwise it is loaded from the
    ``azml_policy`` option. Without a valid policy every request is denied
    with reason ``internal_error``.
    """

    def __init__(self, policy: Policy | None = None, sinks: list[Sink] | None = None):
        self.policy: Policy | None = policy
        self.mode: str = policy.mode if policy else "enforce"
        self.sinks: list[Sink] = list(sinks or [])
        self._log: DecisionLog | None = None
        self._allowed: dict[str, set[tuple[str, int]]] = {}
        """client connection id -> (host, port) targets with an allow decision."""
        self._tunnels: dict[str, tuple[str, int]] = {}
        """client connection id -> target of its CONNECT tunnel."""
        self._given_policy = policy is not None

    # -- options --------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option("azml_policy", str, "", "Policy file path or built-in policy name; empty for the built-in default.")
        loader.add_option("azml_mode", str, "", "enforce, simulate or learn; empty to use the policy's mode.")
        loader.add_option("azml_decision_log", str, "", "Append one JSON decision line per decision to this file.")
        loader.add_option("azml_log_stdout", bool, True, "Write decision lines to stdout.")

    def configure(self, updated) -> None:
        if "azml_mode" in updated and ctx.options.azml_mode and ctx.options.azml_mode not in MODES:
            raise exceptions.OptionsError(
                f"azml_mode: {ctx.options.azml_mode!r} is not one of {', '.join(MODES)}"
            )
        if {"azml_policy", "azml_mode"} & updated:
            if self._given_policy and not ctx.options.azml_policy:
                # the runtime handed us a validated policy; only the mode may change
                assert self.policy is not None
                self.mode = ctx.options.azml_mode or self.policy.mode
            else:
                try:
                    policy = load_policy(ctx.options.azml_policy or None, ctx.options.azml_mode or None)
                except ConfigError as e:
                    raise exceptions.OptionsError(f"azml_policy: {ctx.options.azml_policy or 'default'}:\n{e}") from e
                self._install(policy)
        if {"azml_decision_log", "azml_log_stdout"} & updated:
            try:
                log = DecisionLog(ctx.options.azml_decision_log or None, ctx.options.azml_log_stdout)
            except OSError as e:
                raise exceptions.OptionsError(f"azml_decision_log: cannot open {ctx.options.azml_decision_log}: {e}") from e
            old, self._log = self._log, log
            if old:
                old.close()

    def _install(self, policy: Policy) -> None:
        self.policy = policy
        self.mode = policy.mode
        for warning in policy.warnings:
            logger.warning(warning)
        logger.info(
            f"azml-egress: policy {policy.name!r} from {policy.source} ({policy.rule_count} rules, "
            f"catalog {policy.catalog.id} {policy.catalog.revision}), mode {self.mode}"
        )

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

    def emit(self, event: DecisionEvent) -> None:
        for sink in ([self._log] if self._log else []) + self.sinks:
            try:
                sink(event)
            except Exception:  # noqa: BLE001 - a sink must never break deciding
                logger.exception(f"azml-egress: decision sink {sink!r} failed")

    def _event(self, decision: Decision, client_conn, method: str, **extra) -> DecisionEvent:
        return DecisionEvent(
            decision=decision, mode=self.mode, client=_client(client_conn), method=method,
            policy=self.policy.name if self.policy else "", extra=tuple(extra.items()),
        )

    def _judge(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """Log the decision; deny in enforce mode, remember allowed targets."""
        event = self._event(decision, flow.client_conn, flow.request.method)
        flow.metadata[METADATA_KEY] = event
        self.emit(event)
        if decision.allowed or not event.enforced:
            target = (flow.request.host, flow.request.port)
            self._allowed.setdefault(flow.client_conn.id, set()).add(target)
            if flow.request.method == "CONNECT":
                self._tunnels[flow.client_conn.id] = target
        else:
            flow.response = self._response(event)

    def _fail_closed(self, flow: http.HTTPFlow, error: Exception) -> None:
        logger.exception("azml-egress: error in the decision path; denying")
        decision = Decision(Action.DENY, Reason.INTERNAL_ERROR, "https" if flow.request.method == "CONNECT" else "http",
                            printable(getattr(flow.request, "host", "?")), 0,
                            detail=f"internal error: {type(error).__name__}")
        event = self._event(decision, flow.client_conn, flow.request.method)
        self.emit(event)
        flow.response = self._response(event)

    def _response(self, event: DecisionEvent) -> http.Response:
        status, headers, body = deny_text(event, self.policy.source if self.policy else None)
        return http.Response.make(status, body.encode("utf-8"), headers)

    # -- hooks ----------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return
        try:
            client_ip = flow.client_conn.peername[0] if flow.client_conn.peername else None
            self._judge(flow, self.decide(flow.request.host, flow.request.port, "https", client_ip))
        except Exception as e:  # noqa: BLE001 - fail closed
            self._fail_closed(flow, e)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        if flow.request.method == "CONNECT":
            return
        try:
            self._plain_http(flow)
        except Exception as e:  # noqa: BLE001 - fail closed
            self._fail_closed(flow, e)

    def _plain_http(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        client_ip = flow.client_conn.peername[0] if flow.client_conn.peername else None
        tunnel = self._tunnels.get(flow.client_conn.id)
        if tunnel is not None:
            # plain HTTP inside a CONNECT tunnel that was already decided: the
            # Host header must name the tunnel's target
            if request.host_header and not self._same_host(request.host_header, tunnel[0], tunnel[1], 80):
                self._judge(flow, self._host_mismatch(request, tunnel[0], tunnel[1], "http"))
            return
        protocol = request.scheme if request.scheme in ("http", "https") else "http"
        decision = self.decide(request.host, request.port, protocol, client_ip)
        if decision.allowed and request.host_header is not None and not self._same_host(
            request.host_header, request.host, request.port, 443 if protocol == "https" else 80
        ):
            decision = self._host_mismatch(request, request.host, request.port, protocol)
        self._judge(flow, decision)

    @staticmethod
    def _same_host(header: str, host: str, port: int, default_port: int) -> bool:
        try:
            header_host, header_port = split_authority(header, default_port)
            return normalise_host(header_host) == normalise_host(host) and header_port == port
        except InvalidHost:
            return False

    def _host_mismatch(self, request: http.Request, host: str, port: int, protocol: str) -> Decision:
        base = self.decide(host, port, protocol, None)
        return replace(
            base, action=Action.DENY, reason=Reason.HOST_MISMATCH,
            detail=f"Host header {printable(request.host_header)!r} does not name the request target {host}:{port}",
        )

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        # Never intercept: tunnelled TLS passes through untouched, so clients
        # need no extra CA.
        data.ignore_connection = True

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Backstop: refuse any upstream connection without an allow decision."""
        try:
            address = data.server.address
            allowed = self._allowed.get(data.client.id, set())
            if address is not None and tuple(address) in allowed:
                return
            decision = Decision(
                Action.DENY, Reason.INTERNAL_ERROR, "https", printable(address[0] if address else "?"),
                address[1] if address else 0, detail="server connection without an allow decision",
            )
            event = self._event(decision, data.client, "CONNECT")
            self.emit(event)
            if event.enforced:
                data.server.error = "azml-egress: no allow decision for this server connection"
        except Exception:  # noqa: BLE001 - fail closed
            logger.exception("azml-egress: error in server_connect; refusing the connection")
            data.server.error = "azml-egress: internal error"

    def client_disconnected(self, client) -> None:
        self._allowed.pop(client.id, None)
        self._tunnels.pop(client.id, None)
