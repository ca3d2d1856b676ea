"""No bypass, no crash, no lost decision: every known way around a host
allowlist, tried with real clients and raw sockets against a real proxy."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from support.proxy import azml_egress_command, free_port
from support.tlshello import client_hello


def openssl_connect(proxy, target, *options):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return subprocess.run(["openssl", "s_client", "-proxy", f"127.0.0.1:{proxy.port}", "-connect", target, *options],
                          input="", capture_output=True, text=True, timeout=20)


def raw_exchange(proxy, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def reasons(proxy, n):
    return [(x["host"], x["action"], x["reason"]) for x in proxy.decisions(n)]


# -- SNI ------------------------------------------------------------------------

def test_sni_mismatch_closes_the_tunnel_before_the_server_sees_anything(proxy_factory, upstream):
    proxy = proxy_factory()
    before = upstream.connections
    done = openssl_connect(proxy, "ml.azure.com:443", "-servername", "evil.example")
    assert "Server certificate" not in done.stdout and "BEGIN CERTIFICATE" not in done.stdout
    lines = proxy.decisions(2)
    assert [(x["action"], x["reason"]) for x in lines] == [("allow", "rule_matched"), ("deny", "sni_mismatch")]
    assert lines[1]["sni"] == "evil.example" and lines[1]["host"] == "ml.azure.com"
    time.sleep(0.3)
    assert upstream.connections == before


def test_missing_sni_is_denied_like_azure_firewall(proxy_factory, upstream):
    proxy = proxy_factory()
    before = upstream.connections
    openssl_connect(proxy, "ml.azure.com:443", "-noservername")
    line = proxy.decisions(2)[1]
    assert (line["action"], line["reason"]) == ("deny", "sni_missing")
    assert line["msg"].endswith("was denied. Reason: SNI TLS extension was missing.")
    time.sleep(0.3)
    assert upstream.connections == before


def test_missing_sni_allowed_by_policy_switch(proxy_factory, tmp_path, pki):
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nfeatures: [studio]\noptions: {sni_missing: allow}\n")
    proxy = proxy_factory(["--config", str(policy)])
    done = openssl_connect(proxy, "ml.azure.com:443", "-noservername", "-CAfile", str(pki.ca_pem))
    assert "CONNECTED" in done.stdout
    assert [x["reason"] for x in proxy.decisions(1)] == ["rule_matched"]


def test_sni_mismatch_in_simulate_mode_is_logged_not_enforced(proxy_factory):
    proxy = proxy_factory(["--mode", "simulate"])
    openssl_connect(proxy, "ml.azure.com:443", "-servername", "evil.example")
    line = proxy.decisions(2)[1]
    assert (line["reason"], line["enforced"]) == ("sni_mismatch", False)


def test_matching_sni_with_odd_spelling_passes(proxy_factory, pki):
    proxy = proxy_factory()
    done = openssl_connect(proxy, "ML.Azure.com:443", "-servername", "ml.azure.com", "-CAfile", str(pki.ca_pem),
                           "-verify_return_error", "-brief")
    assert "Verification: OK" in done.stderr
    assert [x["reason"] for x in proxy.decisions(1)] == ["rule_matched"]


# -- destinations ---------------------------------------------------------------

@pytest.mark.parametrize("address, kind", [
    ("169.254.169.254", "link-local"),
    ("127.0.0.1", "loopback"),
    ("10.1.2.3", "private"),
    ("100.64.0.7", "CGNAT"),
    ("::ffff:127.0.0.1", "loopback"),
    ("0.0.0.0", "unspecified"),
], ids=["metadata", "loopback", "rfc1918", "cgnat", "v4-mapped loopback", "unspecified"])
def test_allowed_name_resolving_to_a_private_address_is_refused(proxy_factory, upstream, address, kind):
    proxy = proxy_factory(["--resolve", f"pypi.org={address}"])
    before = upstream.connections
    subprocess.run(["curl", "-s", "-x", proxy.url, "--max-time", "5", "https://pypi.org/"], capture_output=True)
    line = proxy.decisions(2)[1]
    assert (line["host"], line["action"], line["reason"]) == ("pypi.org", "deny", "private_address")
    assert kind in line["detail"]
    assert upstream.connections == before


def test_private_ranges_allowed_by_policy(proxy_factory, tmp_path, pki):
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nfeatures: [pip-index]\noptions: {private_ranges_allowed: [10.0.0.0/8]}\n")
    proxy = proxy_factory(["--config", str(policy), "--resolve", "pypi.org=10.1.2.3"])
    done = subprocess.run(["curl", "-sS", "-x", proxy.url, "--cacert", str(pki.ca_pem), "--max-time", "5",
                           "https://pypi.org/"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [x["reason"] for x in proxy.decisions(1)] == ["rule_matched"]


def test_dns_failure_is_a_logged_deny(proxy_factory, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrule_collections:\n  - {name: c, priority: 100, action: allow, rules: "
                      "[{name: r, target_fqdns: [nothing.invalid]}]}\n")
    proxy = proxy_factory(["--config", str(policy)])
    subprocess.run(["curl", "-s", "-x", proxy.url, "--max-time", "5", "https://nothing.invalid/"], capture_output=True)
    assert reasons(proxy, 2) == [("nothing.invalid", "allow", "rule_matched"),
                                 ("nothing.invalid", "deny", "dns_failure")]


def test_refused_upstream_connection_is_logged(proxy_factory, tmp_path):
    closed = free_port()
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\noptions: {private_ranges_allowed: [127.0.0.0/8]}\nrule_collections:\n"
                      f"  - {{name: c, priority: 100, action: allow, rules: [{{name: r, target_fqdns: [closed.example],"
                      f" protocols: ['https:{closed}']}}]}}\n")
    proxy = proxy_factory(["--config", str(policy), "--resolve", "closed.example=127.0.0.1"], route=False)
    subprocess.run(["curl", "-s", "-x", proxy.url, "--max-time", "5", f"https://closed.example:{closed}/"],
                   capture_output=True)
    line = proxy.decisions(2)[1]
    assert (line["action"], line["reason"]) == ("deny", "upstream_error")
    assert "refused" in line["detail"]


# -- access to the proxy --------------------------------------------------------

def test_non_loopback_listen_needs_authentication():
    done = subprocess.run(azml_egress_command() + ["run", "--listen-host", "0.0.0.0", "--listen-port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--proxyauth" in done.stderr and "Traceback" not in done.stderr


def test_proxy_authentication_407_is_logged_and_credentials_stay_local(proxy_factory, upstream):
    proxy = proxy_factory(["--proxyauth", "alice:s3cret"])
    done = subprocess.run(["curl", "-s", "-x", proxy.url, "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                           "http://pypi.org/simple/"], capture_output=True, text=True)
    assert done.stdout == "407"
    done = subprocess.run(["curl", "-s", "-x", f"http://alice:s3cret@127.0.0.1:{proxy.port}", "--max-time", "5",
                           "-o", "/dev/null", "-w", "%{http_code}", "http://pypi.org/simple/"],
                          capture_output=True, text=True)
    assert done.stdout == "200"
    assert reasons(proxy, 2) == [("pypi.org", "deny", "proxy_auth_required"), ("pypi.org", "allow", "rule_matched")]
    assert not any("Proxy-Authorization" in h for h in upstream.headers)


def test_source_addresses_are_honoured(proxy_factory, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrule_collections:\n  - {name: c, priority: 100, action: allow, rules: "
                      "[{name: r, target_fqdns: [pypi.org], source_addresses: [10.9.9.0/24]}]}\n")
    proxy = proxy_factory(["--config", str(policy)])
    response = raw_exchange(proxy, b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 403")
    assert reasons(proxy, 1) == [("pypi.org", "deny", "source_not_allowed")]


# -- robustness -----------------------------------------------------------------

@pytest.mark.parametrize("request_bytes, status", [
    (b"CONNECT pypi.org:443 HTTP/1.0\r\n\r\n", b"200"),
    (b"connect pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n", b"400"),
    (b"CONNECT " + b"a" * 100_000 + b".org:443 HTTP/1.1\r\n\r\n", b"400"),
    (b"CONNECT " + (b"a" * 63 + b".") * 5 + b"org:443 HTTP/1.1\r\n\r\n", b"400"),
    (b"CONNECT evil.example:443 HTTP/1.1\r\n\r\n", b"403"),
    (b"GARBAGE\r\n\r\n", b"400"),
], ids=["http/1.0 connect", "lowercase method", "absurd request line", "over-long hostname", "denied",
        "garbage"])
def test_odd_requests_get_a_prompt_logged_answer(proxy_factory, request_bytes, status):
    proxy = proxy_factory()
    started = time.monotonic()
    response = raw_exchange(proxy, request_bytes)
    assert time.monotonic() - started < 5
    assert response.split(b" ")[1] == status, response[:200]
    (line,) = proxy.decisions(1)
    expected = {b"200": "rule_matched", b"403": "no_rule_matched", b"400": "invalid_request"}[status]
    assert line["reason"] == expected
    proxy.stop()
    assert "Traceback" not in proxy.stderr()


def test_https_proxy_url_gets_a_prompt_answer(proxy_factory):
    proxy = proxy_factory()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        with pytest.raises((ssl.SSLError, OSError)):
            context.wrap_socket(s, server_hostname="proxy.example")
    assert time.monotonic() - started < 5
    (line,) = proxy.decisions(1)
    assert line["reason"] == "invalid_request" and "http:// proxy URL" in line["detail"]


def test_slow_client_is_cut_off_after_the_header_timeout(proxy_factory):
    proxy = proxy_factory(["--set", "azml_header_timeout=1"])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"CONNECT pypi.org:443 HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < 5
    (line,) = proxy.decisions(1)
    assert line["reason"] == "invalid_request" and "within 1 seconds" in line["detail"]


def test_abrupt_disconnect_mid_request_is_logged(proxy_factory):
    proxy = proxy_factory()
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(b"CONNECT pyp")
    (line,) = proxy.decisions(1)
    assert line["reason"] == "invalid_request"
    proxy.stop()
    assert "Traceback" not in proxy.stderr()


def test_connection_limit(proxy_factory):
    proxy = proxy_factory(["--set", "azml_max_connections=2"])
    time.sleep(0.5)  # let the start-up probe connection close
    held = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(2)]
    try:
        time.sleep(0.3)
        third = raw_exchange(proxy, b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n")
        assert not third.startswith(b"HTTP/1.1 200")
        lines = proxy.decisions(1)
        assert lines[0]["reason"] == "too_many_connections"
    finally:
        for s in held:
            s.close()


def test_log_lines_stay_one_object_per_line_with_hostile_hosts(proxy_factory):
    proxy = proxy_factory()
    raw_exchange(proxy, b'GET http://x.example/ HTTP/1.1\r\nHost: x.example\r\nX: 1\r\n\r\n')
    raw_exchange(proxy, b'GET http://pypi.org/ HTTP/1.1\r\nHost: "evil\\n{\\"action\\":\\"allow\\"}\r\n\r\n')
    proxy.decisions(2)
    proxy.stop(signal.SIGTERM)
    lines = [x for x in proxy.stdout().splitlines() if x.startswith("{")]
    assert len(lines) == 2
    assert [x["action"] for x in proxy.decisions()] == ["deny", "deny"]




@pytest.mark.parametrize("first, rest", [
    (b"\x16", client_hello("evil.example")[1:]),
    (client_hello("evil.example")[:2], client_hello("evil.example")[2:]),
    (b"\x15\x03\x01\x00\x02\x01\x00", client_hello("evil.example")),
    (b"GE", b"T / HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
], ids=["one byte then the hello", "two bytes then the hello", "alert record first", "split plain HTTP"])
def test_split_first_bytes_cannot_skip_the_tunnel_check(proxy_factory, upstream, first, rest):
    proxy = proxy_factory()
    before = upstream.connections
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"CONNECT ml.azure.com:443 HTTP/1.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.sendall(first)
        time.sleep(0.3)
        try:
            s.sendall(rest)
            s.recv(100)
        except OSError:
            pass
    lines = proxy.decisions(2)
    assert [x["action"] for x in lines] == ["allow", "deny"], lines
    assert lines[1]["reason"] in ("sni_missing", "sni_mismatch", "host_mismatch")
    time.sleep(0.3)
    assert upstream.connections == before


def test_keep_alive_connection_gets_the_header_timeout_for_each_request(proxy_factory):
    proxy = proxy_factory(["--set", "azml_header_timeout=1"])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"GET http://pypi.org/simple/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET http://pypi.org/simple/ HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        while s.recv(65536):
            pass
        assert time.monotonic() - started < 5
    assert [x["reason"] for x in proxy.decisions(1)] == ["rule_matched"]
