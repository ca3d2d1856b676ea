"""The lean mitmproxy master behind ``azml-egress run``.

It loads only the addons this product needs (14 instead of the 36 that
mitmdump loads): logging to stderr, core, proxy authentication, client
blocking, the proxy server, the connection guard, the egress policy addon, the
metrics exporter, layer selection, TLS configuration, the h2c-upgrade guard for
plain HTTP, user scripts (``-s``) and the start-up error check. Decision lines
go to stdout. The egress addon sits before mitmproxy's layer selection, as
mitmdump orders scripts, so it takes tunnelled TLS first and relays it as raw
TCP with byte counts. In learn mode a :class:`~proxy_addon.learn.LearnRecorder`
observes every decision.

Per connection it does less than mitmdump (README "Performance"):

* :class:`HookDispatch` calls, for each event, only the addons that implement
  it, instead of walking every addon inside a context manager per event;
* mitmproxy's per-connection log lines (client/server connect and disconnect,
  four lines to stderr per tunnel, all said better by the decision log) are
  only written with ``--set termlog_verbosity=debug``
  (:class:`ConnectionLogFilter`);
* objects alive after start-up are frozen out of the garbage collector's scans
  (:func:`freeze_startup_objects`);
* the decision log is written by a background thread
  (:class:`proxy_addon.audit.DecisionLog`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from dataclasses import dataclass, field

from mitmproxy import ctx, exceptions, master, options
from mitmproxy.addons import (block, core, disable_h2c, errorcheck, next_layer, proxyauth, proxyserver, script,
                              termlog, tlsconfig)

from .guard import ConnectionGuard
from .hookdispatch import HookDispatch
from .learn import DEFAULT_INTERVAL, DEFAULT_LEARN_FILE, LearnRecorder
from .learnfile import DEFAULT_MAX_CLIENTS, DEFAULT_MAX_HOSTS
from .metrics_addon import build_addons
from .metrics_server import DEFAULT_HOST, DEFAULT_PORT
from .observers import Observer
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
    learn_file: str = DEFAULT_LEARN_FILE
    """Learn mode only: where the recorder writes (JSON, or YAML by extension)."""
    learn_interval: float = DEFAULT_INTERVAL
    """Seconds between two writes of the learn file."""
    learn_max_hosts: int = DEFAULT_MAX_HOSTS
    learn_max_clients: int = DEFAULT_MAX_CLIENTS


CONNECTION_LOGGER = "mitmproxy.proxy.server"
"""mitmproxy's logger of per-connection lines (client/server connect and disconnect)."""


class ConnectionLogFilter(logging.Filter):
    """Keeps mitmproxy's per-connection lines below WARNING out of the terminal
    log (and of the deprecated ``add_log`` event) unless
    ``termlog_verbosity=debug``: the decision log already has one line per
    decision, and formatting four more lines per tunnel for stderr costs more
    CPU than deciding. The records are still created, so other handlers on
    that logger (the connection guard's) see them."""

    def __init__(self) -> None:
        super().__init__()
        self.debug = False

    def filter(self, record: logging.LogRecord) -> bool:
        return self.debug or record.levelno >= logging.WARNING or record.name != CONNECTION_LOGGER

    def configure(self, updated) -> None:
        if "termlog_verbosity" in updated:
            self.debug = ctx.options.termlog_verbosity == "debug"


class EgressMaster(master.Master):
    """A mitmproxy master with only the addons azml-egress needs, and a
    cheaper hook dispatch (:class:`HookDispatch`)."""

    def __init__(self, opts: options.Options, policy: Policy, observers: list[Observer] | None = None) -> None:
        super().__init__(opts, with_termlog=False)
        plain, self.addons = self.addons, HookDispatch(self)
        opts.changed.disconnect(plain._configure_all)
        self.egress, self.exporter = build_addons(policy, observers=observers)
        self.guard = ConnectionGuard(self.egress)
        terminal = termlog.TermLog(out=sys.stderr)
        self.connection_log_filter = ConnectionLogFilter()
        terminal.logger.addFilter(self.connection_log_filter)
        self._legacy_log_events.addFilter(self.connection_log_filter)
        self.addons.add(
            terminal,
            self.connection_log_filter,
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
            disable_h2c.DisableH2C(),
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


def _ignore_cancelled(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def start_recorder(policy: Policy, settings: RunSettings) -> LearnRecorder | None:
    """The learn recorder in learn mode (its file written once already), else
    ``None``; raises ``OSError`` when the learn file cannot be written."""
    if policy.mode != "learn":
        return None
    recorder = LearnRecorder(settings.learn_file, settings.learn_interval, settings.learn_max_hosts,
                             settings.learn_max_clients)
    recorder.start()
    return recorder


def freeze_startup_objects() -> None:
    """Hide every object alive after start-up (modules, catalogs, the policy
    and its index) from the cyclic garbage collector (``gc.freeze``): the
    collections that per-connection garbage triggers then stop re-scanning
    them (about 7% less CPU per tunnel in the benchmark). Objects that become
    garbage later, such as a replaced policy, are still freed by reference
    counting."""
    gc.collect()
    gc.freeze()


def run(policy: Policy, settings: RunSettings) -> int:
    """Run the proxy until SIGINT/SIGTERM; returns the process exit code.

    In learn mode the learn file is written every ``settings.learn_interval``
    seconds by a background thread and once more on shutdown.
    """
    raise_open_file_limit()

    async def main(recorder: LearnRecorder | None) -> int:
        logging.getLogger().setLevel(logging.INFO)
        for noisy in ("tornado", "asyncio", "hpack", "quic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        opts = options.Options()
        proxy = EgressMaster(opts, policy, observers=[recorder] if recorder else None)
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
        if recorder is not None:
            logger.info(f"azml-egress: learn mode: recording to {recorder.path} every {recorder.interval:g} s")
        freeze_startup_objects()
        await proxy.run()
        # Connections still open at shutdown are cancelled by asyncio.run; on
        # Python 3.11 asyncio's stream callback then reports the cancellation as
        # an error with a traceback (fixed in 3.12). It is no error.
        loop.set_exception_handler(_ignore_cancelled)
        errors = proxy.addons.get("errorcheck")
        return 1 if errors and getattr(errors, "has_errored", False) else 0

    try:
        recorder = start_recorder(policy, settings)
    except OSError as e:
        print(f"azml-egress run: cannot write the learn file {settings.learn_file}: {e}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(main(recorder))
    except KeyboardInterrupt:
        return 0
    finally:
        if recorder is not None:
            recorder.close()
