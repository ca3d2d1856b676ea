"""End to end: learn with real clients, report, suggest, then enforce the
suggestion on the same traffic; and a learn file that survives SIGKILL."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime

import pytest

from proxy_addon.learnfile import load
from support.proxy import azml_egress_command
from test_e2e_proxy import curl, pip_download

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

CURLED = [
    "https://ml.azure.com/",
    "https://westeurope.data.mcr.microsoft.com/v2/",
    "https://example.org/",
    "http://cloud.r-project.org/src/contrib/PACKAGES",
    "https://ci-contoso.westeurope.instances.azureml.ms:8787/",
]
SEEN = {("pypi.org", 443, "https"), ("files.pythonhosted.org", 443, "https"), ("ml.azure.com", 443, "https"),
        ("westeurope.data.mcr.microsoft.com", 443, "https"), ("example.org", 443, "https"),
        ("cloud.r-project.org", 80, "http"), ("ci-contoso.westeurope.instances.azureml.ms", 8787, "https")}


def cli(*args, timeout=60):
    done = subprocess.run(azml_egress_command() + list(args), capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def workload(proxy, pki, tmp_path, name):
    """The same traffic every time: pip download plus curl requests; returns
    (pip exit code, [(url, curl exit code, output)])."""
    pip = pip_download(proxy, pki, tmp_path / f"dl-{name}")
    results = []
    for url in CURLED:
        code, out, err = curl(proxy, url, pki)
        results.append((url, code, out + err))
    return pip, results


def test_learn_report_suggest_enforce_round_trip(proxy_factory, pki, tmp_path):
    learn_file = tmp_path / "learn.json"
    proxy = proxy_factory(["--config", "azureml-2020-04", "--mode", "learn", "--learn-file", str(learn_file),
                           "--learn-interval", "0.2"])
    pip, results = workload(proxy, pki, tmp_path, "learn")
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert all(code == 0 for _, code, _ in results), results
    lines = proxy.decisions(len(SEEN))
    assert {x["mode"] for x in lines} == {"learn"} and not any(x["enforced"] for x in lines)
    assert proxy.stop() == 0

    data = load(learn_file)
    assert set(data.hosts) == SEEN
    files = data.hosts[("files.pythonhosted.org", 443, "https")]
    assert files.feature == "pip-downloads" and files.rule is None and files.reasons == {"no_rule_matched": 1}
    assert files.bytes_received > 1000 and files.bytes_sent > 100, "tunnel bytes are counted"
    assert files.clients == ["127.0.0.1"]
    pypi = data.hosts[("pypi.org", 443, "https")]
    assert (pypi.rule, pypi.rule_collection) == ("pypi.org", "pip-index")
    assert data.policies[0]["name"] == "azureml-2020-04" and data.policies[0]["mode"] == "learn"

    code, out, err = cli("learn", "report", str(learn_file), "--config", "azureml-2020-04", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert {(g["host"], g["feature"]) for g in report["gaps"]} == {
        ("files.pythonhosted.org", "pip-downloads"), ("westeurope.data.mcr.microsoft.com", "container-images"),
        ("example.org", None), ("ci-contoso.westeurope.instances.azureml.ms", "azureml-api"),
    }

    suggested = tmp_path / "suggested.yaml"
    code, out, err = cli("learn", "suggest", str(learn_file), "--config", "azureml-2020-04", "-o", str(suggested))
    assert code == 0, err
    code, out, err = cli("validate", "--config", str(suggested))
    assert code == 0 and "valid: policy 'suggested'" in out, out + err

    proxy = proxy_factory(["--config", str(suggested), "--mode", "enforce"])
    pip, results = workload(proxy, pki, tmp_path, "enforce")
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert all(code == 0 and "403" not in out for _, code, out in results), results
    lines = proxy.decisions(len(SEEN))
    assert {(x["host"], x["port"], x["protocol"]) for x in lines} == SEEN
    assert [x for x in lines if x["action"] != "allow"] == []
    assert all(x["enforced"] for x in lines)

    for url in ("https://test.pypi.org/", "https://mcr.microsoft.com/", "https://ml.azure.com:8443/"):
        code, out, _ = curl(proxy, url, pki)
        assert code != 0 and "403" in out and "X-Azml-Egress-Decision: deny" in out, url


def connect_only(port: int, host: str) -> bool:
    """Send one CONNECT through the proxy and close; True on a 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        return s.recv(64).startswith(b"HTTP/1.1 200")


def whole_lines(path):
    """Decision-log records, skipping a last line that SIGKILL may have cut."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_sigkill_during_learn_leaves_a_whole_learn_file_of_the_last_interval(proxy_factory, tmp_path):
    learn_file = tmp_path / "learn.json"
    proxy = proxy_factory(["--mode", "learn", "--learn-file", str(learn_file), "--learn-interval", "0.1"])
    stop = threading.Event()

    def drive(worker: int):
        i = 0
        while not stop.is_set():
            try:
                connect_only(proxy.port, f"h{i}.w{worker}.load.example")
            except OSError:
                return  # the proxy is gone
            i += 1

    threads = [threading.Thread(target=drive, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    started, deadline = time.monotonic(), time.monotonic() + 20
    while time.monotonic() < deadline and (len(whole_lines(proxy.decision_log)) < 300
                                           or time.monotonic() - started < 2.5):
        time.sleep(0.05)
    killed_at = time.time()
    proxy.process.send_signal(signal.SIGKILL)  # while the clients are still sending
    proxy.process.wait(10)
    stop.set()
    for t in threads:
        t.join(10)

    data = load(learn_file)  # a whole file: the schema and every entry check out
    decided = {(x["host"], x["port"], x["protocol"]) for x in whole_lines(proxy.decision_log)
               if datetime.fromisoformat(x["ts"].replace("Z", "+00:00")).timestamp() < killed_at - 1.0}
    assert len(data.hosts) >= 250
    assert decided and decided <= set(data.hosts), "only the last interval may be lost"
    assert all(r.count >= 1 and r.first_seen <= r.last_seen for r in data.hosts.values())

    proxy = proxy_factory(["--mode", "learn", "--learn-file", str(learn_file), "--learn-interval", "5"])
    proxy.stop()
    assert [p.name for p in tmp_path.glob(".learn.json.*.tmp")] == [], "a restart removes stale temporaries"


def test_shutdown_writes_the_learn_file_and_yaml_by_extension(proxy_factory, pki, tmp_path):
    learn_file = tmp_path / "learn.yaml"
    proxy = proxy_factory(["--mode", "learn", "--learn-file", str(learn_file), "--learn-interval", "3600"])
    code, _, err = curl(proxy, "https://ml.azure.com/", pki)
    assert code == 0, err
    proxy.decisions(1)
    assert load(learn_file).hosts == {}, "an hour-long interval has not written yet"
    assert proxy.stop() == 0
    assert learn_file.read_text().startswith("format: azml-egress-learn")
    assert list(load(learn_file).hosts) == [("ml.azure.com", 443, "https")]


@pytest.mark.parametrize(("args", "message"), [
    (["--learn-file", "x.json"], "--learn-file needs learn mode"),
    (["--mode", "learn", "--learn-file", "x.txt"], "must end in .json, .yaml or .yml"),
    (["--mode", "learn", "--learn-file", "/nonexistent-dir/x.json"], "does not exist"),
    (["--mode", "learn", "--learn-interval", "0"], "must be greater than 0"),
    (["--mode", "learn", "--learn-max-hosts", "many"], "is not an integer"),
], ids=["learn flags outside learn mode", "unknown extension", "missing directory", "zero interval", "bad count"])
def test_bad_learn_flags_exit_2_with_one_line(args, message):
    code, out, err = cli("run", "--listen-port", "1", *args, timeout=30)
    assert code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize("mode", ["learn", "enforce"])
def test_sni_mismatch_is_checked_on_relayed_tunnels(proxy_factory, pki, tmp_path, mode):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    learn_file = tmp_path / "learn.json"
    extra = ["--learn-file", str(learn_file)] if mode == "learn" else []
    proxy = proxy_factory(["--mode", mode, *extra])
    done = subprocess.run(
        ["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect", "ml.azure.com:443",
         "-servername", "evil.example", "-CAfile", str(pki.ca_pem), "-brief"],
        input="", capture_output=True, text=True, timeout=20,
    )
    reasons = [x["reason"] for x in proxy.decisions(2)]
    assert reasons == ["rule_matched", "sni_mismatch"]
    if mode == "enforce":
        assert "Verification: OK" not in done.stderr, "the upstream must never be reached"
    else:
        assert "Verification: OK" in done.stderr, "learn mode blocks nothing"
        proxy.stop()
        record = load(learn_file).hosts[("ml.azure.com", 443, "https")]
        assert record.count == 1 and record.reasons == {"rule_matched": 1, "sni_mismatch": 1}
