"""Atomic file replacement: whole files or the old file, never half of one."""

from __future__ import annotations

import json
import os
import stat

import pytest

from proxy_addon import atomicfile
from proxy_addon.atomicfile import write_atomic


def test_write_atomic_replaces_whole_file_and_keeps_mode(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_atomic(path, "new content")
    assert path.read_text() == "new content"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"], "no temporary file may be left"


def test_write_atomic_failure_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_text('{"old": true}')

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomicfile.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, '{"new": tru')
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".learn.json.abc123.tmp").write_text("{half")
    (tmp_path / ".other.json.abc.tmp").write_text("keep")
    assert atomicfile.remove_stale_temporaries(tmp_path / "learn.json") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc.tmp"]
