"""The upstream server the loopback benchmarks talk to, run in its own process.

One TLS port and one plain-HTTP port on 127.0.0.1, both speaking just enough
HTTP/1.1 (keep-alive) for the benchmark client:

* ``GET /`` answers ``ok`` (2 bytes);
* ``GET /bytes/N`` answers N bytes (streamed in 1 MiB writes).

Run: ``python3 benchmarks/upstream.py CERT KEY`` prints ``TLS_PORT HTTP_PORT``
on one line once both ports listen, then serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys

CHUNK = b"x" * (1 << 20)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path.startswith(b"/bytes/"):
                size = int(path[len(b"/bytes/"):])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                while size > 0:
                    part = CHUNK if size >= len(CHUNK) else CHUNK[:size]
                    writer.write(part)
                    size -= len(part)
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError, ValueError, IndexError):
        pass
    finally:
        writer.close()


async def main(cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=context, backlog=1024)
    plain = await asyncio.start_server(_serve, "127.0.0.1", 0, backlog=1024)
    print(tls.sockets[0].getsockname()[1], plain.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1) else None)
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
