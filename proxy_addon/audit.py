"""The decision log: exactly one JSON object per line per decision.

Fields (README "Decision log"): ``ts`` (RFC 3339, UTC), ``mode``, ``action``,
``enforced``, ``client`` (ip:port), ``method``, ``protocol``, ``host``,
``port``, ``feature``, ``feature_title``, ``group``, ``rule``,
``rule_collection``, ``reason``, ``msg`` (Azure-Firewall-worded), then
``rule_collection_group``, ``feature_enabled``, ``catalog_pattern``,
``detail``, ``policy``. Lines are written with ``ensure_ascii`` JSON, so no
host string can break or forge a line.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from .decision import Decision
from .observers import Observer

logger = logging.getLogger(__name__)

FIELDS = (
    "ts", "mode", "action", "enforced", "client", "method", "protocol", "host", "port",
    "feature", "feature_title", "group", "rule", "rule_collection", "reason", "msg",
    "rule_collection_group", "feature_enabled", "catalog_pattern", "detail", "policy",
)


def rfc3339_now() -> str:
    """Current UTC time as RFC 3339 with milliseconds, e.g. ``2026-11-29T17:20:54.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """A decision in context: what every sink (log, metrics, learn) reads.

    ``client`` is ``"ip:port"``; ``enforced`` is False in simulate and learn
    modes; ``extra`` holds event-specific fields (e.g. ``sni``).
    """

    decision: Decision
    mode: str
    client: str
    method: str
    policy: str = ""
    ts: str = field(default_factory=rfc3339_now)
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    @property
    def client_ip(self) -> str:
        return self.client.rsplit(":", 1)[0].strip("[]")


def record(event: DecisionEvent) -> dict[str, Any]:
    """The log record of ``event`` as an ordered dict (see module docstring)."""
    d = event.decision
    out: dict[str, Any] = {
        "ts": event.ts,
        "mode": event.mode,
        "action": d.action.value,
        "enforced": event.enforced,
        "client": event.client,
        "method": event.method,
        "protocol": d.protocol,
        "host": d.host,
        "port": d.port,
        "feature": d.feature,
        "feature_title": d.feature_title,
        "group": d.group,
        "rule": d.rule,
        "rule_collection": d.rule_collection,
        "reason": d.reason.value,
        "msg": d.firewall_message(event.client),
        "rule_collection_group": d.rule_collection_group,
        "feature_enabled": d.feature_enabled,
        "catalog_pattern": d.catalog_pattern,
        "detail": d.detail,
        "policy": event.policy,
    }
    out.update(event.extra)
    return out


def dumps(data: dict[str, Any]) -> str:
    """One line of ASCII JSON."""
    return json.dumps(data, ensure_ascii=True, separators=(", ", ": "), default=str)


class DecisionLog(Observer):
    """Writes decision records to ``stdout`` (when ``to_stdout``) and to
    ``path`` (appended, line-buffered). Thread-safe; write errors are logged
    once and never break a decision."""

    def __init__(self, path: str | None = None, to_stdout: bool = True, stream: IO[str] | None = None):
        self.path = path
        self._stream = stream if stream is not None else (sys.stdout if to_stdout else None)
        self._file: IO[str] | None = open(path, "a", encoding="utf-8", buffering=1) if path else None
        self._lock = threading.Lock()
        self._failed = False

    def on_decision(self, event: DecisionEvent) -> None:
        line = dumps(record(event)) + "\n"
        with self._lock:
            for out in (self._stream, self._file):
                if out is None:
                    continue
                try:
                    out.write(line)
                    out.flush()
                except (OSError, ValueError) as e:
                    if not self._failed:
                        logger.error(f"decision log: cannot write to {getattr(out, 'name', out)}: {e}")
                        self._failed = True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
