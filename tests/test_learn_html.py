"""The HTML learn report: parsed with html.parser, checked table by table."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from proxy_addon.learn_html import bar_chart, to_html
from proxy_addon.learn_report import FeatureUse, analyse
from proxy_addon.learnfile import HostRecord, LearnData
from proxy_addon.policy_loader import load_policy

T1, T2 = "2026-11-29T10:00:00.000Z", "2026-11-29T11:00:00.000Z"
EVIL = 'x"><script>alert(1)</script>'


class Page(HTMLParser):
    """Collects sections, headings, tables (rows of cell texts), tags and SVG bars."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.section: str | None = None
        self.tables: list[tuple[str | None, str, list[list[str]]]] = []
        self.headings: list[tuple[str, str]] = []
        self.rects: list[dict] = []
        self.texts: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self._last_h3 = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
        elif tag == "table":
            self.tables.append((self.section, self._last_h3, []))
        elif tag == "tr":
            self.tables[-1][2].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h2", "h3"):
            self._heading = []
        elif tag == "rect":
            self.rects.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][2][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("h2", "h3") and self._heading is not None:
            text = "".join(self._heading).strip()
            self.headings.append((tag, text))
            if tag == "h3":
                self._last_h3 = text
            self._heading = None
        elif tag == "section":
            self._last_h3 = ""

    def handle_data(self, data):
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def page():
    data = LearnData(started=T1, updated=T2, files=["learn.json"])
    for r in [
        HostRecord("pypi.org", 443, "https", T1, T2, count=3, bytes_received=4000),
        HostRecord("files.pythonhosted.org", 443, "https", T1, T2, count=2, bytes_received=90000),
        HostRecord("example.org", 80, "http", T1, T2, count=1),
        HostRecord(EVIL, 443, "https", T1, T2, count=1, reasons={"invalid_host": 1}),
    ]:
        data.hosts[r.key] = r
    text = to_html(analyse(data, load_policy("azureml-2020-04")))
    return text, parse(text)


def tables(page, section):
    return [(heading, rows) for sec, heading, rows in page.tables if sec == section]


def test_page_is_self_contained(page):
    text, p = page
    assert text.startswith("<!DOCTYPE html>")
    assert "script" not in p.tags and "link" not in p.tags and "img" not in p.tags
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text


def test_host_names_from_the_network_are_escaped(page):
    text, p = page
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert any(EVIL in cell for _, _, rows in p.tables for row in rows for cell in row)


def test_gaps_have_one_table_per_feature(page):
    _, p = page
    gaps = tables(p, "gaps")
    assert [h for h, _ in gaps] == ["pip package downloads (pip-downloads, Python) (not enabled in this policy) 1",
                                    "not an Azure ML host 2"]
    header, *rows = gaps[0][1]
    assert header == ["host", "protocol", "reason", "requests", "bytes", "first seen", "last seen"]
    assert rows == [["files.pythonhosted.org:443", "https", "no_rule_matched", "2", "90.0 kB", T1, T2]]
    assert [r[0] for r in gaps[1][1][1:]] == ["example.org:80", f"{EVIL}:443"]


def test_summary_cards_unused_rules_features_and_required(page):
    text, p = page
    assert ("h2", "Used but not allowed by the policy (3)") in p.headings
    (_, unused), = tables(p, "unused-rules")
    assert unused[0] == ["group", "collection", "rule", "action", "targets", "feature"]
    assert "pip-index" not in {row[1] for row in unused[1:]} and "conda" in {row[1] for row in unused[1:]}
    (_, features), = tables(p, "features")
    assert [row[0] for row in features[1:]] == ["pip-downloads", "pip-index", "-"]
    (_, required), = tables(p, "required-unseen")
    assert "studio" in {row[0] for row in required[1:]}
    assert "hosts seen" in "".join(p.texts) and "not allowed" in "".join(p.texts)
    hosts = tables(p, "hosts")
    assert sum(len(rows) - 1 for _, rows in hosts) == 4
    assert hosts[0][1][1][0] == "allow" and hosts[0][1][1][1] == "pypi.org:443"


def test_bar_chart_scales_bars_to_the_largest_feature(page):
    _, p = page
    widths = [int(r["width"]) for r in p.rects]
    assert len(widths) == 3 and widths[0] == max(widths) and widths[2] == 0
    assert widths[1] == round(widths[0] * 4000 / 90000)


def test_bar_chart_falls_back_to_requests_without_bytes():
    svg = bar_chart([FeatureUse("a", "A", "G", True, 1, 10, 0), FeatureUse(None, "other", "", None, 1, 5, 0)])
    p = parse(svg)
    assert "10 requests" in "".join(p.texts)
    assert [int(r["width"]) for r in p.rects] == [400, 200]


def test_page_renders_in_headless_chromium(page, tmp_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed")
    text, parsed = page
    path = tmp_path / "report.html"
    path.write_text(text)
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    rendered = parse(done.stdout)
    assert len(rendered.tables) == len(parsed.tables) >= 6
    assert [h for h in rendered.headings if h[0] == "h2"] == [h for h in parsed.headings if h[0] == "h2"]
    assert len(rendered.rects) == 3 and "script" not in rendered.tags
