import io
import json
import re

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
    assert sum("disk full" in r.message for r in caplog.records) == 1
