import pytest

from proxy_addon.observers import UPSTREAM_ERROR_KINDS, Observer, classify_upstream_error


@pytest.mark.parametrize("message, kind", [
    ("[Errno 111] Connect call failed ('127.0.0.1', 9)", "refused"),
    ("Connection refused", "refused"),
    ("[Errno 110] Connection timed out", "timeout"),
    ("TimeoutError()", "timeout"),
    ("[Errno -2] Name or service not known", "dns"),
    ("[Errno 104] Connection reset by peer", "reset"),
    ("TLS handshake failed: certificate verify failed", "tls"),
    ("something odd", "other"),
])
def test_classify(message, kind):
    assert classify_upstream_error(message) == kind
    assert kind in UPSTREAM_ERROR_KINDS


def test_base_observer_ignores_everything():
    o = Observer()
    assert o.on_decision(None) is None and o.on_tunnel_bytes(None, 1, 2) is None and o.on_policy(None, False) is None
