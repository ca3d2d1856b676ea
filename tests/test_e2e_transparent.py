"""Transparent mode for real: two network namespaces joined by a veth pair.

* ``client`` namespace (10.200.0.1): the proxy (``--set mode=transparent`` on
  127.0.0.1:15001, as root) and a client with no proxy settings (curl as
  UID 65534); the outbound 80/443 redirect is the very script of the
  Kubernetes transparent variant's init container, with the proxy's UID
  exempt.
* ``upstream`` namespace (10.200.0.2): the test servers on 443 and 80.

All traffic stays inside these namespaces; names resolve with curl --resolve.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from support.proxy import azml_egress_command
from support.upstream import PACKAGE

ROOT = Path(__file__).resolve().parents[1]
TRANSPARENT_MANIFEST = ROOT / "deploy" / "kubernetes" / "transparent" / "deployment.yaml"
UPSTREAM_SCRIPT = Path(__file__).with_name("support") / "netns_upstream.py"
CLIENT_ADDR, UPSTREAM_ADDR, PROXY_PORT, CLIENT_UID = "10.200.0.1", "10.200.0.2", 15001, 65534

POLICY = """\
version: 1
name: transparent-test
mode: enforce
catalog: azureml
features: [required, pip-index, pip-downloads]
options:
  private_ranges_allowed: [10.200.0.0/24]   # the test's upstream namespace
"""


def _missing_tool() -> str | None:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces and iptables rules needs root"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("ip6tables", "iptables"),
                          ("setpriv", "util-linux"), ("curl", "curl")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    return None


pytestmark = pytest.mark.skipif(_missing_tool() is not None, reason=_missing_tool() or "")


def sh(*cmd: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def redirect_script() -> str:
    """The iptables script of the transparent variant's init container."""
    deployment = yaml.safe_load(TRANSPARENT_MANIFEST.read_text())
    (init,) = [c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "redirect"]
    return init["args"][0]


@pytest.fixture
def namespaces():
    tag = f"{os.getpid() % 100000}{int(time.monotonic() * 1000) % 1000}"
    client, upstream = f"azmlc{tag}", f"azmlu{tag}"
    probe = sh("ip", "netns", "add", client, check=False)
    if probe.returncode != 0:
        pytest.skip(f"'ip netns add' is not permitted here: {probe.stderr.strip()}")
    try:
        sh("ip", "netns", "add", upstream)
        sh("ip", "-n", client, "link", "add", f"vc{tag}", "type", "veth", "peer", "name", f"vu{tag}", "netns", upstream)
        for ns, dev, addr in ((client, f"vc{tag}", CLIENT_ADDR), (upstream, f"vu{tag}", UPSTREAM_ADDR)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield client, upstream
    finally:
        for ns in (client, upstream):
            sh("ip", "netns", "del", ns, check=False)


def wait_for(predicate, what: str, timeout: float = 20.0, process: subprocess.Popen | None = None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}: {log() if log else ''}")
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}: {log() if log else ''}")


def listening(ns: str, port: int) -> bool:
    return bool(sh("ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}", check=False).stdout.strip())


def test_redirected_client_is_decided_on_sni_and_host_header(namespaces, pki, tmp_path):
    client_ns, upstream_ns = namespaces
    processes: list[subprocess.Popen] = []
    shared = Path(tempfile.mkdtemp(prefix="azml-transparent-"))  # readable by the unprivileged client
    try:
        shared.chmod(0o755)
        ca = shared / "ca.pem"
        shutil.copy(pki.ca_pem, ca)
        ca.chmod(0o644)

        # upstream servers in their own namespace
        served = tmp_path / "served.log"
        served.touch()
        up = subprocess.Popen(
            ["ip", "netns", "exec", upstream_ns, sys.executable, str(UPSTREAM_SCRIPT), "--address", UPSTREAM_ADDR,
             "--cert", str(pki.cert_pem), "--key", str(pki.key_pem), "--log", str(served)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(up)
        assert up.stdout.readline().strip() == "ready", up.stderr.read()

        # the init container's redirect, with this test's proxy UID (root) exempt
        redirect = sh("ip", "netns", "exec", client_ns, "sh", "-c", redirect_script(),
                      env=dict(os.environ, PROXY_UID="0", PROXY_PORT=str(PROXY_PORT)), check=False)
        if redirect.returncode != 0:
            pytest.skip(f"iptables redirect cannot be installed in a network namespace here: {redirect.stderr.strip()}")
        rules = sh("ip", "netns", "exec", client_ns, "iptables", "-t", "nat", "-S", "AZML_EGRESS_REDIRECT").stdout
        assert f"--to-ports {PROXY_PORT}" in rules and "--uid-owner 0" in rules

        # the proxy, transparent mode, in the client namespace
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        log = tmp_path / "decisions.jsonl"
        err = tmp_path / "proxy.err"
        with open(err, "w") as err_file:
            proxy = subprocess.Popen(
                ["ip", "netns", "exec", client_ns, *azml_egress_command(), "run", "--config", str(policy),
                 "--listen-host", "127.0.0.1", "--listen-port", str(PROXY_PORT), "--set", "mode=transparent",
                 "--decision-log", str(log)],
                stdout=subprocess.DEVNULL, stderr=err_file, stdin=subprocess.DEVNULL)
        processes.append(proxy)
        wait_for(lambda: listening(client_ns, PROXY_PORT), "the transparent proxy", process=proxy, log=err.read_text)

        def decisions(n: int) -> list[dict]:
            lines: list[dict] = []

            def enough() -> bool:
                nonlocal lines
                lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
                return len(lines) >= n
            wait_for(enough, f"{n} decision lines", timeout=5, log=err.read_text)
            return lines

        def client_curl(url: str, host: str, port: int, *extra: str) -> subprocess.CompletedProcess:
            # no proxy settings at all: only the redirect sends it to the proxy
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(shared)}
            return sh("ip", "netns", "exec", client_ns, "setpriv", f"--reuid={CLIENT_UID}", f"--regid={CLIENT_UID}",
                      "--clear-groups", "curl", "-sS", "--max-time", "10", "--cacert", str(ca),
                      "--resolve", f"{host}:{port}:{UPSTREAM_ADDR}", "-D", "-", url, *extra, env=env, check=False)

        # HTTPS, allowed by SNI: the client verifies the real upstream certificate (no interception)
        allowed = client_curl("https://pypi.org/simple/", "pypi.org", 443)
        assert allowed.returncode == 0, allowed.stderr + err.read_text()
        assert "HTTP/1.1 200" in allowed.stdout and PACKAGE in allowed.stdout
        line = decisions(1)[0]
        assert (line["action"], line["host"], line["port"], line["sni"], line["dst"], line["method"]) == (
            "allow", "pypi.org", 443, "pypi.org", f"{UPSTREAM_ADDR}:443", "TLS")
        assert line["client"].startswith(f"{CLIENT_ADDR}:") and line["feature"] == "pip-index"

        # HTTPS, denied by SNI: the connection is closed, nothing reaches the upstream
        denied = client_curl("https://evil.example/", "evil.example", 443)
        assert denied.returncode != 0 and "HTTP/" not in denied.stdout
        line = decisions(2)[1]
        assert (line["action"], line["enforced"], line["host"], line["sni"], line["reason"], line["dst"]) == (
            "deny", True, "evil.example", "evil.example", "no_rule_matched", f"{UPSTREAM_ADDR}:443")

        # plain HTTP: decided on the Host header
        ok = client_curl("http://pypi.org/simple/", "pypi.org", 80)
        assert "HTTP/1.1 200" in ok.stdout and PACKAGE in ok.stdout, ok.stderr
        refused = client_curl("http://evil.example/", "evil.example", 80)
        assert "HTTP/1.1 403" in refused.stdout and "X-Azml-Egress-Reason: no_rule_matched" in refused.stdout
        lines = decisions(4)
        assert [(x["protocol"], x["host"], x["port"], x["action"]) for x in lines[2:4]] == [
            ("http", "pypi.org", 80, "allow"), ("http", "evil.example", 80, "deny")]

        # TLS without SNI: nothing to decide on, closed
        if shutil.which("openssl"):
            no_sni = sh("ip", "netns", "exec", client_ns, "setpriv", f"--reuid={CLIENT_UID}", f"--regid={CLIENT_UID}",
                        "--clear-groups", "openssl", "s_client", "-connect", f"{UPSTREAM_ADDR}:443", "-noservername",
                        "-CAfile", str(ca), "-brief", input="", check=False)
            assert "Verification" not in no_sni.stderr
            line = decisions(5)[4]
            assert (line["action"], line["reason"], line["host"], line["sni"]) == (
                "deny", "sni_missing", UPSTREAM_ADDR, None)

        hosts_served = {line.split()[0] for line in served.read_text().splitlines()}
        assert hosts_served == {"pypi.org"}
        assert "Traceback" not in err.read_text()
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        shutil.rmtree(shared, ignore_errors=True)
