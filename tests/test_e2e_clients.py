"""Real clients configured with exactly what ``azml-egress env --for X`` prints:
pip (pip.conf), curl (shell exports), R (Renviron) and a conda-protocol client
(py-rattler with the pixi config). Upstreams are local servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from support.proxy import azml_egress_command, start_proxy
from support.static_upstream import start_static_upstream
from support.upstream import PACKAGE

CA_OVERRIDES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def printed(client: str, proxy_url: str) -> str:
    """What ``azml-egress env --for client --proxy-url URL`` prints."""
    done = subprocess.run(azml_egress_command() + ["env", "--for", client, "--proxy-url", proxy_url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without proxy, pip and CA-bundle settings of this machine."""
    env = {k: v for k, v in os.environ.items()
           if k not in CA_OVERRIDES and not k.startswith("PIP_") and not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def test_pip_installs_through_the_printed_pip_conf(proxy_factory, pki, tmp_path):
    proxy = proxy_factory()
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(printed("pip", proxy.url))
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--retries", "0", "--timeout", "10",
         "--target", str(target), "--index-url", "https://pypi.org/simple", "--cert", str(pki.ca_pem), PACKAGE],
        capture_output=True, text=True, timeout=120, env=clean_env(PIP_CONFIG_FILE=str(pip_conf)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check = subprocess.run([sys.executable, "-c", f"import {PACKAGE}; print({PACKAGE}.VALUE)"],
                           capture_output=True, text=True, env=clean_env(PYTHONPATH=str(target)), timeout=30)
    assert check.stdout.strip() == "42"
    hosts = [(x["host"], x["action"], x["method"]) for x in proxy.decisions(2)]
    assert ("pypi.org", "allow", "CONNECT") in hosts
    assert ("files.pythonhosted.org", "allow", "CONNECT") in hosts


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_the_printed_shell_exports(proxy_factory, pki, upstream, tmp_path):
    proxy = proxy_factory(["--config", "azureml-2020-04"])
    script = tmp_path / "proxy.sh"
    script.write_text(printed("shell", proxy.url))
    direct = f"http://127.0.0.1:{upstream.http_port}/"  # loopback: NO_PROXY sends it direct
    command = (f". {script} && curl -sS --max-time 10 --cacert {pki.ca_pem} https://pypi.org/simple/"
               f" && curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' https://files.pythonhosted.org/x"
               f" ; curl -sS --max-time 10 -H 'Host: direct.example' {direct}")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, env=clean_env())
    assert PACKAGE in done.stdout, done.stderr
    assert "hello from direct.example" in done.stdout
    assert "CONNECT tunnel failed, response 403" in done.stderr
    assert [(x["host"], x["action"]) for x in proxy.decisions(2)] == [
        ("pypi.org", "allow"), ("files.pythonhosted.org", "deny")]


# -- R: install.packages() from a CRAN-like repository ---------------------------

R_FILES = {
    "azmltestr/DESCRIPTION": "Package: azmltestr\nVersion: 1.0\nTitle: Test Package\nDescription: A test package.\n"
                             "Author: azml-egress tests\nMaintainer: Tests <tests@example.org>\nLicense: MIT\n",
    "azmltestr/NAMESPACE": "export(azml_answer)\n",
    "azmltestr/R/answer.R": "azml_answer <- function() 42L\n",
}


def make_cran(root):
    """A CRAN-like repository for cloud.r-project.org with one source package."""
    contrib = root / "cloud.r-project.org" / "src" / "contrib"
    contrib.mkdir(parents=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in R_FILES.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (contrib / "azmltestr_1.0.tar.gz").write_bytes(buf.getvalue())
    (contrib / "PACKAGES").write_text("Package: azmltestr\nVersion: 1.0\n\n")


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed (Debian package r-base-core)")
def test_r_install_packages_with_the_printed_renviron(pki, tmp_path):
    root = tmp_path / "www"
    make_cran(root)
    cran = start_static_upstream(pki, root)
    proxy = start_proxy(tmp_path, cran)
    try:
        renviron = tmp_path / "Renviron"
        renviron.write_text(printed("r", proxy.url))
        lib = tmp_path / "rlib"
        lib.mkdir()
        code = (f'options(repos = c(CRAN = "https://cloud.r-project.org")); '
                f'install.packages("azmltestr", lib = "{lib}", type = "source"); '
                f'library(azmltestr, lib.loc = "{lib}"); cat("ANSWER", azml_answer(), "\\n")')
        done = subprocess.run(
            # not --vanilla: that skips the Renviron under test
            ["Rscript", "--no-save", "--no-restore", "--no-site-file", "--no-init-file", "-e", code],
            capture_output=True, text=True, timeout=180,
            env=clean_env(R_ENVIRON_USER=str(renviron), CURL_CA_BUNDLE=str(pki.ca_pem), R_LIBS_USER=str(lib)),
        )
        assert "ANSWER 42" in done.stdout, done.stdout + done.stderr
        assert ("cloud.r-project.org", "/src/contrib/azmltestr_1.0.tar.gz") in cran.requests
        lines = proxy.decisions(2)
        assert {(x["host"], x["action"], x["feature"]) for x in lines} == {("cloud.r-project.org", "allow", "cran")}
    finally:
        proxy.stop()
        cran.close()


# -- conda protocol: repodata from a channel -------------------------------------

def make_channel(root):
    """A conda channel conda.anaconda.org/azmltest with one noarch package record."""
    record = {"name": "azmlcondapkg", "version": "1.0", "build": "0", "build_number": 0, "depends": [],
              "subdir": "noarch", "noarch": "generic", "md5": "0" * 32, "sha256": "0" * 64, "size": 1}
    for subdir, packages in (("noarch", {"azmlcondapkg-1.0-0.tar.bz2": record}), ("linux-64", {})):
        directory = root / "conda.anaconda.org" / "azmltest" / subdir
        directory.mkdir(parents=True)
        (directory / "repodata.json").write_text(json.dumps(
            {"info": {"subdir": subdir}, "packages": packages, "packages.conda": {}}))


@pytest.mark.skipif(importlib.util.find_spec("rattler") is None, reason="py-rattler is not installed")
def test_conda_channel_repodata_with_the_printed_pixi_config(pki, tmp_path, monkeypatch):
    import rattler
    import yaml

    root = tmp_path / "www"
    make_channel(root)
    channel = start_static_upstream(pki, root)
    proxy = start_proxy(tmp_path, channel)
    try:
        condarc, pixi_toml = printed("conda", proxy.url).split("\n\n")
        assert yaml.safe_load(condarc)["proxy_servers"] == {"http": proxy.url, "https": proxy.url}
        for name in CA_OVERRIDES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_pem))  # the test CA for the channel's certificate
        client = rattler.Client.from_config(rattler.Config.from_toml(pixi_toml))

        async def fetch():
            return await rattler.fetch_repo_data(
                channels=[rattler.Channel("https://conda.anaconda.org/azmltest")],
                platforms=[rattler.Subdir("noarch"), rattler.Subdir("linux-64")],
                cache_path=str(tmp_path / "cache"), callback=None, client=client)

        repodata = asyncio.run(asyncio.wait_for(fetch(), 60))
        assert [r.package_names() for r in repodata] == [["azmlcondapkg"], []]
        assert ("conda.anaconda.org", "/azmltest/noarch/repodata.json") in channel.requests
        lines = proxy.decisions(1)
        assert lines and {(x["host"], x["action"], x["feature"]) for x in lines} == {
            ("conda.anaconda.org", "allow", "conda")}
    finally:
        proxy.stop()
        channel.close()
