"""Host catalogs: Azure ML features, their hosts, ports, conditions and sources.

A catalog file (``config/catalogs/*.yaml``, schema ``schemas/catalog.schema.json``)
lists features; each feature lists host patterns with protocols. Patterns may
contain placeholders as whole labels - ``<storage>``, ``<acr>``, ``<region>``,
``<workspaceId>`` - which a policy's ``workspace`` parameters fill; an unfilled
placeholder falls back to the documented wildcard (everything up to the last
unfilled placeholder becomes ``*``: ``<storage>.blob.core.windows.net`` ->
``*.blob.core.windows.net``).

:class:`Attributor` answers "which Azure ML feature does this host belong to"
from every shipped catalog, whatever the active policy enables.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .config import ConfigError, Source, load_schema, load_yaml, validate_schema
from .patterns import PatternError, PatternIndex, parse_pattern

PLACEHOLDERS: dict[str, str] = {
    "storage": "storage_account",
    "acr": "registry",
    "region": "region",
    "workspaceId": "workspace_id",
}
"""Placeholder label -> policy ``workspace`` parameter that fills it."""

_PLACEHOLDER_RE = re.compile(r"<([A-Za-z]+)>")

APPLICATION_PROTOCOLS = ("http", "https")


def data_dir() -> Path:
    """The directory holding ``catalogs/`` and ``policies/``: inside the
    installed package, or the checkout's ``config/``."""
    here = Path(__file__).resolve().parent
    installed = here / "data"
    if (installed / "catalogs").is_dir():
        return installed
    return here.parent / "config"


def parse_protocol(text: str) -> tuple[str, int]:
    """``"https:443"`` -> ``("https", 443)``; raises ``ValueError``."""
    proto, _, port = text.partition(":")
    if proto not in ("http", "https", "tcp", "udp") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"protocol {text!r} is not PROTOCOL:PORT (http, https, tcp or udp; port 1-65535)")
    return proto, int(port)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One catalog host: ``pattern`` as written (may hold placeholders),
    ``protocols`` as ``(protocol, port)`` pairs, ``documented`` False for hosts
    real clients need that no cited Microsoft doc names."""

    pattern: str
    protocols: tuple[tuple[str, int], ...]
    documented: bool = True
    note: str = ""
    path: str = ""

    @property
    def placeholders(self) -> list[str]:
        return _PLACEHOLDER_RE.findall(self.pattern)

    def unfilled(self, workspace: Mapping[str, str] | None) -> bool:
        """Whether some placeholder has no value in ``workspace``."""
        workspace = workspace or {}
        return any(not workspace.get(PLACEHOLDERS.get(p, "")) for p in self.placeholders)

    def resolve(self, workspace: Mapping[str, str] | None = None) -> str:
        """The pattern with placeholders filled from ``workspace`` parameters,
        or falling back to the documented wildcard."""
        workspace = workspace or {}
        labels = self.pattern.split(".")
        last_unfilled = -1
        for i, label in enumerate(labels):
            m = _PLACEHOLDER_RE.fullmatch(label)
            if m:
                value = workspace.get(PLACEHOLDERS.get(m.group(1), ""), "")
                if value:
                    labels[i] = value
                else:
                    last_unfilled = i
        if last_unfilled >= 0:
            return "*." + ".".join(labels[last_unfilled + 1 :])
        return ".".join(labels)

    @property
    def application_protocols(self) -> tuple[tuple[str, int], ...]:
        """The protocols an application rule (HTTP/HTTPS proxy) can enforce."""
        return tuple(p for p in self.protocols if p[0] in APPLICATION_PROTOCOLS)

    @property
    def network_protocols(self) -> tuple[tuple[str, int], ...]:
        """The protocols that need an Azure Firewall network rule (TCP/UDP)."""
        return tuple(p for p in self.protocols if p[0] not in APPLICATION_PROTOCOLS)


@dataclass(frozen=True, slots=True)
class Feature:
    """An Azure ML feature: what needs the hosts, and the Microsoft source."""

    id: str
    title: str
    group: str
    need: str
    condition: str
    source: str
    citation: str
    description: str
    hosts: tuple[Endpoint, ...]
    catalog: str

    @property
    def required(self) -> bool:
        return self.need == "required"


@dataclass(frozen=True)
class Catalog:
    """A parsed catalog file; ``features`` keep file order."""

    id: str
    title: str
    cloud: str
    revision: str
    sources: Mapping[str, str]
    notes: str
    features: tuple[Feature, ...]
    path: str

    def feature(self, feature_id: str) -> Feature | None:
        for feature in self.features:
            if feature.id == feature_id:
                return feature
        return None

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(f.group for f in self.features))


def catalog_from_source(src: Source) -> Catalog:
    """Validate and build a :class:`Catalog`; raises :class:`ConfigError`."""
    validate_schema(src, load_schema("catalog"))
    data = src.data
    problems = []
    features = []
    seen: set[str] = set()
    for fi, f in enumerate(data["features"]):
        path = ("features", fi)
        if f["id"] in seen:
            problems.append(src.problem(path + ("id",), f"duplicate feature id {f['id']!r}"))
        seen.add(f["id"])
        if f["source"] not in data["sources"]:
            problems.append(src.problem(path + ("source",), f"source {f['source']!r} is not a key of 'sources'"))
        if f["need"] == "conditional" and not f.get("condition"):
            problems.append(src.problem(path, "a conditional feature needs a 'condition'"))
        hosts = []
        for hi, h in enumerate(f["hosts"]):
            hpath = path + ("hosts", hi)
            endpoint = Endpoint(
                pattern=h["pattern"],
                protocols=tuple(parse_protocol(p) for p in h["protocols"]),
                documented=h.get("documented", True),
                note=h.get("note", ""),
                path=h.get("path", ""),
            )
            unknown = [p for p in endpoint.placeholders if p not in PLACEHOLDERS]
            if unknown:
                problems.append(
                    src.problem(hpath + ("pattern",), f"unknown placeholder <{unknown[0]}>; known: "
                                + ", ".join(f"<{p}>" for p in PLACEHOLDERS))
                )
                continue
            try:
                parse_pattern(endpoint.resolve())
            except PatternError as e:
                problems.append(src.problem(hpath + ("pattern",), str(e)))
            hosts.append(endpoint)
        features.append(
            Feature(
                id=f["id"], title=f["title"], group=f["group"], need=f["need"],
                condition=f.get("condition", ""), source=f["source"],
                citation=data["sources"].get(f["source"], ""), description=f.get("description", ""),
                hosts=tuple(hosts), catalog=data["id"],
            )
        )
    if problems:
        raise ConfigError(problems)
    return Catalog(
        id=data["id"], title=data["title"], cloud=data["cloud"], revision=data["revision"],
        sources=dict(data["sources"]), notes=data.get("notes", ""), features=tuple(features), path=src.file,
    )


def load_catalog(path: str | Path) -> Catalog:
    """Load a catalog file; raises :class:`ConfigError`."""
    return catalog_from_source(load_yaml(path))


@functools.lru_cache(maxsize=1)
def builtin_catalogs() -> tuple[Catalog, ...]:
    """Every catalog shipped with the product, ``azureml`` first."""
    paths = sorted((data_dir() / "catalogs").glob("*.yaml"), key=lambda p: (p.stem != "azureml", p.stem))
    return tuple(load_catalog(p) for p in paths)


def find_catalog(name_or_path: str) -> Catalog:
    """A built-in catalog by id, or a catalog file by path; raises :class:`ConfigError`."""
    for catalog in builtin_catalogs():
        if catalog.id == name_or_path:
            return catalog
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        return load_catalog(name_or_path)
    known = ", ".join(c.id for c in builtin_catalogs())
    raise ValueError(f"unknown catalog {name_or_path!r}; built-in catalogs: {known}")


@dataclass(frozen=True, slots=True)
class Attribution:
    """The catalog feature a host belongs to, and the pattern that covers it."""

    feature: Feature
    pattern: str
    endpoint: Endpoint


class Attributor:
    """Finds the feature of any host across catalogs.

    ``catalogs`` are searched in order (the active one first); within the
    first catalog that knows the host, the most specific pattern wins (an
    exact name over a wildcard, a longer wildcard over a shorter one).
    ``workspace`` fills placeholders of the first catalog only.
    """

    def __init__(self, catalogs: list[Catalog], workspace: Mapping[str, str] | None = None):
        self._index: PatternIndex[tuple[tuple[int, int, int, int], Attribution]] = PatternIndex()
        for rank, catalog in enumerate(catalogs):
            params = workspace if rank == 0 else None
            for feature in catalog.features:
                for endpoint in feature.hosts:
                    resolved = endpoint.resolve(params)
                    self._add(rank, resolved, endpoint.unfilled(params), feature, endpoint)
                    if resolved != endpoint.resolve():
                        # the documented wildcard still attributes other accounts
                        self._add(rank, endpoint.resolve(), True, feature, endpoint)

    def _add(self, rank: int, text: str, fallback: bool, feature: Feature, endpoint: Endpoint) -> None:
        pattern = parse_pattern(text)
        # a catalog earlier in the list wins, then exact names, then patterns
        # written without placeholders, then longer wildcards
        exact, length = pattern.specificity
        self._index.add(pattern, ((rank, exact, int(fallback), length), Attribution(feature, text, endpoint)))

    def attribute(self, name: str) -> Attribution | None:
        """The best :class:`Attribution` for a normalised host name, or ``None``."""
        candidates = self._index.lookup(name)
        if not candidates:
            return None
        return min(candidates, key=lambda c: c[0])[1]
