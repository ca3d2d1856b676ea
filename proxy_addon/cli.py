"""The ``azml-egress`` command line: a thin layer over the pure core.

Commands: ``run``, ``check``, ``validate``, ``catalog``, ``addon-path``, plus
the commands of the modules listed in :data:`COMMAND_MODULES` (each exposes
``register(subparsers)``). Exit codes: 0 success/allow, 1 deny, 2 error.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import os
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .audit import DecisionEvent, dumps, record
from .catalog import builtin_catalogs, find_catalog
from .config import ConfigError
from .hostnames import DEFAULT_PORTS, InvalidHost, printable, split_authority
from .policy import MODES, Policy
from .policy_loader import load_policy

COMMAND_MODULES: list[str] = ["proxy_addon.cli_export", "proxy_addon.cli_learn", "proxy_addon.cli_env"]
"""Modules that add subcommands: each has ``register(subparsers)``."""

EXIT_OK, EXIT_DENY, EXIT_ERROR = 0, 1, 2


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr)


def eprint_problems(heading: str, error: ConfigError) -> None:
    """``heading (N problems):`` then one indented line per problem, on stderr."""
    eprint(f"{heading} ({error.count_text}):")
    for problem in error.problems:
        eprint(f"  {problem}")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="POLICY",
                        help="policy file or built-in policy name (default: the built-in Azure ML policy)")


def load_policy_or_exit(args: argparse.Namespace, mode: str | None = None) -> Policy:
    """Load ``--config``; on a bad file print every problem and exit 2."""
    if getattr(args, "config", None) == "":
        eprint("azml-egress: --config is empty; give a policy file or a built-in policy name")
        raise SystemExit(EXIT_ERROR)
    try:
        return load_policy(getattr(args, "config", None), mode)
    except ConfigError as e:
        eprint_problems("azml-egress: invalid policy", e)
        raise SystemExit(EXIT_ERROR) from None


# -- run ----------------------------------------------------------------------

def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_run(args: argparse.Namespace) -> int:
    authenticated = bool(args.proxyauth) or any(o.startswith("proxyauth=") for o in args.set_options or [])
    if not _is_loopback(args.listen_host) and not authenticated and not args.allow_unauthenticated:
        eprint(f"azml-egress run: listening on {args.listen_host} (not loopback) needs proxy authentication "
               "(--proxyauth USER:PASS or --proxyauth @HTPASSWD_FILE) or an explicit --allow-unauthenticated")
        return EXIT_ERROR
    for script in args.scripts or []:
        if not Path(script).is_file() or not os.access(script, os.R_OK):
            eprint(f"azml-egress run: script {script!r} is not a readable file")
            return EXIT_ERROR
    if args.proxyauth:
        args.set_options = [*(args.set_options or []), f"proxyauth={args.proxyauth}"]
    if args.allow_unauthenticated:
        args.set_options = [*(args.set_options or []), "azml_allow_unauthenticated=true"]
    policy = load_policy_or_exit(args, args.mode)
    from .runtime import RunSettings, run  # mitmproxy is imported only here

    learn = _learn_settings(args, policy)
    for warning in policy.warnings:
        eprint(f"warning: {warning}")
    settings = RunSettings(
        listen_host=args.listen_host, listen_port=args.listen_port,
        decision_log=args.decision_log or "", scripts=args.scripts or [], set_options=args.set_options or [],
        metrics_host=args.metrics_host, metrics_port=args.metrics_port,
        resolve=args.resolve or [], mode=args.mode or "", **learn,
    )
    eprint(f"azml-egress {__version__}: proxy http://{args.listen_host}:{args.listen_port} "
           f"policy {policy.name!r} ({policy.source}), mode {policy.mode}")
    code = run(policy, settings)
    return EXIT_ERROR if code else EXIT_OK


def _learn_settings(args: argparse.Namespace, policy: Policy) -> dict[str, object]:
    """The ``learn_*`` fields of RunSettings; exits 2 on a bad combination."""
    from .learn import DEFAULT_LEARN_FILE
    from .learnfile import check_path

    given = [flag for flag, value in (("--learn-file", args.learn_file), ("--learn-interval", args.learn_interval),
                                      ("--learn-max-hosts", args.learn_max_hosts),
                                      ("--learn-max-clients", args.learn_max_clients)) if value is not None]
    if policy.mode != "learn":
        if given:
            eprint(f"azml-egress run: {', '.join(given)} needs learn mode (--mode learn, or 'mode: learn' in the "
                   f"policy); the mode is {policy.mode}")
            raise SystemExit(EXIT_ERROR)
        return {}
    path = args.learn_file or DEFAULT_LEARN_FILE
    problem = check_path(path)
    if problem:
        eprint(f"azml-egress run: --learn-file: {problem}")
        raise SystemExit(EXIT_ERROR)
    out: dict[str, object] = {"learn_file": path}
    for name in ("learn_interval", "learn_max_hosts", "learn_max_clients"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    return out


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535")
    return value


def _metrics_host(text: str) -> str:
    if not text.strip() or any(c.isspace() or c in "/[]" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an address (write e.g. 127.0.0.1, ::1 or 0.0.0.0)")
    return text


# -- check --------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    policy = load_policy_or_exit(args, args.mode)
    try:
        host, port = split_authority(args.target, DEFAULT_PORTS[args.protocol])
    except InvalidHost as e:
        eprint(f"azml-egress check: {e} (write HOST or HOST:PORT with a port 1-65535)")
        return EXIT_ERROR
    try:
        ipaddress.ip_address(args.source)
    except ValueError:
        eprint(f"azml-egress check: --source {printable(args.source)!r} is not an IP address")
        return EXIT_ERROR
    decision = policy.decide(host, port, args.protocol, args.source)
    event = DecisionEvent(decision, policy.mode, client=args.source, method=args.method, policy=policy.name)
    data = record(event)
    data.pop("ts")
    data.pop("client")
    if args.json:
        print(dumps(data))
    else:
        print(f"{decision.action.value.upper()} {decision.host}:{decision.port} ({decision.protocol}) "
              f"reason {decision.reason.value}")
        if decision.rule:
            print(f"  rule: {decision.rule} (rule collection {decision.rule_collection}, "
                  f"group {decision.rule_collection_group})")
        print(f"  feature: {decision.describe_feature()}")
        if decision.detail:
            print(f"  detail: {decision.detail}")
        print(f"  Azure Firewall: {data['msg']}")
    return EXIT_OK if decision.allowed else EXIT_DENY


# -- validate -----------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    policy = load_policy_or_exit(args)
    for warning in policy.warnings:
        print(f"warning: {warning}")
    for note in policy.notes:
        print(f"note: {note}")
    print(f"{policy.source}: valid: policy {policy.name!r}, catalog {policy.catalog.id} "
          f"(revision {policy.catalog.revision}), {len(policy.enabled_features)} features, "
          f"{policy.rule_count} rules, mode {policy.mode}")
    return EXIT_OK


# -- catalog ------------------------------------------------------------------

def cmd_catalog(args: argparse.Namespace) -> int:
    try:
        catalogs = list(builtin_catalogs()) if args.all else [find_catalog(args.catalog)]
    except (ConfigError, ValueError) as e:
        eprint(f"azml-egress catalog: {e}")
        return EXIT_ERROR
    out = []
    for catalog in catalogs:
        features = [f for f in catalog.features if not args.group or f.group.lower() == args.group.lower()]
        if args.group and not features:
            eprint(f"azml-egress catalog: catalog {catalog.id!r} has no group {args.group!r} "
                   f"(groups: {', '.join(catalog.groups)})")
            return EXIT_ERROR
        out.append((catalog, features))
    if args.json:
        print(json.dumps([
            {"id": c.id, "title": c.title, "cloud": c.cloud, "revision": c.revision, "features": [
                {"id": f.id, "title": f.title, "group": f.group, "need": f.need, "condition": f.condition or None,
                 "source": f.citation, "hosts": [
                     {"pattern": h.pattern, "protocols": [f"{p}:{n}" for p, n in h.protocols],
                      "documented": h.documented, "note": h.note or None, "path": h.path or None}
                     for h in f.hosts]}
                for f in features]}
            for c, features in out], indent=2))
        return EXIT_OK
    for catalog, features in out:
        print(f"# {catalog.id}: {catalog.title} ({catalog.cloud}, revision {catalog.revision})")
        group = None
        for f in features:
            if f.group != group:
                group = f.group
                print(f"\n## {group}")
            need = "required" if f.required else f"conditional: {f.condition}"
            print(f"{f.id}: {f.title} [{need}]")
            for h in f.hosts:
                mark = "" if h.documented else "  (not named by Microsoft's docs)"
                ports = ", ".join(f"{p}:{n}" for p, n in h.protocols)
                print(f"    {h.pattern}{h.path}  {ports}{mark}")
        print()
    return EXIT_OK


def cmd_addon_path(args: argparse.Namespace) -> int:
    print(Path(__file__).resolve().parent / "mitm_script.py")
    return EXIT_OK


# -- parser -------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azml-egress",
        description="Egress allowlist proxy that enforces and simulates Azure Firewall rules for Azure Machine Learning.",
    )
    parser.add_argument("--version", action="version", version=f"azml-egress {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the proxy")
    add_config_argument(p)
    p.add_argument("--mode", choices=MODES, help="override the policy's mode")
    p.add_argument("--listen-host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--listen-port", type=_port, default=3128, help="port to listen on (default 3128)")
    p.add_argument("--decision-log", metavar="FILE", help="also append decision lines to FILE")
    p.add_argument("--metrics-host", default="127.0.0.1", type=_metrics_host, metavar="HOST",
                   help="address of the /metrics, /healthz, /readyz HTTP server (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=_port, default=9464, metavar="PORT",
                   help="port of the /metrics, /healthz, /readyz HTTP server (default 9464; 0 disables it)")
    p.add_argument("-s", "--script", dest="scripts", action="append", metavar="FILE",
                   help="load a mitmproxy addon script as well (repeatable)")
    p.add_argument("--proxyauth", metavar="SPEC",
                   help="require proxy authentication: USER:PASS or @HTPASSWD_FILE (mitmproxy's proxyauth)")
    p.add_argument("--allow-unauthenticated", action="store_true",
                   help="allow listening on a non-loopback address without proxy authentication")
    p.add_argument("--resolve", action="append", metavar="NAME=ADDRESS",
                   help="resolve NAME (or *.domain) to ADDRESS instead of asking DNS (repeatable)")
    p.add_argument("--set", dest="set_options", action="append", metavar="NAME=VALUE",
                   help="set a mitmproxy option (repeatable)")
    learn = p.add_argument_group("learn mode", "record every host the traffic needs (see 'azml-egress learn')")
    learn.add_argument("--learn-file", metavar="FILE",
                       help="learn file to write, .json or .yaml/.yml (default ./azml-egress-learn.json)")
    learn.add_argument("--learn-interval", type=_positive(float), metavar="SECONDS",
                       help="seconds between two writes of the learn file (default 10)")
    learn.add_argument("--learn-max-hosts", type=_positive(int), metavar="N",
                       help="distinct (host, port, protocol) entries kept; more are only counted (default 10000)")
    learn.add_argument("--learn-max-clients", type=_positive(int), metavar="N",
                       help="client addresses kept per entry (default 16)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="show the decision the proxy would take for HOST[:PORT]")
    p.add_argument("target", metavar="HOST[:PORT]")
    add_config_argument(p)
    p.add_argument("--protocol", choices=("https", "http"), default="https")
    p.add_argument("--mode", choices=MODES, help="override the policy's mode")
    p.add_argument("--source", default="127.0.0.1", metavar="IP", help="client address for source rules")
    p.add_argument("--method", default="CONNECT", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("validate", help="validate a policy file (exit 0 valid, 2 invalid)")
    add_config_argument(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("catalog", help="list Azure ML features and their hosts")
    p.add_argument("--catalog", default="azureml", help="catalog id or file (default azureml)")
    p.add_argument("--all", action="store_true", help="every built-in catalog")
    p.add_argument("--group", "-g", help="only features of this group")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("addon-path", help="print the path of the script for 'mitmdump -s'")
    p.set_defaults(func=cmd_addon_path)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the problem
        return int(e.code) if isinstance(e.code, int) else EXIT_ERROR
    if getattr(args, "method", None) is not None and args.command == "check":
        args.method = "CONNECT" if args.protocol == "https" else "GET"
    try:
        return int(args.func(args) or 0)
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        eprint(f"azml-egress: {printable(str(e), 300)}")
        return EXIT_ERROR
    except ConfigError as e:
        eprint_problems("azml-egress", e)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, no traceback
        eprint(f"azml-egress {args.command}: unexpected error: {type(e).__name__}: {printable(str(e), 300)}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
