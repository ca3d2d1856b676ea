"""Prometheus metrics of the proxy, as an :class:`~proxy_addon.observers.Observer`.

Every metric lives on a :class:`prometheus_client.CollectorRegistry` that the
:class:`Metrics` instance is given (or creates): never on the global registry,
so building the addon twice (tests, a reloaded ``mitmdump -s`` script) cannot
fail with a duplicate registration. Names follow the Prometheus naming practice
(https://prometheus.io/docs/practices/naming/): one prefix ``azml_egress_``,
base units (seconds, bytes), ``_total`` on counters. The README's "Metrics"
section is the table of every metric.

Label values are bounded: ``feature`` and ``group`` come from the catalogs of
the policies loaded so far (``unknown`` otherwise), ``reason`` from
:class:`~proxy_addon.decision.Reason`, ``kind`` from
:data:`~proxy_addon.observers.UPSTREAM_ERROR_KINDS`, ``action``, ``mode``,
``protocol``, ``enforced``, ``direction`` and ``result`` from fixed sets.
Hostnames, client addresses and URLs never become label values.

This module imports prometheus_client, never mitmproxy.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from . import __version__
from .decision import Action, Reason
from .observers import UPSTREAM_ERROR_KINDS, Observer
from .policy import MODES

if TYPE_CHECKING:
    from .audit import DecisionEvent
    from .policy import Policy

PREFIX = "azml_egress"
UNKNOWN = "unknown"
"""Label value of a feature or group that no loaded catalog knows."""

DECISION_LABELS = ("action", "enforced", "mode", "reason", "protocol", "feature", "group")
PROTOCOLS = ("http", "https")
DIRECTIONS = ("upstream", "downstream")
"""``upstream``: bytes from the client to the server; ``downstream``: back."""

DECIDE_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05)
"""Seconds: ``Policy.decide`` takes about 0.1 µs from its cache and tens of µs uncached."""

_ACTIONS = frozenset(a.value for a in Action)
_REASONS = frozenset(r.value for r in Reason)


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


class Metrics(Observer):
    """Every metric of the proxy on one registry, fed by the observer calls.

    ``registry``: where the metrics are registered (a fresh
    :class:`CollectorRegistry` when omitted; read it back from
    :attr:`registry`). ``process_metrics``: also export the standard
    ``process_*`` metrics (CPU seconds, resident memory, open file
    descriptors; Linux only). ``mitmproxy_version`` defaults to the installed
    distribution's version. Raises :class:`ValueError` when ``registry``
    already holds these metrics.

    Thread model: the observer methods run on the proxy's event-loop thread;
    the HTTP server thread only collects, which prometheus_client makes safe.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True,
                 mitmproxy_version: str | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            f"{PREFIX}_decisions", "Decisions taken, one per decision-log line.", DECISION_LABELS, registry=r)
        self.decide_seconds = Histogram(
            f"{PREFIX}_decision_duration_seconds", "Time spent in Policy.decide per decision.",
            buckets=DECIDE_BUCKETS, registry=r)
        self.tunnels_active = Gauge(
            f"{PREFIX}_tunnels_active", "CONNECT tunnels relaying bytes now.", ("feature",), registry=r)
        self.tunnel_bytes = Counter(
            f"{PREFIX}_tunnel_bytes", "Bytes relayed through CONNECT tunnels (upstream: client to server).",
            ("direction", "feature"), registry=r)
        self.upstream_errors = Counter(
            f"{PREFIX}_upstream_errors", "Failed connections to upstream servers, by kind of error.",
            ("kind",), registry=r)
        self.policy_info = Info(
            f"{PREFIX}_policy", "The policy in force: name, file hash, catalog, catalog revision, mode.", registry=r)
        self.policy_loaded = Gauge(
            f"{PREFIX}_policy_loaded", "1 while a valid policy is in force, 0 before one was loaded.", registry=r)
        self.policy_rules = Gauge(
            f"{PREFIX}_policy_rules", "Application rules of the policy in force.", registry=r)
        self.feature_enabled = Gauge(
            f"{PREFIX}_feature_enabled", "1 if the policy in force enables the catalog feature, else 0.",
            ("feature", "group"), registry=r)
        self.policy_reloads = Counter(
            f"{PREFIX}_policy_reloads", "Policy loads and reloads (the first load included), by result.",
            ("result",), registry=r)
        self.last_reload_success = Gauge(
            f"{PREFIX}_policy_last_reload_success_timestamp_seconds",
            "Unix time of the last successful policy load.", registry=r)
        self.build_info = Info(f"{PREFIX}_build", "Versions of azml-egress, mitmproxy and Python.", registry=r)
        if process_metrics:
            ProcessCollector(registry=r)

        self.build_info.info({
            "version": __version__,
            "mitmproxy_version": mitmproxy_version or _distribution_version("mitmproxy"),
            "python_version": platform.python_version(),
        })
        for kind in UPSTREAM_ERROR_KINDS:
            self.upstream_errors.labels(kind)
        for result in ("success", "failure"):
            self.policy_reloads.labels(result)
        self.policy_loaded.set(0)

        self._groups: dict[str, str] = {}
        """Known feature id -> its group (from every catalog of every policy loaded)."""
        self._decision_children: dict[tuple[object, ...], Counter] = {}
        """(action, mode, reason, protocol, feature) -> the bound child of :attr:`decisions`."""
        self._tunnel_children: dict[str | None, tuple[Gauge, Counter, Counter]] = {}
        """feature -> (active gauge, upstream bytes, downstream bytes) children."""
        self._decide_observe = self.decide_seconds.observe

    # -- labels -----------------------------------------------------------------

    def _feature(self, feature: str | None) -> str:
        return feature if feature in self._groups else UNKNOWN

    def _decision_child(self, action: object, mode: str, reason: object, protocol: str,
                        feature: str | None) -> Counter:
        key = (action, mode, reason, protocol, feature)
        child = self._decision_children.get(key)
        if child is None:
            label_feature = self._feature(feature)
            bounded = (str(action) in _ACTIONS and mode in MODES and str(reason) in _REASONS
                       and protocol in PROTOCOLS and (feature is None or feature in self._groups))
            child = self.decisions.labels(
                action=str(action) if str(action) in _ACTIONS else Action.DENY.value,
                enforced="true" if mode == "enforce" else "false",
                mode=mode if mode in MODES else UNKNOWN,
                reason=str(reason) if str(reason) in _REASONS else Reason.INTERNAL_ERROR.value,
                protocol=protocol if protocol in PROTOCOLS else UNKNOWN,
                feature=label_feature,
                group=self._groups.get(label_feature, UNKNOWN),
            )
            if bounded:
                # only keys from the fixed sets are cached, so the cache stays bounded too
                self._decision_children[key] = child
        return child

    def _tunnel_child(self, feature: str | None) -> tuple[Gauge, Counter, Counter]:
        children = self._tunnel_children.get(feature)
        if children is None:
            label = self._feature(feature)
            children = (self.tunnels_active.labels(label), self.tunnel_bytes.labels("upstream", label),
                        self.tunnel_bytes.labels("downstream", label))
            if feature is None or feature in self._groups:
                self._tunnel_children[feature] = children
        return children

    # -- observer ---------------------------------------------------------------

    def observe_decide(self, seconds: float) -> None:
        """Record how long one ``Policy.decide`` call took (``seconds``)."""
        self._decide_observe(seconds)

    def on_decision(self, event: DecisionEvent) -> None:
        d = event.decision
        self._decision_child(d.action, event.mode, d.reason, d.protocol, d.feature).inc()

    def on_tunnel_open(self, event: DecisionEvent) -> None:
        self._tunnel_child(event.decision.feature)[0].inc()

    def on_tunnel_bytes(self, event: DecisionEvent, sent: int, received: int) -> None:
        _, upstream, downstream = self._tunnel_child(event.decision.feature)
        if sent > 0:
            upstream.inc(sent)
        if received > 0:
            downstream.inc(received)

    def on_tunnel_close(self, event: DecisionEvent) -> None:
        self._tunnel_child(event.decision.feature)[0].dec()

    def on_upstream_error(self, event: DecisionEvent | None, kind: str, message: str) -> None:
        self.upstream_errors.labels(kind if kind in UPSTREAM_ERROR_KINDS else "other").inc()

    def on_policy(self, policy: Policy | None, ok: bool, error: str = "") -> None:
        if not ok or policy is None:
            self.policy_reloads.labels("failure").inc()
            return
        self.policy_reloads.labels("success").inc()
        self.last_reload_success.set(time.time())
        self.policy_loaded.set(1)
        self.policy_rules.set(policy.rule_count)
        self.policy_info.info({
            "policy": policy.name,
            "policy_sha256": policy.sha256,
            "catalog": policy.catalog.id,
            "catalog_revision": policy.catalog.revision,
            "mode": policy.mode,
        })
        for feature in policy.features_by_id.values():
            self._groups[feature.id] = feature.group
        for feature in policy.catalog.features:
            self._groups[feature.id] = feature.group
        self.feature_enabled.clear()
        for feature_id in self.policy_features(policy):
            self.feature_enabled.labels(feature_id, self._groups[feature_id]).set(
                1 if feature_id in policy.enabled_features else 0)
        self._precreate(policy)

    @staticmethod
    def policy_features(policy: Policy) -> list[str]:
        """Every feature id ``policy`` can attribute a host to: its catalog's
        features (file order), then those of the other catalogs (sorted)."""
        ids = [f.id for f in policy.catalog.features]
        return ids + sorted(set(policy.features_by_id) - set(ids))

    def _precreate(self, policy: Policy) -> None:
        """Create the zero series a dashboard and the alerts expect for every
        feature of ``policy``: allow by rule and deny by port for enabled
        features, deny by default for the others (HTTPS, the policy's mode),
        plus tunnel series and the ``unknown`` feature's default deny."""
        mode = policy.mode
        for feature_id in self.policy_features(policy):
            if feature_id in policy.enabled_features:
                self._decision_child(Action.ALLOW, mode, Reason.RULE_MATCHED, "https", feature_id)
                self._decision_child(Action.DENY, mode, Reason.PORT_NOT_ALLOWED, "https", feature_id)
            else:
                self._decision_child(Action.DENY, mode, Reason.NO_RULE_MATCHED, "https", feature_id)
            self._tunnel_child(feature_id)
        self._decision_child(Action.DENY, mode, Reason.NO_RULE_MATCHED, "https", None)
        self._tunnel_child(None)
