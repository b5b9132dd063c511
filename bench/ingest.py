"""``gridswarm bench ingest``: how many signed agent messages one coordinator takes per second.

Starts Ganache, deploys a market, registers ``--agents`` participants (their own Ed25519 and
Ethereum keys, registered on chain), starts ``gridswarm coordinator`` as its own process (market
loop off: ingest only) and connects one WebSocket per simulated agent. Each agent says ``hello``
and then sends signed ``telemetry`` envelopes, keeping ``--window`` unacknowledged at a time,
until ``--messages`` each have been acknowledged. Messages the coordinator sheds when over its in-flight
limit (``busy``) are sent again after a second, as an agent's outbox would. Reports acknowledged
messages per second, acknowledgement latency (median, p99), busy replies, rejections and the
coordinator's peak RSS, to
``bench/results/ingest.json``. The load generator runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from bench.info import machine, write_results
from gridswarm.clock import WallClock
from gridswarm.envelope import Signer

DEFAULT_OUT = Path("bench/results/ingest.json")


def configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=int, default=100, help="simulated agents (one WebSocket each)")
    p.add_argument("--messages", type=int, default=100, help="telemetry messages per agent")
    p.add_argument("--window", type=int, default=8, help="unacknowledged messages each agent keeps in flight")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _agent(
    url: str, signer: Signer, address: str, n: int, window: int, lat: list[float], errs: list[str], shed: list[int]
) -> int:
    acked = 0
    sent_at: dict[int, float] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=1 << 20) as ws:
        await ws.send_str(signer.sign("hello", {"address": address, "site": "bench"}).to_json())
        welcome = json.loads((await ws.receive(timeout=30)).data)
        if welcome.get("kind") != "welcome":
            errs.append(str(welcome.get("body")))
            return 0
        next_id = 1

        async def send_one() -> None:
            nonlocal next_id
            body = {"ts": time.time(), "net_export_w": 100.0, "soc": 0.5, "devices": {}, "record_id": next_id}
            env = signer.sign("telemetry", body)
            sent_at[env.seq] = time.perf_counter()
            next_id += 1
            await ws.send_str(env.to_json())

        for _ in range(min(window, n)):
            await send_one()
        while acked < n:
            msg = await ws.receive(timeout=60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                errs.append(f"socket ended: {msg.type}")
                break
            env = json.loads(msg.data)
            if env.get("kind") == "error" and env["body"].get("reason") == "busy":
                # shed by the coordinator: an agent's outbox sends it again later; so do we
                sent_at.pop(env["body"].get("seq"), None)
                shed.append(1)
                await asyncio.sleep(1.0)  # the HTTP reply's Retry-After
                next_id -= 1
                await send_one()
                continue
            if env.get("kind") == "error":
                errs.append(str(env["body"].get("reason")))
                seq = env["body"].get("seq")
            elif env.get("kind") == "ack":
                seq = env["body"].get("seq")
            else:
                continue  # e.g. an `arm`
            t0 = sent_at.pop(seq, None)
            if t0 is not None:
                lat.append(time.perf_counter() - t0)
                acked += 1
                if next_id <= n:
                    await send_one()
    return acked


def run_bench(args: argparse.Namespace) -> int:
    from bench.clearing_e2e import RawSender
    from gridswarm.chain import connect
    from gridswarm.deploy import deploy_seeded_market
    from gridswarm.devnet import Ganache, free_port
    from gridswarm.keys import derive_ed25519, derive_eth_account, write_ed25519, write_eth_key

    work = Path(tempfile.mkdtemp(prefix="gridswarm-ingest-"))
    with Ganache(log_path=work / "ganache.log") as node:
        w3 = connect(node.url, timeout_s=300)
        admin, operator, key, dep = deploy_seeded_market(w3, args.seed)
        market = dep.market_contract(w3)
        people = [(derive_eth_account(args.seed, "agent", i), derive_ed25519(args.seed, "agent", i)) for i in range(args.agents)]
        raw = RawSender(w3)
        t0 = time.perf_counter()
        for acct, ed in people:
            raw.send(admin, market.functions.registerParticipant(acct.address, bytes(ed.verify_key), 0))
        raw.check()
        register_s = time.perf_counter() - t0
        port = free_port()
        cfg = {
            "rpc_url": node.url,
            "deployment": str(dep.save(work / "deployment.json")),
            "operator_key_file": str(write_eth_key(work / "operator.key", operator)),
            "ed25519_key_file": str(write_ed25519(work / "coordinator.ed25519", key)),
            "db_path": str(work / "coordinator.sqlite"),
            "port": port,
            "run_market": False,
        }
        (work / "coordinator.yaml").write_text(yaml.safe_dump(cfg))
        base = f"http://127.0.0.1:{port}"
        log = open(work / "coordinator.log", "wb")  # noqa: SIM115 - closed below
        coord = subprocess.Popen(
            [sys.executable, "-m", "gridswarm.cli", "coordinator", "--config", str(work / "coordinator.yaml")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    h = httpx.get(base + "/healthz", timeout=2)
                    if h.status_code == 200 and h.json()["indexed_block"] >= int(w3.eth.block_number):
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if coord.poll() is not None or time.monotonic() > deadline:
                    print(f"ingest bench: the coordinator did not start; see {work}", file=sys.stderr)
                    return 2
                time.sleep(0.2)
            lat: list[float] = []
            errs: list[str] = []
            shed: list[int] = []
            peak = {"rss": _rss_kb(coord.pid)}

            async def main() -> tuple[int, float]:
                clock = WallClock()
                url = base.replace("http://", "ws://") + "/ws/agent"
                signers = []
                for acct, ed in people:
                    counter = iter(range(1, 10**9))
                    signers.append((Signer(ed, acct.address, clock, counter.__next__, ttl_s=600), acct.address))

                async def sample() -> None:
                    while True:
                        peak["rss"] = max(peak["rss"], _rss_kb(coord.pid))
                        await asyncio.sleep(0.2)

                sampler = asyncio.create_task(sample())
                t0 = time.perf_counter()
                done = await asyncio.gather(
                    *(_agent(url, s, a, args.messages, args.window, lat, errs, shed) for s, a in signers),
                    return_exceptions=True,
                )
                elapsed = time.perf_counter() - t0
                sampler.cancel()
                for d in done:
                    if isinstance(d, BaseException):
                        errs.append(f"{d.__class__.__name__}: {d}")
                return sum(d for d in done if isinstance(d, int)), elapsed

            acked, elapsed = asyncio.run(main())
        finally:
            coord.terminate()
            try:
                coord.wait(timeout=20)
            except subprocess.TimeoutExpired:
                coord.kill()
            log.close()
    lat.sort()
    offered = args.agents * args.messages
    result: dict[str, Any] = {
        "benchmark": "signed telemetry ingest over WebSocket, one coordinator process",
        "command": " ".join(["gridswarm bench ingest", f"--agents {args.agents}", f"--messages {args.messages}", f"--window {args.window}"]),
        "machine": machine(),
        "agents": args.agents,
        "messages_offered": offered,
        "messages_acked": acked,
        "errors": len(errs),
        "shed_busy_replies": len(shed),
        "error_kinds": sorted(set(errs))[:10],
        "seconds": round(elapsed, 2),
        "acked_per_s": round(acked / elapsed, 1) if elapsed else None,
        "latency_ms_median": round(1000 * statistics.median(lat), 1) if lat else None,
        "latency_ms_p99": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
        "coordinator_peak_rss_mb": round(peak["rss"] / 1024, 1),
        "register_seconds": round(register_s, 1),
        "notes": "load generator (signing, WebSocket clients) shares the 2 cores with the coordinator",
    }
    write_results(args.out, result)
    print(json.dumps(result, indent=2))
    return 0 if acked == offered else 1
