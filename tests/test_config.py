import pytest

from proxy_addon.config import ConfigError, format_path, parse_yaml, suggest


def test_lines_of_key_paths():
    src = parse_yaml("a:\n  b:\n    - x\n    - y: 1\n", "f.yaml")
    assert src.data == {"a": {"b": ["x", {"y": 1}]}}
    assert src.line(("a", "b", 1, "y")) == 4
    assert src.line(("a", "b", 0)) == 3
    assert src.line(("a", "missing")) == 1


@pytest.mark.parametrize("path, text", [
    ((), "(top level)"), (("rules", 0, "target_fqdns", 2), "rules[0].target_fqdns[2]"), (("a",), "a"),
])
def test_format_path(path, text):
    assert format_path(path) == text


@pytest.mark.parametrize("text, message", [
    ("a: [1\n", "f.yaml:2: (top level): not valid YAML"),
    ("a: 1\na: 2\n", "duplicate key 'a'"),
    ("? [1, 2]\n: x\n", "keys must be plain text"),
    ("", "the file is empty"),
])
def test_yaml_errors(text, message):
    with pytest.raises(ConfigError) as e:
        parse_yaml(text, "f.yaml")
    assert message in str(e.value)


def test_suggest():
    assert suggest("featurs", ["features", "mode"]) == "; did you mean 'features'?"
    assert suggest("zzz", ["features"]) == ""
