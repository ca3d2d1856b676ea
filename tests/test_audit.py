import io
import json
import re
import threading
import time

import pytest

from proxy_addon.audit import FIELDS, DecisionEvent, DecisionLog, record, rfc3339_now
from proxy_addon.decision import Action, Decision, Reason


def event(host="pypi.org", mode="enforce"):
    return DecisionEvent(Decision(Action.ALLOW, Reason.RULE_MATCHED, "https", host, 443, rule="r", rule_collection="c"),
                         mode=mode, client="10.0.0.4:5555", method="CONNECT", policy="p")


def test_record_has_every_field_in_order():
    data = record(event())
    assert tuple(data) == FIELDS
    assert data["enforced"] is True and data["client"] == "10.0.0.4:5555"
    assert record(event(mode="simulate"))["enforced"] is False


def test_timestamp_is_rfc3339_utc():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rfc3339_now())


def test_log_lines_cannot_be_forged(tmp_path):
    out = io.StringIO()
    log = DecisionLog(str(tmp_path / "d.jsonl"), stream=out)
    log.on_decision(event(host='evil\n{"action": "allow"}\u2028x'))
    log.close()
    for text in (out.getvalue(), (tmp_path / "d.jsonl").read_text()):
        lines = text.splitlines()
        assert len(lines) == 1 and lines[0].isascii()
        assert json.loads(lines[0])["host"].startswith("evil\n")


def test_write_errors_do_not_raise(caplog):
    class Broken(io.StringIO):
        def write(self, s):
            raise OSError("disk full")

    log = DecisionLog(stream=Broken())
    log.on_decision(event())
    log.on_decision(event())
    log.close()
    assert sum("disk full" in r.message for r in caplog.records) == 1


# -- the writer thread ---------------------------------------------------------

class SlowStream(io.StringIO):
    """A stream whose writes wait until ``release`` is set, and that records who wrote."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.writers = set()

    def write(self, s):
        self.writers.add(threading.get_ident())
        self.release.wait(10)
        return super().write(s)


def test_close_writes_exactly_one_line_per_decision_in_order(tmp_path):
    out = io.StringIO()
    log = DecisionLog(str(tmp_path / "d.jsonl"), stream=out)
    for i in range(2000):
        log.on_decision(event(host=f"h{i}.example"))
    log.close()
    for text in (out.getvalue(), (tmp_path / "d.jsonl").read_text()):
        hosts = [json.loads(line)["host"] for line in text.splitlines()]
        assert hosts == [f"h{i}.example" for i in range(2000)]
    assert log.written == 2000 and log.dropped == 0


def test_file_is_appended_not_truncated(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"earlier": true}\n')
    log = DecisionLog(str(path), to_stdout=False)
    log.on_decision(event())
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"earlier": True} and json.loads(lines[1])["host"] == "pypi.org"


def test_flush_waits_until_queued_lines_are_written():
    out = io.StringIO()
    log = DecisionLog(stream=out)
    log.on_decision(event(host="a.example"))
    log.on_decision(event(host="b.example"))
    assert log.flush(5)
    assert [json.loads(line)["host"] for line in out.getvalue().splitlines()] == ["a.example", "b.example"]
    log.close()


def test_the_caller_never_writes_and_never_blocks_on_a_stuck_output(caplog):
    stream = SlowStream()
    log = DecisionLog(stream=stream, limit=5)
    start = time.monotonic()
    for _ in range(50):
        log.on_decision(event())
    elapsed = time.monotonic() - start
    assert elapsed < 1.0  # the stuck stream holds the writer thread, not the caller
    assert log.dropped >= 40
    assert sum("not keeping up" in r.message for r in caplog.records) == 1  # warned once, not per drop
    stream.release.set()
    log.close()
    assert log.written + log.dropped == 50
    assert len(stream.getvalue().splitlines()) == log.written
    assert threading.get_ident() not in stream.writers


def test_decisions_after_close_are_still_written():
    out = io.StringIO()
    log = DecisionLog(stream=out)
    log.close()
    log.close()  # idempotent
    log.on_decision(event(host="late.example"))
    assert json.loads(out.getvalue())["host"] == "late.example"


def test_unopenable_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        DecisionLog(str(tmp_path / "missing-dir" / "d.jsonl"))
