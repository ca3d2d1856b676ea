"""The lean mitmproxy master behind ``azml-egress run``.

It loads only the addons this product needs (instead of the ~30 that mitmdump
loads): logging to stderr, core, proxy authentication, client blocking,
the proxy server, layer selection, TLS configuration, the egress policy addon,
user scripts (``-s``) and the start-up error check. Decision lines go to stdout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field

from mitmproxy import exceptions, master, options
from mitmproxy.addons import block, core, errorcheck, next_layer, proxyauth, proxyserver, script, termlog, tlsconfig

from .addon import EgressPolicy
from .guard import ConnectionGuard
from .policy import Policy

logger = logging.getLogger(__name__)


@dataclass
class RunSettings:
    """Everything ``azml-egress run`` needs besides the policy."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 3128
    decision_log: str = ""
    log_stdout: bool = True
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
        self.egress = EgressPolicy(policy)
        self.guard = ConnectionGuard(self.egress)
        self.addons.add(
            termlog.TermLog(out=sys.stderr),
            core.Core(),
            proxyauth.ProxyAuth(),
            block.Block(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            self.guard,
            self.egress,
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
