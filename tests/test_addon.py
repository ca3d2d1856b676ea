"""The egress addon's hooks, called directly on mitmproxy test flows (taddons/tflow)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow

from proxy_addon.addon import EgressPolicy
from proxy_addon.observers import Observer
from proxy_addon.policy_loader import load_policy, policy_from_text
from proxy_addon.tunnels import METADATA_KEY


class Recorder(Observer):
    def __init__(self):
        self.events = []

    def on_decision(self, event):
        self.events.append(event)


def connect_flow(host: str, port: int = 443) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make("CONNECT", f"http://{host}:{port}/")
    flow.request.host, flow.request.port = host, port
    flow.request.authority = f"{host}:{port}"
    return flow


def plain_flow(url: str, host_header: str | None = None) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make("GET", url)
    if host_header is not None:
        flow.request.headers["Host"] = host_header
    return flow


def in_loop(test):
    """Run the test body inside a running event loop (mitmproxy's test
    context needs one) with a configured addon as first argument."""

    def run(*args, **kwargs):
        async def body():
            recorder = Recorder()
            egress = EgressPolicy(load_policy(), observers=[recorder])
            with taddons.context(egress) as tctx:
                tctx.configure(egress, azml_log_stdout=False)
                egress.recorder = recorder
                egress.tctx = tctx
                result = test(egress, *args, **kwargs)
                if asyncio.iscoroutine(result):
                    await result

        asyncio.run(body())

    run.__name__ = test.__name__
    signature = inspect.signature(test)
    run.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return run


@in_loop
def test_connect_allowed_and_denied(addon):
    allowed = connect_flow("pypi.org")
    addon.http_connect(allowed)
    assert allowed.response is None
    assert allowed.metadata[METADATA_KEY].decision.allowed
    denied = connect_flow("evil.example")
    addon.http_connect(denied)
    assert denied.response.status_code == 403
    assert denied.response.headers["X-Azml-Egress-Reason"] == "no_rule_matched"
    assert [e.decision.host for e in addon.recorder.events] == ["pypi.org", "evil.example"]


@in_loop
def test_already_handled_flow_is_left_alone(addon):
    flow = connect_flow("evil.example")
    flow.response = http.Response.make(502)
    addon.http_connect(flow)
    assert flow.response.status_code == 502 and addon.recorder.events == []


@in_loop
def test_407_from_proxy_auth_is_logged(addon):
    flow = connect_flow("pypi.org")
    flow.response = http.Response.make(407)
    addon.http_connect(flow)
    (event,) = addon.recorder.events
    assert event.decision.reason.value == "proxy_auth_required" and event.enforced


@in_loop
def test_simulate_mode_logs_but_does_not_block(addon):
    addon.tctx.configure(addon, azml_mode="simulate")
    flow = connect_flow("evil.example")
    addon.http_connect(flow)
    assert flow.response is None
    assert addon.recorder.events[-1].enforced is False


@in_loop
def test_bad_mode_and_policy_options_are_refused(addon, tmp_path):
    tctx = addon.tctx
    with pytest.raises(exceptions.OptionsError, match="azml_mode"):
        tctx.configure(addon, azml_mode="block")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nfeatures: [nope]\n")
    with pytest.raises(exceptions.OptionsError, match="unknown feature 'nope'"):
        tctx.configure(addon, azml_policy=str(bad))
    with pytest.raises(exceptions.OptionsError, match="azml_resolve"):
        tctx.configure(addon, azml_resolve=["nonsense"])
    assert addon.policy is not None and addon.policy.name == "azureml-default"


@in_loop
def test_plain_http_host_mismatch_and_proxy_authorization_stripped(addon):
    flow = plain_flow("http://pypi.org/simple/", "evil.example")
    flow.request.headers["Proxy-Authorization"] = "Basic eDp5"
    addon.requestheaders(flow)
    assert flow.response.status_code == 400
    assert "Proxy-Authorization" not in flow.request.headers
    ok = plain_flow("http://pypi.org/simple/", "PyPI.org:80")
    addon.requestheaders(ok)
    assert ok.response is None


@in_loop
def test_fails_closed_on_errors(addon, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(addon, "decide", explode)
    flow = connect_flow("pypi.org")
    addon.http_connect(flow)
    assert flow.response.status_code == 403
    assert addon.recorder.events[-1].decision.reason.value == "internal_error"


@in_loop
def test_without_a_policy_everything_is_denied(addon):
    addon.policy = None
    flow = connect_flow("pypi.org")
    addon.http_connect(flow)
    assert flow.response.status_code == 403
    assert addon.recorder.events[-1].decision.detail == "no valid policy is loaded"


@in_loop
def test_observer_failures_do_not_break_deciding(addon):
    class Broken(Observer):
        def on_decision(self, event):
            raise ValueError("broken sink")

    addon.observers.insert(0, Broken())
    flow = connect_flow("evil.example")
    addon.http_connect(flow)
    assert flow.response.status_code == 403 and addon.recorder.events


@in_loop
async def test_reload_keeps_the_previous_policy_on_a_bad_file(addon, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nname: one\nfeatures: [pip-index]\n")
    addon.install(policy_from_text(path.read_text(), file=str(path)))
    addon._reload_lock = asyncio.Lock()
    path.write_text("version: 1\nname: two\nfeatures: [conda]\n")
    assert await addon.reload("test") is True
    assert addon.policy.name == "two"
    path.write_text("version: 1\nfeatures: [\n")
    assert await addon.reload("test") is False
    assert addon.policy.name == "two"
