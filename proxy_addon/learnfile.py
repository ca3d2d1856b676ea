"""The learn file: what a proxy in learn mode saw, per (host, port, protocol).

Format (``schemas/learn.schema.json``; JSON, or YAML when the file name ends in
``.yaml``/``.yml``)::

    {"format": "azml-egress-learn", "version": 1,
     "started": "2026-11-29T17:20:54.123Z", "updated": "2026-11-29T17:30:54.123Z",
     "max_hosts": 10000, "max_clients": 16,
     "policies": [{"name": ..., "source": ..., "sha256": ..., "catalog": ..., "mode": "learn"}],
     "hosts": [{"host": "pypi.org", "port": 443, "protocol": "https", "count": 3,
                "first_seen": ..., "last_seen": ..., "clients": ["10.0.0.5"], "clients_more": 0,
                "bytes_sent": 1234, "bytes_received": 56789,
                "feature": "pip-index", "feature_title": ..., "group": "Python",
                "catalog_pattern": "pypi.org", "rule": "pypi.org", "rule_collection": "pip-index",
                "rule_collection_group": "azureml-features",
                "actions": {"allow": 3}, "reasons": {"rule_matched": 3}}],
     "overflow": null | {"count": 7, "bytes_sent": 0, "bytes_received": 0, "first_seen": ..., "last_seen": ...}}

``count`` counts requests (the policy's decisions; ``actions`` splits them),
``reasons`` counts every decision reason, including follow-up events of a
request (TLS SNI checks, name resolution, upstream failures); ``bytes_*``
count tunnelled bytes (client to server, server to client); ``clients`` holds at most ``max_clients`` distinct client IP
addresses and ``clients_more`` the decisions from further clients; ``rule`` is
the first rule of the active policy that allowed the host (``null`` if none);
``overflow`` counts decisions for hosts beyond ``max_hosts``.

Files are written atomically (:mod:`proxy_addon.atomicfile`): a reader sees
the previous or the next complete file, never a partial one.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import yaml

from .atomicfile import write_atomic
from .config import ConfigError, Source, load_json, load_schema, parse_yaml, read_text, validate_schema

FORMAT = "azml-egress-learn"
VERSION = 1
DEFAULT_MAX_HOSTS = 10000
DEFAULT_MAX_CLIENTS = 16
EXTENSIONS = (".json", ".yaml", ".yml")

Key = tuple[str, int, str]
"""(host, port, protocol)."""


def later(a: str | None, b: str | None) -> str | None:
    """The later of two RFC 3339 times (``None`` counts as unknown)."""
    if a is None or b is None:
        return a or b
    return a if _parse_ts(a) >= _parse_ts(b) else b


def earlier(a: str | None, b: str | None) -> str | None:
    """The earlier of two RFC 3339 times (``None`` counts as unknown)."""
    if a is None or b is None:
        return a or b
    return a if _parse_ts(a) <= _parse_ts(b) else b


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _bad_time(item: dict[str, Any]) -> str | None:
    """The first time field of ``item`` that does not parse, or ``None``."""
    for name in ("first_seen", "last_seen"):
        try:
            _parse_ts(item[name])
        except ValueError:
            return name
    return None


def _add_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


@dataclass(slots=True)
class HostRecord:
    """Everything seen for one (host, port, protocol); see the module docstring."""

    host: str
    port: int
    protocol: str
    first_seen: str
    last_seen: str
    count: int = 0
    clients: list[str] = field(default_factory=list)
    clients_more: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    feature: str | None = None
    feature_title: str | None = None
    group: str | None = None
    catalog_pattern: str | None = None
    rule: str | None = None
    rule_collection: str | None = None
    rule_collection_group: str | None = None
    actions: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.host, self.port, self.protocol)

    @property
    def bytes_total(self) -> int:
        return self.bytes_sent + self.bytes_received

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-able dict (its own copies of lists and dicts)."""
        out = {name: getattr(self, name) for name in _RECORD_FIELDS}
        out["clients"], out["actions"], out["reasons"] = list(self.clients), dict(self.actions), dict(self.reasons)
        return out

    def copy(self) -> HostRecord:
        """A copy that shares nothing mutable (much cheaper than ``copy.deepcopy``)."""
        new = HostRecord(*[getattr(self, name) for name in _RECORD_FIELDS])
        new.clients, new.actions, new.reasons = list(self.clients), dict(self.actions), dict(self.reasons)
        return new

    def merge(self, other: HostRecord, max_clients: int) -> None:
        """Add ``other`` (same key) into this record."""
        self.first_seen = earlier(self.first_seen, other.first_seen) or self.first_seen
        self.last_seen = later(self.last_seen, other.last_seen) or self.last_seen
        self.count += other.count
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.clients_more += other.clients_more
        for client in other.clients:
            if client in self.clients:
                continue
            if len(self.clients) < max_clients:
                self.clients.append(client)
            else:
                self.clients_more += 1
        for name in ("feature", "feature_title", "group", "catalog_pattern", "rule", "rule_collection",
                     "rule_collection_group"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        _add_counts(self.actions, other.actions)
        _add_counts(self.reasons, other.reasons)


_RECORD_FIELDS = tuple(f.name for f in fields(HostRecord))


@dataclass(slots=True)
class Overflow:
    """Decisions (and tunnel bytes) for hosts beyond the ``max_hosts`` bound."""

    count: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    first_seen: str | None = None
    last_seen: str | None = None

    def merge(self, other: Overflow) -> None:
        self.count += other.count
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.first_seen = earlier(self.first_seen, other.first_seen)
        self.last_seen = later(self.last_seen, other.last_seen)


@dataclass
class LearnData:
    """A learn file in memory: ``hosts`` keyed by (host, port, protocol) in first-seen order."""

    hosts: dict[Key, HostRecord] = field(default_factory=dict)
    overflow: Overflow | None = None
    started: str | None = None
    updated: str | None = None
    max_hosts: int = DEFAULT_MAX_HOSTS
    max_clients: int = DEFAULT_MAX_CLIENTS
    policies: list[dict[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    """The files this data was read from (not written)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able document (see the module docstring)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "started": self.started,
            "updated": self.updated,
            "max_hosts": self.max_hosts,
            "max_clients": self.max_clients,
            "policies": [dict(p) for p in self.policies],
            "hosts": [r.to_dict() for r in self.hosts.values()],
            "overflow": asdict(self.overflow) if self.overflow is not None else None,
        }

    def copy(self) -> LearnData:
        """A copy that shares nothing mutable with this one."""
        return LearnData(
            hosts={key: record.copy() for key, record in self.hosts.items()},
            overflow=replace(self.overflow) if self.overflow is not None else None,
            started=self.started, updated=self.updated, max_hosts=self.max_hosts, max_clients=self.max_clients,
            policies=[dict(p) for p in self.policies], files=list(self.files),
        )


def merge(datas: Iterable[LearnData]) -> LearnData:
    """Merge learn data of several files (e.g. replicas) into a new object.

    Counts and bytes add up, first/last seen take the earliest/latest, client
    lists are united up to the largest ``max_clients`` of the inputs (further
    clients count in ``clients_more``), overflow entries add up. The merged
    data is not bounded by ``max_hosts``.
    """
    datas = list(datas)
    out = LearnData(max_hosts=max((d.max_hosts for d in datas), default=DEFAULT_MAX_HOSTS),
                    max_clients=max((d.max_clients for d in datas), default=DEFAULT_MAX_CLIENTS))
    for data in datas:
        out.started = earlier(out.started, data.started)
        out.updated = later(out.updated, data.updated)
        out.files.extend(data.files)
        for policy in data.policies:
            if policy not in out.policies:
                out.policies.append(dict(policy))
        for key, record in data.hosts.items():
            mine = out.hosts.get(key)
            if mine is None:
                out.hosts[key] = record.copy()
                extra = out.hosts[key].clients[out.max_clients:]
                if extra:  # a hand-edited file may list more clients than its bound
                    del out.hosts[key].clients[out.max_clients:]
                    out.hosts[key].clients_more += len(extra)
            else:
                mine.merge(record, out.max_clients)
        if data.overflow is not None:
            if out.overflow is None:
                out.overflow = Overflow()
            out.overflow.merge(data.overflow)
    return out


# -- reading and writing ------------------------------------------------------

def is_yaml(path: str | Path) -> bool:
    return str(path).lower().endswith((".yaml", ".yml"))


def check_path(path: str | Path) -> str | None:
    """``None`` if ``path`` can be a learn file name, else what is wrong."""
    if not str(path).lower().endswith(EXTENSIONS):
        return f"learn file {str(path)!r} must end in .json, .yaml or .yml (that chooses the format)"
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        return f"learn file {str(path)!r}: directory {str(parent)!r} does not exist"
    if not os.access(parent, os.W_OK):
        return f"learn file {str(path)!r}: directory {str(parent)!r} is not writable"
    return None


def dumps(data: LearnData, yaml_format: bool = False) -> str:
    """The text of a learn file: YAML, or JSON with one line per host entry
    (hosts in first-seen order; compact JSON keeps the fast C encoder)."""
    doc = data.to_dict()
    if yaml_format:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=False, width=200)
    hosts = doc.pop("hosts")
    overflow = doc.pop("overflow")
    head = json.dumps(doc, ensure_ascii=True)[:-1]  # without the closing brace
    entries = ",\n  ".join(json.dumps(h, ensure_ascii=True) for h in hosts)
    body = f'"hosts": [\n  {entries}\n ]' if hosts else '"hosts": []'
    return f'{head},\n {body},\n "overflow": {json.dumps(overflow)}}}\n'


def save(data: LearnData, path: str | Path) -> None:
    """Write ``data`` to ``path`` atomically, JSON or YAML by extension."""
    write_atomic(path, dumps(data, is_yaml(path)))


def from_dict(doc: Any, file: str = "<learn file>", src: Source | None = None) -> LearnData:
    """Validate a parsed document and build :class:`LearnData`; raises :class:`ConfigError`."""
    src = src or Source(file=file, data=doc)
    validate_schema(src, load_schema("learn"))
    data = LearnData(
        started=doc.get("started"), updated=doc.get("updated"),
        max_hosts=doc.get("max_hosts", DEFAULT_MAX_HOSTS), max_clients=doc.get("max_clients", DEFAULT_MAX_CLIENTS),
        policies=[dict(p) for p in doc.get("policies") or []], files=[file],
    )
    problems = []
    for i, item in enumerate(doc["hosts"]):
        record = HostRecord(**{k: copy.deepcopy(v) for k, v in item.items()})
        bad_time = _bad_time(item)
        if bad_time:
            problems.append(src.problem(("hosts", i, bad_time), f"{item[bad_time]!r} is not a valid time"))
            continue
        if record.key in data.hosts:
            problems.append(src.problem(("hosts", i), f"duplicate entry for {record.host}:{record.port} "
                                        f"({record.protocol})"))
            continue
        data.hosts[record.key] = record
    if problems:
        raise ConfigError(problems)
    if doc.get("overflow") is not None:
        data.overflow = Overflow(**doc["overflow"])
    return data


def load(path: str | Path) -> LearnData:
    """Read a learn file (JSON or YAML by extension); raises :class:`ConfigError`
    naming the file and every problem."""
    file = str(path)
    text = read_text(path)
    if is_yaml(path):
        src = parse_yaml(text, file)
        return from_dict(src.data, file, src)
    return from_dict(load_json(text, file), file)


def load_all(paths: Iterable[str | Path]) -> LearnData:
    """Read and :func:`merge` several learn files; raises one :class:`ConfigError`
    with the problems of every bad file."""
    datas, problems = [], []
    for path in paths:
        try:
            datas.append(load(path))
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    return merge(datas)
