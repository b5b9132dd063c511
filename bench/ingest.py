"""``gridswarm bench ingest``: how many signed agent messages one coordinator takes per second.

Starts Ganache, deploys a market, registers ``--agents`` participants (their own Ed25519 and
Ethereum keys, registered on chain) and starts ``gridswarm coordinator`` as its own process
(market loop off: ingest only). Then ``--procs`` load-generator processes (bench/ingest_client.py)
connect one WebSocket per agent, say ``hello``, sign every telemetry envelope ahead with the
agents' keys and offer them open-loop at each rate of ``--rates`` (messages/s, all processes
together) for ``--seconds`` each, whatever the replies. For each rate it reports messages sent
and acknowledged per second, acknowledgement latency (median, p99), ``busy`` replies (shed past
the coordinator's in-flight limit), errors and messages never answered, the coordinator's CPU
time per acknowledged message and its peak RSS, to ``bench/results/ingest.json``. The load
generators share the machine's cores with the coordinator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.info import machine, write_results
from bench.proc import cpu_s, rss_kb

DEFAULT_OUT = Path("bench/results/ingest.json")


def configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=int, default=200, help="simulated agents (one WebSocket each)")
    p.add_argument("--rates", default="1000,3000,6000", help="offered messages/s, one phase each")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    p.add_argument("--procs", type=int, default=2, help="load-generator processes")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)


GAP_S = 4.0  # between phases, so one phase's backlog does not count against the next


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (from /proc; empty once it is gone)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def _phases(args: argparse.Namespace, pid: int, procs: list[subprocess.Popen[str]], outs: list[str]) -> list[dict[str, Any]]:
    """Start every phase at once in all load generators; sample the coordinator meanwhile."""
    rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    t0 = time.time() + 1.0
    starts = [t0 + j * (args.seconds + GAP_S) for j in range(len(rates))]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"starts": starts}) + "\n")
        proc.stdin.flush()
    samples: list[dict[str, float]] = []
    end = starts[-1] + args.seconds + GAP_S
    while time.time() < end:
        kids = _children(pid)  # the coordinator's signature worker (coordinator/sigcheck.py)
        samples.append({
            "t": time.time(), "cpu": cpu_s(pid), "rss": rss_kb(pid),
            "worker_cpu": sum(cpu_s(k) for k in kids), "worker_rss": sum(rss_kb(k) for k in kids),
            "gen_cpu": sum(cpu_s(p.pid) for p in procs),
        })  # fmt: skip
        time.sleep(0.2)
    per_proc = []
    for proc, out in zip(procs, outs, strict=True):
        stdout, _ = proc.communicate(timeout=60)
        lines = [ln for ln in (out + stdout).splitlines() if ln.startswith("[")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"load generator failed (exit {proc.returncode})")
        per_proc.append(json.loads(lines[-1]))
    rows = []
    for j, rate in enumerate(rates):
        sts = [p[j] for p in per_proc]
        lat = sorted(x for st in sts for x in st["lat_us"])
        sent, acked = sum(st["sent"] for st in sts), sum(st["acked"] for st in sts)
        first = min(st["first_send"] for st in sts)
        last_send = max(st["last_send"] for st in sts)
        last_ack = max(st["last_ack"] for st in sts)
        window = [s for s in samples if starts[j] <= s["t"] <= starts[j] + args.seconds + GAP_S]
        def used(key: str, window: list[dict[str, float]] = window) -> float:
            return (window[-1][key] - window[0][key]) if len(window) > 1 else 0.0

        cpu, worker_cpu, gen_cpu = used("cpu"), used("worker_cpu"), used("gen_cpu")
        rows.append({
            "offered_per_s": rate,
            "sent": sent,
            "sent_per_s": round(sent / max(1e-9, last_send - first), 1),
            "acked": acked,
            "acked_per_s": round(acked / max(1e-9, last_ack - first), 1) if acked else 0.0,
            "latency_ms_median": round(statistics.median(lat) / 1000, 1) if lat else None,
            "latency_ms_p99": round(lat[int(0.99 * (len(lat) - 1))] / 1000, 1) if lat else None,
            "busy": sum(st["busy"] for st in sts),
            "errors": sum(st["errors"] for st in sts),
            "unanswered": sum(st["unanswered"] for st in sts),
            "error_kinds": sorted({k for st in sts for k in st["error_kinds"]}),
            "coordinator_cpu_s": round(cpu, 2),
            "coordinator_cpu_us_per_msg": round(1e6 * cpu / acked, 1) if acked else None,
            # per message answered at all (acks, busy and errors): what the coordinator's CPU went to
            "coordinator_cpu_us_per_reply": round(1e6 * cpu / replied, 1) if (replied := acked + sum(
                st["busy"] + st["errors"] for st in sts)) else None,
            "coordinator_peak_rss_mb": round(max((s["rss"] for s in window), default=0) / 1024, 1),
            # its signature worker process, and the coordinator's two processes together
            "worker_cpu_s": round(worker_cpu, 2),
            "worker_peak_rss_mb": round(max((s["worker_rss"] for s in window), default=0) / 1024, 1),
            "coordinator_and_worker_cpu_us_per_msg": round(1e6 * (cpu + worker_cpu) / acked, 1) if acked else None,
            # the load generators' CPU over the same window: what the machine's cores also ran
            "load_generators_cpu_s": round(gen_cpu, 2),
        })  # fmt: skip
    return rows


def run_bench(args: argparse.Namespace) -> int:
    from app.deploy import deploy_seeded_market
    from app.devnet import Ganache, free_port
    from bench.clearing_e2e import RawSender
    from gridswarm.chain import connect
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
            [sys.executable, "-m", "app.cli", "coordinator", "--config", str(work / "coordinator.yaml")],
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
            url = base.replace("http://", "ws://") + "/ws/agent"
            rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
            procs: list[subprocess.Popen[str]] = []
            outs: list[str] = []
            try:
                for p in range(args.procs):
                    task = {
                        "url": url,
                        "seed": args.seed,
                        "agents": list(range(p, args.agents, args.procs)),
                        "phases": [[r / args.procs, args.seconds] for r in rates],
                    }
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "bench.ingest_client", json.dumps(task)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    ))  # fmt: skip
                t_ready = time.perf_counter()
                for proc in procs:  # each signs its envelopes ahead, then says it is ready
                    assert proc.stdout is not None
                    line = proc.stdout.readline()
                    if line.strip() != "ready":
                        print(f"ingest bench: a load generator did not start ({line!r}); see {work}", file=sys.stderr)
                        return 2
                    outs.append("")
                presign_s = time.perf_counter() - t_ready
                rows = _phases(args, coord.pid, procs, outs)
            finally:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
        finally:
            coord.terminate()
            try:
                coord.wait(timeout=20)
            except subprocess.TimeoutExpired:
                coord.kill()
            log.close()
    result: dict[str, Any] = {
        "benchmark": "signed telemetry ingest over WebSocket, one coordinator process, open-loop offered rates",
        "command": " ".join([
            "gridswarm bench ingest", f"--agents {args.agents}", f"--rates {args.rates}",
            f"--seconds {args.seconds:g}", f"--procs {args.procs}",
        ]),
        "machine": machine(),
        "agents": args.agents,
        "load_generator_processes": args.procs,
        "phases": rows,
        "register_seconds": round(register_s, 1),
        "presign_and_connect_seconds": round(presign_s, 1),
        "notes": (
            "load generators (WebSocket clients; envelopes signed ahead) share the 2 cores with the "
            "coordinator and with other work on the machine (see load_average_1m_at_start); "
            "coordinator_cpu_us_per_msg is the coordinator process's CPU time per acknowledged message, "
            "coordinator_cpu_us_per_reply per message answered (ack, busy or error)"
        ),
    }
    write_results(args.out, result)
    print(json.dumps(result, indent=2))
    return 0 if all(r["errors"] == 0 and r["unanswered"] == 0 for r in rows) else 1
