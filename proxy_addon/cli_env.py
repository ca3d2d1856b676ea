"""``azml-egress env``: print the proxy configuration for a client.

``azml-egress env [--proxy-url URL] [--no-proxy ENTRY ...] [--for CLIENT|all]``
prints the text of :func:`proxy_addon.clientenv.render` for one client
(default ``shell``) or every client. Exit 0, or 2 with one line per problem
for a bad proxy URL or no-proxy entry.
"""

from __future__ import annotations

import argparse

from .cli import EXIT_ERROR, EXIT_OK, eprint
from .clientenv import CLIENTS, DEFAULT_PROXY_URL, ClientEnvError, render, settings


def cmd_env(args: argparse.Namespace) -> int:
    try:
        proxy = settings(args.proxy_url, args.no_proxy or ())
    except ClientEnvError as e:
        eprint(f"azml-egress env: {e}")
        return EXIT_ERROR
    clients = CLIENTS if args.client == "all" else (args.client,)
    blocks = [render(client, proxy) for client in clients]
    if args.client == "all":
        blocks = [f"## {client}\n{block}" for client, block in zip(clients, blocks)]
    print("\n\n".join(blocks))
    return EXIT_OK


def register(subparsers) -> None:
    """Add the ``env`` subcommand to the ``azml-egress`` parser."""
    p = subparsers.add_parser(
        "env", help="print the proxy settings for a client (shell, pip, conda, r, az, docker, apt, git, npm)",
        description="Print the exact configuration that points a client at the proxy. The proxy URL is always "
                    "http://, also for HTTPS traffic (clients tunnel it with CONNECT).")
    p.add_argument("--proxy-url", default=DEFAULT_PROXY_URL, metavar="URL",
                   help=f"the proxy as clients reach it (default {DEFAULT_PROXY_URL}; HOST:PORT gets http://)")
    p.add_argument("--no-proxy", action="append", metavar="ENTRY",
                   help="also bypass the proxy for this host, .domain, IP or CIDR, e.g. a private endpoint "
                        "(repeatable; loopback and 169.254.169.254 always are)")
    p.add_argument("--for", dest="client", choices=CLIENTS + ("all",), default="shell",
                   help="the client to configure (default shell)")
    p.set_defaults(func=cmd_env)
