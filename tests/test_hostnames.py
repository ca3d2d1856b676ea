import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addon.hostnames import InvalidHost, Host, normalise_host, parse_authority, parse_port, split_authority


@pytest.mark.parametrize("raw, expected", [
    ("pypi.org", "pypi.org"),
    ("PyPI.ORG", "pypi.org"),
    ("pypi.org.", "pypi.org"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("a-b.c0.example", "a-b.c0.example"),
    ("1.2.3.4.example", "1.2.3.4.example"),
], ids=["plain", "upper case", "trailing dot", "unicode to punycode", "punycode upper case", "hyphen digits",
        "numeric labels before a name"])
def test_normalise_names(raw, expected):
    assert normalise_host(raw) == Host(expected)


@pytest.mark.parametrize("raw, address", [
    ("203.0.113.10", "203.0.113.10"),
    ("203.0.113.10.", "203.0.113.10"),
    ("3405803786", "203.0.113.10"),
    ("0xcb00710a", "203.0.113.10"),
    ("0313.0.0161.012", "203.0.113.10"),
    ("127.1", "127.0.0.1"),
    ("[2001:db8::10]", "2001:db8::10"),
    ("2001:DB8::10", "2001:db8::10"),
    ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
], ids=["dotted", "dotted trailing dot", "decimal integer", "hex integer", "octal dotted", "short form",
        "bracketed v6", "bare v6 upper case", "v4-mapped v6"])
def test_ip_literals(raw, address):
    host = normalise_host(raw)
    assert host.ip == ipaddress.ip_address(address)
    assert host.name == str(ipaddress.ip_address(address))


@pytest.mark.parametrize("raw, message", [
    ("", "empty"),
    ("pypi.org..", "empty label"),
    (".pypi.org", "empty label"),
    ("pypi\x00.org", "control"),
    ("pypi.org\r\nX: y", "control"),
    ("py pi.org", "control or space"),
    ("a_b.example", "outside"),
    ("-a.example", "outside"),
    ("a-.example", "outside"),
    ("a" * 64 + ".example", "longer than 63"),
    (("a" * 60 + ".") * 5 + "example", "longer than 253"),
    ("x" * 2000, "longer than 1024"),
    ("1.2.3.999", "not an IPv4"),
    ("xn--zz.example", "punycode"),
    ("[2001:db8::1", "IPv6"),
    ("[fe80::1%eth0]", "zone"),
    ("pypi.org/path", "outside"),
], ids=["empty", "double dot", "leading dot", "NUL", "CRLF", "space", "underscore", "leading hyphen",
        "trailing hyphen", "long label", "long name", "absurd length", "bad numeric", "bad punycode",
        "unclosed bracket", "zone id", "slash"])
def test_invalid_hosts(raw, message):
    with pytest.raises(InvalidHost, match=message):
        normalise_host(raw)


def test_invalid_host_message_is_escaped():
    with pytest.raises(InvalidHost) as e:
        normalise_host("evil\n{\"forged\": 1}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("authority, default, expected", [
    ("pypi.org:443", None, ("pypi.org", 443)),
    ("pypi.org", 443, ("pypi.org", 443)),
    ("[2001:db8::10]:443", None, ("[2001:db8::10]", 443)),
    ("3405803786:8443", None, ("3405803786", 8443)),
])
def test_split_authority(authority, default, expected):
    assert split_authority(authority, default) == expected


@pytest.mark.parametrize("authority, message", [
    ("pypi.org", "no port"),
    ("pypi.org:0", "outside"),
    ("pypi.org:65536", "outside"),
    ("pypi.org:http", "not a number"),
    ("pypi.org:-1", "not a number"),
    ("2001:db8::10:443", "brackets"),
    ("[2001:db8::10]x", "after"),
    ("", "empty"),
])
def test_bad_authorities(authority, message):
    with pytest.raises(InvalidHost, match=message):
        split_authority(authority)


def test_parse_authority_normalises():
    assert parse_authority("PyPI.org.:443") == (Host("pypi.org"), 443)
    assert parse_port(443) == 443
    with pytest.raises(InvalidHost):
        parse_port(True)


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20).filter(
    lambda s: not s.startswith("-") and not s.endswith("-") and not s.isdigit())
names = st.lists(labels, min_size=1, max_size=5).map(".".join)


@given(names)
def test_normalise_is_idempotent(name):
    once = normalise_host(name).name
    assert normalise_host(once).name == once
    assert normalise_host(name.upper() + ".").name == once


@given(st.text(alphabet="abcdéüßøçñ", min_size=1, max_size=15))
def test_unicode_and_punycode_spellings_agree(label):
    try:
        unicode_form = normalise_host(label + ".example")
    except InvalidHost:
        return
    assert normalise_host(unicode_form.name) == unicode_form


@pytest.mark.parametrize("raw", ["a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62 + "x",
                                 "a" * 64 + ".example", "x.123", "a-.example"])
def test_fast_path_does_not_accept_what_the_full_path_refuses(raw):
    with pytest.raises(InvalidHost):
        normalise_host(raw)
