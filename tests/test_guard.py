"""Connection guard: limit, header timeout, protocol errors (called directly)."""

import asyncio
import logging

from mitmproxy.test import taddons, tflow

from proxy_addon.addon import EgressPolicy
from proxy_addon.guard import ConnectionGuard
from proxy_addon.observers import Observer
from proxy_addon.policy_loader import load_policy


class Recorder(Observer):
    def __init__(self):
        self.reasons = []

    def on_decision(self, event):
        self.reasons.append(event.decision.reason.value)


def run(body):
    async def main():
        recorder = Recorder()
        egress = EgressPolicy(load_policy(), observers=[recorder])
        guard = ConnectionGuard(egress)
        with taddons.context(guard, egress) as tctx:
            tctx.configure(egress, azml_log_stdout=False)
            await body(tctx, guard, egress, recorder)

    asyncio.run(main())


def test_connection_limit():
    async def body(tctx, guard, egress, recorder):
        tctx.configure(guard, azml_max_connections=2)
        clients = [tflow.tclient_conn() for _ in range(3)]
        for c in clients:
            guard.client_connected(c)
        assert clients[2].error and not clients[0].error
        assert recorder.reasons == ["too_many_connections"]
        guard.client_disconnected(clients[0])
        late = tflow.tclient_conn()
        guard.client_connected(late)
        assert not late.error

    run(body)


def test_header_timeout_logs_undecided_clients_only():
    async def body(tctx, guard, egress, recorder):
        tctx.configure(guard, azml_header_timeout=1)
        slow, decided = tflow.tclient_conn(), tflow.tclient_conn()
        guard.client_connected(slow)
        guard.client_connected(decided)
        egress.mark_decided(decided.id)
        await asyncio.sleep(1.3)
        assert recorder.reasons == ["invalid_request"]

    run(body)


def test_protocol_errors_from_mitmproxy_are_logged_once():
    async def body(tctx, guard, egress, recorder):
        client = tflow.tclient_conn()
        guard.client_connected(client)
        guard.running()
        log = logging.getLogger("mitmproxy.proxy.server")
        log.warning("Bad HTTP request line: b'connect x'", extra={"client": client.peername})
        log.warning("Bad HTTP request line: b'again'", extra={"client": client.peername})
        log.warning("Bad HTTP request line: b'other'", extra={"client": ("10.9.9.9", 1)})
        guard.done()
        assert recorder.reasons == ["invalid_request"]

    run(body)


def test_bad_limits_are_refused():
    async def body(tctx, guard, egress, recorder):
        import pytest
        from mitmproxy import exceptions

        for option in ("azml_max_connections", "azml_header_timeout", "azml_idle_timeout"):
            with pytest.raises(exceptions.OptionsError, match=option):
                tctx.configure(guard, **{option: 0})

    run(body)
