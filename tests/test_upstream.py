"""Upstream hooks: backstop, destination check, failure lines (called directly)."""

import asyncio
from types import SimpleNamespace

import pytest

from proxy_addon.addon import EgressPolicy
from proxy_addon.audit import DecisionEvent
from proxy_addon.observers import Observer
from proxy_addon.policy_loader import policy_from_text
from proxy_addon.resolver import Resolver


class Recorder(Observer):
    def __init__(self):
        self.decisions, self.errors = [], []

    def on_decision(self, event):
        self.decisions.append(event)

    def on_upstream_error(self, event, kind, message):
        self.errors.append(kind)


def setup(options="", resolve=("pypi.org=192.0.2.10",)):
    recorder = Recorder()
    policy = policy_from_text(f"version: 1\nfeatures: [pip-index]\n{options}")
    egress = EgressPolicy(policy, observers=[recorder])
    egress.resolver = Resolver(list(resolve))
    client = SimpleNamespace(id="c1", peername=("127.0.0.1", 5))
    server = SimpleNamespace(id="s1", address=("pypi.org", 443), error=None)
    data = SimpleNamespace(client=client, server=server)
    event = DecisionEvent(policy.decide("pypi.org", 443), "enforce", "127.0.0.1:5", "CONNECT")
    return egress, recorder, data, event


def test_connection_without_decision_is_refused_and_logged():
    egress, recorder, data, _ = setup()
    asyncio.run(egress.server_connect(data))
    assert data.server.error and recorder.decisions[-1].decision.reason.value == "internal_error"


def test_allowed_connection_is_pinned_to_the_checked_address():
    egress, recorder, data, event = setup()
    egress._allowed["c1"] = {("pypi.org", 443): event}
    asyncio.run(egress.server_connect(data))
    assert data.server.error is None and data.server.address == ("192.0.2.10", 443)
    assert recorder.decisions == []


@pytest.mark.parametrize("address, allowed, refused", [
    ("169.254.169.254", "", True),
    ("10.1.2.3", "options: {private_ranges_allowed: [10.0.0.0/8]}\n", False),
    ("10.1.2.3", "", True),
])
def test_private_destinations(address, allowed, refused):
    egress, recorder, data, event = setup(allowed, (f"pypi.org={address}",))
    egress._allowed["c1"] = {("pypi.org", 443): event}
    asyncio.run(egress.server_connect(data))
    assert bool(data.server.error) is refused
    if refused:
        assert recorder.decisions[-1].decision.reason.value == "private_address"


def test_failed_connection_gets_a_line():
    egress, recorder, data, event = setup()
    egress._allowed["c1"] = {("pypi.org", 443): event}
    asyncio.run(egress.server_connect(data))
    data.server.error = "[Errno 111] Connect call failed"
    egress.server_connect_error(data)
    assert recorder.errors == ["refused"]
    assert recorder.decisions[-1].decision.reason.value == "upstream_error"
