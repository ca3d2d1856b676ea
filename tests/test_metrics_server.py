"""The /metrics, /healthz, /readyz HTTP server, on real loopback sockets."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from proxy_addon.metrics_server import MetricsServer


def request(server, path, method="GET"):
    req = urllib.request.Request(server.url + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


@pytest.fixture
def problems():
    return []


@pytest.fixture
def server(problems):
    registry = CollectorRegistry()
    counter = Counter("azml_egress_test_things", "Things.", ["kind"], registry=registry)
    counter.labels("a").inc(3)
    s = MetricsServer(registry, lambda: list(problems), "127.0.0.1", 0)
    s.start()
    yield s
    s.stop()


def test_metrics_are_served_in_the_text_format(server):
    status, headers, body = request(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body) for s in f.samples}
    assert samples[("azml_egress_test_things_total", (("kind", "a"),))] == 3


def test_healthz(server):
    assert request(server, "/healthz")[::2] == (200, "ok\n")


@pytest.mark.parametrize(("found", "status", "body"), [
    ([], 200, "ready\n"),
    (["no valid policy is loaded"], 503, "not ready\nno valid policy is loaded\n"),
    (["no valid policy is loaded", "the proxy is not listening"], 503,
     "not ready\nno valid policy is loaded\nthe proxy is not listening\n"),
], ids=["ready", "no policy", "two problems"])
def test_readyz_reflects_the_problems(server, problems, found, status, body):
    problems.extend(found)
    assert request(server, "/readyz")[::2] == (status, body)


def test_readyz_turns_ready_when_the_problem_goes(server, problems):
    problems.append("no valid policy is loaded")
    assert request(server, "/readyz")[0] == 503
    problems.clear()
    assert request(server, "/readyz")[0] == 200


def test_a_failing_readiness_check_is_not_ready():
    def broken():
        raise RuntimeError("boom")
    s = MetricsServer(CollectorRegistry(), broken, "127.0.0.1", 0)
    s.start()
    try:
        status, _, body = request(s, "/readyz")
    finally:
        s.stop()
    assert status == 503 and "readiness check failed: RuntimeError: boom" in body


@pytest.mark.parametrize(("path", "method", "status"), [
    ("/nope", "GET", 404),
    ("/metrics", "POST", 405),
    ("/", "GET", 200),
    ("/healthz", "HEAD", 200),
], ids=["unknown path", "post", "index", "head"])
def test_other_requests(server, path, method, status):
    assert request(server, path, method)[0] == status


def test_port_in_use_raises_oserror_and_stop_frees_the_port(server):
    busy = MetricsServer(CollectorRegistry(), list, "127.0.0.1", server.port)
    with pytest.raises(OSError):
        busy.start()
    assert not busy.running
    port = server.port
    assert server.running
    server.stop()
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = MetricsServer(CollectorRegistry(), list, "127.0.0.1", port)
    again.start()
    try:
        assert request(again, "/healthz")[0] == 200
    finally:
        again.stop()


def test_binds_only_the_given_address(server):
    listening = server._server.socket.getsockname()
    assert listening[0] == "127.0.0.1"


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    s = MetricsServer(CollectorRegistry(), list, "::1", 0)
    try:
        s.start()
    except OSError as e:
        pytest.skip(f"cannot bind ::1: {e}")
    try:
        assert s.url.startswith("http://[::1]:")
        assert request(s, "/healthz")[0] == 200
    finally:
        s.stop()
