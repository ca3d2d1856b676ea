"""The lean mitmproxy master behind ``azml-egress run``.

It loads only the addons this product needs (instead of the ~30 that mitmdump
loads): logging to stderr, core, proxy authentication, client blocking,
the proxy server, layer selection, TLS configuration, the egress policy addon,
the metrics exporter, user scripts (``-s``) and the start-up error check.
Decision lines go to stdout.

:class:`MetricsExporter` is the mitmproxy side of the metrics: options
``azml_metrics_host``/``azml_metrics_port``, the HTTP server's lifecycle and
the readiness check; ``mitm_script.py`` loads it into a plain mitmdump too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field

from mitmproxy import ctx, exceptions, master, options
from mitmproxy.addons import block, core, errorcheck, next_layer, proxyauth, proxyserver, script, termlog, tlsconfig
from prometheus_client import disable_created_metrics

from .addon import EgressPolicy
from .guard import ConnectionGuard
from .metrics import Metrics
from .metrics_server import DEFAULT_HOST, DEFAULT_PORT, MetricsServer
from .policy import Policy

logger = logging.getLogger(__name__)


@dataclass
class RunSettings:
    """Everything ``azml-egress run`` needs besides the policy."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 3128
    decision_log: str = ""
    log_stdout: bool = True
    metrics_host: str = DEFAULT_HOST
    metrics_port: int = DEFAULT_PORT
    """Port of the /metrics, /healthz, /readyz server; 0 disables it."""
    scripts: list[str] = field(default_factory=list)
    set_options: list[str] = field(default_factory=list)
    """Extra mitmproxy options as ``name=value``."""
    resolve: list[str] = field(default_factory=list)
    """Static name resolution entries ``NAME=ADDRESS``."""
    mode: str = ""
    """Mode override (kept across policy reloads); empty: the policy's."""


class EgressMaster(master.Master):
    """A mitmproxy master with only the addons azml-egress needs."""

    def __init__(self, opts: options.Options, policy: Policy) -> None:
        super().__init__(opts, with_termlog=False)
        self.egress, self.exporter = build_addons(policy)
        self.guard = ConnectionGuard(self.egress)
        self.addons.add(
            termlog.TermLog(out=sys.stderr),
            core.Core(),
            proxyauth.ProxyAuth(),
            block.Block(),
            proxyserver.Proxyserver(),
            # before NextLayer, as mitmdump orders scripts: the egress addon's
            # next_layer turns checked tunnels into raw TCP relays (bytes counted)
            self.guard,
            self.egress,
            self.exporter,
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            script.ScriptLoader(),
            errorcheck.ErrorCheck(),
        )


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit (two per tunnel)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError) as e:
        logger.warning(f"azml-egress: cannot raise the open-file limit: {e}")


def build_addons(policy: Policy | None = None, metrics: Metrics | None = None) -> tuple[EgressPolicy, MetricsExporter]:
    """The egress addon with ``metrics`` (fresh ones on their own registry when
    omitted) as observer and decide timer, and the exporter serving them.

    Also turns off prometheus_client's ``*_created`` series for this process:
    in the text format they are extra gauges that would double the series
    count without telling an operator anything.
    """
    disable_created_metrics()
    metrics = metrics if metrics is not None else Metrics()
    egress = EgressPolicy(policy, observers=[metrics])
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


def run(policy: Policy, settings: RunSettings) -> int:
    """Run the proxy until SIGINT/SIGTERM; returns the process exit code."""
    raise_open_file_limit()

    async def main() -> int:
        logging.getLogger().setLevel(logging.INFO)
        for noisy in ("tornado", "asyncio", "hpack", "quic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        opts = options.Options()
        proxy = EgressMaster(opts, policy)
        try:
            opts.update(
                listen_host=settings.listen_host,
                listen_port=settings.listen_port,
                azml_decision_log=settings.decision_log,
                azml_log_stdout=settings.log_stdout,
                azml_metrics_host=settings.metrics_host,
                azml_metrics_port=settings.metrics_port,
                azml_mode=settings.mode,
                azml_resolve=settings.resolve,
                connection_strategy="lazy",
            )
            if settings.set_options:
                opts.set(*settings.set_options)
            if settings.scripts:
                opts.update(scripts=settings.scripts)
        except (exceptions.OptionsError, NotImplementedError, ValueError, KeyError) as e:
            print(f"azml-egress run: bad option: {e}", file=sys.stderr)
            return 2
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proxy.shutdown)
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        await proxy.run()
        errors = proxy.addons.get("errorcheck")
        return 1 if errors and getattr(errors, "has_errored", False) else 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
