"""``gridswarm bench load``: a thousand sites trading one interval on chain, Ganache and Anvil side by side.

For each chain (``--chains ganache,anvil``) the benchmark starts the node on a free port,
deploys the market and onboards ``--sites`` participants, each with its own Ethereum and
Ed25519 keys: funded, registered, tokens minted, the market approved and collateral deposited
(pipelined set-up, timed). It then starts ``gridswarm coordinator`` as its own process with
the market loop on, on a compressed clock, for one interval, waiting for every site's link
before it plans it.

The sites are not a thousand agent processes (2 cores cannot run them): ``--generators`` load
generator processes (``python -m bench.load worker``) each drive a share of the sites over the
real protocol. Each site opens its own WebSocket to the coordinator and says a signed
``hello``; when the coordinator's ``interval`` notice reaches it, it signs a ``postOrder``
transaction with its own key (sellers offer, buyers bid; seeded quantities and prices) and
sends it to the node; when its ``dispatch`` arrives it records how long after the coordinator
signed it; after the delivery ends it signs its meter reading (EIP-712, what it traded) and
sends it in a signed ``meter`` envelope, as an agent does. The coordinator clears, commits,
dispatches and settles as in production.

Reported per chain: set-up time, orders accepted on chain and orders/s, post latency
(median, p99), dispatch reach and latency (p99), gate closure to fills committed (the
coordinator's own figure), readings in to settled, failures of every kind, and the peak RSS of
node and coordinator. Writes ``bench/results/load.json``. The load generators share the two
cores with the node and the coordinator; timings are this machine's and no test asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import math
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.info import machine, write_results
from bench.proc import rss_kb

DEFAULT_OUT = Path("bench/results/load.json")
INTERVAL_S = 900.0
MAX_FEE = 100 * 10**9
PRIORITY_FEE = 10**9
POST_GAS = 300_000


# ---------------------------------------------------------------------- nodes


def start_node(kind: str, work: Path) -> Any:
    from app.devnet import Anvil, Ganache

    if kind == "ganache":
        return Ganache(log_path=work / "ganache.log").start()
    if kind == "anvil":
        return Anvil(log_path=work / "anvil.log").start()
    raise ValueError(f"unknown chain {kind!r} (ganache or anvil)")


# ---------------------------------------------------------------------- process helpers


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(math.ceil(q * len(v))) - 1)]


@contextmanager
def coordinator_process(cfg: dict[str, Any], work: Path, name: str = "coordinator") -> Iterator[subprocess.Popen[bytes]]:
    """``gridswarm coordinator`` with ``cfg`` as its own process; stopped (SIGTERM) on exit."""
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(work / f"{name}.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "coordinator", "--config", str(path)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the coordinator exited with {proc.returncode}")
        try:
            if httpx.get(base + "/healthz", timeout=3).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the coordinator did not answer /healthz")


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, params)]
    except sqlite3.OperationalError:
        return []


# ---------------------------------------------------------------------- load generator (worker)


def site_order(seed: int, i: int) -> tuple[str, int, int]:
    """Site ``i``'s order: even sites offer, odd ones bid; 100..3,000 Wh; prices around 250."""
    rng = random.Random(seed * 1_000_003 + i)
    side = "offer" if i % 2 == 0 else "bid"
    qty = rng.randint(100, 3_000)
    price = max(1, min(1_000, int(rng.gauss(240 if side == "offer" else 260, 60))))
    return side, qty, price


async def _worker_main(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    from eth_account import Account

    from gridswarm.chain import Deployment, sign_meter_reading
    from gridswarm.clock import ScaledClock
    from gridswarm.envelope import Signer
    from gridswarm.keys import derive_ed25519, derive_eth_account

    c = spec["clock"]
    clock = ScaledClock(c["sim_start"], c["speed"], c["wall_anchor"])

    def wall_of(sim_t: float) -> float:
        return c["wall_anchor"] + (sim_t - c["sim_start"]) / c["speed"]

    dep = Deployment.load(Path(spec["deployment"]))
    from web3 import Web3

    market = dep.market_contract(Web3())
    sides = {"bid": 0, "offer": 1}
    out: dict[str, Any] = {"sites": len(spec["sites"]), "connected": 0, "posted": [], "post_errors": [],
                           "dispatch_latency_s": [], "dispatch_at": [], "meter_acked": 0, "errors": [], "busy": 0,
                           "ended_without_dispatch": []}
    rpc = spec["rpc_url"]
    pending: dict[str, tuple[int, float]] = {}  # tx hash -> (site, sent at)
    done_posting = asyncio.Event()

    async def rpc_call(session: aiohttp.ClientSession, method: str, params: list[Any]) -> Any:
        for attempt in range(8):
            try:
                async with session.post(rpc, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                                        timeout=aiohttp.ClientTimeout(total=60)) as r:
                    data = await r.json()
                if "error" in data:
                    raise RuntimeError(str(data["error"])[:200])
                return data["result"]
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.2 * 2**attempt)
        raise RuntimeError(f"{method}: node unreachable")

    async def receipts(session: aiohttp.ClientSession) -> None:
        while True:
            for h in list(pending)[:200]:
                try:
                    r = await rpc_call(session, "eth_getTransactionReceipt", [h])
                except RuntimeError as exc:
                    out["post_errors"].append(str(exc))
                    pending.pop(h, None)
                    continue
                if r is not None:
                    i, t0 = pending.pop(h)
                    if int(r["status"], 16) == 1:
                        out["posted"].append([i, t0, time.time()])
                    else:
                        out["post_errors"].append(f"site {i}: postOrder reverted")
            if not pending and done_posting.is_set():
                return
            await asyncio.sleep(0.1)

    async def post(rpc_session: aiohttp.ClientSession, i: int, acct: Any, k: int, side: str, qty: int, price: int) -> None:
        try:
            nonce = int(await rpc_call(rpc_session, "eth_getTransactionCount", [acct.address, "pending"]), 16)
            data = market.encode_abi("postOrder", args=[k, sides[side], qty, price])
            tx = {"to": dep.market, "data": data, "nonce": nonce, "chainId": dep.chain_id, "gas": POST_GAS,
                  "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": PRIORITY_FEE, "value": 0, "type": 2}
            raw = Account.sign_transaction(tx, acct.key).raw_transaction
            t0 = time.time()
            h = await rpc_call(rpc_session, "eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
            pending[h] = (i, t0)
        except RuntimeError as exc:
            out["post_errors"].append(f"site {i}: {exc}")

    async def send_meter(ws: Any, signer: Any, acct: Any, side: str, body: dict[str, Any], state: dict[str, Any]) -> None:
        """After the delivery ends: the signed reading of what this site traded (it delivers in full)."""
        k, end = int(body["interval"]), float(body["end"])
        traded = sum(int(f["qty_wh"]) for f in body.get("fills", []))
        await clock.sleep_until(end + 1.0)
        exp, imp = (traded, 0) if side == "offer" else (0, traded)
        sig = sign_meter_reading(acct, dep.chain_id, dep.market, k, exp, imp)
        state["meter"] = signer.sign("meter", {"interval": k, "exported_wh": exp, "imported_wh": imp, "signature": sig})
        await ws.send_str(state["meter"].to_json())

    async def resend_meter(ws: Any, signer: Any, state: dict[str, Any]) -> None:
        await asyncio.sleep(1.0)
        state["meter"] = signer.sign("meter", state["meter"].body)
        await ws.send_str(state["meter"].to_json())

    async def site(session: aiohttp.ClientSession, rpc_session: aiohttp.ClientSession, i: int) -> None:
        acct = derive_eth_account(spec["seed"], "agent", i)
        ed = derive_ed25519(spec["seed"], "agent", i)
        counter = iter(range(1, 10**9))
        signer = Signer(ed, acct.address, clock, counter.__next__, ttl_s=3600.0)
        side, qty, price = site_order(spec["seed"], i)
        posted = False
        post_task: asyncio.Task[None] | None = None
        meter_task: asyncio.Task[None] | None = None
        state: dict[str, Any] = {}
        for attempt in range(30):
            try:
                ws = await session.ws_connect(spec["ws_url"], max_msg_size=1 << 20, heartbeat=None)
                break
            except aiohttp.ClientError:
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt) * (0.5 + random.random()))
        else:
            out["errors"].append(f"site {i}: could not connect")
            return
        async with ws:
            await ws.send_str(signer.sign("hello", {"address": acct.address, "site": f"load{i}"}).to_json())
            welcome = json.loads((await ws.receive(timeout=120)).data)
            if welcome.get("kind") != "welcome":
                out["errors"].append(f"site {i}: hello refused: {welcome.get('body')}")
                return
            out["connected"] += 1
            while True:
                msg = await ws.receive(timeout=spec["timeout_s"])
                if msg.type != aiohttp.WSMsgType.TEXT:
                    # the coordinator stopped: an error unless this site had nothing more to wait for
                    # (its order was not accepted: no dispatch, no reading)
                    out["ended_without_dispatch" if meter_task is None else "errors"].append(
                        f"site {i}: socket ended ({msg.type})")
                    return
                env = json.loads(msg.data)
                kind, body = env.get("kind"), env.get("body") or {}
                if kind == "interval" and not posted:  # a notice may come twice (broadcast, reconnect)
                    posted = True
                    # posting runs beside the socket (as in an agent): a node slow to answer must
                    # not stop this site reading its socket (and answering the server's pings)
                    post_task = asyncio.create_task(post(rpc_session, i, acct, int(body["interval"]), side, qty, price))
                elif kind == "dispatch" and meter_task is None:
                    now = time.time()
                    out["dispatch_latency_s"].append(now - wall_of(float(env["issued_at"])))
                    out["dispatch_at"].append(now)
                    meter_task = asyncio.create_task(send_meter(ws, signer, acct, side, body, state))
                elif kind == "error" and body.get("reason") == "busy" and state.get("meter") is not None:
                    out["busy"] += 1  # shed: sent again after the Retry-After, as an agent's outbox does
                    meter_task = asyncio.create_task(resend_meter(ws, signer, state))
                elif kind == "error":
                    out["errors"].append(f"site {i}: {body.get('reason')}")
                elif kind in ("ack", "acks") and state.get("meter") is not None and state["meter"].seq in (
                    [b.get("seq") for b in body.get("acks") or []] if kind == "acks" else [body.get("seq")]
                ):
                    out["meter_acked"] += 1
                    if post_task is not None:
                        await post_task
                    return

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, aiohttp.ClientSession() as rpc_session:
        poller = asyncio.create_task(receipts(rpc_session))
        results = await asyncio.gather(*(site(session, rpc_session, i) for i in spec["sites"]), return_exceptions=True)
        done_posting.set()
        await asyncio.wait_for(poller, timeout=120)
    for r in results:
        if isinstance(r, BaseException):
            out["errors"].append(f"{r.__class__.__name__}: {r}"[:200])
    return out


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = asyncio.run(_worker_main(spec))
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------- one chain


def _patient_sender() -> type:
    from bench.clearing_e2e import RawSender

    class PatientSender(RawSender):
        """Anvil accepts transactions faster than it mines them one per block: a backlog of
        thousands takes minutes to mine, so the wait for the last receipt is long."""

        def check(self, timeout_s: float = 1_800.0) -> list[Any]:
            return super().check(timeout_s)

    return PatientSender


def run_chain(kind: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    from bench.clearing_e2e import new_participants, onboard

    PatientSender = _patient_sender()  # noqa: N806 - a class
    from app.deploy import deploy_seeded_market
    from app.devnet import free_port
    from gridswarm.chain import connect
    from gridswarm.keys import write_ed25519, write_eth_key

    work = Path(tempfile.mkdtemp(prefix=f"gridswarm-load-{kind}-"))
    node = start_node(kind, work)
    gens: list[subprocess.Popen[bytes]] = []
    try:
        w3 = connect(node.url, timeout_s=300)
        client = str(w3.client_version)
        t0 = time.perf_counter()
        admin, operator, key, dep = deploy_seeded_market(
            w3, args.seed, eth_each=1_000 * 10**18, clear_timeout_s=3_600, settle_timeout_s=3_600
        )
        people = new_participants(args.seed, 0, args.sites)
        raw = PatientSender(w3)
        onboard(w3, dep, admin, people, raw)
        raw.close()
        setup_s = time.perf_counter() - t0
        log(f"{kind}: deployed and onboarded {args.sites} sites in {setup_s:.1f} s")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        db = work / "coordinator.sqlite"
        speed = args.speed
        # the clock's next interval boundary is a little after every site should be connected
        boundary = (int(1_782_054_000 // INTERVAL_S) + 1) * INTERVAL_S
        clock = {"kind": "scaled", "sim_start": boundary, "speed": speed, "wall_anchor": time.time() + args.connect_s}
        cfg = {
            "rpc_url": node.url,
            "deployment": str(dep.save(work / "deployment.json")),
            "operator_key_file": str(write_eth_key(work / "operator.key", operator)),
            "ed25519_key_file": str(write_ed25519(work / "coordinator.ed25519", key)),
            "db_path": str(db),
            "port": port,
            "message_ttl_s": 3600.0,
            "index_poll_s": 0.5,
            "clock": clock,
            "market": {
                "interval_s": INTERVAL_S,
                "gate_lead_s": args.gate_lead_s,
                "meter_wait_s": 600.0,
                "intervals": 1,
                "expected_agents": args.sites,
                "agent_wait_s": 600.0,
            },
        }
        with coordinator_process(cfg, work) as coord:
            wait_healthy(base, coord)
            shares = [list(range(g, args.sites, args.generators)) for g in range(args.generators)]
            for g, share in enumerate(shares):
                spec = {
                    "ws_url": base.replace("http://", "ws://") + "/ws/agent",
                    "rpc_url": node.url,
                    "deployment": str(work / "deployment.json"),
                    "seed": args.seed,
                    "sites": share,
                    "clock": clock,
                    "timeout_s": 600.0,
                    "out": str(work / f"gen{g}.json"),
                }
                (work / f"gen{g}.spec.json").write_text(json.dumps(spec))
                glog = open(work / f"gen{g}.log", "wb")  # noqa: SIM115 - the child owns it
                gens.append(subprocess.Popen([sys.executable, "-m", "bench.load", "worker", str(work / f"gen{g}.spec.json")],
                                             stdout=glog, stderr=subprocess.STDOUT, start_new_session=True))
            peak = {"node": 0, "coordinator": 0}
            deadline = time.monotonic() + args.timeout_s
            stage = None
            while time.monotonic() < deadline:
                peak["node"] = max(peak["node"], rss_kb(node.proc.pid))
                peak["coordinator"] = max(peak["coordinator"], rss_kb(coord.pid))
                rows = query(db, "select stage from lifecycle")
                stage = rows[0]["stage"] if rows else None
                if stage in ("settled", "lapsed", "skipped") and all(g.poll() is not None for g in gens):
                    break
                if coord.poll() is not None:
                    raise RuntimeError(f"the coordinator exited with {coord.returncode}; see {work}")
                time.sleep(0.5)
            lifecycle = query(db, "select * from lifecycle")
        coord_log = (work / "coordinator.log").read_text(errors="replace")
        gen_out = [json.loads(Path(work / f"gen{g}.json").read_text()) for g in range(len(gens))
                   if (work / f"gen{g}.json").exists()]
        return summarise(kind, client, args, setup_s, lifecycle, coord_log, gen_out, peak, clock, work, dep, w3)
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
                g.wait()
        node.stop()


def _log_time(line: str) -> float:
    stamp = line[:23]
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC).timestamp()


def summarise(kind: str, client: str, args: argparse.Namespace, setup_s: float, lifecycle: list[dict[str, Any]],
              coord_log: str, gens: list[dict[str, Any]], peak: dict[str, int], clock: dict[str, Any], work: Path,
              dep: Any, w3: Any) -> dict[str, Any]:
    posted = [p for g in gens for p in g["posted"]]
    post_errors = [e for g in gens for e in g["post_errors"]]
    errors = [e for g in gens for e in g["errors"]]
    lat = [p[2] - p[1] for p in posted]
    dlat = [x for g in gens for x in g["dispatch_latency_s"]]
    dat = [x for g in gens for x in g["dispatch_at"]]
    row = lifecycle[0] if lifecycle else {}
    k = row.get("interval")
    cleared = re.search(r"^(.{23}) INFO coordinator\.market\.loop: interval \d+ cleared: (\d+) orders, price (\S+), "
                        r"volume (\d+) Wh, (\d+) commit tx\(s\), ([\d.]+) s", coord_log, re.M)
    settled = re.search(r"^(.{23}) INFO coordinator\.market\.loop: interval \d+ settled", coord_log, re.M)
    wall = lambda t: clock["wall_anchor"] + (t - clock["sim_start"]) / clock["speed"]  # noqa: E731
    readings_in = None
    if row:
        readings_in = wall(float(row["delivery_end"]))
    status = None
    if k is not None:
        status = int(dep.market_contract(w3).functions.intervalOf(int(k)).call()[0])
    first_sent = min((p[1] for p in posted), default=None)
    last_mined = max((p[2] for p in posted), default=None)
    span = (last_mined - first_sent) if posted else None
    return {
        "chain": kind,
        "client": client,
        "sites": args.sites,
        "setup_seconds": round(setup_s, 1),
        "setup_tx": args.sites * 5,
        "setup_tx_per_s": round(args.sites * 5 / setup_s, 1) if setup_s else None,
        "connected": sum(g["connected"] for g in gens),
        "orders_accepted": len(posted),
        "orders_failed": len(post_errors),
        "orders_per_s": round(len(posted) / span, 1) if span else None,
        "post_seconds_first_to_last": round(span, 2) if span else None,
        "post_latency_s_median": round(statistics.median(lat), 3) if lat else None,
        "post_latency_s_p99": round(pct(lat, 0.99) or 0, 3) if lat else None,
        "dispatch_received": len(dlat),
        "sites_ended_without_dispatch": sum(len(g.get("ended_without_dispatch", [])) for g in gens),
        "dispatch_latency_s_median": round(statistics.median(dlat), 3) if dlat else None,
        "dispatch_latency_s_p99": round(pct(dlat, 0.99) or 0, 3) if dlat else None,
        "dispatch_spread_s": round(max(dat) - min(dat), 3) if dat else None,
        "clearing": {
            "orders": int(cleared.group(2)) if cleared else None,
            "price": cleared.group(3) if cleared else None,
            "volume_wh": int(cleared.group(4)) if cleared else None,
            "commit_txs": int(cleared.group(5)) if cleared else None,
            "seconds_gate_to_committed": float(cleared.group(6)) if cleared else None,
        },
        "seconds_delivery_end_to_settled": round(_log_time(settled.group(1)) - readings_in, 2)
        if settled and readings_in else None,
        "readings_acked": sum(g["meter_acked"] for g in gens),
        "busy_replies": sum(g["busy"] for g in gens),
        "stage": row.get("stage"),
        "chain_status": status,
        "settled_on_chain": status == 4,
        "errors": len(errors),
        "error_kinds": sorted({re.sub(r"site \d+: ", "", e) for e in errors + post_errors})[:10],
        "peak_rss_mb": {name: round(v / 1024, 1) for name, v in peak.items()},
        "work_dir": str(work),
    }


# ---------------------------------------------------------------------- the CLI


def configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sites", type=int, default=1_000, help="sites, each with its own keys (default %(default)s)")
    p.add_argument("--chains", default="ganache,anvil", help="nodes to compare, comma separated (%(default)s)")
    p.add_argument("--generators", type=int, default=4, help="load generator processes (default %(default)s)")
    p.add_argument("--speed", type=float, default=20.0, help="clock speed: simulated seconds per second (%(default)s)")
    p.add_argument("--gate-lead-s", type=float, default=300.0, help="gate closure before delivery (%(default)s s)")
    p.add_argument("--connect-s", type=float, default=60.0,
                   help="wall seconds the sites have to connect before the first boundary (%(default)s)")
    p.add_argument("--timeout-s", type=float, default=900.0, help="wall seconds per chain at most (%(default)s)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)


def run_bench(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per sample otherwise
    chains = [c.strip() for c in str(args.chains).split(",") if c.strip()]
    if args.sites < 2 or args.generators < 1 or not chains:
        print("bench load: error: --sites >= 2, --generators >= 1 and at least one chain", file=sys.stderr)
        return 2

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    info = machine()
    rows = []
    for kind in chains:
        try:
            rows.append(run_chain(kind, args, log))
        except Exception as exc:  # noqa: BLE001 - one chain failing is a figure too
            rows.append({"chain": kind, "failed": f"{exc.__class__.__name__}: {exc}"})
        log(json.dumps(rows[-1], indent=1))
    result = {
        "benchmark": "1,000 sites trading one interval on chain through the coordinator, per chain",
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "command": "gridswarm bench load " + " ".join(
            [f"--sites {args.sites}", f"--chains {args.chains}", f"--generators {args.generators}",
             f"--speed {args.speed}", f"--gate-lead-s {args.gate_lead_s}"]),
        "machine": {**info, "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "setup": {
            "sites": "own Ethereum and Ed25519 keys each; funded, registered, minted, approved, deposited (5 tx "
                     "per site, signed locally and pipelined from one process, one transaction per block)",
            "load_generators": f"{args.generators} processes, each holding one WebSocket per site of its share; a "
                               "site posts its order when the coordinator's notice reaches it (signed locally with "
                               "its key, eth_sendRawTransaction), records its dispatch, signs and sends its meter "
                               "reading after delivery",
            "clock": f"scaled, {args.speed}x; interval 900 s, gate {args.gate_lead_s} s before delivery",
            "seconds_gate_to_committed": "the coordinator's own figure: closing read, index, clear, commit",
            "seconds_delivery_end_to_settled": "delivery end (clock) to the coordinator's 'settled' log line: "
                                               "readings arriving, checked, and the settle transactions",
        },
        "results": rows,
    }
    write_results(args.out, result)
    ok = all(r.get("settled_on_chain") and r.get("orders_failed") == 0 and r.get("errors") == 0 for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(worker(sys.argv[2]))
    print("usage: gridswarm bench load [...] (python -m bench.load worker SPEC is the load generator)", file=sys.stderr)
    sys.exit(2)
