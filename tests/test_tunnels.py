"""Tunnel hooks: SNI decisions and byte counting, called directly."""

from types import SimpleNamespace

from mitmproxy.test import tflow

from proxy_addon.addon import EgressPolicy
from proxy_addon.audit import DecisionEvent
from proxy_addon.decision import Action, Decision, Reason
from proxy_addon.observers import Observer
from proxy_addon.policy_loader import policy_from_text
from proxy_addon.tunnels import Tunnel
from support.tlshello import client_hello


class Recorder(Observer):
    def __init__(self):
        self.decisions, self.bytes, self.opened, self.closed = [], [], 0, 0

    def on_decision(self, event):
        self.decisions.append(event)

    def on_tunnel_open(self, event):
        self.opened += 1

    def on_tunnel_bytes(self, event, sent, received):
        self.bytes.append((sent, received))

    def on_tunnel_close(self, event):
        self.closed += 1


def make(options=""):
    recorder = Recorder()
    policy = policy_from_text(f"version: 1\nfeatures: [studio]\n{options}")
    egress = EgressPolicy(policy, observers=[recorder])
    allowed = policy.decide("ml.azure.com", 443)
    tunnel = Tunnel("ml.azure.com", 443, DecisionEvent(allowed, "enforce", "127.0.0.1:1", "CONNECT"))
    return egress, recorder, tunnel


CLIENT = SimpleNamespace(peername=("127.0.0.1", 1), id="c1")


def test_sni_checks():
    egress, recorder, tunnel = make()
    assert egress._check_sni(CLIENT, tunnel, "ML.azure.com.")
    assert not egress._check_sni(CLIENT, tunnel, "evil.example")
    assert not egress._check_sni(CLIENT, tunnel, None)
    assert not egress._check_sni(CLIENT, tunnel, "bad\x00name")
    assert [e.decision.reason for e in recorder.decisions] == [Reason.SNI_MISMATCH, Reason.SNI_MISSING,
                                                               Reason.SNI_MISMATCH]
    assert dict(recorder.decisions[0].extra)["sni"] == "evil.example"


def test_sni_missing_switch_and_simulate():
    egress, recorder, tunnel = make("options: {sni_missing: allow}\n")
    assert egress._check_sni(CLIENT, tunnel, None)
    assert not egress._check_sni(CLIENT, tunnel, None, malformed=True)
    egress.mode = "simulate"
    assert egress._check_sni(CLIENT, tunnel, "evil.example")  # logged, not enforced
    assert recorder.decisions[-1].enforced is False




class FakeNextLayer:
    def __init__(self, client, data):
        from mitmproxy.proxy.context import Context
        from mitmproxy import options

        self.context = Context(client, options.Options())
        self.layer = None
        self._data = data

    def data_client(self):
        return self._data


def test_checked_tunnel_is_relayed_by_the_counting_relay():
    from proxy_addon.tunnels import CountingRelay

    egress, recorder, tunnel = make()
    client = tflow.tclient_conn()
    egress._tunnels[client.id] = tunnel
    nextlayer = FakeNextLayer(client, client_hello("ml.azure.com"))
    egress.next_layer(nextlayer)
    assert isinstance(nextlayer.layer, CountingRelay) and tunnel.checked and not tunnel.denied
    assert recorder.decisions == []


def test_mismatched_sni_gets_no_relay():
    from proxy_addon.tunnels import CountingRelay

    egress, recorder, tunnel = make()
    client = tflow.tclient_conn()
    egress._tunnels[client.id] = tunnel
    nextlayer = FakeNextLayer(client, client_hello("evil.example"))
    egress.next_layer(nextlayer)
    assert not isinstance(nextlayer.layer, CountingRelay) and tunnel.denied
    assert recorder.decisions[-1].decision.reason is Reason.SNI_MISMATCH


def test_short_or_plain_first_bytes_are_left_to_mitmproxy():
    egress, recorder, tunnel = make()
    client = tflow.tclient_conn()
    egress._tunnels[client.id] = tunnel
    for data in (b"", b"\x16", b"GET / HTTP/1.1\r\n"):
        nextlayer = FakeNextLayer(client, data)
        egress.next_layer(nextlayer)
        assert nextlayer.layer is None and not tunnel.checked


def test_deny_tunnel_forgets_the_allow_decision():
    egress, _, tunnel = make()
    egress._allowed[CLIENT.id] = {("ml.azure.com", 443): tunnel.event}
    egress._deny_tunnel(CLIENT, tunnel)
    assert tunnel.denied and CLIENT.id not in egress._allowed
    assert Decision(Action.ALLOW, Reason.RULE_MATCHED, "https", "x", 1).allowed


def test_a_tunnel_relayed_before_its_check_is_refused():
    egress, recorder, tunnel = make()
    flow = tflow.ttcpflow()
    egress._tunnels[flow.client_conn.id] = tunnel
    egress.tcp_start(flow)
    assert tunnel.denied and recorder.opened == 0
    assert recorder.decisions[-1].decision.reason is Reason.SNI_MISSING
    assert "neither a TLS ClientHello nor an HTTP request" in recorder.decisions[-1].decision.detail
