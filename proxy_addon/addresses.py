"""Destination address checks: which resolved addresses the proxy may connect to.

Refused unless the policy lists them in ``options.private_ranges_allowed``
(Azure ML private endpoints legitimately resolve to ``10.x``): loopback,
link-local (incl. the ``169.254.169.254`` metadata endpoint), unspecified,
multicast, broadcast/reserved, CGNAT (RFC 6598) and private ranges (RFC 1918,
IPv6 ULA), and IPv6 forms that embed such an IPv4 address (v4-mapped,
v4-compatible, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``). The ranges are
listed here explicitly rather than taken from ``ipaddress.is_private``, whose
meaning differs between Python versions. Documentation ranges (TEST-NET) are
not refused.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "CGNAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fc00::/7", "private"),
    ("ff00::/8", "multicast"),
)
_REFUSED = tuple((ipaddress.ip_network(net), kind) for net, kind in REFUSED_RANGES)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress | str, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why the proxy must not connect to ``address`` (e.g. ``"link-local"``),
    or ``None`` when it may. ``allowed`` networks lift the refusal."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%")[0])
    allowed = tuple(allowed)
    candidates = [address]
    inner = embedded_ipv4(address)
    if inner is not None:
        candidates.append(inner)
    for candidate in candidates:
        for net, kind in _REFUSED:
            if candidate.version == net.version and candidate in net:
                if any(candidate.version == a.version and candidate in a for a in allowed):
                    break
                return kind if candidate is address else f"{kind} (embedded in {address})"
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs or addresses -> networks; raises ``ValueError`` naming the bad value."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR (write e.g. 10.0.0.0/8)") from None
    return tuple(nets)
