import ipaddress

import pytest

from proxy_addon.addresses import embedded_ipv4, parse_networks, refusal


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "CGNAT"), ("100.127.255.254", "CGNAT"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("255.255.255.255", "reserved"),
    ("::ffff:169.254.169.254", "link-local (embedded"), ("::ffff:10.0.0.1", "private (embedded"),
    ("64:ff9b::a9fe:a9fe", "link-local (embedded"), ("2002:7f00:1::", "loopback (embedded"),
    ("::127.0.0.1", "loopback (embedded"),
])
def test_refused(address, kind):
    assert refusal(address).startswith(kind)


@pytest.mark.parametrize("address", ["20.42.0.1", "2603:1030::1", "203.0.113.10", "192.0.2.10", "100.128.0.1",
                                     "172.32.0.1", "::ffff:20.42.0.1"])
def test_allowed(address):
    assert refusal(address) is None


def test_policy_can_allow_private_ranges():
    nets = parse_networks(["10.0.0.0/8"])
    assert refusal("10.1.2.3", nets) is None
    assert refusal("::ffff:10.1.2.3", nets) is None
    assert refusal("192.168.1.1", nets) == "private"
    assert refusal("169.254.169.254", nets) == "link-local"


def test_embedded():
    assert embedded_ipv4(ipaddress.ip_address("::ffff:1.2.3.4")) == ipaddress.ip_address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("2603:1030::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("1.2.3.4")) is None


def test_bad_networks():
    with pytest.raises(ValueError, match="'10.0.0.0/33' is not an IP address or CIDR"):
        parse_networks(["10.0.0.0/33"])
