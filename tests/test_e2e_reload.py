"""Policy hot reload on a running proxy: file watch, SIGHUP, bad files, a reload storm."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

POLICY = """version: 1
name: {name}
rule_collections:
  - name: c
    priority: 100
    action: allow
    rules:
      - {{name: r, target_fqdns: [{host}]}}
"""


def connect_status(proxy, host: str) -> int:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\n\r\n".encode())
        return int(s.recv(100).split(b" ")[1])


def write_atomically(path, text):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def eventually(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_file_change_reloads_and_bad_files_are_rejected(proxy_factory, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(name="one", host="a.example"))
    proxy = proxy_factory(["--config", str(policy)])
    assert connect_status(proxy, "a.example") == 200
    assert connect_status(proxy, "b.example") == 403

    write_atomically(policy, POLICY.format(name="two", host="b.example"))
    assert eventually(lambda: connect_status(proxy, "b.example") == 200)
    assert connect_status(proxy, "a.example") == 403

    policy.write_text("version: 1\nrule_collections: [oops\n")  # broken, written in place
    assert eventually(lambda: "reload (file change) rejected" in proxy.stderr())
    assert connect_status(proxy, "b.example") == 200
    policy.write_text("")  # half-written / empty
    time.sleep(1)
    assert connect_status(proxy, "b.example") == 200
    assert connect_status(proxy, "c.example") == 403
    policies = {line["policy"] for line in proxy.decisions()}
    assert policies == {"one", "two"}


def test_sighup_reloads(proxy_factory, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(name="one", host="a.example"))
    proxy = proxy_factory(["--config", str(policy), "--set", "azml_watch=false"])
    policy.write_text(POLICY.format(name="two", host="b.example"))
    time.sleep(0.5)
    assert connect_status(proxy, "b.example") == 403  # no watch: nothing changes
    proxy.process.send_signal(signal.SIGHUP)
    assert eventually(lambda: connect_status(proxy, "b.example") == 200)
    assert proxy.process.poll() is None


def test_reload_storm_under_load(proxy_factory, tmp_path):
    """50 reloads, every third one invalid, while clients keep asking: every
    decision comes from one of the two valid policies, never from a broken or
    empty one, and a host neither allows is never allowed."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(name="one", host="a.example"))
    proxy = proxy_factory(["--config", str(policy)])
    stop = threading.Event()
    asked: list[tuple[str, int]] = []

    def client():
        hosts = ["a.example", "b.example", "c.example"]
        i = 0
        while not stop.is_set():
            host = hosts[i % 3]
            asked.append((host, connect_status(proxy, host)))
            i += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(50):
            if i % 3 == 2:
                write_atomically(policy, "version: 1\nrule_collections:\n  - name: c\n    bad: [\n")
            else:
                name, host = ("one", "a.example") if i % 2 == 0 else ("two", "b.example")
                write_atomically(policy, POLICY.format(name=name, host=host))
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert proxy.process.poll() is None
    lines = proxy.decisions(len(asked))
    assert len(lines) == len(asked) and len(asked) > 50
    for line in lines:
        assert line["policy"] in ("one", "two"), line
        allowed_host = {"one": "a.example", "two": "b.example"}[line["policy"]]
        assert (line["action"] == "allow") == (line["host"] == allowed_host), line
    assert not any(host == "c.example" and status == 200 for host, status in asked)
