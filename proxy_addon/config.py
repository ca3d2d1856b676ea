"""Loading YAML configuration (catalogs, policies) with exact error locations.

Every problem is reported as ``FILE:LINE: key.path: what is wrong (what to
write instead)``; :class:`ConfigError` carries all problems of one file so a
user fixes them in one pass.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .hostnames import printable

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """``("rules", 0, "target_fqdns", 2)`` -> ``rules[0].target_fqdns[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass(frozen=True)
class Problem:
    """One mistake in a configuration file."""

    file: str
    path: KeyPath
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {format_path(self.path)}: {self.message}"


class ConfigError(ValueError):
    """A configuration file that cannot be used; ``problems`` lists every mistake."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def count_text(self) -> str:
        """``"1 problem"`` / ``"3 problems"``."""
        n = len(self.problems)
        return f"{n} problem{'s' if n != 1 else ''}"


@dataclass
class Source:
    """A parsed YAML document: ``data`` plus the line of every key path."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    text: str = ""

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path`` or of its closest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.file, path, self.line(path), message)


MAX_DEPTH = 64
"""Deepest nesting a configuration file may have."""
MAX_VALUES = 200_000
"""Most values YAML aliases may add to a document (each use of an alias counts
every value under its anchor again). Values written out in the file do not
count, so a large policy (100,000 rules are about 700,000 values) loads."""


class _TooBig(Exception):
    pass


def _build(loader: Any, node: yaml.Node, path: KeyPath, src: Source, problems: list[Problem],
           budget: list[int] | None = None, seen: set[int] | None = None) -> Any:
    budget = budget if budget is not None else [MAX_VALUES]
    seen = seen if seen is not None else set()
    if id(node) in seen:  # built before: reached again through an alias
        budget[0] -= 1
    else:
        seen.add(id(node))
    if budget[0] < 0:
        raise _TooBig(f"the document expands to more than {MAX_VALUES} values (YAML aliases repeat their anchor's "
                      "contents); write the values out or split the file")
    if len(path) > MAX_DEPTH:
        raise _TooBig(f"nested deeper than {MAX_DEPTH} levels")
    src.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int, bool)) or key is None:
                problems.append(Problem(src.file, path, key_node.start_mark.line + 1, "keys must be plain text"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                problems.append(
                    Problem(src.file, path + (key,), key_node.start_mark.line + 1, f"duplicate key {key!r}")
                )
            src.lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, path + (key,), src, problems, budget, seen)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), src, problems, budget, seen) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML has it: the same nodes and line marks as
the pure-Python one, about eight times faster on large policies."""


def parse_yaml(text: str, file: str) -> Source:
    """Parse YAML text into a :class:`Source`; raises :class:`ConfigError`."""
    src = Source(file=file, data=None, text=text)
    try:
        loader = _SafeLoader(text)
        try:
            node = loader.get_single_node()
            problems: list[Problem] = []
            src.data = _build(loader, node, (), src, problems) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(file, (), line, f"not valid YAML: {e.problem or e}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(file, (), None, f"not valid YAML: {e}")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, (), None, f"nested deeper than {MAX_DEPTH} levels")]) from None
    except _TooBig as e:
        raise ConfigError([Problem(file, (), None, str(e))]) from None
    if problems:
        raise ConfigError(problems)
    if src.data is None:
        raise ConfigError([Problem(file, (), None, "the file is empty")])
    return src


MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest configuration file read (a device or a runaway file is refused)."""


def read_text(path: str | Path) -> str:
    """Read a configuration file as UTF-8 (a leading BOM is dropped); raises
    :class:`ConfigError` for a missing, unreadable, non-regular or huge file."""
    path = Path(path)
    file = printable(str(path), 200)
    try:
        if path.exists() and not path.is_file():
            raise ConfigError([Problem(file, (), None, "is not a regular file")])
        if path.exists() and path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError([Problem(file, (), None, f"is larger than {MAX_FILE_BYTES // 2**20} MiB")])
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([Problem(file, (), None, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(file, (), None, f"cannot be read: {getattr(e, 'strerror', None) or e}")]) from None


def load_json(text: str, file: str) -> Any:
    """Parse JSON text; raises :class:`ConfigError` naming the file and line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError([Problem(file, (), e.lineno, f"not valid JSON: {e.msg} (column {e.colno})")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, (), None, "not valid JSON: nested too deeply")]) from None
    except ValueError as e:  # e.g. an integer with thousands of digits
        raise ConfigError([Problem(file, (), None, f"not valid JSON: {e}")]) from None


def load_yaml(path: str | Path) -> Source:
    """Read and parse a YAML file; unreadable files raise :class:`ConfigError`."""
    return parse_yaml(read_text(path), str(path))


def load_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in ``proxy_addon/schemas/NAME.schema.json``."""
    text = resources.files("proxy_addon").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def _short(value: Any, limit: int = 60) -> str:
    """A value as shown in messages: repr, escaped, cut to ``limit`` characters."""
    text = repr(value)
    return printable(text, limit) if len(text) > limit or not text.isprintable() else text


def _describe(error: jsonschema.ValidationError) -> tuple[KeyPath, str]:
    path: KeyPath = tuple(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        messages = []
        for key in extra:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            messages.append(f"unknown key {key!r}{suggestion} (allowed: {', '.join(allowed)})")
        if len(extra) == 1:
            return path + (extra[0],), messages[0]
        return path, "; ".join(messages)
    if validator == "required":
        return path, f"missing required key: {error.message.split(' is a required')[0]}"
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return path, f"expected {expected}, got {type(error.instance).__name__} {_short(error.instance)}"
    if validator == "enum":
        return path, f"{_short(error.instance)} is not one of {', '.join(map(repr, error.validator_value))}"
    if validator == "pattern":
        hint = error.schema.get("description", f"must match {error.validator_value}")
        return path, f"{_short(error.instance)}: {hint}"
    return path, error.message


def validate_schema(src: Source, schema: dict[str, Any]) -> None:
    """Check ``src.data`` against a JSON Schema; raises :class:`ConfigError`."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(src.data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    problems = []
    seen = set()
    for error in errors:
        path, message = _describe(error)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        problems.append(src.problem(path, message))
    if problems:
        raise ConfigError(problems)


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` or an empty string."""
    choices = list(choices)
    hint = difflib.get_close_matches(word, choices, n=1) or sorted(c for c in choices if c.startswith(word))
    return f"; did you mean {hint[0]!r}?" if hint else ""
