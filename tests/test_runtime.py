"""The lean runtime: hook dispatch table, quiet connection logs, frozen start-up objects."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import socket
import ssl
import urllib.request
import weakref

import pytest
from mitmproxy import connection, exceptions, hooks, master, options
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpConnectHook
from mitmproxy.test import tflow

from proxy_addon.runtime import CONNECTION_LOGGER, EgressMaster, HookDispatch, freeze_startup_objects
from proxy_addon.policy_loader import load_policy


class Recorder:
    def __init__(self, name, calls, fail=False, halt=False):
        self.name, self.calls, self.fail, self.halt = name, calls, fail, halt

    def client_connected(self, client):
        self.calls.append((self.name, client))
        if self.fail:
            raise RuntimeError(f"{self.name} broke")
        if self.halt:
            raise exceptions.AddonHalt()


class AsyncRecorder:
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    async def client_connected(self, client):
        await asyncio.sleep(0)
        self.calls.append((self.name, client))


class Silent:
    name = "silent"


class Parent:
    """Manages sub-addons the way mitmproxy's script loader does."""

    name = "parent"

    def __init__(self):
        self.addons = []


def client():
    return connection.Client(peername=("127.0.0.1", 5555), sockname=("127.0.0.1", 3128))


def run(coro_fn):
    """Run ``coro_fn(manager)`` with a fresh master whose addon manager is a HookDispatch."""

    async def main():
        m = master.Master(options.Options())
        plain, m.addons = m.addons, HookDispatch(m)
        m.options.changed.disconnect(plain._configure_all)
        return await coro_fn(m.addons)

    return asyncio.run(main())


def test_only_implementing_addons_are_called_in_chain_order_and_async_ones_awaited():
    calls = []
    c = client()

    async def go(addons):
        addons.add(Recorder("a", calls), Silent(), AsyncRecorder("b", calls), Recorder("c", calls))
        assert [type(a).__name__ for a, func, walk in addons.handlers("client_connected")] == \
            ["Recorder", "AsyncRecorder", "Recorder"]
        assert addons.handlers("tcp_message") == []
        await addons.trigger_event(server_hooks.ClientConnectedHook(c))

    run(go)
    assert calls == [("a", c), ("b", c), ("c", c)]


def test_a_failing_addon_is_logged_and_the_next_one_still_runs(caplog):
    calls = []

    async def go(addons):
        addons.add(Recorder("a", calls, fail=True), Recorder("b", calls))
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))

    with caplog.at_level(logging.ERROR):
        run(go)
    assert [name for name, _ in calls] == ["a", "b"]
    assert any(r.message == "Addon error: a broke" and r.exc_info for r in caplog.records)


def test_addon_halt_stops_the_chain():
    calls = []

    async def go(addons):
        addons.add(Recorder("a", calls, halt=True), Recorder("b", calls))
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))

    run(go)
    assert [name for name, _ in calls] == ["a"]


def test_table_follows_add_and_remove():
    calls = []

    async def go(addons):
        first = Recorder("a", calls)
        addons.add(first)
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))
        addons.add(Recorder("b", calls))
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))
        addons.remove(first)
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))

    run(go)
    assert [name for name, _ in calls] == ["a", "a", "b", "b"]


def test_sub_addons_are_walked_at_dispatch_time():
    """Scripts load and reload without telling the manager; they must be seen at once."""
    calls = []

    async def go(addons):
        parent = Parent()
        addons.add(parent)
        assert not addons.has_handlers("client_connected")
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))
        parent.addons.append(Recorder("script", calls))  # as Script.loadscript does after register
        assert addons.has_handlers("client_connected")
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))
        parent.addons.clear()
        await addons.trigger_event(server_hooks.ClientConnectedHook(client()))

    run(go)
    assert [name for name, _ in calls] == ["script"]


def test_sync_trigger_reaches_configure_and_refuses_async_handlers(caplog):
    seen = []

    class Configurable:
        def configure(self, updated):
            seen.append(set(updated))

    class AsyncConfigure:
        async def configure(self, updated):  # pragma: no cover - must not be called
            seen.append("async")

    async def go(addons):
        addons.add(Configurable(), AsyncConfigure())
        addons.trigger(hooks.ConfigureHook({"listen_port"}))

    with caplog.at_level(logging.ERROR):
        run(go)
    assert seen == [{"listen_port"}]
    assert any("cannot be called from sync context" in r.message for r in caplog.records)


def test_update_hook_only_when_someone_listens():
    updates = []

    class Listener:
        def update(self, flows):
            updates.append(flows)

    async def go(addons):
        f = tflow.tflow()
        assert not addons.has_handlers("update")
        await addons.handle_lifecycle(HttpConnectHook(f))  # nobody listens: no update event
        addons.add(Listener())
        assert addons.has_handlers("update")
        await addons.handle_lifecycle(HttpConnectHook(f))
        return f

    f = run(go)
    assert updates == [[f]]


def test_egress_master_loads_the_lean_addon_set():
    policy = load_policy()

    async def go():
        m = EgressMaster(options.Options(), policy)
        return [type(a).__name__ for a in m.addons.chain], isinstance(m.addons, HookDispatch)

    names, lean = asyncio.run(go())
    assert lean
    assert names == ["TermLog", "ConnectionLogLevel", "Core", "ProxyAuth", "Block", "Proxyserver", "NextLayer",
                     "TlsConfig", "DisableH2C", "EgressPolicy", "ScriptLoader", "ErrorCheck"]
    assert logging.getLogger(CONNECTION_LOGGER).level == logging.WARNING


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
