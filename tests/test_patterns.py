import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addon.patterns import Kind, PatternError, PatternIndex, parse_pattern, pattern_warnings


@pytest.mark.parametrize("text, kind, base", [
    ("pypi.org", Kind.EXACT, "pypi.org"),
    ("*.pypi.org", Kind.SUBDOMAINS, "pypi.org"),
    ("*pypi.org", Kind.SUFFIX, "pypi.org"),
    ("xn--bcher-kva.example", Kind.EXACT, "xn--bcher-kva.example"),
])
def test_parse(text, kind, base):
    p = parse_pattern(text)
    assert (p.kind, p.base, p.text) == (kind, base, text)


@pytest.mark.parametrize("text, message", [
    ("*", "every host"),
    ("*.", "names no domain"),
    ("a.*.c", "left-most"),
    ("a.b.*", "left-most"),
    ("a*b.c", "left-most"),
    ("**.b.c", "2 '\\*'"),
    ("*.*.b.c", "2 '\\*'"),
    ("pypi.org:443", "contains a port"),
    ("github.com/microsoft/x", "URL path"),
    ("https://pypi.org", "scheme"),
    ("PyPI.org", "write 'pypi.org'"),
    ("pypi.org.", "write 'pypi.org'"),
    ("*.PyPI.org", "write '\\*.pypi.org'"),
    ("bücher.example", "write 'xn--bcher-kva.example'"),
    ("", "empty"),
    ("*..x", "empty label"),
    ("203.0.113.10", "IP address"),
    ("a..b", "empty label"),
], ids=["lone star", "star dot", "middle star", "trailing star", "inner star", "double star", "two wildcards",
        "port", "path", "scheme", "upper case", "trailing dot", "upper case wildcard", "unicode", "empty",
        "empty after star", "ip", "double dot"])
def test_rejected(text, message):
    with pytest.raises(PatternError, match=message):
        parse_pattern(text)


@pytest.mark.parametrize("pattern, host, expected", [
    ("*.pypi.org", "pypi.org", False),
    ("*.pypi.org", "test.pypi.org", True),
    ("*.pypi.org", "a.b.test.pypi.org", True),
    ("*.pypi.org", "evilpypi.org", False),
    ("*pypi.org", "evilpypi.org", True),
    ("*pypi.org", "pypi.org", True),
    ("*pypi.org", "x.pypi.org", True),
    ("pypi.org", "test.pypi.org", False),
    ("*.azureml.ms", "notazureml.ms", False),
    ("*.azureml.ms", "azureml.ms.evil.example", False),
    ("ml.azure.com", "evil-ml.azure.com", False),
    ("ml.azure.com", "xml.azure.com", False),
    ("*.azureml.ms", "contoso.api.azureml.ms", True),
], ids=["wildcard not apex", "wildcard one level", "wildcard any depth", "wildcard not lookalike",
        "suffix lookalike", "suffix apex", "suffix subdomain", "exact not sub", "not prefix lookalike",
        "not as infix", "exact not dash lookalike", "exact not letter lookalike", "multi level"])
def test_matching(pattern, host, expected):
    p = parse_pattern(pattern)
    assert p.matches(host) is expected
    index = PatternIndex()
    index.add(p, "v")
    assert (index.lookup(host) == ["v"]) is expected


def test_warnings():
    assert any("evilpypi.org" in w for w in pattern_warnings(parse_pattern("*pypi.org")))
    assert any("public suffix" in w for w in pattern_warnings(parse_pattern("*.co.uk")))
    assert pattern_warnings(parse_pattern("*.pypi.org")) == []
    assert pattern_warnings(parse_pattern("pypi.org")) == []


def test_index_returns_all_matches_in_insertion_order():
    index = PatternIndex()
    for i, text in enumerate(["*.azureml.ms", "contoso.api.azureml.ms", "*.api.azureml.ms", "*ml.ms", "other.ms"]):
        index.add(parse_pattern(text), i)
    assert index.lookup("contoso.api.azureml.ms") == [0, 1, 2, 3]
    assert index.lookup("azureml.ms") == [3]
    assert index.lookup("nothing.example") == []
    assert len(index) == 5


labels = st.from_regex(r"\A[a-z][a-z0-9]{0,7}\Z")
names = st.lists(labels, min_size=1, max_size=4).map(".".join)


@given(base=names, host=names)
def test_subdomain_wildcard_never_matches_outside_the_subtree(base, host):
    p = parse_pattern("*." + base)
    assert p.matches(host) == host.endswith("." + base)
    assert not p.matches(base)


@given(base=names, prefix=st.lists(labels, min_size=1, max_size=3).map(".".join))
def test_subdomain_wildcard_matches_every_subdomain(base, prefix):
    assert parse_pattern("*." + base).matches(prefix + "." + base)
