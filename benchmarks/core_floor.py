"""The floor: mitmproxy's proxy core with nothing but pass-through, for comparison.

A master with the same hook dispatch as ``azml-egress run`` and only the
addons a TLS pass-through needs (log, core, proxy server, layer selection,
TLS configuration) plus one hook that passes every ClientHello through. No
policy, no decision log, no destination check: what any product built on
mitmproxy's connection handling pays per tunnel at least.

Run: ``python3 benchmarks/core_floor.py PORT``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mitmproxy import master, options  # noqa: E402
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, termlog, tlsconfig  # noqa: E402

from proxy_addon.hookdispatch import HookDispatch  # noqa: E402
from proxy_addon.runtime import ConnectionLogFilter, freeze_startup_objects  # noqa: E402


class PassThrough:
    def tls_clienthello(self, data) -> None:
        data.ignore_connection = True


async def main(port: int) -> None:
    opts = options.Options(listen_host="127.0.0.1", listen_port=port)
    m = master.Master(opts)
    plain, m.addons = m.addons, HookDispatch(m)
    opts.changed.disconnect(plain._configure_all)
    terminal, quiet = termlog.TermLog(out=sys.stderr), ConnectionLogFilter()
    terminal.logger.addFilter(quiet)
    m._legacy_log_events.addFilter(quiet)
    m.addons.add(terminal, quiet, core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                 PassThrough(), errorcheck.ErrorCheck())
    opts.update(connection_strategy="lazy")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, m.shutdown)
    freeze_startup_objects()
    await m.run()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
