"""A bounded load test on loopback: 1,000 concurrent tunnels and 20,000
decisions in all, mixed allowed/denied; afterwards every decision has exactly
one decision-log line. Counts can be lowered with AZML_LOAD_DECISIONS /
AZML_LOAD_TUNNELS for quick local runs."""

from __future__ import annotations

import asyncio
import collections
import os
import resource
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.tlshello import client_hello

TUNNELS = int(os.environ.get("AZML_LOAD_TUNNELS", "1000"))
DECISIONS = int(os.environ.get("AZML_LOAD_DECISIONS", "20000"))
CONCURRENCY = 50
DEADLINE_SECONDS = 600


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def echo_server():
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)




async def connect(port: int, host: str, target_port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CONNECT {host}:{target_port} HTTP/1.1\r\nHost: {host}:{target_port}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, int(head.split(b" ")[1])


async def run_load(proxy_port: int, echo_port: int) -> collections.Counter:
    outcomes: collections.Counter = collections.Counter()

    # phase 1: TUNNELS tunnels open at the same time, each relaying a payload
    async def open_tunnel(i):
        host = f"t{i}.load.example"
        reader, writer, status = await connect(proxy_port, host, echo_port)
        assert status == 200
        hello = client_hello(host)
        writer.write(hello)
        await writer.drain()
        assert await reader.readexactly(len(hello)) == hello  # relayed to the echo server and back
        return writer

    writers = await asyncio.gather(*(open_tunnel(i) for i in range(TUNNELS)))
    outcomes["tunnel"] += len(writers)
    for writer in writers:
        writer.close()

    # phase 2: the remaining decisions, allowed and denied mixed
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(i):
        async with semaphore:
            denied = i % 2 == 1
            host = f"d{i}.denied.example" if denied else f"a{i}.load.example"
            _, writer, status = await connect(proxy_port, host, echo_port)
            writer.close()
            outcomes[(denied, status)] += 1

    await asyncio.gather(*(one(i) for i in range(DECISIONS - TUNNELS)))
    return outcomes


def test_load_every_decision_logged_once(proxy_factory, tmp_path):
    raise_fd_limit(4 * TUNNELS + 256)

    async def main():
        server = await echo_server()
        echo_port = server.sockets[0].getsockname()[1]
        policy = tmp_path / "load.yaml"
        policy.write_text(
            "version: 1\nname: load\noptions: {private_ranges_allowed: [127.0.0.0/8]}\nrule_collections:\n"
            f"  - {{name: load, priority: 100, action: allow, rules: [{{name: r, target_fqdns: ['*.load.example'],"
            f" protocols: ['https:{echo_port}']}}]}}\n")
        proxy = proxy_factory(["--config", str(policy), "--resolve", "*.load.example=127.0.0.1",
                               "--set", "azml_log_stdout=false"], route=False, metrics=True)
        started = time.monotonic()
        outcomes = await asyncio.wait_for(run_load(proxy.port, echo_port), DEADLINE_SECONDS)
        elapsed = time.monotonic() - started
        server.close()
        return proxy, outcomes, elapsed

    proxy, outcomes, elapsed = asyncio.run(main())
    half = (DECISIONS - TUNNELS) // 2
    assert outcomes["tunnel"] == TUNNELS
    assert outcomes[(False, 200)] == DECISIONS - TUNNELS - half
    assert outcomes[(True, 403)] == half
    lines = proxy.decisions(DECISIONS, timeout=30)
    assert len(lines) == DECISIONS
    per_host = collections.Counter(line["host"] for line in lines)
    assert len(per_host) == DECISIONS and max(per_host.values()) == 1  # every host is asked once: one line each
    actions = collections.Counter((line["action"], line["reason"]) for line in lines)
    assert actions == {("allow", "rule_matched"): DECISIONS - half, ("deny", "no_rule_matched"): half}
    # the metrics agree with the log, decision for decision
    counted: collections.Counter = collections.Counter()
    for family in text_string_to_metric_families(proxy.scrape()):
        if family.name == "azml_egress_decisions":
            for sample in family.samples:
                if sample.name == "azml_egress_decisions_total" and sample.value:
                    counted[(sample.labels["action"], sample.labels["reason"])] += int(sample.value)
    assert counted == actions
    print(f"\nload: {DECISIONS} decisions ({TUNNELS} concurrent tunnels) in {elapsed:.1f} s "
          f"= {DECISIONS / elapsed:.0f}/s")
