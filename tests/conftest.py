"""Shared fixtures: a test CA, local upstream servers, and real proxy processes."""

from __future__ import annotations

import pytest

from support.pki import make_pki
from support.proxy import start_proxy
from support.upstream import start_upstream

PUBLIC_NAMES = [
    "pypi.org", "files.pythonhosted.org", "test.pypi.org", "evilpypi.org", "ml.azure.com",
    "contoso.api.azureml.ms", "ci-contoso.westeurope.instances.azureml.ms", "mcr.microsoft.com",
    "westeurope.data.mcr.microsoft.com", "evil.example", "repo.anaconda.com", "conda.anaconda.org",
    "cloud.r-project.org", "login.microsoftonline.com", "management.azure.com", "example.org",
]


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), PUBLIC_NAMES)


@pytest.fixture(scope="session")
def upstream(pki):
    server = start_upstream(pki)
    yield server
    server.close()


@pytest.fixture
def proxy_factory(tmp_path, upstream):
    """``proxy_factory(args=[...], mitmdump=False)`` starts a proxy; all are stopped after the test."""
    started = []

    def factory(args=(), **kwargs):
        proxy = start_proxy(tmp_path, upstream, list(args), **kwargs)
        started.append(proxy)
        return proxy

    yield factory
    for proxy in started:
        proxy.stop()
