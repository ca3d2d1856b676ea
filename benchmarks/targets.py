"""The proxies under test, as processes whose CPU time and memory can be read.

* ``direct``: no proxy (the client connects straight to the upstream);
* ``mitmdump``: plain ``mitmdump -q --ignore-hosts '.*'`` (TLS passed through,
  no script);
* ``mitmdump-deny``: the same with a one-hook script refusing
  ``CONNECT denied.example`` (only for the denied-CONNECT baseline);
* ``azml-egress``: ``azml-egress run`` with a policy allowing 127.0.0.0/8 on
  the upstream's ports (decision lines on stdout, to a file; metrics served on
  a port of its own);
* ``azml-egress-mitmdump``: the addon in a plain ``mitmdump -s`` (optional);
* ``azml-egress-x2``: two ``azml-egress run`` processes, the load split
  between them (two replicas behind a load balancer);
* ``core-floor``: mitmproxy's proxy core with only pass-through
  (``core_floor.py``): the least any mitmproxy-based proxy pays per tunnel;
* ``squid``: Debian's squid, one process (``-N``), no cache, no access log,
  CONNECT allowed to 127.0.0.1 only.

Each target keeps its files (stdout, stderr, configuration) in its own
directory under the run's work directory.

CPU is utime+stime from ``/proc/<pid>/stat`` summed over the process and its
descendants; RSS is ``VmRSS`` from ``/proc/<pid>/status``, summed likewise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TICK = os.sysconf("SC_CLK_TCK")

MITMDUMP = [sys.executable, "-c", "import sys; from mitmproxy.tools.main import mitmdump; sys.exit(mitmdump())"]
AZML_EGRESS = [sys.executable, "-m", "proxy_addon.cli"]

DENY_SCRIPT = '''"""Refuse CONNECT denied.example with 403 (benchmark baseline for a deny)."""
from mitmproxy import http


def http_connect(flow):
    if flow.request.host == "denied.example":
        flow.response = http.Response.make(403, b"denied\\n")
'''

POLICY = """version: 1
name: bench
mode: enforce
features: [required, pip-index, pip-downloads, conda, cran]
options:
  private_ranges_allowed: [127.0.0.0/8]
rule_collections:
  - name: bench-upstream
    priority: 100
    action: allow
    rules:
      - name: loopback-upstream
        destination_addresses: [127.0.0.0/8]
        protocols: ["https:{tls}", "http:{http}"]
"""

SQUID_CONF = """http_port 127.0.0.1:{port}
pid_filename none
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log {dir}/cache.log
coredump_dir {dir}
max_filedescriptors 16384
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
acl bench_dst dst 127.0.0.1/32
acl bench_ports port {tls} {http}
acl CONNECT method CONNECT
http_access deny CONNECT !bench_ports
http_access allow bench_dst bench_ports
http_access deny all
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of ``pids`` (seconds)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    return total


@dataclass
class Target:
    """One proxy configuration; ``start()`` launches it on fresh ports."""

    name: str
    workdir: Path
    tls_port: int
    http_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    replicas: int = 1

    dir_name: str = ""

    @property
    def dir(self) -> Path:
        path = self.workdir / (self.dir_name or self.name)
        path.mkdir(exist_ok=True)
        return path

    @property
    def proxies(self) -> list[tuple[str, int]] | None:
        return [("127.0.0.1", p) for p in self.ports] if self.ports else None

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files (once)."""

    def start(self) -> float:
        """Start the process(es); returns the monotonic start time."""
        self.prepare()
        started = time.monotonic()
        for i in range(self.replicas):
            port = free_port()
            out = open(self.dir / f"{port}.out", "w")
            err = open(self.dir / f"{port}.err", "w")
            self.processes.append(subprocess.Popen(self.command(port), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                                   cwd=self.dir, env=dict(os.environ, PYTHONPATH=str(ROOT))))
            self.ports.append(port)
            out.close()
            err.close()
        return started

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for process, port in zip(self.processes, self.ports):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {process.returncode}: {self.stderr()[-2000:]}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name} did not listen on {port}: {self.stderr()[-2000:]}") from None
                    time.sleep(0.01)

    def stderr(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("*.err")))

    def pids(self) -> list[int]:
        return [pid for p in self.processes for pid in process_tree(p.pid)]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss(self) -> int:
        return rss_bytes(self.pids())

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p in self.processes:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.processes, self.ports = [], []


class Direct(Target):
    def start(self) -> float:
        return time.monotonic()

    def wait_listening(self, timeout: float = 30.0) -> None:
        pass


class Mitmdump(Target):
    script: str | None = None

    def prepare(self) -> None:
        if self.name == "mitmdump-deny":
            self.script = str(self.dir / "deny_connect.py")
            Path(self.script).write_text(DENY_SCRIPT)

    def command(self, port: int) -> list[str]:
        cmd = MITMDUMP + ["-q", "--listen-host", "127.0.0.1", "--listen-port", str(port), "--ignore-hosts", ".*"]
        return cmd + (["-s", self.script] if self.script else [])


class AzmlEgress(Target):
    def prepare(self) -> None:
        # the policy in a directory of its own, as in a deployment (a mounted ConfigMap):
        # the reload watch looks at that directory, not at the decision log next to it
        (self.dir / "policy").mkdir(exist_ok=True)
        self.policy = self.dir / "policy" / "bench-policy.yaml"
        self.policy.write_text(POLICY.format(tls=self.tls_port, http=self.http_port))

    def command(self, port: int) -> list[str]:
        # metrics on, as by default, on a port of its own (several processes run at once)
        return AZML_EGRESS + ["run", "--config", str(self.policy), "--listen-port", str(port),
                              "--metrics-port", str(free_port())]

    def decision_lines(self) -> int:
        """Decision lines written to stdout so far by this target's processes."""
        return sum(p.read_bytes().count(b"\n") for p in self.dir.glob("*.out"))


class AzmlEgressMitmdump(AzmlEgress):
    def command(self, port: int) -> list[str]:
        addon = ROOT / "proxy_addon" / "mitm_script.py"
        return MITMDUMP + ["-q", "--listen-host", "127.0.0.1", "--listen-port", str(port), "-s", str(addon),
                           "--set", f"azml_policy={self.policy}", "--set", "azml_log_stdout=true",
                           "--set", f"azml_metrics_port={free_port()}"]


class CoreFloor(Target):
    def command(self, port: int) -> list[str]:
        return [sys.executable, str(HERE / "core_floor.py"), str(port)]


class Squid(Target):
    def prepare(self) -> None:
        self.workdir.chmod(0o755)
        self.dir.chmod(0o777)  # squid drops privileges to its own user

    def command(self, port: int) -> list[str]:
        conf = self.dir / f"squid-{port}.conf"
        conf.write_text(SQUID_CONF.format(port=port, dir=self.dir, tls=self.tls_port, http=self.http_port))
        return [shutil.which("squid") or "squid", "-N", "-f", str(conf)]


def make_targets(names: list[str], workdir: Path, tls_port: int, http_port: int, suffix: str = "") -> list[Target]:
    """Targets by name; ``suffix`` names a separate directory (fresh processes)."""
    kinds = {"direct": Direct, "mitmdump": Mitmdump, "mitmdump-deny": Mitmdump, "azml-egress": AzmlEgress,
             "azml-egress-x2": AzmlEgress, "azml-egress-mitmdump": AzmlEgressMitmdump, "core-floor": CoreFloor,
             "squid": Squid}
    out = []
    for name in names:
        target = kinds[name](name, workdir, tls_port, http_port)
        if suffix:
            target.dir_name = name + suffix
        if name.endswith("-x2"):
            target.replicas = 2
        out.append(target)
    return out
