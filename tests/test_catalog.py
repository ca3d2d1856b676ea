import pytest

from proxy_addon.catalog import Attributor, Endpoint, builtin_catalogs, find_catalog, load_catalog
from proxy_addon.config import ConfigError


def test_builtin_catalogs_load():
    ids = [c.id for c in builtin_catalogs()]
    assert ids[0] == "azureml"
    assert {"azureml", "azureml-2020-04", "azureml-usgov", "azureml-china"} <= set(ids)


def test_april_2020_catalog_is_the_article():
    april = find_catalog("azureml-2020-04")
    hosts = sorted(h.pattern for f in april.features for h in f.hosts)
    assert hosts == sorted([
        "*.batchai.core.windows.net", "ml.azure.com", "*.azureml.ms", "*.experiments.azureml.net",
        "*.modelmanagement.azureml.net", "mlworkspace.azure.ai", "*.aether.ms", "*.instances.azureml.net",
        "windows.net", "vault.azure.net", "microsoft.com", "azurecr.io", "anaconda.com", "pypi.org",
        "cloud.r-project.org",
    ])


def test_current_catalog_marks_undocumented_hosts():
    azureml = find_catalog("azureml")
    undocumented = {h.pattern for f in azureml.features for h in f.hosts if not h.documented}
    assert {"files.pythonhosted.org", "repo.anaconda.com", "conda.anaconda.org"} <= undocumented
    feature = azureml.feature("compute-instance")
    assert feature.required
    ports = {p for h in feature.hosts for p in h.protocols}
    assert {("https", 8787), ("https", 18881), ("udp", 5831)} <= ports


@pytest.mark.parametrize("pattern, workspace, expected", [
    ("<storage>.blob.core.windows.net", {}, "*.blob.core.windows.net"),
    ("<storage>.blob.core.windows.net", {"storage_account": "contosoml"}, "contosoml.blob.core.windows.net"),
    ("*.<region>.batch.azure.com", {}, "*.batch.azure.com"),
    ("*.<region>.batch.azure.com", {"region": "westeurope"}, "*.westeurope.batch.azure.com"),
    ("<workspaceId>.workspace.<region>.api.azureml.ms", {"region": "westeurope"}, "*.workspace.westeurope.api.azureml.ms"),
    ("<acr>.<region>.data.azurecr.io", {"registry": "contosoacr"}, "*.data.azurecr.io"),
    ("pypi.org", {"region": "x"}, "pypi.org"),
])
def test_placeholders(pattern, workspace, expected):
    assert Endpoint(pattern, (("https", 443),)).resolve(workspace) == expected


def test_attribution_prefers_active_catalog_then_specific_patterns():
    azureml, april = find_catalog("azureml"), find_catalog("azureml-2020-04")
    attributor = Attributor([april, azureml])
    assert attributor.attribute("pypi.org").feature.catalog == "azureml-2020-04"
    assert attributor.attribute("files.pythonhosted.org").feature.id == "pip-downloads"
    a = Attributor([azureml]).attribute("ci-x.westeurope.instances.azureml.ms")
    assert a.feature.id == "compute-instance"
    assert Attributor([azureml]).attribute("x.api.azureml.ms").feature.id == "azureml-api"
    assert Attributor([azureml]).attribute("nothing.example") is None


@pytest.mark.parametrize("body, message", [
    ("features: []", "features"),
    ("features:\n  - {id: a, title: t, group: g, need: conditional, source: S, hosts: [{pattern: x.example, protocols: [https:443]}]}",
     "needs a 'condition'"),
    ("features:\n  - {id: a, title: t, group: g, need: required, source: Z, hosts: [{pattern: x.example, protocols: [https:443]}]}",
     "source 'Z' is not a key"),
    ("features:\n  - {id: a, title: t, group: g, need: required, source: S, hosts: [{pattern: '<bucket>.x.example', protocols: [https:443]}]}",
     "unknown placeholder <bucket>"),
    ("features:\n  - {id: a, title: t, group: g, need: required, source: S, hosts: [{pattern: 'a.*.example', protocols: [https:443]}]}",
     "left-most"),
    ("features:\n  - {id: a, title: t, group: g, need: required, source: S, hosts: [{pattern: x.example, protocols: [ftp:21]}]}",
     "PROTOCOL:PORT"),
])
def test_bad_catalogs(tmp_path, body, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"version: 1\nid: c\ntitle: t\ncloud: AzureCloud\nrevision: r\nsources: {{S: s}}\n{body}\n")
    with pytest.raises(ConfigError, match=message):
        load_catalog(path)
