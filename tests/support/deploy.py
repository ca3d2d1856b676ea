"""Helpers for the deployment tests: the repository's deploy/ tree and a
check that the ``azml-egress`` command lines written in it parse."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from proxy_addon.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

PENDING_RUN_FLAGS = frozenset({"--metrics-host", "--metrics-port"})
"""``run`` flags the deploy files use that come with the metrics and health
server; where this checkout lacks them, tests say so."""


def tool(name: str) -> str | None:
    """A command installed next to this interpreter (test extra), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def check_run_argv(argv: list[str]) -> set[str]:
    """Parse ``azml-egress`` arguments with the real parser.

    Returns the :data:`PENDING_RUN_FLAGS` this checkout does not know yet;
    raises AssertionError for any other unknown or malformed argument.
    """
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as e:
        raise AssertionError(f"azml-egress {' '.join(argv)}: rejected by the CLI parser (exit {e.code})") from None
    pending: set[str] = set()
    expect_value = False
    for item in unknown:
        flag = item.split("=", 1)[0]
        if flag in PENDING_RUN_FLAGS:
            pending.add(flag)
            expect_value = "=" not in item
            continue
        if expect_value and not item.startswith("-"):
            expect_value = False
            continue
        raise AssertionError(f"azml-egress {' '.join(argv)}: unknown argument {item!r}")
    assert args.command == argv[0]
    return pending
