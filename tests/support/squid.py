"""Run Debian's squid on loopback with an exported ACL snippet, offline.

Allowed requests go to a ``cache_peer`` on a closed loopback port with
``never_direct allow all``, so squid never resolves or reaches a public host:
an ACL deny is ``403`` with ``X-Squid-Error: ERR_ACCESS_DENIED``, an ACL allow
any other answer (a 5xx for the dead peer).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .proxy import free_port

CONF = """\
http_port 127.0.0.1:{port}
include {snippet}
cache deny all
cache_mem 8 MB
cache_peer 127.0.0.1 parent {dead_port} 0 no-query no-digest no-netdb-exchange
never_direct allow all
dns_nameservers 127.0.0.1
pid_filename {dir}/squid.pid
access_log stdio:{dir}/access.log
cache_log {dir}/cache.log
cache_store_log none
coredump_dir {dir}
pinger_enable off
shutdown_lifetime 0 seconds
connect_timeout 2 seconds
peer_connect_timeout 2 seconds
"""


def squid_binary() -> str | None:
    return shutil.which("squid") or next((p for p in ("/usr/sbin/squid",) if os.path.exists(p)), None)


def write_config(directory: Path, snippet_text: str) -> tuple[Path, int]:
    """squid.conf plus the snippet in ``directory``; returns (path, port)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o777)  # squid started as root runs as its effective user
    snippet = directory / "azml-egress.conf"
    snippet.write_text(snippet_text)
    port = free_port()
    conf = directory / "squid.conf"
    conf.write_text(CONF.format(port=port, snippet=snippet, dead_port=free_port(), dir=directory))
    return conf, port


def parse(conf: Path) -> subprocess.CompletedProcess:
    """``squid -k parse -f conf``."""
    return subprocess.run([squid_binary(), "-k", "parse", "-f", str(conf)], capture_output=True, text=True,
                          timeout=60)


@dataclass
class Squid:
    process: subprocess.Popen
    port: int
    directory: Path

    def ask(self, host: str, port: int, protocol: str = "https") -> tuple[bool, str]:
        """Send one CONNECT (https) or absolute-URI GET (http); returns
        (allowed by the ACLs, status line)."""
        if protocol == "https":
            request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
        else:
            request = f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        status = head.split("\r\n", 1)[0]
        denied = " 403 " in status + " " and "ERR_ACCESS_DENIED" in head
        return not denied, status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start(snippet_text: str, timeout: float = 20.0) -> Squid:
    """Start ``squid -N`` with the snippet; raises RuntimeError if it does not listen.

    Its files live in a fresh directory under the system temp dir, which the
    unprivileged user squid switches to can reach (pytest's tmp_path is private).
    """
    directory = Path(tempfile.mkdtemp(prefix="azml-egress-squid-"))
    conf, port = write_config(directory, snippet_text)
    with open(directory / "squid.out", "w") as log:
        process = subprocess.Popen([squid_binary(), "-N", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (directory / "squid.out").read_text()[-2000:]
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"squid exited with {process.returncode}: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Squid(process, port, directory)
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"squid did not listen on {port}")
