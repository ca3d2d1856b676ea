"""A throw-away certificate authority for upstream test servers (trustme)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass
class TestPKI:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    names: tuple[str, ...]


def make_pki(directory: Path, names: list[str]) -> TestPKI:
    """A CA and one server certificate valid for every name in ``names``."""
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    ca_pem = directory / "test-ca.pem"
    cert_pem = directory / "server.pem"
    key_pem = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    for extra in cert.cert_chain_pems[1:]:
        with open(cert_pem, "ab") as f:
            f.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(key_pem))
    return TestPKI(ca_pem, cert_pem, key_pem, tuple(names))
