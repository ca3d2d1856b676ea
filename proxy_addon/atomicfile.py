"""Replacing a file atomically, so that a reader (or a crash) never sees half of it.

:func:`write_atomic` writes a temporary file next to the target, flushes and
fsyncs it, ``os.replace``-s it over the target (atomic on POSIX file systems)
and fsyncs the directory so the rename itself survives a power loss. A process
killed mid-write leaves only a temporary file, which
:func:`remove_stale_temporaries` deletes on the next start.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _file_mode(path: Path) -> int:
    """The mode of the existing ``path``, else what ``open()`` would create (0666 minus the umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: write a temporary file in the
    same directory, flush and fsync it, ``os.replace`` it over ``path``, fsync
    the directory. The file keeps its mode (a new one gets the umask's).
    Raises ``OSError``; the old file stays intact on failure."""
    path = Path(path)
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(str(path.parent), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(path: str | Path) -> int:
    """Delete temporary files a killed writer of ``path`` left behind; returns how many."""
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed
