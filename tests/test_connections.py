from types import SimpleNamespace

from proxy_addon.connections import client_address, client_ip, is_transparent


def test_client_address_and_ip():
    assert client_address(SimpleNamespace(peername=("10.0.0.4", 5555))) == "10.0.0.4:5555"
    assert client_address(SimpleNamespace(peername=("2001:db8::1", 443))) == "[2001:db8::1]:443"
    assert client_address(SimpleNamespace(peername=None)) == "unknown:0"
    assert client_ip(SimpleNamespace(peername=("10.0.0.4", 5555))) == "10.0.0.4"
    assert client_ip(object()) is None


def test_is_transparent():
    from mitmproxy.proxy import mode_specs

    assert is_transparent(SimpleNamespace(proxy_mode=mode_specs.ProxyMode.parse("transparent")))
    assert not is_transparent(SimpleNamespace(proxy_mode=mode_specs.ProxyMode.parse("regular")))
