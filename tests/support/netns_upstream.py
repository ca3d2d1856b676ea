"""Run the test upstream servers on ADDRESS:443 (TLS) and ADDRESS:80, e.g.
inside a network namespace: ``ip netns exec NS python netns_upstream.py
--address 10.200.0.2 --cert C --key K --log FILE``. Each request is appended
to FILE as ``HOST PATH``; prints ``ready`` once both ports listen."""

from __future__ import annotations

import argparse
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.upstream import Upstream, _handler, make_wheel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    base = _handler(Upstream(443, 80), make_wheel())

    class Recording(base):
        def do_GET(self):
            with open(args.log, "a") as f:
                f.write(f"{(self.headers.get('Host') or '').split(':')[0]} {self.path}\n")
            super().do_GET()

    https = ThreadingHTTPServer((args.address, 443), Recording)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    https.socket = context.wrap_socket(https.socket, server_side=True)
    http = ThreadingHTTPServer((args.address, 80), Recording)
    for server in (https, http):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
