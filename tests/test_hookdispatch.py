"""The hook dispatch table of the lean master (``proxy_addon.hookdispatch``)."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import connection, exceptions, hooks, master, options
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpConnectHook
from mitmproxy.test import tflow

from proxy_addon.hookdispatch import HookDispatch


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
