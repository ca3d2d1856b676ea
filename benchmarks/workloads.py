"""Asyncio client workloads for the loopback benchmarks.

Every tunnel does ``CONNECT 127.0.0.1:PORT``, a TLS handshake that verifies
the upstream certificate against the benchmark CA (server name
``bench.example``, sent as SNI), then ``GET /``: a proxy that intercepted TLS
would fail verification, and :class:`Intercepted` stops the run. ``proxy`` is
``(host, port)`` or ``None`` for a direct connection. All loads are bounded in
count; every socket I/O has a timeout.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

SNI = "bench.example"
DENIED_TARGET = "denied.example:443"
TIMEOUT = 30.0


class Intercepted(RuntimeError):
    """The upstream certificate did not verify: something intercepted TLS."""


class WorkloadError(RuntimeError):
    """A request through the proxy failed (status, reset, timeout)."""


@dataclass
class Counts:
    ok: int = 0
    failed: int = 0
    last_error: str = ""


def client_context(ca_pem: str) -> ssl.SSLContext:
    """A TLS client context that trusts only the benchmark CA."""
    context = ssl.create_default_context(cafile=ca_pem)
    context.check_hostname = True
    return context


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    """(status, content-length) of an HTTP/1.1 response head."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, length


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str = "/",
               host: str = SNI) -> int:
    """One keep-alive GET; returns the body size read."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status, length = await _read_head(reader)
    if status != 200:
        raise WorkloadError(f"GET {path}: status {status}")
    remaining = length
    while remaining:
        chunk = await reader.read(min(remaining, 1 << 20))
        if not chunk:
            raise WorkloadError(f"GET {path}: connection closed with {remaining} bytes to go")
        remaining -= len(chunk)
    return length


async def open_tunnel(proxy: tuple[str, int] | None, tls_port: int, context: ssl.SSLContext):
    """A TLS connection to the upstream, through ``proxy`` when given."""
    try:
        if proxy is None:
            return await asyncio.open_connection("127.0.0.1", tls_port, ssl=context, server_hostname=SNI)
        reader, writer = await asyncio.open_connection(*proxy)
        writer.write(f"CONNECT 127.0.0.1:{tls_port} HTTP/1.1\r\nHost: 127.0.0.1:{tls_port}\r\n\r\n".encode())
        status, _ = await _read_head(reader)
        if status != 200:
            writer.close()
            raise WorkloadError(f"CONNECT: status {status}")
        await writer.start_tls(context, server_hostname=SNI)
        return reader, writer
    except ssl.SSLCertVerificationError as e:
        raise Intercepted(f"upstream certificate did not verify through {proxy}: {e}") from e


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (OSError, ssl.SSLError, asyncio.TimeoutError):
        pass


async def one_tunnel(proxy, tls_port: int, context: ssl.SSLContext) -> None:
    """CONNECT + TLS handshake + small GET + close."""
    reader, writer = await open_tunnel(proxy, tls_port, context)
    try:
        await _get(reader, writer)
    finally:
        await close(writer)


async def one_denied(proxy) -> None:
    """A CONNECT the proxy must refuse with 403."""
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        writer.write(f"CONNECT {DENIED_TARGET} HTTP/1.1\r\nHost: {DENIED_TARGET}\r\n\r\n".encode())
        status, length = await _read_head(reader)
        if status != 403:
            raise WorkloadError(f"denied CONNECT: status {status}, expected 403")
        if length:
            await reader.readexactly(length)
    finally:
        await close(writer)


async def _pool(n: int, concurrency: int, job) -> Counts:
    """Run ``job()`` ``n`` times with ``concurrency`` workers."""
    counts = Counts()
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            try:
                await asyncio.wait_for(job(), TIMEOUT)
                counts.ok += 1
            except Intercepted:
                raise
            except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError, WorkloadError,
                    ValueError, IndexError) as e:
                counts.failed += 1
                counts.last_error = f"{type(e).__name__}: {e}"

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return counts


async def tunnels(proxy, tls_port: int, context: ssl.SSLContext, n: int, concurrency: int) -> Counts:
    return await _pool(n, concurrency, lambda: one_tunnel(proxy, tls_port, context))


async def denied(proxy, n: int, concurrency: int) -> Counts:
    return await _pool(n, concurrency, lambda: one_denied(proxy))


async def plain_http(proxy, http_port: int, n: int, concurrency: int) -> Counts:
    """``n`` proxied plain-HTTP GETs over ``concurrency`` keep-alive connections."""
    counts = Counts()
    per_connection = max(1, n // concurrency)
    url = f"http://127.0.0.1:{http_port}/" if proxy else "/"
    target = proxy or ("127.0.0.1", http_port)

    async def worker() -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            counts.failed += per_connection
            counts.last_error = str(e)
            return
        try:
            for _ in range(per_connection):
                await asyncio.wait_for(_get(reader, writer, url, f"127.0.0.1:{http_port}"), TIMEOUT)
                counts.ok += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, WorkloadError, ValueError) as e:
            counts.failed += 1
            counts.last_error = f"{type(e).__name__}: {e}"
        finally:
            await close(writer)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


async def latencies(proxy, tls_port: int, context: ssl.SSLContext, n: int) -> list[float]:
    """Seconds per tunnel, one at a time."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await asyncio.wait_for(one_tunnel(proxy, tls_port, context), TIMEOUT)
        out.append(time.perf_counter() - start)
    return out


def _bulk_blocking(proxy, tls_port: int, context: ssl.SSLContext, size: int) -> float:
    """Blocking socket + ssl (cheaper per byte than asyncio's TLS, so the client
    is less of a bottleneck): CONNECT, TLS, GET /bytes/size, read it all."""
    import socket

    sock = socket.create_connection(proxy or ("127.0.0.1", tls_port), timeout=120)
    try:
        if proxy is not None:
            sock.sendall(f"CONNECT 127.0.0.1:{tls_port} HTTP/1.1\r\nHost: 127.0.0.1:{tls_port}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise WorkloadError("bulk: proxy closed the connection")
                head += chunk
            if int(head.split(b" ", 2)[1]) != 200:
                raise WorkloadError(f"bulk: CONNECT status {head.split(b' ', 2)[1]!r}")
        try:
            tls = context.wrap_socket(sock, server_hostname=SNI)
        except ssl.SSLCertVerificationError as e:
            raise Intercepted(f"upstream certificate did not verify through {proxy}: {e}") from e
        start = time.perf_counter()
        tls.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: {SNI}\r\n\r\n".encode())
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        got, head_done, data = 0, False, b""
        while not head_done:
            n = tls.recv_into(view)
            if not n:
                raise WorkloadError("bulk: closed before the response head")
            data += view[:n]
            if b"\r\n\r\n" in data:
                head_done = True
                got = len(data) - data.index(b"\r\n\r\n") - 4
        while got < size:
            n = tls.recv_into(view)
            if not n:
                raise WorkloadError(f"bulk: got {got} of {size} bytes")
            got += n
        return time.perf_counter() - start
    finally:
        sock.close()


async def bulk(proxy, tls_port: int, context: ssl.SSLContext, size: int) -> float:
    """Seconds to download ``size`` bytes through one tunnel (handshake excluded)."""
    return await asyncio.to_thread(_bulk_blocking, proxy, tls_port, context, size)


async def open_idle(proxy, tls_port: int, context: ssl.SSLContext, n: int, concurrency: int = 50) -> list:
    """Open ``n`` tunnels (CONNECT + TLS handshake) and keep them open; returns the writers."""
    writers: list = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            _, writer = await asyncio.wait_for(open_tunnel(proxy, tls_port, context), TIMEOUT)
            writers.append(writer)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for writer in writers:
            writer.transport.abort()
        raise WorkloadError(f"idle tunnels: {len(errors)} of {n} failed: {errors[0]!r}")
    return writers


async def close_all(writers: list) -> None:
    for writer in writers:
        writer.transport.abort()
    await asyncio.sleep(0)


async def first_tunnel(proxy, tls_port: int, context: ssl.SSLContext, deadline: float) -> float:
    """Retry a tunnel until it works; returns the monotonic time it completed."""
    while True:
        try:
            await asyncio.wait_for(one_tunnel(proxy, tls_port, context), 5)
            return time.monotonic()
        except Intercepted:
            raise
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError, WorkloadError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)
