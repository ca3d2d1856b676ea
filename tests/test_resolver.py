import asyncio
import ipaddress
import socket

import pytest

from proxy_addon.resolver import ResolveError, Resolver, parse_overrides


def resolve(resolver, host, port=443):
    return asyncio.run(resolver.resolve(host, port))


def test_overrides_most_specific_wins():
    r = Resolver(["*.org=192.0.2.1", "pypi.org=192.0.2.2", "*.pypi.org=192.0.2.3"])
    assert resolve(r, "pypi.org") == [ipaddress.ip_address("192.0.2.2")]
    assert resolve(r, "test.pypi.org") == [ipaddress.ip_address("192.0.2.3")]
    assert resolve(r, "PyPI.ORG.") == [ipaddress.ip_address("192.0.2.2")]
    assert resolve(r, "other.org") == [ipaddress.ip_address("192.0.2.1")]


def test_ip_literals_resolve_to_themselves():
    assert resolve(Resolver(), "3405803786") == [ipaddress.ip_address("203.0.113.10")]


def test_system_resolver_for_localhost():
    assert ipaddress.ip_address("127.0.0.1") in resolve(Resolver(), "localhost") or \
        ipaddress.ip_address("::1") in resolve(Resolver(), "localhost")


def test_failures_raise_resolve_error(monkeypatch):
    async def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    loop = asyncio.new_event_loop()
    loop_cls = type(loop)
    loop.close()
    monkeypatch.setattr(loop_cls, "getaddrinfo", fail)
    with pytest.raises(ResolveError, match="does not resolve"):
        resolve(Resolver(), "nothing.example")
    with pytest.raises(ResolveError, match="empty label"):
        resolve(Resolver(), "a..b")


@pytest.mark.parametrize("spec, message", [
    ("pypi.org", "not NAME=ADDRESS"), ("pypi.org=notanip", "does not appear"), ("a.*.b=1.2.3.4", "left-most"),
])
def test_bad_overrides(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides([spec])
