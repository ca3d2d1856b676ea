#!/usr/bin/env python3
"""Run every azml-egress benchmark and print the table (see benchmarks/README.md).

    python3 benchmarks/run.py                 # full run, about 4 minutes on 2 cores
    python3 benchmarks/run.py --quick         # a few seconds: proves the scripts work
    python3 benchmarks/run.py --json out.json # also write every per-repetition value

Loopback only (127.0.0.1); every load is bounded in count. Squid is measured
when ``squid`` is installed (``--install-squid`` installs Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import inprocess  # noqa: E402
import loopback  # noqa: E402
import report  # noqa: E402

DEFAULT_TARGETS = ["direct", "mitmdump", "mitmdump-deny", "azml-egress", "azml-egress-mitmdump", "azml-egress-x2",
                   "core-floor", "squid"]


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


def machine() -> dict[str, object]:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import mitmproxy.version

    from proxy_addon import __version__
    return {
        "cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
        "mitmproxy": mitmproxy.version.VERSION, "azml-egress": __version__,
        "squid": _version(["squid", "-v"]) if shutil.which("squid") else "not installed",
        "load_before": os.getloadavg(),
    }


def install_squid() -> None:
    if shutil.which("squid"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "squid"]):
        subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, one repetition (a smoke run)")
    parser.add_argument("--reps", type=int, help="repetitions of the loopback set (default 5)")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="start no loopback repetition that would end later than this (default 420)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"comma-separated targets (default {','.join(DEFAULT_TARGETS)})")
    parser.add_argument("--only", choices=("inprocess", "loopback"), help="run one part only")
    parser.add_argument("--install-squid", action="store_true", help="apt-get install squid first if missing")
    parser.add_argument("--json", metavar="FILE", help="write all values and the machine description to FILE")
    args = parser.parse_args(argv)

    if args.install_squid:
        install_squid()
    names = [n for n in args.targets.split(",") if n]
    if "squid" in names and not shutil.which("squid"):
        print("squid is not installed: measuring without it (--install-squid installs it)", file=sys.stderr)
        names.remove("squid")
    info = machine()
    started = time.monotonic()
    data: dict[str, object] = {"machine": info}

    if args.only in (None, "inprocess"):
        sizes = (100, 1000) if args.quick else (100, 10_000, 100_000)
        print(f"in-process: policies of {', '.join(map(str, sizes))} rules", file=sys.stderr)
        data["inprocess"] = [asdict(r) for r in inprocess.run(sizes, 0.2 if args.quick else 1.0)]

    if args.only in (None, "loopback"):
        scale = loopback.QUICK if args.quick else loopback.Scale()
        if args.reps:
            scale.reps = args.reps
        if args.budget:
            scale.budget_s = args.budget
        print(f"loopback: {', '.join(names)}; {scale}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="azml-egress-bench-") as tmp:
            bench = loopback.Bench(names, scale, Path(tmp), log=lambda m: print(m, file=sys.stderr))
            results = asyncio.run(bench.run())
        data["loopback"] = {"scale": asdict(scale), "values": results.values, "failures": results.failures,
                            "notes": results.notes}

    info["load_after"] = os.getloadavg()
    info["seconds"] = round(time.monotonic() - started, 1)
    print(report.render(data))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
