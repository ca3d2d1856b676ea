"""End to end: a real proxy, real curl traffic, and real scrapes of /metrics,
/healthz and /readyz over HTTP, parsed with prometheus_client's parser."""

from __future__ import annotations

import collections
import hashlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.proxy import azml_egress_command, free_port, start_proxy, wait_listening

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

ROOT = Path(__file__).resolve().parents[1]

ALLOWED = ["https://pypi.org/simple/", "https://pypi.org/simple/", "https://ml.azure.com/bytes/50000",
           "http://pypi.org/simple/"]
DENIED = ["https://files.pythonhosted.org/x.whl", "https://files.pythonhosted.org/y.whl", "https://evil.example/",
          "https://test.pypi.org/", "http://evil.example/"]
"""Under azureml-2020-04: 4 allowed (pip-index, studio), 5 denied (pip-downloads, unknown)."""


def curl(proxy, url, pki):
    return subprocess.run(["curl", "-sS", "--max-time", "10", "-x", proxy.url, "--cacert", str(pki.ca_pem), url],
                          capture_output=True, text=True, timeout=20)


def samples(text: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def value(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples(text, name) if all(s.labels.get(k) == v for k, v in labels.items()))


def wait_for(proxy, predicate, timeout=5.0) -> str:
    """Scrape until ``predicate(scrape)`` holds; returns the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = proxy.scrape()
        except OSError:  # the server restarts while a reloaded script comes back
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if predicate(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory, upstream, pki):
    """One enforce-mode proxy after the ALLOWED and DENIED requests: (proxy, scrape, decision lines)."""
    proxy = start_proxy(tmp_path_factory.mktemp("metrics"), upstream, ["--config", "azureml-2020-04"], metrics=True)
    try:
        for url in ALLOWED + DENIED:
            curl(proxy, url, pki)
        lines = proxy.decisions(len(ALLOWED + DENIED))
        text = wait_for(proxy, lambda t: value(t, "azml_egress_tunnels_active") == 0
                        and value(t, "azml_egress_decisions_total") == len(lines))
        yield proxy, text, lines
    finally:
        proxy.stop()


def test_counts_equal_the_decisions_made(traffic):
    proxy, text, lines = traffic
    assert len(lines) == len(ALLOWED) + len(DENIED)
    assert value(text, "azml_egress_decisions_total", action="allow") == len(ALLOWED) == 4
    assert value(text, "azml_egress_decisions_total", action="deny") == len(DENIED) == 5
    assert value(text, "azml_egress_decisions_total", action="allow", feature="pip-index") == 3
    assert value(text, "azml_egress_decisions_total", action="allow", feature="studio") == 1
    assert value(text, "azml_egress_decisions_total", action="deny", feature="pip-downloads", group="Python") == 2
    assert value(text, "azml_egress_decisions_total", action="deny", feature="unknown", group="unknown") == 3
    assert value(text, "azml_egress_decisions_total", protocol="http") == 2
    assert value(text, "azml_egress_decisions_total", enforced="false") == 0
    assert value(text, "azml_egress_decision_duration_seconds_count") == len(lines)


def test_every_series_matches_the_decision_log(traffic):
    _, text, lines = traffic
    from_log = collections.Counter(
        (x["action"], str(x["enforced"]).lower(), x["mode"], x["reason"], x["protocol"],
         x["feature"] or "unknown", x["group"] or "unknown") for x in lines)
    from_scrape = {(s.labels["action"], s.labels["enforced"], s.labels["mode"], s.labels["reason"],
                    s.labels["protocol"], s.labels["feature"], s.labels["group"]): s.value
                   for s in samples(text, "azml_egress_decisions_total") if s.value}
    assert from_scrape == dict(from_log)


def test_tunnel_bytes_by_feature(traffic):
    _, text, _ = traffic
    studio_down = value(text, "azml_egress_tunnel_bytes_total", direction="downstream", feature="studio")
    assert 50000 < studio_down < 60000  # the 50000-byte body plus TLS and headers
    assert 300 < value(text, "azml_egress_tunnel_bytes_total", direction="upstream", feature="studio") < 5000
    assert value(text, "azml_egress_tunnel_bytes_total", direction="downstream", feature="pip-index") > 0
    assert value(text, "azml_egress_tunnel_bytes_total", feature="pip-downloads") == 0  # denied: no tunnel
    assert value(text, "azml_egress_tunnels_active") == 0


def test_no_label_value_comes_from_the_network(traffic):
    _, text, lines = traffic
    label_values = {v for family in text_string_to_metric_families(text) for s in family.samples
                    for v in s.labels.values()}
    from_network = {x["host"] for x in lines} | {x["client"] for x in lines} | {x["client"].rsplit(":", 1)[0] for x in lines}
    assert "evil.example" in from_network and "127.0.0.1" in from_network
    assert not label_values & from_network
    features = {s.labels["feature"] for s in samples(text, "azml_egress_decisions_total")}
    known = {s.labels["feature"] for s in samples(text, "azml_egress_feature_enabled")}
    assert "unknown" in features and features - {"unknown"} <= known


def test_policy_info_health_and_readiness(traffic):
    proxy, text, _ = traffic
    sha256 = hashlib.sha256((ROOT / "config" / "policies" / "azureml-2020-04.yaml").read_bytes()).hexdigest()
    assert value(text, "azml_egress_policy_info", policy_sha256=sha256, catalog="azureml-2020-04",
                 catalog_revision="2020-04-27", mode="enforce") == 1
    assert value(text, "azml_egress_policy_rules") == 15
    assert value(text, "azml_egress_policy_reloads_total", result="success") == 1
    assert value(text, "azml_egress_policy_reloads_total", result="failure") == 0
    assert time.time() - 600 < value(text, "azml_egress_policy_last_reload_success_timestamp_seconds") <= time.time()
    assert value(text, "azml_egress_build_info", version="0.1.0") == 1
    assert proxy.get("/healthz") == (200, "ok\n")
    assert proxy.get("/readyz") == (200, "ready\n")


def test_promtool_lints_a_real_scrape(traffic):
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    _, text, _ = traffic
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == ""


def test_simulate_mode_counts_would_deny(proxy_factory, pki):
    proxy = proxy_factory(["--mode", "simulate"], metrics=True)
    for url in ("https://evil.example/", "https://evil.example/", "https://pypi.org/simple/"):
        assert curl(proxy, url, pki).returncode == 0
    proxy.decisions(3)
    text = wait_for(proxy, lambda t: value(t, "azml_egress_decisions_total") == 3)
    assert value(text, "azml_egress_decisions_total", action="deny", enforced="false", mode="simulate",
                 feature="unknown") == 2
    assert value(text, "azml_egress_decisions_total", action="allow", mode="simulate", feature="pip-index") == 1
    assert value(text, "azml_egress_decisions_total", enforced="true") == 0
    # simulated tunnels to unknown hosts are relayed and counted under "unknown"
    assert value(text, "azml_egress_tunnel_bytes_total", direction="downstream", feature="unknown") > 0


def test_mitmdump_script_serves_metrics(proxy_factory, pki):
    proxy = proxy_factory(mitmdump=True, metrics=True)
    curl(proxy, "https://pypi.org/simple/", pki)
    curl(proxy, "https://evil.example/", pki)
    proxy.decisions(2)
    text = wait_for(proxy, lambda t: value(t, "azml_egress_decisions_total") == 2)
    assert value(text, "azml_egress_decisions_total", action="allow", feature="pip-index") == 1
    assert value(text, "azml_egress_decisions_total", action="deny", feature="unknown") == 1
    assert value(text, "azml_egress_policy_loaded") == 1
    assert value(text, "azml_egress_tunnel_bytes_total", direction="downstream", feature="pip-index") > 0
    assert proxy.get("/readyz") == (200, "ready\n")


def run_until_metrics(tmp_path, args):
    """Start ``azml-egress run ARGS`` with a metrics port; returns (process, port, stderr path)."""
    port = free_port()
    err = tmp_path / "err.txt"
    with open(err, "w") as stderr:
        process = subprocess.Popen(azml_egress_command() + ["run", "--listen-port", str(free_port()),
                                                            "--metrics-port", str(port), *args],
                                   stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL)
    return process, port, err


def test_readyz_is_503_while_the_proxy_does_not_listen(tmp_path):
    process, port, err = run_until_metrics(tmp_path, ["--set", "server=false"])
    try:
        wait_listening(port, process, err)
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert raised.value.code == 503
        assert raised.value.read().decode() == "not ready\nthe proxy is not listening\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(10)


def test_metrics_port_in_use_stops_the_proxy_with_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = tmp_path / "err.txt"
        with open(err, "w") as stderr:
            done = subprocess.run(azml_egress_command() + ["run", "--listen-port", str(free_port()),
                                                           "--metrics-port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL, timeout=30)
    text = err.read_text()
    assert done.returncode != 0
    assert f"metrics server cannot listen on 127.0.0.1:{port}: Address already in use" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(("flag", "message"), [
    (["--metrics-port", "70000"], "port 70000 is outside 0..65535"),
    (["--metrics-port", "x"], "'x' is not a port number"),
    (["--metrics-host", ""], "is not an address"),
], ids=["port too big", "not a number", "empty host"])
def test_bad_metrics_flags_exit_2(flag, message):
    done = subprocess.run(azml_egress_command() + ["run", *flag], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr



def test_reloading_the_script_registers_fresh_metrics(tmp_path, upstream, pki):
    script = tmp_path / "azml_egress_script.py"
    script.write_text((ROOT / "proxy_addon" / "mitm_script.py").read_text())
    proxy = start_proxy(tmp_path, upstream, mitmdump=True, metrics=True, script=script)
    try:
        curl(proxy, "https://pypi.org/simple/", pki)
        proxy.decisions(1)
        assert value(wait_for(proxy, lambda t: value(t, "azml_egress_decisions_total") == 1),
                     "azml_egress_decisions_total") == 1
        script.write_text(script.read_text() + "\n# changed\n")
        # mitmproxy re-executes the changed script: a new registry, counting from zero, same port
        text = wait_for(proxy, lambda t: value(t, "azml_egress_decisions_total") == 0, timeout=10)
        assert value(text, "azml_egress_decisions_total") == 0
        assert value(text, "azml_egress_policy_reloads_total", result="success") == 1
        curl(proxy, "https://evil.example/", pki)
        proxy.decisions(2)
        text = wait_for(proxy, lambda t: value(t, "azml_egress_decisions_total") == 1)
        assert value(text, "azml_egress_decisions_total", action="deny", feature="unknown") == 1
        assert proxy.get("/readyz") == (200, "ready\n")
    finally:
        proxy.stop()
    assert "Duplicated timeseries" not in proxy.stderr() and "Traceback" not in proxy.stderr()


def test_policy_reloads_are_counted_and_a_bad_one_keeps_the_proxy_ready(tmp_path, upstream):
    policy_file = tmp_path / "team.yaml"
    good = (ROOT / "config" / "policies" / "azureml-2020-04.yaml").read_text()
    policy_file.write_text(good)
    proxy = start_proxy(tmp_path, upstream, ["--config", str(policy_file)], metrics=True)
    try:
        def info(text):
            (sample,) = samples(text, "azml_egress_policy_info")
            return sample.labels["policy_sha256"]

        text = proxy.scrape()
        assert info(text) == hashlib.sha256(good.encode()).hexdigest()
        first_load = value(text, "azml_egress_policy_last_reload_success_timestamp_seconds")

        policy_file.write_text(good.replace("version: 1", "version: 1\nbogus_key: 1", 1))
        text = wait_for(proxy, lambda t: value(t, "azml_egress_policy_reloads_total", result="failure") == 1)
        assert value(text, "azml_egress_policy_reloads_total", result="failure") == 1
        assert value(text, "azml_egress_policy_reloads_total", result="success") == 1
        assert value(text, "azml_egress_policy_loaded") == 1
        assert info(text) == hashlib.sha256(good.encode()).hexdigest()
        assert proxy.get("/readyz") == (200, "ready\n")

        changed = good + "\n# reviewed\n"
        policy_file.write_text(changed)
        text = wait_for(proxy, lambda t: value(t, "azml_egress_policy_reloads_total", result="success") == 2)
        assert value(text, "azml_egress_policy_reloads_total", result="success") == 2
        assert info(text) == hashlib.sha256(changed.encode()).hexdigest()
        assert value(text, "azml_egress_policy_last_reload_success_timestamp_seconds") >= first_load
    finally:
        proxy.stop()
