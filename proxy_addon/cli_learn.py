"""``azml-egress learn report`` and ``azml-egress learn suggest``.

Both read one or more learn files (merged, e.g. from several replicas) and a
policy: ``--config``, else the policy the learn files recorded (when they all
name the same, still readable file), else the built-in default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .audit import rfc3339_now
from .cli import EXIT_ERROR, EXIT_OK, add_config_argument, eprint, eprint_problems, load_policy_or_exit
from .config import ConfigError
from .atomicfile import write_atomic
from .learnfile import LearnData, load_all
from .policy import Policy
from .policy_loader import load_policy, policy_from_text

FORMATS = ("text", "markdown", "html", "json")


def _load_data(args: argparse.Namespace) -> LearnData:
    try:
        return load_all(args.learn_files)
    except ConfigError as e:
        eprint_problems("azml-egress learn: invalid learn file", e)
        raise SystemExit(EXIT_ERROR) from None


def policy_for(args: argparse.Namespace, data: LearnData) -> Policy:
    """``--config``; else the one policy the learn files recorded, if it still
    loads; else the built-in default. Says on stderr which one is used."""
    if args.config:
        return load_policy_or_exit(args)
    sources = {p.get("source") for p in data.policies if p.get("source")}
    if len(sources) == 1:
        source = next(iter(sources))
        try:
            policy = load_policy(source)
        except ConfigError:
            eprint(f"azml-egress learn: the recorded policy {source} cannot be loaded; using the built-in default "
                   "(pass --config)")
        else:
            shas = {p.get("sha256") for p in data.policies}
            changed = " (the file changed since learning)" if policy.sha256 not in shas else ""
            eprint(f"azml-egress learn: policy {policy.name!r} from {source}, as recorded in the learn file{changed}")
            return policy
    elif sources:
        eprint("azml-egress learn: the learn files recorded several policies; using the built-in default "
               "(pass --config)")
    return load_policy_or_exit(args)


def _write(text: str, output: str | None) -> None:
    if output and output != "-":
        write_atomic(output, text)
    else:
        sys.stdout.write(text)


def cmd_report(args: argparse.Namespace) -> int:
    from .learn_report import analyse, to_json, to_markdown, to_text

    data = _load_data(args)
    policy = policy_for(args, data)
    analysis = analyse(data, policy)
    if args.format == "html":
        from .learn_html import to_html
        text = to_html(analysis)
    elif args.format == "markdown":
        text = to_markdown(analysis)
    elif args.format == "json":
        text = json.dumps(to_json(analysis), indent=2, ensure_ascii=True) + "\n"
    else:
        text = to_text(analysis)
    _write(text, args.output)
    if args.output and args.output != "-":
        eprint(f"azml-egress learn report: wrote {args.output} ({analysis.totals['hosts']} hosts, "
               f"{analysis.totals['gaps']} not allowed, {analysis.totals['unused_rules']} unused rules)")
    return EXIT_OK


def cmd_suggest(args: argparse.Namespace) -> int:
    from .learn_suggest import render_yaml, suggest

    data = _load_data(args)
    policy = policy_for(args, data)
    suggestion = suggest(data, policy, exact=args.exact, min_siblings=args.min_siblings)
    name = args.name or (Path(args.output).stem if args.output and args.output != "-" else "learned")
    text = render_yaml(suggestion, data, policy, name=name, generated=rfc3339_now())
    try:
        suggested = policy_from_text(text, args.output or "<suggested policy>")
    except ConfigError as e:  # a bug: the suggestion must always validate
        eprint_problems("azml-egress learn suggest: internal error: the suggested policy does not validate", e)
        return EXIT_ERROR
    denied = [(r, d) for rule in suggestion.rules for r in rule.evidence
              for d in [suggested.decide(r.host, r.port, r.protocol, None)] if not d.allowed]
    _write(text, args.output)
    for record, why in suggestion.skipped:
        eprint(f"azml-egress learn suggest: not suggested: {record.host}:{record.port} ({record.protocol}): {why}")
    for record, decision in denied:  # pragma: no cover - would be a bug in suggest()
        eprint(f"azml-egress learn suggest: warning: {record.host}:{record.port} would still be denied "
               f"({decision.reason.value})")
    where = args.output if args.output and args.output != "-" else "stdout"
    eprint(f"azml-egress learn suggest: wrote {where}: {len(suggestion.rules)} rules in "
           f"{len(suggestion.collections)} rule collections for {len(data.hosts)} learned entries")
    return EXIT_OK


def _min_siblings(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} is less than 2 (a wildcard needs several sibling hosts)")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``learn`` command group."""
    learn = subparsers.add_parser("learn", help="report on and suggest policies from learn files (run --mode learn)")
    sub = learn.add_subparsers(dest="learn_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("report", help="hosts used but not allowed, unused rules, features seen")
    p.add_argument("learn_files", nargs="+", metavar="LEARN_FILE", help="learn files (merged)")
    add_config_argument(p)
    p.add_argument("--format", "-f", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("suggest", help="write a policy that allows what was seen and nothing more")
    p.add_argument("learn_files", nargs="+", metavar="LEARN_FILE", help="learn files (merged)")
    add_config_argument(p)
    p.add_argument("--output", "-o", metavar="POLICY.yaml", help="write to this file instead of stdout")
    p.add_argument("--name", help="policy name (default: the output file's stem, or 'learned')")
    p.add_argument("--exact", action="store_true",
                   help="exact host names only: no catalog wildcards, no sibling wildcards")
    p.add_argument("--min-siblings", type=_min_siblings, default=3, metavar="N",
                   help="sibling hosts under one registrable domain that make a '*.parent' rule (default 3)")
    p.set_defaults(func=cmd_suggest)
