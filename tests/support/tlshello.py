"""The bytes of a real TLS ClientHello, for tests that speak TLS's first flight only."""

import ssl


def client_hello(server_name: str) -> bytes:
    """A ClientHello with SNI ``server_name``, as Python's ssl module sends it."""
    out = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
