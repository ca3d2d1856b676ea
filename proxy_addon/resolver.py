"""Name resolution for upstream connections: static overrides, then the system resolver.

The proxy resolves a name once, checks every address (:mod:`proxy_addon.addresses`)
and connects to exactly the address it checked. Static overrides (``run
--resolve NAME=ADDRESS``, like ``curl --resolve`` or a hosts file; ``NAME`` may
be ``*.domain``) pin names to addresses, e.g. Azure ML private endpoints in a
staging network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Iterable

from .hostnames import InvalidHost, normalise_host
from .patterns import Pattern, PatternError, PatternIndex, parse_pattern

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ResolveError(OSError):
    """The name has no usable address (the message says why)."""


def parse_overrides(specs: Iterable[str]) -> PatternIndex[tuple[Pattern, IPAddress]]:
    """``["pypi.org=10.1.2.3", "*.internal.example=10.0.0.5"]`` -> an index;
    raises ``ValueError`` naming the bad entry."""
    index: PatternIndex[tuple[Pattern, IPAddress]] = PatternIndex()
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep:
            raise ValueError(f"resolve entry {spec!r} is not NAME=ADDRESS")
        try:
            pattern = parse_pattern(name.strip())
            address = ipaddress.ip_address(value.strip())
        except (PatternError, ValueError) as e:
            raise ValueError(f"resolve entry {spec!r}: {e}") from None
        index.add(pattern, (pattern, address))
    return index


class Resolver:
    """Resolves names asynchronously (the system resolver runs in a thread)."""

    def __init__(self, overrides: Iterable[str] = ()):
        self.overrides = parse_overrides(overrides)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Addresses of ``host`` in resolver order; raises :class:`ResolveError`."""
        try:
            normalised = normalise_host(host)
        except InvalidHost as e:
            raise ResolveError(str(e)) from None
        if normalised.ip is not None:
            return [normalised.ip]
        pinned = self.overrides.lookup(normalised.name) if len(self.overrides) else []
        if pinned:  # the most specific entry wins: exact names, then longer wildcards
            return [min(pinned, key=lambda entry: entry[0].specificity)[1]]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(normalised.name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise ResolveError(f"{normalised.name} does not resolve: {e}") from None
        addresses: list[IPAddress] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise ResolveError(f"{normalised.name} has no address")
        return addresses
