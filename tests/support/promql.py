"""Metric names and label matchers of a PromQL expression, for checking that
the shipped alert rules and dashboard refer only to exported metrics.

A tokenizer, not a full parser: it knows PromQL's strings, label-matcher
braces, range/subquery brackets, function calls, aggregation modifiers
(``by``/``without``) and vector-matching modifiers (``on``, ``ignoring``,
``group_left``, ``group_right``), which is all the syntax the shipped files
use. Syntax itself is checked by promtool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "atan2", "inf", "nan"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}

TOKEN = re.compile(r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<brace>\{)
  | (?P<bracket>\[[^\]]*\])
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<number>[0-9][0-9.eE+\-]*[smhdwy]?|0x[0-9a-fA-F]+)
  | (?P<var>\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?)
  | (?P<op>[()+\-*/%^,]|[=!<>]=|[<>]|=~|!~)
  | (?P<space>\s+)
""", re.VERBOSE)

MATCHER = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)\s*,?""")


@dataclass
class Selector:
    """One vector selector: ``name{label op value, ...}``."""

    name: str | None
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Expression:
    selectors: list[Selector]
    grouping_labels: set[str]
    """Labels named in by/without/on/ignoring/group_* lists."""

    @property
    def metric_names(self) -> set[str]:
        return {s.name for s in self.selectors if s.name}


def _matchers(text: str, start: int) -> tuple[list[tuple[str, str, str]], int]:
    """Parse label matchers after ``{`` at ``start``; returns them and the index after ``}``."""
    found = []
    i = start
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "}":
            return found, i + 1
        m = MATCHER.match(text, i)
        if not m:
            raise ValueError(f"cannot read label matchers at {text[i:i + 30]!r}")
        found.append((m.group(1), m.group(2), m.group(3)[1:-1]))
        i = m.end()


def parse(expr: str) -> Expression:
    """Selectors and grouping labels of ``expr``; raises ValueError on text it cannot tokenize."""
    tokens: list[tuple[str, str, object]] = []
    i = 0
    while i < len(expr):
        m = TOKEN.match(expr, i)
        if not m:
            raise ValueError(f"unexpected text at {expr[i:i + 30]!r}")
        kind = m.lastgroup or ""
        if kind == "brace":
            matchers, i = _matchers(expr, m.end())
            tokens.append(("matchers", "", matchers))
            continue
        if kind != "space":
            tokens.append((kind, m.group(), None))
        i = m.end()

    selectors: list[Selector] = []
    grouping: set[str] = set()
    j = 0
    while j < len(tokens):
        kind, text, value = tokens[j]
        following = tokens[j + 1] if j + 1 < len(tokens) else ("", "", None)
        if kind == "ident" and text in LABEL_LIST_KEYWORDS and following[1] == "(":
            j += 2
            while j < len(tokens) and tokens[j][1] != ")":
                if tokens[j][0] == "ident":
                    grouping.add(tokens[j][1])
                j += 1
        elif kind == "ident" and text in AGGREGATIONS and following[1] in ("by", "without"):
            pass  # sum by (...) (...): the modifier's label list is read next
        elif kind == "ident" and text not in KEYWORDS and following[1] != "(":
            matchers = following[2] if following[0] == "matchers" else []
            selectors.append(Selector(text, list(matchers)))  # type: ignore[arg-type]
            if following[0] == "matchers":
                j += 1
        elif kind == "matchers":
            selectors.append(Selector(None, list(value)))  # type: ignore[arg-type]
        j += 1
    return Expression(selectors, grouping)
