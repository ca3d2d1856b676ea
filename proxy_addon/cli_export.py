"""``azml-egress export``, ``import`` and ``diff``: from policy to real Azure
Firewall rules and back (README "Export, import and diff").

Exit codes: 0 success (``diff``: no differences), 1 ``diff`` found
differences, 2 errors (bad files or flags), as in :mod:`proxy_addon.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli import EXIT_DENY, EXIT_ERROR, EXIT_OK, add_config_argument, eprint, eprint_problems, load_policy_or_exit
from .config import ConfigError
from .exporters import COLLECT_BY, FORMATS, export
from .importers import import_firewall, json_path
from .policy_diff import diff_policies, format_text, load_side
from .policy_loader import CLOUD_CATALOGS


def _write(text: str, output: str | None, what: str) -> int:
    if not output or output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as e:
        eprint(f"azml-egress {what}: cannot write {output}: {e.strerror or e}")
        return EXIT_ERROR
    eprint(f"azml-egress {what}: wrote {output}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    if args.classic and args.format != "az-cli":
        eprint("azml-egress export: --classic applies to --format az-cli only")
        return EXIT_ERROR
    policy = load_policy_or_exit(args)
    text = export(policy, args.format, collect_by=args.collect_by, classic=args.classic)
    return _write(text, args.output, "export")


def cmd_import(args: argparse.Namespace) -> int:
    features = [f.strip() for f in (args.features or "").split(",") if f.strip()]
    try:
        text, warnings = import_firewall(args.file, name=args.name, catalog=args.catalog, cloud=args.cloud,
                                         features=features)
    except ConfigError as e:
        eprint(f"azml-egress import: cannot import {args.file} ({e.count_text}):")
        for p in e.problems:
            where = json_path(p.path) if not p.file.startswith("<import") else f"line {p.line}"
            eprint(f"  {p.file}: {where}: {p.message}")
        return EXIT_ERROR
    except ValueError as e:
        eprint(f"azml-egress import: {e}")
        return EXIT_ERROR
    for warning in warnings:
        eprint(f"warning: {warning}")
    return _write(text, args.output, "import")


def cmd_diff(args: argparse.Namespace) -> int:
    sides = []
    for spec in (args.a, args.b):
        try:
            sides.append(load_side(spec))
        except ConfigError as e:
            eprint_problems(f"azml-egress diff: invalid {spec!r}", e)
            return EXIT_ERROR
    result = diff_policies(sides[0], sides[1], args.a, args.b)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        sys.stdout.write(format_text(result))
    return EXIT_OK if result.empty else EXIT_DENY


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``, ``import`` and ``diff`` to the ``azml-egress`` parser."""
    p = sub.add_parser("export", help="write the policy as Azure Firewall rules (ARM, Bicep, Terraform, az CLI, ...)")
    add_config_argument(p)
    p.add_argument("--format", "-f", required=True, choices=FORMATS, help="output format")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    p.add_argument("--collect-by", choices=COLLECT_BY, default="feature",
                   help="one rule collection per feature (default) or per feature group")
    p.add_argument("--classic", action="store_true",
                   help="az-cli: classic firewall rules (az network firewall application-rule create)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="turn an Azure Firewall JSON export into a policy file")
    p.add_argument("file", metavar="FILE", help="ARM/REST JSON of rule collection groups, a firewall policy "
                   "template, or a classic Microsoft.Network/azureFirewalls resource")
    p.add_argument("-o", "--output", metavar="POLICY.yaml", help="write to POLICY.yaml (default: stdout)")
    p.add_argument("--name", help="policy name (default: the file name)")
    p.add_argument("--catalog", help="catalog for feature attribution (default: by --cloud, else azureml)")
    p.add_argument("--cloud", choices=sorted(CLOUD_CATALOGS), help="the Azure cloud of the firewall")
    p.add_argument("--features", metavar="IDS", help="comma-separated catalog features to enable as well "
                   "(default: none, the policy is the firewall alone)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("diff", help="compare two policies, or a policy and a catalog (catalog:ID)")
    p.add_argument("a", metavar="A", help="built-in policy name, policy file, or catalog:ID")
    p.add_argument("b", metavar="B", help="built-in policy name, policy file, or catalog:ID")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=cmd_diff)
