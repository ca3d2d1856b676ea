"""Start a real ``azml-egress run`` (or ``mitmdump -s``) process for a test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .upstream import Upstream

ROUTER = Path(__file__).with_name("route_to_local.py")

TEST_ADDRESS = "192.0.2.10"
"""Every public test name resolves here (TEST-NET-1) before the router sends it to 127.0.0.1."""
RESOLVE = [f"*.{tld}={TEST_ADDRESS}" for tld in ("org", "com", "net", "ms", "io", "example", "ai", "cn", "us", "dev")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def azml_egress_command() -> list[str]:
    """The installed console script, or the module run by this interpreter."""
    exe = shutil.which("azml-egress")
    if exe and Path(exe).resolve().parent == Path(sys.executable).resolve().parent:
        return [exe]
    return [sys.executable, "-m", "proxy_addon.cli"]


def mitmdump_command() -> list[str]:
    """mitmdump run by this interpreter, so that ``-s mitm_script.py`` imports
    this checkout's ``proxy_addon`` (a mitmdump on PATH may belong to another
    Python with another ``proxy_addon`` installed)."""
    return [sys.executable, "-c", "import sys; from mitmproxy.tools.main import mitmdump; sys.exit(mitmdump())"]


@dataclass
class ProxyProcess:
    process: subprocess.Popen
    port: int
    decision_log: Path
    stderr_path: Path
    stdout_path: Path
    metrics_port: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Base URL of the /metrics, /healthz, /readyz server (start with ``metrics=True``)."""
        assert self.metrics_port, "start the proxy with metrics=True"
        return f"http://127.0.0.1:{self.metrics_port}"

    def get(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the metrics server: (status, body)."""
        try:
            with urllib.request.urlopen(self.metrics_url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def scrape(self) -> str:
        """The /metrics text."""
        status, body = self.get("/metrics")
        assert status == 200, (status, body)
        return body

    def decisions(self, wait_for: int = 0, timeout: float = 5.0) -> list[dict]:
        """Parsed decision-log lines; waits until at least ``wait_for`` exist."""
        deadline = time.monotonic() + timeout
        while True:
            lines = []
            if self.decision_log.exists():
                lines = [json.loads(line) for line in self.decision_log.read_text().splitlines() if line.strip()]
            if len(lines) >= wait_for or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_listening(port: int, process: subprocess.Popen, stderr_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"proxy exited with {process.returncode}:\n{stderr_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"proxy did not listen on {port}:\n{stderr_path.read_text()}")


def start_proxy(tmp_path: Path, upstream: Upstream | None, args: list[str] = (), *, mitmdump: bool = False,
                env: dict | None = None, route: bool = True, metrics: bool = False,
                script: Path | None = None) -> ProxyProcess:
    """Start the proxy on a free port with a decision log in ``tmp_path``.

    With ``upstream``, every upstream connection goes to the local servers
    (see ``route_to_local.py``). With ``metrics``, the /metrics server listens
    on another free port (``ProxyProcess.metrics_port``); without, it is off
    (port 0), so parallel test runs never fight over the default port.
    ``script`` replaces ``proxy_addon/mitm_script.py`` for ``mitmdump``.
    """
    port = free_port()
    metrics_port = free_port() if metrics else 0
    log = tmp_path / f"decisions-{port}.jsonl"
    stderr_path = tmp_path / f"proxy-{port}.err"
    stdout_path = tmp_path / f"proxy-{port}.out"
    run_env = dict(os.environ, **(env or {}))
    scripts: list[str] = []
    resolve: list[str] = []
    if upstream is not None and route:
        run_env["AZML_TEST_HTTPS_PORT"] = str(upstream.https_port)
        run_env["AZML_TEST_HTTP_PORT"] = str(upstream.http_port)
        scripts = [str(ROUTER)]
        resolve = RESOLVE
    if mitmdump:
        addon = script or Path(__file__).resolve().parents[2] / "proxy_addon" / "mitm_script.py"
        cmd = mitmdump_command() + ["--listen-host", "127.0.0.1", "--listen-port", str(port),
               "-q", "-s", str(addon), "--set", f"azml_decision_log={log}", "--set", "azml_log_stdout=false",
               "--set", f"azml_metrics_port={metrics_port}"]
        for s in scripts:
            cmd += ["-s", s]
        for r in resolve:
            cmd += ["--set", f"azml_resolve={r}"]
        cmd += list(args)
    else:
        cmd = azml_egress_command() + ["run", "--listen-port", str(port), "--decision-log", str(log),
                                       "--metrics-port", str(metrics_port)]
        for s in scripts:
            cmd += ["-s", s]
        for r in resolve:
            cmd += ["--resolve", r]
        cmd += list(args)
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        process = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=run_env)
    wait_listening(port, process, stderr_path)
    if metrics_port:
        wait_listening(metrics_port, process, stderr_path)
    return ProxyProcess(process, port, log, stderr_path, stdout_path, metrics_port=metrics_port or None)
