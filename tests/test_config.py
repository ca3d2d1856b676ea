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


def test_alias_bombs_and_deep_nesting_are_refused_quickly():
    import time

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for level, prev in zip("bcdefghij", "abcdefghi"):
        bomb += f"{level}: &{level} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    started = time.monotonic()
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_yaml(bomb, "bomb.yaml")
    assert time.monotonic() - started < 5
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        parse_yaml("x: " + "[" * 900 + "]" * 900 + "\n", "deep.yaml")


def test_values_written_out_are_not_capped():
    """Only alias expansions count against the cap: a large policy loads."""
    from proxy_addon.config import MAX_VALUES

    src = parse_yaml("x: [" + ", ".join(["1"] * (MAX_VALUES + 10)) + "]\n", "big.yaml")
    assert len(src.data["x"]) == MAX_VALUES + 10


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000, "nested too deeply"), ('{"a": 1', "not valid JSON"), ("1" * 5000, "not valid JSON"),
])
def test_json_errors(text, message):
    from proxy_addon.config import load_json

    with pytest.raises(ConfigError, match=message):
        load_json(text, "f.json")


def test_files_that_are_not_regular_files(tmp_path):
    from proxy_addon.config import read_text

    with pytest.raises(ConfigError, match="not a regular file"):
        read_text("/dev/zero")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_text(tmp_path)
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfversion: 1\n")
    assert read_text(tmp_path / "bom.yaml") == "version: 1\n"
