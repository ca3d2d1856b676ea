"""The decision log: exactly one JSON object per line per decision.

Fields (README "Decision log"): ``ts`` (RFC 3339, UTC), ``mode``, ``action``,
``enforced``, ``client`` (ip:port), ``method``, ``protocol``, ``host``,
``port``, ``feature``, ``feature_title``, ``group``, ``rule``,
``rule_collection``, ``reason``, ``msg`` (Azure-Firewall-worded), then
``rule_collection_group``, ``feature_enabled``, ``catalog_pattern``,
``detail``, ``policy``. Lines are written with ``ensure_ascii`` JSON, so no
host string can break or forge a line.

:class:`DecisionLog` never does I/O on the caller's thread (the proxy's event
loop): events go through a bounded queue to one writer thread, which
serialises them and writes them in batches.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
import time
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


QUEUE_LIMIT = 100_000
"""Events waiting for the writer thread; beyond this they are dropped and counted."""
LINGER_SECONDS = 0.01
"""After writing, the writer waits this long for more events, so that a busy proxy
writes many lines per system call (and a decision line appears within ~10 ms)."""
DROP_WARNING_INTERVAL = 10.0
_STOP = object()


class DecisionLog(Observer):
    """Writes decision records to ``stdout`` (when ``to_stdout``) or ``stream``,
    and appends them to ``path``.

    :meth:`on_decision` only queues the event and returns: it never blocks and
    never writes. A writer thread serialises queued events and writes them in
    batches of whole lines (one ``write`` per batch; the file is opened with
    ``O_APPEND``, so several processes can share it). When ``limit`` events
    are waiting (the output is stuck or far too slow), further events are
    dropped, counted in :attr:`dropped` and warned about at most every 10 s.
    :meth:`close` writes everything queued before it returns, so under normal
    load and on a clean shutdown there is exactly one line per decision.
    Write errors are logged once per output and never break a decision.
    Raises ``OSError`` when ``path`` cannot be opened.
    """

    def __init__(self, path: str | None = None, to_stdout: bool = True, stream: IO[str] | None = None,
                 limit: int = QUEUE_LIMIT):
        self.path = path
        self._stream = stream if stream is not None else (sys.stdout if to_stdout else None)
        self._file: IO[bytes] | None = open(path, "ab", buffering=0) if path else None
        self._limit = limit
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._failed: set[int] = set()
        self._closed = False
        self._close_lock = threading.Lock()
        self._next_warning = 0.0
        self.dropped = 0
        """Events dropped because the queue was full."""
        self.written = 0
        """Lines written (to each output)."""
        self._thread = threading.Thread(target=self._run, name="azml-egress decision log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def on_decision(self, event: DecisionEvent) -> None:
        if self._closed:  # after close (shutdown): write directly, never lose a line
            self._write([dumps(record(event)) + "\n"])
            return
        if self._queue.qsize() >= self._limit:
            self.dropped += 1
            now = time.monotonic()
            if now >= self._next_warning:
                self._next_warning = now + DROP_WARNING_INTERVAL
                logger.warning(f"decision log: the output is not keeping up; {self.dropped} decision lines "
                               f"dropped so far ({self._limit} waiting)")
            return
        self._queue.put(event)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event queued so far is written; False on timeout."""
        if self._closed:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write every queued event, stop the writer and close the file (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error(f"decision log: writer did not finish within {timeout} s; lines may be missing")
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.dropped:
            logger.warning(f"decision log: {self.dropped} decision lines were dropped in all")

    # -- writer thread ------------------------------------------------------------

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            batch = [get()]
            while len(batch) < 4096:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            lines, markers, stop = [], [], False
            for item in batch:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    try:
                        lines.append(dumps(record(item)) + "\n")  # type: ignore[arg-type]
                    except Exception:  # noqa: BLE001 - one bad event must not stop the log
                        logger.exception("decision log: cannot serialise a decision")
            if lines:
                self._write(lines)
            for marker in markers:
                marker.set()
            if stop:
                return
            time.sleep(LINGER_SECONDS)

    def _write(self, lines: list[str]) -> None:
        text = "".join(lines)
        for out in (self._stream, self._file):
            if out is None:
                continue
            try:
                if out is self._file:
                    data = text.encode("ascii")
                    while data:
                        n = out.write(data)
                        if not n:
                            raise OSError("short write")
                        data = data[n:]
                else:
                    out.write(text)
                    out.flush()
            except (OSError, ValueError) as e:
                if id(out) not in self._failed:
                    self._failed.add(id(out))
                    logger.error(f"decision log: cannot write to {getattr(out, 'name', out)}: {e}")
        self.written += len(lines)
