"""Host names as the policy sees them: parsing authorities and normalising FQDNs.

Everything that compares a host (CONNECT authority, ``Host`` header, TLS SNI,
target FQDNs in rules and catalogs) goes through :func:`normalise_host` first, so
that ``PyPI.ORG``, ``pypi.org.`` and ``pypi.org`` are one name, and Unicode and
punycode spellings of an internationalised name are one name.

Rules (Azure Firewall application-rule semantics, with smokescreen's
normalisation choices, see ``docs``/README "Matching"):

* case-folded, one trailing dot stripped, IDNA (UTS #46) to punycode;
* labels 1..63 octets of ``a-z 0-9 -`` (no leading or trailing hyphen), name at
  most 253 octets; anything else raises :class:`InvalidHost`;
* IP literals (dotted quad, bracketed IPv6, and legacy forms such as
  ``3405803786``, ``0xcb00710a`` or ``127.1`` that ``inet_aton`` accepts) are
  recognised and returned as addresses, never as names.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import NamedTuple

import idna

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
MAX_RAW_LENGTH = 1024
"""Longer raw inputs are rejected before any parsing work is done."""

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_NUMERIC_LABEL_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_FAST_NAME_RE = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
"""Lower-case names whose labels are valid and whose last label starts with a
letter (so it is no IPv4 literal); longer names are refused by the full path."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidHost(ValueError):
    """A host or authority that is not a valid FQDN, IP literal or port.

    The message names the offending input (escaped, so that it is safe to log)
    and what is wrong with it.
    """


class Host(NamedTuple):
    """A normalised host.

    ``name`` is the lower-case ASCII (punycode) FQDN without trailing dot, or
    the canonical text of the address for an IP literal; ``ip`` is the address
    for an IP literal and ``None`` for a name.
    """

    name: str
    ip: IPAddress | None = None


def printable(raw: object, limit: int = 80) -> str:
    """``raw`` as a short, escaped, single-line representation for messages."""
    text = raw if isinstance(raw, str) else repr(raw)
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(text) > limit:
        text = text[:limit] + f"...({len(text)} chars)"
    return text


def _check_characters(raw: str) -> None:
    for ch in raw:
        if ord(ch) < 0x21 or ord(ch) == 0x7F:
            raise InvalidHost(
                f"host {printable(raw)!r} contains a control or space character"
            )


def _ipv4_legacy(text: str) -> ipaddress.IPv4Address | None:
    """Parse the forms ``inet_aton`` accepts (``3405803786``, ``0x7f.1``, ``127.1``)."""
    labels = text.split(".")
    if not all(_NUMERIC_LABEL_RE.match(label) for label in labels):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def normalise_host(raw: str) -> Host:
    """Normalise a host name or IP literal (without port).

    ``raw`` may be a Unicode or ASCII name, optionally with one trailing dot,
    an IPv4 literal in any ``inet_aton`` form, or an IPv6 literal with or
    without brackets.

    Returns a :class:`Host`. Raises :class:`InvalidHost` for an empty or
    over-long input, control characters, empty labels (``a..b``, ``x..``),
    labels over 63 octets, names over 253 octets, characters outside the
    host name alphabet, or a name whose last label is numeric but which is no
    IPv4 address.
    """
    if isinstance(raw, str) and raw.isascii() and len(raw) <= MAX_NAME_LENGTH + 1:
        # fast path: an ordinary ASCII name (no IDNA, IP literal or odd character)
        name = raw.lower()
        if name.endswith("."):
            name = name[:-1]
        if len(name) <= MAX_NAME_LENGTH and _FAST_NAME_RE.fullmatch(name) and "xn--" not in name:
            return Host(name)
    if not isinstance(raw, str):
        raise InvalidHost(f"host {printable(raw)!r} is not text")
    if not raw:
        raise InvalidHost("host is empty")
    if len(raw) > MAX_RAW_LENGTH:
        raise InvalidHost(f"host {printable(raw)!r} is longer than {MAX_RAW_LENGTH} characters")
    _check_characters(raw)

    if raw.startswith("[") or ":" in raw:
        inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        if "%" in inner:
            raise InvalidHost(f"host {printable(raw)!r}: IPv6 zone identifiers are not allowed")
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise InvalidHost(f"host {printable(raw)!r} is not a valid IPv6 literal") from None
        return Host(str(address), address)

    name = raw[:-1] if raw.endswith(".") else raw
    if not name:
        raise InvalidHost(f"host {printable(raw)!r} has no labels")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise InvalidHost(f"host {printable(raw)!r} is not a valid internationalised name: {e}") from None
    name = name.lower()
    if "xn--" in name:
        try:
            idna.decode(name)
        except (idna.IDNAError, UnicodeError) as e:
            raise InvalidHost(f"host {printable(raw)!r} has an invalid punycode label: {e}") from None

    labels = name.split(".")
    if _NUMERIC_LABEL_RE.match(labels[-1]):
        address = _ipv4_legacy(name)
        if address is None:
            raise InvalidHost(f"host {printable(raw)!r} ends in a numeric label but is not an IPv4 address")
        return Host(str(address), address)

    if len(name) > MAX_NAME_LENGTH:
        raise InvalidHost(f"host {printable(raw)!r} is longer than {MAX_NAME_LENGTH} characters")
    for label in labels:
        if not label:
            raise InvalidHost(f"host {printable(raw)!r} has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidHost(
                f"host {printable(raw)!r} has a label longer than {MAX_LABEL_LENGTH} characters"
            )
        if not _LABEL_RE.match(label):
            raise InvalidHost(
                f"host {printable(raw)!r}: label {printable(label)!r} has characters outside "
                "a-z, 0-9 and inner '-'"
            )
    return Host(name)


DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_port(raw: str | int) -> int:
    """A TCP port 1..65535 from text or int; raises :class:`InvalidHost`."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        port = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 5:
        port = int(raw)
    else:
        raise InvalidHost(f"port {printable(raw)!r} is not a number")
    if not 1 <= port <= 65535:
        raise InvalidHost(f"port {port} is outside 1..65535")
    return port


def split_authority(authority: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port`` or a bare host into raw host text and port.

    The host part is *not* normalised (see :func:`parse_authority`). Raises
    :class:`InvalidHost` for a missing or bad port, or a bare IPv6 address.
    """
    if not isinstance(authority, str) or not authority:
        raise InvalidHost("authority is empty")
    if len(authority) > MAX_RAW_LENGTH:
        raise InvalidHost(
            f"authority {printable(authority)!r} is longer than {MAX_RAW_LENGTH} characters"
        )
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InvalidHost(f"authority {printable(authority)!r} has an unclosed '['")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidHost(f"authority {printable(authority)!r} has text after ']'")
        port_text = rest[1:] if rest else None
    elif authority.count(":") > 1:
        raise InvalidHost(
            f"authority {printable(authority)!r}: an IPv6 address must be written in brackets"
        )
    elif ":" in authority:
        host, port_text = authority.rsplit(":", 1)
    else:
        host, port_text = authority, None
    if port_text is None:
        if default_port is None:
            raise InvalidHost(f"authority {printable(authority)!r} has no port")
        return host, default_port
    return host, parse_port(port_text)


def parse_authority(authority: str, default_port: int | None = None) -> tuple[Host, int]:
    """Parse and normalise a ``host:port`` authority; see :func:`split_authority`."""
    host, port = split_authority(authority, default_port)
    return normalise_host(host), port
