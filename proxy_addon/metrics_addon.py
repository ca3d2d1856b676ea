"""The mitmproxy side of the metrics: building the egress addon with its
metrics, and the addon that serves ``/metrics``, ``/healthz`` and ``/readyz``.

:class:`MetricsExporter` options: ``azml_metrics_host``/``azml_metrics_port``;
it owns the HTTP server's lifecycle and the readiness check. Both
``azml-egress run`` and ``mitm_script.py`` (plain mitmdump) use
:func:`build_addons`.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions
from prometheus_client import disable_created_metrics

from .addon import EgressPolicy
from .metrics import Metrics
from .metrics_server import DEFAULT_HOST, DEFAULT_PORT, MetricsServer
from .observers import Observer
from .policy import Policy

logger = logging.getLogger(__name__)


def build_addons(policy: Policy | None = None, metrics: Metrics | None = None,
                 observers: list[Observer] | None = None) -> tuple[EgressPolicy, MetricsExporter]:
    """The egress addon with ``metrics`` (fresh ones on their own registry when
    omitted) and ``observers`` as observers and ``metrics`` as decide timer,
    and the exporter serving them.

    Also turns off prometheus_client's ``*_created`` series for this process:
    in the text format they are extra gauges that would double the series
    count without telling an operator anything.
    """
    disable_created_metrics()
    metrics = metrics if metrics is not None else Metrics()
    egress = EgressPolicy(policy, observers=[metrics, *(observers or [])])
    egress.decide_timer = metrics.observe_decide
    return egress, MetricsExporter(metrics, egress)


class MetricsExporter:
    """mitmproxy addon serving ``metrics`` and the health of ``egress`` over HTTP.

    Options: ``azml_metrics_host`` (default 127.0.0.1) and
    ``azml_metrics_port`` (default 9464, 0 disables). The server starts in
    ``running`` (a port in use is logged as an error, which stops the proxy at
    start-up), restarts when the options change later and stops in ``done``.
    ``/readyz`` is ready while the proxy listens and a valid policy is loaded.
    """

    def __init__(self, metrics: Metrics, egress: EgressPolicy) -> None:
        self.metrics = metrics
        self.egress = egress
        self.server: MetricsServer | None = None
        self._running = False
        self._master = None

    def load(self, loader) -> None:
        self._master = loader.master
        loader.add_option("azml_metrics_host", str, DEFAULT_HOST,
                          "Address of the HTTP server for /metrics, /healthz and /readyz.")
        loader.add_option("azml_metrics_port", int, DEFAULT_PORT,
                          "Port of the HTTP server for /metrics, /healthz and /readyz; 0 disables it.")

    def configure(self, updated) -> None:
        if not {"azml_metrics_host", "azml_metrics_port"} & updated:
            return
        port = ctx.options.azml_metrics_port
        if not 0 <= port <= 65535:
            raise exceptions.OptionsError(f"azml_metrics_port: {port} is outside 0..65535 (0 disables metrics)")
        if not ctx.options.azml_metrics_host.strip():
            raise exceptions.OptionsError("azml_metrics_host: empty; give an address such as 127.0.0.1")
        if self._running:
            self._stop()
            self._start()

    def running(self) -> None:
        self._running = True
        self._start()

    def done(self) -> None:
        self._running = False
        self._stop()

    def _start(self) -> None:
        host, port = ctx.options.azml_metrics_host, ctx.options.azml_metrics_port
        if port == 0:
            return
        server = MetricsServer(self.metrics.registry, self.problems, host, port)
        try:
            server.start()
        except OSError as e:
            logger.error(f"azml-egress: metrics server cannot listen on {host}:{port}: {e.strerror or e} "
                         f"(choose another with --metrics-port / azml_metrics_port; 0 disables it)")
            return
        self.server = server
        logger.info(f"azml-egress: metrics on {server.url}/metrics, health on /healthz and /readyz")

    def _stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def problems(self) -> list[str]:
        """Why the proxy is not ready (empty when ready); called from the server thread."""
        found = []
        if self.egress.policy is None:
            found.append("no valid policy is loaded")
        proxy = self._master.addons.get("proxyserver") if self._running and self._master else None
        if proxy is None or not any(server.is_running for server in list(proxy.servers)):
            found.append("the proxy is not listening")
        return found
