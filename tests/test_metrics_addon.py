"""The metrics wiring: build_addons and the MetricsExporter addon
(options, server lifecycle, readiness), driven through mitmproxy's test context."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import urllib.request
from types import SimpleNamespace

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from proxy_addon.policy_loader import load_policy
from proxy_addon.metrics_addon import build_addons

from support.proxy import free_port


@pytest.fixture(scope="module")
def policy():
    return load_policy("azureml-2020-04")


def in_loop(test):
    """Run an ``async def`` test in its own event loop (mitmproxy's test
    context needs a running loop; asyncio.run closes it afterwards)."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return run


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_build_addons_twice_gives_separate_registries_and_times_decide(policy):
    egress_a, exporter_a = build_addons(policy)
    egress_b, exporter_b = build_addons(policy)
    assert exporter_a.metrics.registry is not exporter_b.metrics.registry
    assert egress_a.observers == [exporter_a.metrics]
    for host in ("pypi.org", "evil.example", "pypi.org"):
        egress_a.decide(host, 443, "https", "127.0.0.1")
    registry = exporter_a.metrics.registry
    assert registry.get_sample_value("azml_egress_decision_duration_seconds_count") == 3
    assert 0 < registry.get_sample_value("azml_egress_decision_duration_seconds_sum") < 1
    assert exporter_b.metrics.registry.get_sample_value("azml_egress_decision_duration_seconds_count") == 0


def test_decide_without_a_policy_is_not_timed():
    egress, exporter = build_addons()
    assert egress.decide("pypi.org", 443, "https", None).reason == "internal_error"
    assert exporter.metrics.registry.get_sample_value("azml_egress_decision_duration_seconds_count") == 0


class FakeProxyserver:
    def __init__(self, running: bool):
        self.servers = [SimpleNamespace(is_running=running)]


@pytest.mark.parametrize(("with_policy", "started", "listening", "expected"), [
    (True, True, True, []),
    (False, True, True, ["no valid policy is loaded"]),
    (True, True, False, ["the proxy is not listening"]),
    (True, False, True, ["the proxy is not listening"]),
    (False, False, False, ["no valid policy is loaded", "the proxy is not listening"]),
], ids=["ready", "no policy", "proxy server down", "not running yet", "neither"])
def test_readiness(policy, with_policy, started, listening, expected):
    egress, exporter = build_addons(policy if with_policy else None)
    exporter._master = SimpleNamespace(addons=SimpleNamespace(get=lambda name: FakeProxyserver(listening)))
    exporter._running = started
    assert exporter.problems() == expected


def test_readiness_follows_a_policy_installed_later(policy):
    egress, exporter = build_addons()
    exporter._master = SimpleNamespace(addons=SimpleNamespace(get=lambda name: FakeProxyserver(True)))
    exporter._running = True
    assert exporter.problems() == ["no valid policy is loaded"]
    egress.install(policy)
    assert exporter.problems() == []
    assert exporter.metrics.registry.get_sample_value("azml_egress_policy_loaded") == 1


@pytest.mark.parametrize(("option", "value", "message"), [
    ("azml_metrics_port", 70000, "azml_metrics_port: 70000 is outside 0..65535"),
    ("azml_metrics_port", -1, "azml_metrics_port: -1 is outside"),
    ("azml_metrics_host", " ", "azml_metrics_host: empty"),
], ids=["port too big", "negative port", "empty host"])
@in_loop
async def test_bad_options_are_refused(policy, option, value, message):
    egress, exporter = build_addons(policy)
    with taddons.context(egress, exporter) as tctx:
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(exporter, **{option: value})


@in_loop
async def test_server_lifecycle(policy):
    egress, exporter = build_addons(policy)
    port = free_port()
    with taddons.context(egress, exporter) as tctx:
        tctx.configure(exporter, azml_metrics_port=port)
        assert exporter.server is None  # not before running
        egress.install(policy)  # what loading the policy does
        exporter.running()
        try:
            assert exporter.server is not None and exporter.server.port == port
            status, body = get(f"http://127.0.0.1:{port}/metrics")
            assert status == 200 and "azml_egress_policy_rules 15.0" in body
            # changing the port while running moves the server
            other = free_port()
            tctx.configure(exporter, azml_metrics_port=other)
            assert get(f"http://127.0.0.1:{other}/healthz") == (200, "ok\n")
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        finally:
            exporter.done()
        assert exporter.server is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", other), timeout=1).close()


@in_loop
async def test_port_zero_disables_the_server(policy):
    egress, exporter = build_addons(policy)
    with taddons.context(egress, exporter) as tctx:
        tctx.configure(exporter, azml_metrics_port=0)
        exporter.running()
        assert exporter.server is None
        exporter.done()


@in_loop
async def test_port_in_use_is_a_clear_error(policy, caplog):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        egress, exporter = build_addons(policy)
        with taddons.context(egress, exporter) as tctx, caplog.at_level(logging.ERROR):
            tctx.configure(exporter, azml_metrics_port=port)
            exporter.running()
            exporter.done()
    assert exporter.server is None
    assert f"metrics server cannot listen on 127.0.0.1:{port}: Address already in use" in caplog.text
    assert "--metrics-port" in caplog.text
