"""Small accessors for mitmproxy client connections, shared by the addon's hooks."""

from __future__ import annotations

from mitmproxy.proxy import mode_specs


def client_address(conn: object) -> str:
    """``ip:port`` (``[v6]:port``) of a client connection, as the log shows it."""
    peer = getattr(conn, "peername", None)
    if not peer:
        return "unknown:0"
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_ip(conn: object) -> str | None:
    """The client's IP address text, or ``None`` when unknown."""
    peer = getattr(conn, "peername", None)
    return peer[0] if peer else None


def is_transparent(client: object) -> bool:
    """Whether the client connection came in through a transparent-mode listener."""
    return isinstance(getattr(client, "proxy_mode", None), mode_specs.TransparentMode)
