"""End to end: a real proxy process, real clients (curl, openssl, pip, urllib),
local upstream servers standing in for public hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from support.upstream import PACKAGE

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(proxy, url, pki, *extra):
    """Run curl through the proxy; returns (exit code, stdout+headers, stderr)."""
    cmd = ["curl", "-sS", "--max-time", "10", "-x", proxy.url, "--cacert", str(pki.ca_pem), "-D", "-", url, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return done.returncode, done.stdout, done.stderr


def test_allowed_https_is_tunnelled_untouched(proxy_factory, pki):
    proxy = proxy_factory()
    code, out, err = curl(proxy, "https://pypi.org/simple/", pki)
    assert code == 0, err
    assert "HTTP/1.1 200" in out and PACKAGE in out
    (line,) = proxy.decisions(1)
    assert line["action"] == "allow" and line["reason"] == "rule_matched"
    assert line["host"] == "pypi.org" and line["port"] == 443 and line["protocol"] == "https"
    assert line["feature"] == "pip-index" and line["rule_collection"] == "pip-index"
    assert line["enforced"] is True and line["mode"] == "enforce"
    assert line["msg"].startswith("HTTPS request from 127.0.0.1:")
    assert line["msg"].endswith("to pypi.org:443. Action: Allow. Rule Collection: pip-index. Rule: pypi.org")


def test_openssl_sees_the_upstream_certificate(proxy_factory, pki):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    proxy = proxy_factory()
    done = subprocess.run(
        ["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect", "ml.azure.com:443",
         "-servername", "ml.azure.com", "-CAfile", str(pki.ca_pem), "-verify_return_error", "-brief"],
        input="", capture_output=True, text=True, timeout=20,
    )
    # verification against the test CA succeeds only if the TLS bytes were not intercepted
    assert "Verification: OK" in done.stderr, done.stderr
    assert proxy.decisions(1)[0]["host"] == "ml.azure.com"


def test_denied_connect_gets_403_naming_the_feature(proxy_factory, pki):
    proxy = proxy_factory(["--config", "azureml-2020-04"])
    code, out, err = curl(proxy, "https://files.pythonhosted.org/x.whl", pki, "--proxy-header", "X-Test: 1")
    assert code != 0
    assert "403" in out
    assert "X-Azml-Egress-Decision: deny" in out
    assert "X-Azml-Egress-Reason: no_rule_matched" in out
    (line,) = proxy.decisions(1)
    assert line["action"] == "deny" and line["reason"] == "no_rule_matched"
    assert line["feature"] == "pip-downloads" and line["feature_title"] == "pip package downloads"
    assert line["feature_enabled"] is False
    assert line["msg"].endswith("Action: Deny. No rule matched. Proceeding with default action")


def test_denied_body_explains(proxy_factory, pki):
    proxy = proxy_factory()
    body = subprocess.run(
        ["curl", "-sS", "-p", "-x", proxy.url, "--max-time", "10", "https://evil.example/", "-v"],
        capture_output=True, text=True, timeout=20,
    ).stderr
    assert "403" in body
    line = proxy.decisions(1)[0]
    assert line["feature"] is None and line["reason"] == "no_rule_matched"


def test_port_not_allowed_names_the_feature(proxy_factory, pki):
    proxy = proxy_factory()
    code, out, _ = curl(proxy, "https://ci-contoso.westeurope.instances.azureml.ms:22/", pki)
    assert "X-Azml-Egress-Reason: port_not_allowed" in out
    assert proxy.decisions(1)[0]["feature"] == "compute-instance"
    code, out, err = curl(proxy, "https://ci-contoso.westeurope.instances.azureml.ms:8787/", pki)
    assert code == 0, err
    assert "hello from ci-contoso.westeurope.instances.azureml.ms" in out


def test_ip_literals_are_denied(proxy_factory, pki):
    proxy = proxy_factory()
    for target in ("203.0.113.10:443", "[2001:db8::10]:443", "3405803786:443"):
        done = subprocess.run(["curl", "-sS", "-p", "-x", proxy.url, "--max-time", "10", f"https://{target}/", "-v"],
                              capture_output=True, text=True, timeout=20)
        assert "403" in done.stderr, (target, done.stderr)
    reasons = [(line["host"], line["reason"]) for line in proxy.decisions(3)]
    assert reasons == [("203.0.113.10", "ip_literal"), ("2001:db8::10", "ip_literal"), ("203.0.113.10", "ip_literal")]


def _urlopen(proxy, url, headers=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_plain_http_allow_deny_and_host_mismatch(proxy_factory):
    proxy = proxy_factory()
    status, _, body = _urlopen(proxy, "http://pypi.org/simple/")
    assert status == 200 and PACKAGE in body
    status, headers, body = _urlopen(proxy, "http://evil.example/")
    assert status == 403 and headers["X-Azml-Egress-Reason"] == "no_rule_matched"
    assert "not an Azure ML host" in body and "evil.example" in body
    status, headers, _ = _urlopen(proxy, "http://pypi.org/", {"Host": "evil.example"})
    assert status == 400 and headers["X-Azml-Egress-Reason"] == "host_mismatch"
    lines = proxy.decisions(3)
    assert [(x["protocol"], x["host"], x["action"], x["reason"]) for x in lines] == [
        ("http", "pypi.org", "allow", "rule_matched"),
        ("http", "evil.example", "deny", "no_rule_matched"),
        ("http", "pypi.org", "deny", "host_mismatch"),
    ]


def test_simulate_mode_blocks_nothing_and_logs_would_deny(proxy_factory, pki):
    proxy = proxy_factory(["--mode", "simulate"])
    code, out, err = curl(proxy, "https://evil.example/", pki)
    assert code == 0, err
    assert "hello from evil.example" in out
    (line,) = proxy.decisions(1)
    assert line["action"] == "deny" and line["enforced"] is False and line["mode"] == "simulate"


def test_exactly_one_log_line_per_decision_on_stdout(proxy_factory, pki):
    proxy = proxy_factory()
    for url in ("https://pypi.org/", "https://evil.example/", "https://ml.azure.com/"):
        curl(proxy, url, pki)
    proxy.decisions(3)
    proxy.stop()
    stdout_lines = [json.loads(x) for x in proxy.stdout().splitlines() if x.startswith("{")]
    assert [x["host"] for x in stdout_lines] == ["pypi.org", "evil.example", "ml.azure.com"]
    assert "Traceback" not in proxy.stderr()


def client_env():
    """The environment without CA-bundle and pip overrides (requests prefers
    REQUESTS_CA_BUNDLE over pip's --cert)."""
    drop = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
    return {k: v for k, v in os.environ.items()
            if k not in drop and not k.startswith("PIP_") and not k.lower().endswith("_proxy")}


def pip_download(proxy, pki, dest):
    return subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "--no-cache-dir", "--retries", "0",
         "--timeout", "10", "-d", str(dest), "--proxy", proxy.url, "--index-url", "https://pypi.org/simple",
         "--cert", str(pki.ca_pem), PACKAGE],
        capture_output=True, text=True, timeout=120, env=client_env(),
    )


def test_pip_download_default_policy_succeeds(proxy_factory, pki, tmp_path):
    proxy = proxy_factory()
    done = pip_download(proxy, pki, tmp_path / "dl")
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((tmp_path / "dl").glob(f"{PACKAGE}-*.whl"))
    hosts = {(x["host"], x["action"]) for x in proxy.decisions(2)}
    assert {("pypi.org", "allow"), ("files.pythonhosted.org", "allow")} <= hosts


def test_pip_download_april_2020_policy_fails_on_files_pythonhosted(proxy_factory, pki, tmp_path):
    proxy = proxy_factory(["--config", "azureml-2020-04"])
    done = pip_download(proxy, pki, tmp_path / "dl")
    assert done.returncode != 0
    denies = [x for x in proxy.decisions(2) if x["action"] == "deny"]
    assert denies and denies[0]["host"] == "files.pythonhosted.org"
    assert denies[0]["feature"] == "pip-downloads" and denies[0]["group"] == "Python"
    assert any(x["host"] == "pypi.org" and x["action"] == "allow" for x in proxy.decisions())


def test_mitmdump_script_loading_works(proxy_factory, pki):
    if shutil.which("mitmdump") is None:
        pytest.skip("mitmdump is not on PATH")
    proxy = proxy_factory(mitmdump=True)
    code, out, err = curl(proxy, "https://pypi.org/simple/", pki)
    assert code == 0, err
    code, out, _ = curl(proxy, "https://evil.example/", pki)
    assert "X-Azml-Egress-Reason: no_rule_matched" in out
    assert [(x["host"], x["action"]) for x in proxy.decisions(2)] == [("pypi.org", "allow"), ("evil.example", "deny")]


@pytest.mark.network
def test_real_pip_download_through_the_proxy(tmp_path):
    """Opt-in (-m network): the real package index, default policy vs April 2020."""
    from support.proxy import start_proxy

    def download(args, dest):
        proxy = start_proxy(tmp_path, None, args, route=False)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "--no-cache-dir", "--retries",
                 "0", "-d", str(dest), "--proxy", proxy.url, "--index-url", "https://pypi.org/simple", "six"],
                capture_output=True, text=True, timeout=300)
            return done, proxy.decisions(2)
        finally:
            proxy.stop()

    done, lines = download([], tmp_path / "default")
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "default").glob("six-*.whl"))
    done, lines = download(["--config", "azureml-2020-04"], tmp_path / "april")
    assert done.returncode != 0
    denied = [x for x in lines if x["action"] == "deny"]
    assert denied[0]["host"] == "files.pythonhosted.org" and denied[0]["feature"] == "pip-downloads"
