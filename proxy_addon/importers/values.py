"""Reading values out of Azure JSON exports, with JSON paths in every problem.

Names follow Azure Firewall's naming rules (MicrosoftDocs/azure-docs
articles/firewall/rule-processing.md: letters, digits, ``_ . -``, start with a
letter or digit, end with a letter, digit or ``_``, at most 80 characters);
ARM template expressions (``[parameters('x')]``) are refused except in
resource names, where the literal last segment is read.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..config import KeyPath, Problem, format_path

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
_LITERAL = re.compile(r"(parameters|variables)?\(?\s*'((?:[^']|'')*)'")


def json_path(path: KeyPath) -> str:
    """``("resources", 0, "name")`` -> ``$.resources[0].name``."""
    text = format_path(path)
    return "$" if text == "(top level)" else "$" + ("" if text.startswith("[") else ".") + text



class ValueReader:
    """Collects problems (errors) and skipped entries (warnings) of one file."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []
        self.skipped: list[str] = []

    def fail(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.file, path, None, message))

    def skip(self, path: KeyPath, message: str) -> None:
        self.skipped.append(f"{json_path(path)}: {message}")

    def expression(self, value: Any) -> bool:
        return isinstance(value, str) and value.startswith("[") and value.endswith("]") and not value.startswith("[[")

    def text(self, obj: dict, key: str, path: KeyPath, required: bool = True) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(path + (key,), "missing")
            return None
        if not isinstance(value, str):
            self.fail(path + (key,), f"expected a string, got {type(value).__name__} {value!r}")
            return None
        if self.expression(value):
            self.fail(path + (key,), f"{value!r} is an ARM template expression; import reads literal values "
                      "(export the deployed resource, e.g. with 'az network firewall policy rule-collection-group show')")
            return None
        return value

    def name(self, value: str | None, path: KeyPath, used: set[str], what: str) -> str | None:
        """Check an Azure name (rule-processing.md naming rules) and its uniqueness."""
        if not isinstance(value, str):
            return None
        if not _NAME.match(value):
            self.fail(path, f"{what} name {value!r} is not valid: letters, digits, '_', '.', '-'; start with a "
                      "letter or digit, end with a letter, digit or '_'; at most 80 characters")
            return None
        if value in used:
            self.fail(path, f"duplicate {what} name {value!r}")
            return None
        used.add(value)
        return value

    def priority(self, obj: dict, path: KeyPath) -> int | None:
        value = obj.get("priority")
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            what = "missing" if value is None else f"{value!r} is not an integer"
            self.fail(path + ("priority",), f"{what} (a priority is an integer from 100 to 65000)")
            return None
        if not 100 <= value <= 65000:
            self.fail(path + ("priority",), f"priority {value} is outside 100..65000")
            return None
        return value

    def strings(self, obj: dict, key: str, path: KeyPath) -> list[str]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path + (key,), f"expected a list of strings, got {value!r}")
            return []
        for i, item in enumerate(value):
            if self.expression(item):
                self.fail(path + (key, i), f"{item!r} is an ARM template expression; import reads literal values")
        return list(value)

    def resource_name(self, value: Any, path: KeyPath) -> str | None:
        """The last segment of a resource name, also from ``[concat(..., '/x')]``/``[format(...)]``."""
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a resource name, got {value!r}")
            return None
        if self.expression(value):
            literals = [m.group(2) for m in _LITERAL.finditer(value) if not m.group(1)]
            literals = [s for s in literals if "{" not in s and s.strip("/")]
            if not literals:
                self.fail(path, f"cannot read a name from the expression {value!r}; write the name literally")
                return None
            value = literals[-1]
        return value.strip("/").split("/")[-1]

    def properties(self, obj: dict, path: KeyPath) -> tuple[dict, KeyPath]:
        props = obj.get("properties")
        if isinstance(props, dict):
            return props, path + ("properties",)
        return obj, path

    def addresses(self, rule: dict, key: str, path: KeyPath) -> list[str]:
        out = []
        for i, text in enumerate(self.strings(rule, key, path)):
            if text == "*":
                return []
            try:
                if "-" in text:
                    first, last = (ipaddress.ip_address(t.strip()) for t in text.split("-", 1))
                    out.extend(str(n) for n in ipaddress.summarize_address_range(first, last))
                else:
                    out.append(str(ipaddress.ip_network(text, strict=False)))
            except (ValueError, TypeError) as e:
                self.fail(path + (key, i), f"{text!r} is not an IP address, CIDR or range a-b ({e})")
        return out
