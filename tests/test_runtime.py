"""The lean runtime: which addons it loads, in which order; quiet connection
logs, frozen start-up objects, decision lines written on shutdown."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import resource
import signal
import socket
import ssl
import urllib.request
import weakref

import pytest
from mitmproxy import options

from proxy_addon.hookdispatch import HookDispatch
from proxy_addon.policy_loader import load_policy
from proxy_addon.runtime import (CONNECTION_LOGGER, ConnectionLogFilter, EgressMaster, freeze_startup_objects,
                                 raise_open_file_limit)

def test_lean_master_loads_only_what_it_needs_in_order():
    async def build():
        master = EgressMaster(options.Options(), load_policy())
        return [type(a).__name__ for a in master.addons.chain]

    names = asyncio.run(build())
    assert len(names) < 16
    assert names.index("EgressPolicy") < names.index("NextLayer")  # tunnels are checked first
    assert names.index("ConnectionGuard") < names.index("EgressPolicy")
    assert names.index("ProxyAuth") < names.index("EgressPolicy")  # 407 before deciding
    assert "ScriptLoader" in names and "Dumper" not in names


def test_open_file_limit_is_raised():
    raise_open_file_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_egress_master_loads_the_lean_addon_set_with_the_hook_table():
    async def go():
        m = EgressMaster(options.Options(), load_policy())
        return [type(a).__name__ for a in m.addons.chain], isinstance(m.addons, HookDispatch)

    names, lean = asyncio.run(go())
    assert lean
    assert names == ["TermLog", "ConnectionLogFilter", "Core", "ProxyAuth", "Block", "Proxyserver", "ConnectionGuard",
                     "EgressPolicy", "MetricsExporter", "NextLayer", "TlsConfig", "DisableH2C", "ScriptLoader",
                     "ErrorCheck"]


def _record(name, level):
    return logging.LogRecord(name, level, __file__, 1, "client connect", None, None)


@pytest.mark.parametrize("name, level, debug, shown", [
    (CONNECTION_LOGGER, logging.INFO, False, False),
    (CONNECTION_LOGGER, logging.DEBUG, False, False),
    (CONNECTION_LOGGER, logging.WARNING, False, True),
    (CONNECTION_LOGGER, logging.INFO, True, True),
    ("proxy_addon.addon", logging.INFO, False, True),
], ids=["connection info hidden", "connection debug hidden", "connection warning shown", "shown at debug",
        "other loggers untouched"])
def test_connection_log_filter(name, level, debug, shown):
    f = ConnectionLogFilter()
    f.debug = debug
    assert f.filter(_record(name, level)) is shown


def test_termlog_verbosity_debug_turns_connection_lines_on_and_other_handlers_still_see_them():
    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    async def go():
        m = EgressMaster(options.Options(), load_policy())
        before = m.connection_log_filter.debug
        m.options.update(termlog_verbosity="debug")
        after = m.connection_log_filter.debug
        await m.done()  # uninstalls the master's log handlers
        m.addons.get("errorcheck").finish()
        return before, after

    assert asyncio.run(go()) == (False, True)
    server_logger = logging.getLogger(CONNECTION_LOGGER)
    assert server_logger.level == logging.NOTSET  # the filter sits on the terminal handler, not on the logger
    capture, root_level = Capture(), logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)  # as azml-egress run sets it
    server_logger.addHandler(capture)
    try:
        server_logger.info("Client closed connection before completing request headers")
    finally:
        server_logger.removeHandler(capture)
        logging.getLogger().setLevel(root_level)
    assert seen == ["Client closed connection before completing request headers"]


def test_freeze_startup_objects_hides_them_from_the_collector():
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


def test_a_replaced_policy_is_freed_without_the_cycle_collector():
    """The start-up policy is frozen out of the collector's view; a reload must
    still free it, so the policy may hold no reference cycles."""
    gc.disable()
    try:
        policy = load_policy()
        for host in ("pypi.org", "evil.example", "files.pythonhosted.org"):
            policy.decide(host, 443)
        ref = weakref.ref(policy)
        del policy
        assert ref() is None
    finally:
        gc.enable()


def _fetch_through(proxy, pki):
    context = ssl.create_default_context(cafile=str(pki.ca_pem))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"https": proxy.url}),
                                         urllib.request.HTTPSHandler(context=context))
    with opener.open("https://pypi.org/simple/", timeout=10) as response:
        return response.status


@pytest.mark.parametrize("args, connection_lines", [
    ([], False),
    (["--set", "termlog_verbosity=debug"], True),
], ids=["default: no per-connection lines", "debug: per-connection lines"])
def test_per_connection_log_lines_only_at_debug(proxy_factory, pki, args, connection_lines):
    proxy = proxy_factory(args)
    assert _fetch_through(proxy, pki) == 200
    assert len(proxy.decisions(1)) == 1
    proxy.stop()
    stderr = proxy.stderr()
    assert ("client connect" in stderr) is connection_lines
    assert "Traceback" not in stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_writes_every_queued_decision_line(proxy_factory, sig):
    proxy = proxy_factory()
    for i in range(30):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(f"CONNECT denied-{i}.example:443 HTTP/1.1\r\nHost: denied-{i}.example:443\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.1 403")
    assert proxy.stop(sig) == 0  # at once: lines may still be queued
    for text in (proxy.decision_log.read_text(), proxy.stdout()):
        hosts = [json.loads(line)["host"] for line in text.splitlines()]
        assert hosts == [f"denied-{i}.example" for i in range(30)]
