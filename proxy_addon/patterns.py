"""Target-FQDN patterns with Azure Firewall application-rule semantics.

Grammar (Azure Firewall FAQ "How do wildcards work in an application rule
target FQDN?", MicrosoftDocs/azure-docs articles/firewall/firewall-faq.yml,
2023-01-04; GitHub issues MicrosoftDocs/azure-docs #57934 and #69563):

* ``a.b.c`` - exactly that FQDN;
* ``*.b.c`` - any name below ``b.c`` at any depth, never ``b.c`` itself;
* ``*b.c``  - ``b.c`` and any name that ends in the characters ``b.c``
  (Azure accepts it; it also admits lookalikes such as ``evilb.c``, so
  :func:`pattern_warnings` warns).

Rejected: ``*``, ``*.``, ``a.*.c``, ``a.b.*``, ``a*b.c``, several ``*``, ports,
schemes or paths inside a pattern, and names that are not normalised (the
message suggests the normalised spelling).

:class:`PatternIndex` finds every pattern that matches a host with a number of
dictionary look-ups bounded by the host's length, whatever the number of
patterns.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from publicsuffixlist import PublicSuffixList

from .hostnames import InvalidHost, normalise_host, printable

T = TypeVar("T")

_PSL: PublicSuffixList | None = None


def _public_suffix_list() -> PublicSuffixList:
    global _PSL
    if _PSL is None:
        _PSL = PublicSuffixList()
    return _PSL


class PatternError(ValueError):
    """A target FQDN pattern that Azure Firewall (or this proxy) does not accept."""


class Kind(enum.Enum):
    EXACT = "exact"
    SUBDOMAINS = "subdomains"  # "*.x"
    SUFFIX = "suffix"  # "*x"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed target FQDN pattern: ``text`` as written, ``kind``, and ``base``
    (the name after ``*.``, the characters after ``*``, or the whole FQDN)."""

    text: str
    kind: Kind
    base: str

    def matches(self, name: str) -> bool:
        """Whether the normalised host ``name`` matches this pattern."""
        if self.kind is Kind.EXACT:
            return name == self.base
        if self.kind is Kind.SUBDOMAINS:
            return name.endswith("." + self.base)
        return name.endswith(self.base)

    @property
    def specificity(self) -> tuple[int, int]:
        """Sort key: exact names first, then longer bases (lower sorts first)."""
        return (0 if self.kind is Kind.EXACT else 1, -len(self.base))

    def __str__(self) -> str:
        return self.text


def parse_pattern(text: str) -> Pattern:
    """Parse one target FQDN pattern.

    Raises :class:`PatternError` with a message that names the pattern, what
    is wrong, and what to write instead.
    """
    if not isinstance(text, str):
        raise PatternError(f"target FQDN {printable(text)!r} is not text")
    shown = printable(text)
    if not text:
        raise PatternError("target FQDN is empty")
    if "://" in text:
        raise PatternError(
            f"target FQDN {shown!r} contains a scheme; write only the host name "
            "and put the protocol in 'protocols'"
        )
    if "/" in text:
        raise PatternError(
            f"target FQDN {shown!r} contains a URL path; an application rule's target FQDN is a "
            "host name (URL paths need TLS inspection and target URLs)"
        )
    if ":" in text and not text.startswith("["):
        raise PatternError(
            f"target FQDN {shown!r} contains a port; write the host name alone and put the port "
            f"in 'protocols' (e.g. https:{text.rsplit(':', 1)[-1]})"
        )
    if text == "*":
        raise PatternError("target FQDN '*' would allow every host; list the hosts (or '*.domain')")
    stars = text.count("*")
    if stars > 1:
        raise PatternError(
            f"target FQDN {shown!r} has {stars} '*'; Azure Firewall accepts one '*', "
            "as the left-most character only"
        )
    if stars == 1 and not text.startswith("*"):
        raise PatternError(
            f"target FQDN {shown!r}: '*' is accepted only as the left-most character "
            "(write '*.domain' for any subdomain of domain)"
        )
    if text == "*.":
        raise PatternError("target FQDN '*.' names no domain; write '*.domain'")

    if text.startswith("*."):
        kind, rest = Kind.SUBDOMAINS, text[2:]
    elif text.startswith("*"):
        kind, rest = Kind.SUFFIX, text[1:]
    else:
        kind, rest = Kind.EXACT, text

    if kind is Kind.SUFFIX and rest.startswith("."):
        raise PatternError(f"target FQDN {shown!r} is not valid; did you mean '*{rest}'?")
    try:
        host = normalise_host(rest)
    except InvalidHost as e:
        raise PatternError(f"target FQDN {shown!r}: {e}") from None
    if host.ip is not None:
        raise PatternError(
            f"target FQDN {shown!r} is an IP address; use 'destination_addresses' with a CIDR"
        )
    if host.name != rest:
        prefix = {Kind.EXACT: "", Kind.SUBDOMAINS: "*.", Kind.SUFFIX: "*"}[kind]
        raise PatternError(
            f"target FQDN {shown!r} is not normalised; write {prefix + host.name!r}"
        )
    return Pattern(text, kind, host.name)


def pattern_warnings(pattern: Pattern) -> list[str]:
    """Warnings for a valid but risky pattern (lookalikes, public suffixes)."""
    warnings = []
    if pattern.kind is Kind.SUFFIX:
        lookalike = "evil" + pattern.base
        warnings.append(
            f"{pattern.text!r} also matches lookalike names such as {lookalike!r}; "
            f"write '*.{pattern.base}' and '{pattern.base}' to allow only the domain "
            "and its subdomains"
        )
    if pattern.kind is not Kind.EXACT:
        base = pattern.base
        if pattern.kind is Kind.SUFFIX:
            base = base.lstrip(".")
        if "." not in base or _public_suffix_list().is_public(base):
            warnings.append(
                f"{pattern.text!r} is a wildcard over the public suffix {base!r}: "
                "it allows hosts of every owner under it"
            )
    return warnings


class PatternIndex(Generic[T]):
    """Maps patterns to values; :meth:`lookup` returns every value whose
    pattern matches a host, in insertion order.

    Cost per lookup: one dict probe for exact patterns, one per label suffix
    for ``*.x`` patterns, and (only when ``*x`` patterns exist) one per
    character suffix - never a scan over the patterns.
    """

    def __init__(self) -> None:
        self._exact: dict[str, list[tuple[int, T]]] = {}
        self._subdomains: dict[str, list[tuple[int, T]]] = {}
        self._suffix: dict[str, list[tuple[int, T]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: Pattern, value: T) -> None:
        table = {
            Kind.EXACT: self._exact,
            Kind.SUBDOMAINS: self._subdomains,
            Kind.SUFFIX: self._suffix,
        }[pattern.kind]
        table.setdefault(pattern.base, []).append((self._count, value))
        self._count += 1

    def lookup(self, name: str) -> list[T]:
        """Values of all patterns matching the normalised host ``name``."""
        found: list[tuple[int, T]] = []
        hit = self._exact.get(name)
        if hit:
            found.extend(hit)
        if self._subdomains:
            dot = name.find(".")
            while dot >= 0:
                hit = self._subdomains.get(name[dot + 1 :])
                if hit:
                    found.extend(hit)
                dot = name.find(".", dot + 1)
        if self._suffix:
            for i in range(len(name)):
                hit = self._suffix.get(name[i:])
                if hit:
                    found.extend(hit)
        if len(found) > 1:
            found.sort(key=lambda item: item[0])
        return [value for _, value in found]
