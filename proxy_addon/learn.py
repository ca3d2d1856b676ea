"""Learn mode's recorder: every distinct (host, port, protocol) the proxy decided on.

:class:`LearnRecorder` is an :class:`~proxy_addon.observers.Observer`: the addon
calls :meth:`~LearnRecorder.on_decision` and
:meth:`~LearnRecorder.on_tunnel_bytes` on the event loop; a background thread
writes the learn file (:mod:`proxy_addon.learnfile`) every ``interval``
seconds when something changed, and :meth:`~LearnRecorder.close` writes it a
last time. Each write is atomic, so a crash loses at most one interval and a
reader never sees a half-written file.

Memory is bounded: at most ``max_hosts`` entries (further hosts are counted in
the ``overflow`` entry, with one warning) and at most ``max_clients`` client
addresses per entry.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .audit import rfc3339_now
from .atomicfile import remove_stale_temporaries
from .learnfile import DEFAULT_MAX_CLIENTS, DEFAULT_MAX_HOSTS, HostRecord, LearnData, Overflow, save
from .observers import Observer

if TYPE_CHECKING:
    from .audit import DecisionEvent
    from .policy import Policy

logger = logging.getLogger(__name__)

FOLLOW_UP_REASONS = frozenset({"sni_mismatch", "sni_missing", "private_address", "dns_failure", "upstream_error"})
"""Reasons of events that follow a request's decision (TLS check, resolution,
connection): counted in ``reasons`` only, not as requests."""
IGNORED_REASONS = frozenset({"proxy_auth_required", "invalid_request", "too_many_connections"})
"""Reasons of events that name no egress destination the policy decided on."""

DEFAULT_INTERVAL = 10.0
"""Seconds between two writes of the learn file."""
DEFAULT_LEARN_FILE = "azml-egress-learn.json"


class LearnRecorder(Observer):
    """Records decisions into :class:`~proxy_addon.learnfile.LearnData` and
    writes them to ``path`` (JSON or YAML by extension).

    ``interval`` is in seconds (> 0); ``max_hosts`` and ``max_clients`` are
    the memory bounds described in the module docstring; ``clock`` returns
    RFC 3339 times (tests inject one). Thread-safe. Write errors are logged
    (once per distinct error until a write succeeds) and never break a decision.
    """

    def __init__(self, path: str | Path, interval: float = DEFAULT_INTERVAL, max_hosts: int = DEFAULT_MAX_HOSTS,
                 max_clients: int = DEFAULT_MAX_CLIENTS, clock: Callable[[], str] = rfc3339_now):
        if interval <= 0 or max_hosts < 1 or max_clients < 1:
            raise ValueError("interval, max_hosts and max_clients must be positive")
        self.path = Path(path)
        self.interval = interval
        self._clock = clock
        self._data = LearnData(started=clock(), max_hosts=max_hosts, max_clients=max_clients)
        self._lock = threading.Lock()
        self._changes = 0
        self._written = -1
        self._warned_overflow = False
        self._last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- observer -------------------------------------------------------------

    def on_decision(self, event: DecisionEvent) -> None:
        """Count a request's decision, or add a follow-up event's reason to its entry."""
        d = event.decision
        reason = d.reason.value
        if reason in IGNORED_REASONS:
            return
        key = (d.host, d.port, d.protocol)
        client = event.client_ip
        with self._lock:
            self._changes += 1
            data = self._data
            record = data.hosts.get(key)
            if record is None:
                if len(data.hosts) >= data.max_hosts:
                    self._overflow(event.ts, count=0 if reason in FOLLOW_UP_REASONS else 1)
                    return
                record = HostRecord(d.host, d.port, d.protocol, first_seen=event.ts, last_seen=event.ts)
                data.hosts[key] = record
            record.reasons[reason] = record.reasons.get(reason, 0) + 1
            if reason in FOLLOW_UP_REASONS:
                return
            record.count += 1
            record.last_seen = event.ts
            if client not in record.clients:
                if len(record.clients) < data.max_clients:
                    record.clients.append(client)
                else:
                    record.clients_more += 1
            if record.feature is None and d.feature is not None:
                record.feature, record.feature_title, record.group = d.feature, d.feature_title, d.group
            if record.catalog_pattern is None:
                record.catalog_pattern = d.catalog_pattern
            if d.allowed and record.rule is None:
                record.rule, record.rule_collection = d.rule, d.rule_collection
                record.rule_collection_group = d.rule_collection_group
            record.actions[d.action.value] = record.actions.get(d.action.value, 0) + 1

    def on_tunnel_bytes(self, event: DecisionEvent, sent: int, received: int) -> None:
        d = event.decision
        with self._lock:
            self._changes += 1
            record = self._data.hosts.get((d.host, d.port, d.protocol))
            if record is None:
                self._overflow(None, sent=sent, received=received)
                return
            record.bytes_sent += sent
            record.bytes_received += received

    def on_policy(self, policy: Policy | None, ok: bool, error: str = "") -> None:
        if not ok or policy is None:
            return
        entry = {"name": policy.name, "source": policy.source, "sha256": policy.sha256,
                 "catalog": policy.catalog.id, "mode": policy.mode}
        with self._lock:
            if entry not in self._data.policies:
                self._data.policies.append(entry)
                self._changes += 1

    def _overflow(self, ts: str | None, count: int = 0, sent: int = 0, received: int = 0) -> None:
        """Count an event for a host beyond ``max_hosts`` (lock held)."""
        overflow = self._data.overflow
        if overflow is None:
            overflow = self._data.overflow = Overflow()
        overflow.count += count
        overflow.bytes_sent += sent
        overflow.bytes_received += received
        if ts is not None:
            overflow.first_seen = overflow.first_seen or ts
            overflow.last_seen = ts
        if not self._warned_overflow:
            self._warned_overflow = True
            logger.warning(f"azml-egress learn: more than {self._data.max_hosts} distinct hosts; further hosts are "
                           "only counted in the learn file's 'overflow' entry (raise --learn-max-hosts to keep them)")

    # -- snapshots and writing ------------------------------------------------

    def snapshot(self) -> LearnData:
        """A deep copy of what was recorded so far, stamped ``updated`` now."""
        with self._lock:
            data = self._data.copy()
        data.updated = self._clock()
        return data

    def flush(self, force: bool = False) -> bool:
        """Write the learn file if something changed since the last write (or
        ``force``); returns whether it was written. Never raises ``OSError``."""
        with self._lock:
            changes = self._changes
            if changes == self._written and not force:
                return False
        data = self.snapshot()
        try:
            save(data, self.path)
        except OSError as e:
            reason = e.strerror or str(e)  # without the temporary file's random name
            if reason != self._last_error:
                logger.error(f"azml-egress learn: cannot write {self.path}: {reason} ({e})")
                self._last_error = reason
            return False
        if self._last_error:
            logger.info(f"azml-egress learn: writing {self.path} works again")
        self._last_error = ""
        with self._lock:
            self._written = max(self._written, changes)
        return True

    def start(self) -> None:
        """Write the (empty) learn file once, raising ``OSError`` if that fails,
        then start the background writer thread."""
        remove_stale_temporaries(self.path)
        save(self.snapshot(), self.path)
        self._written = self._changes
        self._thread = threading.Thread(target=self._loop, name="azml-egress-learn-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep the writer alive
                logger.exception("azml-egress learn: writing the learn file failed")

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer thread and write the learn file a last time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush(force=True)
