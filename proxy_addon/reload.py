"""Policy hot reload: a file watch (watchdog) that calls back when the policy file changes.

The watch covers the file's directory, so editors that write a new file and
rename it, and Kubernetes ConfigMap volumes (which swap a ``..data`` symlink),
are seen too. Events are debounced; the callback runs on the watchdog thread
and must hand the work to the proxy's event loop itself.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer as WatchdogObserver

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.2


class PolicyFileWatch(FileSystemEventHandler):
    """Calls ``on_change()`` (debounced) when ``path`` may have changed."""

    def __init__(self, path: str | Path, on_change: Callable[[], None]):
        self.path = Path(path).resolve()
        self.on_change = on_change
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._observer = WatchdogObserver()
        self._observer.daemon = True

    def start(self) -> None:
        self._observer.schedule(self, str(self.path.parent), recursive=False)
        self._observer.start()

    def stop(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
        self._observer.stop()
        self._observer.join(timeout=2)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        touched = {Path(str(p)).name for p in (event.src_path, getattr(event, "dest_path", "")) if p}
        if self.path.name not in touched and not any(name.startswith("..") for name in touched):
            return
        with self._lock:
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(DEBOUNCE_SECONDS, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        try:
            self.on_change()
        except Exception:  # noqa: BLE001 - a watch must survive a failing callback
            logger.exception("azml-egress: policy reload callback failed")
