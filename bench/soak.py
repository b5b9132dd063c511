"""``gridswarm bench soak``: days of running compressed into minutes, with faults injected at random.

Starts the real system: Ganache on a free port (its chain kept on disk), a market deployed and
``--agents`` sites registered, ``gridswarm coordinator`` and one ``gridswarm agent`` process per
site (the demo's sellers and buyers). Every process reads one scaled clock (``--speed``
simulated seconds per wall second; 15-minute intervals) so a simulated day passes in
``86,400 / speed`` wall seconds, and the rules that count in simulated time (outbox expiry,
deadlines on the coordinator's side, telemetry every 5 minutes) run as they would over days.

Faults (``--fault-every-s``, seeded): at exponentially distributed wall times the coordinator
or a random agent is killed with SIGKILL and started again a second later on the same store.

Every ``--sample-s`` wall seconds it samples each process's RSS and open descriptors, the size
of every SQLite file (with its WAL), each agent's outbox pending count by kind, the
coordinator's row counts per table, its in-flight messages (``/metrics``), and intervals by
stage. After ``--minutes`` the faults stop, the intervals in flight get ``--drain-s`` to finish,
and the processes are stopped. The report (``bench/results/soak.json``) gives, per series,
the growth per simulated day (least squares over the samples of each process's last life),
and what must be zero: orphaned intervals (not final past their deadlines), orders or fills
doubled on chain, intervals settled without a trader's reading, locks left in final intervals,
and value not conserved.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from bench.info import machine, write_results
from bench.load import query
from bench.proc import open_fds, rss_kb

DEFAULT_OUT = Path("bench/results/soak.json")
INTERVAL_S = 900.0
GATE_LEAD_S = 450.0
METER_WAIT_S = 300.0
DAY = 86_400.0
FINAL = ("settled", "lapsed", "skipped")
ACTIVE = ("pending", "open", "closed", "cleared")
OUTBOX_STATES = {0: "pending", 1: "acked", 2: "rejected", 3: "expired"}


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: Counter[str] = Counter()
        self.faults: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ set-up

    def build(self) -> None:
        from agent.devices.spec import device_mappings
        from app.demo import site_devices
        from app.deploy import TOKEN_UNIT, ParticipantSpec, deploy_seeded_market, register_participants
        from app.devnet import Ganache, free_port
        from gridswarm.chain import connect
        from gridswarm.keys import derive_ed25519, derive_eth_account, write_ed25519, write_eth_key

        a, work = self.args, self.work
        self.node = Ganache(log_path=work / "ganache.log", db_path=work / "chain").start()
        w3 = connect(self.node.url, timeout_s=120)
        # short contract deadlines: an interval a fault cost its clearing lapses within the run
        admin, operator, key, dep = deploy_seeded_market(
            w3, a.seed, clear_timeout_s=a.clear_timeout_s, settle_timeout_s=a.settle_timeout_s
        )
        specs = [
            ParticipantSpec(derive_eth_account(a.seed, "agent", i), derive_ed25519(a.seed, "agent", i),
                            tokens=1_000_000 * TOKEN_UNIT, deposit=100_000 * TOKEN_UNIT)
            for i in range(a.agents)
        ]  # fmt: skip
        register_participants(w3, dep, admin, specs)
        self.w3, self.dep, self.admin, self.specs = w3, dep, admin, specs
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.clock = {"kind": "scaled", "sim_start": 1_782_054_000.0, "speed": a.speed, "wall_anchor": time.time()}
        dep_path = str(dep.save(work / "deployment.json"))
        self.db = work / "coordinator.sqlite"
        self.cfg_path: dict[str, Path] = {"coordinator": work / "coordinator.yaml"}
        self.cfg_path["coordinator"].write_text(yaml.safe_dump({
            "rpc_url": self.node.url,
            "deployment": dep_path,
            "operator_key_file": str(write_eth_key(work / "operator.key", operator)),
            "ed25519_key_file": str(write_ed25519(work / "coordinator.ed25519", key)),
            "db_path": str(self.db),
            "port": self.port,
            "message_ttl_s": 600.0,
            "index_poll_s": 0.5,
            "clock": self.clock,
            "market": {"interval_s": INTERVAL_S, "gate_lead_s": GATE_LEAD_S, "meter_wait_s": METER_WAIT_S,
                       "expected_agents": a.agents, "agent_wait_s": 60.0},
        }))  # fmt: skip
        self.roles = ["seller" if i % 2 == 0 else "buyer" for i in range(a.agents)]
        for i, (spec, role) in enumerate(zip(specs, self.roles, strict=True)):
            path = work / f"site{i}.yaml"
            path.write_text(yaml.safe_dump({
                "site": f"site{i}-{role}",
                "eth_key_file": str(write_eth_key(work / f"a{i}.key", spec.account)),
                "ed25519_key_file": str(write_ed25519(work / f"a{i}.ed25519", spec.ed25519)),
                "coordinator_url": self.base,
                "rpc_url": self.node.url,
                "deployment": dep_path,
                "store_path": str(work / f"agent{i}.sqlite"),
                "seed": a.seed * 100 + i,
                "tick_s": 30.0,
                "telemetry_every_s": 300.0,
                "reserve_soc": 0.3,
                "message_ttl_s": 600.0,
                "reconnect_s": 0.5,
                "clock": self.clock,
                "trading": {"role": role},
                "devices": device_mappings(site_devices(role, i)),
            }))  # fmt: skip
            self.cfg_path[f"agent{i}"] = path

    def sim_now(self) -> float:
        c = self.clock
        return c["sim_start"] + (time.time() - c["wall_anchor"]) * c["speed"]

    def start(self, name: str) -> None:
        self.starts[name] += 1
        kind = "coordinator" if name == "coordinator" else "agent"
        log = open(self.work / f"{name}.{self.starts[name]}.log", "wb")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "app.cli", kind, "--config", str(self.cfg_path[name])],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
        return proc.returncode

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every agent, then the coordinator; their exit codes (the node stays up)."""
        codes = {}
        for name in [n for n in self.procs if n != "coordinator"] + ["coordinator"]:
            if name in self.procs:
                codes[name] = self.kill(name, signal.SIGTERM)
        return codes

    # ------------------------------------------------------------------ sampling

    def sample(self) -> dict[str, Any]:
        s: dict[str, Any] = {"wall": time.time(), "sim": self.sim_now(), "procs": {}, "files": {}, "outbox": {},
                             "tables": {}, "stages": {}}  # fmt: skip
        procs = {"ganache": self.node.proc.pid if self.node.proc else 0}
        procs.update({n: p.pid for n, p in self.procs.items() if p.poll() is None})
        for name, pid in procs.items():
            s["procs"][name] = {"pid": pid, "rss_kb": rss_kb(pid), "fds": open_fds(pid)}
        for f in self.work.glob("*.sqlite"):
            wal = f.with_name(f.name + "-wal")
            s["files"][f.stem] = f.stat().st_size
            s["files"][f.stem + "-wal"] = wal.stat().st_size if wal.exists() else 0
        chain_dir = self.work / "chain"
        s["files"]["ganache-chain"] = sum(p.stat().st_size for p in chain_dir.rglob("*") if p.is_file())
        for i in range(self.args.agents):
            rows = query(self.work / f"agent{i}.sqlite", "select kind, acked, count(*) as n from outbox group by kind, acked")
            s["outbox"][f"agent{i}"] = {f"{r['kind']}:{OUTBOX_STATES.get(r['acked'], r['acked'])}": r["n"] for r in rows}
        for t in ("telemetry", "acks", "readings", "orders", "fills", "settlements", "event_log", "rejections",
                  "dispatch", "lifecycle", "envelope_seq"):
            r = query(self.db, f"select count(*) as n from {t}")  # noqa: S608 - fixed names
            if r:
                s["tables"][t] = r[0]["n"]
        s["stages"] = {r["stage"]: r["n"] for r in query(self.db, "select stage, count(*) as n from lifecycle group by stage")}
        try:
            text = httpx.get(self.base + "/metrics", timeout=3).text
            m = re.search(r"^gridswarm_hub_inflight (\S+)", text, re.M)
            s["hub_inflight"] = float(m.group(1)) if m else None
            h = httpx.get(self.base + "/healthz", timeout=3)
            s["healthz"] = h.status_code
        except httpx.HTTPError:
            s["healthz"] = None
        return s

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        a = self.args
        rng = random.Random(a.seed)
        names = ["coordinator"] + [f"agent{i}" for i in range(a.agents)]
        for n in names:
            self.start(n)
        t_end = time.time() + a.minutes * 60
        next_fault = time.time() + (rng.expovariate(1 / a.fault_every_s) if a.fault_every_s > 0 else 1e18)
        next_sample = time.time()
        while time.time() < t_end:
            now = time.time()
            if now >= next_sample:
                self.samples.append(self.sample())
                next_sample = now + a.sample_s
            if now >= next_fault:
                victim = "coordinator" if rng.random() < 0.4 else rng.choice(names[1:])
                stages = {r["interval"]: r["stage"] for r in query(self.db, "select interval, stage from lifecycle "
                                                                             "where stage in ('pending','open','closed','cleared')")}
                self.kill(victim)
                self.faults.append({"wall": now, "sim": self.sim_now(), "victim": victim, "signal": "SIGKILL",
                                    "intervals_in_flight": stages})  # fmt: skip
                time.sleep(1.0)
                self.start(victim)
                next_fault = now + rng.expovariate(1 / a.fault_every_s)
            for n, p in self.procs.items():  # a process that died by itself is a finding: restart, count
                if p.poll() is not None:
                    self.faults.append({"wall": now, "sim": self.sim_now(), "victim": n, "signal": None,
                                        "exited_by_itself": p.returncode})  # fmt: skip
                    self.start(n)
            time.sleep(0.2)
        # drain: no new faults; the intervals in flight get time to finish
        self.t_faults_end = time.time()
        drain_end = time.time() + a.drain_s
        while time.time() < drain_end:
            self.samples.append(self.sample())
            active = query(self.db, "select interval, delivery_end from lifecycle where stage in "
                                    "('pending','open','closed','cleared')")
            # done once no interval is past its delivery and readings wait without being final
            if all(r["delivery_end"] + METER_WAIT_S + 60 * self.args.speed > self.sim_now() for r in active):
                break
            time.sleep(a.sample_s)


# ---------------------------------------------------------------------- analysis


def per_day(samples: list[dict[str, Any]], get: Any, pid_of: Any = None, warmup_s: float = 0.0) -> float | None:
    """Least-squares growth per simulated day of ``get(sample)`` over the samples of the
    process's last life (``pid_of(sample)`` equal to the last sample's), leaving out its first
    ``warmup_s`` wall seconds (imports, caches, the WAL filling up to its checkpoint size)."""
    pts = []
    last_pid = pid_of(samples[-1]) if pid_of else None
    life = [s for s in samples if not pid_of or pid_of(s) == last_pid]
    if not life:
        return None
    born = life[0]["wall"] if "wall" in life[0] else None
    for s in life:
        if warmup_s and born is not None and s["wall"] - born < warmup_s:
            continue
        v = get(s)
        if v is not None:
            pts.append((s["sim"] / DAY, float(v)))
    if len(pts) < 3 or pts[-1][0] - pts[0][0] <= 0:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _lives(samples: list[dict[str, Any]], name: str) -> list[list[dict[str, Any]]]:
    """The samples of process ``name``, one list per life (a restart is a new pid)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        out.setdefault(s["procs"][name]["pid"], []).append(s)
    return list(out.values())


def longest_life(samples: list[dict[str, Any]], name: str, warmup_s: float) -> dict[str, Any]:
    """RSS growth over the longest life of ``name`` (faults cut the others short): with kills at
    random, the last life alone may be too short to tell warm-up from growth."""
    life = max(_lives(samples, name), key=lambda lf: lf[-1]["sim"] - lf[0]["sim"])
    rss = [s["procs"][name]["rss_kb"] for s in life]
    return {"sim_days": round((life[-1]["sim"] - life[0]["sim"]) / DAY, 2),
            "first_last_mb": [round(rss[0] / 1024, 1), round(rss[-1] / 1024, 1)],
            "growth_kb_per_sim_day": _r(per_day(life, lambda s: s["procs"][name]["rss_kb"], None, warmup_s))}


def rss_by_age(samples: list[dict[str, Any]], name: str, bucket_h: float = 12.0) -> dict[str, float]:
    """Median RSS (MB) of ``name`` by the age of its life (simulated hours), over all lives: a
    leak keeps climbing with age, a warm-up levels off."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for life in _lives(samples, name):
        born = life[0]["sim"]
        for s in life:
            buckets[int((s["sim"] - born) / 3600.0 // bucket_h)].append(s["procs"][name]["rss_kb"] / 1024)
    return {f"{k * bucket_h:.0f}-{(k + 1) * bucket_h:.0f}": round(float(np.median(v)), 1)
            for k, v in sorted(buckets.items()) if len(v) >= 3}


def analyse(soak: Soak, codes: dict[str, int | None]) -> dict[str, Any]:
    a, samples, work = soak.args, soak.samples, soak.work
    sim_days = (samples[-1]["sim"] - samples[0]["sim"]) / DAY if samples else 0.0
    growth: dict[str, Any] = {"rss_kb": {}, "rss_mb_by_age_sim_hours": {}, "fds": {}, "file_bytes": {},
                              "outbox_pending": {}, "coordinator_rows": {}}
    names = sorted({n for s in samples for n in s["procs"]})
    for n in names:
        have = [s for s in samples if n in s["procs"]]
        pid = lambda s, n=n: s["procs"][n]["pid"]  # noqa: E731
        growth["rss_kb"][n] = _r(per_day(have, lambda s, n=n: s["procs"][n]["rss_kb"], pid, a.warmup_s))
        growth["fds"][n] = _r(per_day(have, lambda s, n=n: s["procs"][n]["fds"], pid, a.warmup_s))
        life = [s["procs"][n]["rss_kb"] for s in have if pid(s) == pid(have[-1])]
        growth["rss_kb"][n + ":last_life_first_last_mb"] = [round(life[0] / 1024, 1), round(life[-1] / 1024, 1)]
        growth["rss_kb"][n + ":longest_life"] = longest_life(have, n, a.warmup_s)
        growth["rss_mb_by_age_sim_hours"][n] = rss_by_age(have, n)
    for f in sorted({f for s in samples for f in s["files"]}):
        growth["file_bytes"][f] = _r(per_day(samples, lambda s, f=f: s["files"].get(f), warmup_s=a.warmup_s))
    for ag in sorted({g for s in samples for g in s["outbox"]}):
        growth["outbox_pending"][ag] = _r(per_day(
            samples, lambda s, ag=ag: sum(v for k, v in s["outbox"].get(ag, {}).items() if k.endswith(":pending")),
            warmup_s=a.warmup_s))
    for t in sorted({t for s in samples for t in s["tables"]}):
        growth["coordinator_rows"][t] = _r(per_day(samples, lambda s, t=t: s["tables"].get(t), warmup_s=a.warmup_s))

    lifecycle = query(soak.db, "select * from lifecycle order by interval")
    end_sim = samples[-1]["sim"] if samples else soak.sim_now()
    by_stage = Counter(r["stage"] for r in lifecycle)
    # orphaned: not final although its delivery, readings wait and the contract's deadlines are over
    grace = METER_WAIT_S + a.speed * (a.clear_timeout_s + 60)
    orphaned = [r["interval"] for r in lifecycle if r["stage"] in ACTIVE and r["delivery_end"] + grace < end_sim]

    from gridswarm.chain import connect, interval_lapsed

    dep = soak.dep
    w3 = connect(soak.node.url, timeout_s=60)
    market = dep.market_contract(w3)
    posted = market.events.OrderPosted.get_logs(from_block=dep.block)
    per_owner = Counter((int(e["args"]["interval"]), e["args"]["owner"]) for e in posted)
    committed = market.events.FillsCommitted.get_logs(from_block=dep.block)
    fill_ids = Counter(int(f["orderId"]) for e in committed for f in e["args"]["fills"])
    chain_final = {}
    for r in lifecycle:
        k = int(r["interval"])
        st = int(market.functions.intervalOf(k).call()[0])
        if st == 0 and r["stage"] == "skipped":
            chain_final[k] = "never opened (skipped: its gate passed first)"
            continue
        chain_final[k] = "settled" if st == 4 else ("lapsed" if interval_lapsed(w3, market, k) else f"status {st}")
    held = int(dep.token_contract(w3).functions.balanceOf(dep.market).call())
    total = locked = 0
    for addr in [p.account.address for p in soak.specs] + [soak.admin.address]:
        free, lk, *_ = market.functions.accountOf(addr).call()
        total += int(free) + int(lk)
        locked += int(lk)
    live_in: Counter[str] = Counter()  # orders still holding a lock, by their interval's final state
    for e in posted:
        k = int(e["args"]["interval"])
        if chain_final.get(k) in ("settled", "lapsed") and market.functions.orderOf(int(e["args"]["orderId"])).call()[5]:
            live_in[chain_final[k]] += 1
    chain = {
        "orders_posted": len(posted),
        "locks_left_in_settled_intervals": live_in["settled"],
        "locks_not_yet_recovered_in_lapsed_intervals": live_in["lapsed"],
        "orders_doubled": sum(1 for v in per_owner.values() if v > 1),
        "fills_committed": sum(fill_ids.values()),
        "fills_doubled": sum(1 for v in fill_ids.values() if v > 1),
        "intervals_settled_on_chain": sum(1 for v in chain_final.values() if v == "settled"),
        "intervals_lapsed_on_chain": sum(1 for v in chain_final.values() if v == "lapsed"),
        "intervals_in_flight_or_skipped": {str(k): v for k, v in chain_final.items() if v not in ("settled", "lapsed")},
        "value_conserved": total == held,
        "locked_at_end": locked,
    }
    logs = sorted(work.glob("coordinator.*.log"))
    text = "".join(p.read_text(errors="replace") for p in logs)
    agent_text = "".join(p.read_text(errors="replace") for p in work.glob("agent*.log"))
    settled_without = len(re.findall(r"settling without readings from", text))
    settlements = query(soak.db, "select interval, owner, penalty from settlements")
    penalties = [r for r in settlements if r["penalty"]]
    killed_in = defaultdict(set)
    for f in soak.faults:
        for k in f.get("intervals_in_flight", {}):
            killed_in[int(k)].add(f["victim"])
    addr_of = {p.account.address: f"agent{i}" for i, p in enumerate(soak.specs)}
    last = samples[-1] if samples else {}
    return {
        "sim_days": round(sim_days, 3),
        "intervals": {
            "planned": len(lifecycle),
            "by_stage": dict(by_stage),
            "orphaned": orphaned,
            "errors_logged": len(re.findall(r"step failed", text)),
        },
        "chain": chain,
        "readings": {"intervals_settled_without_a_reading": settled_without},
        "agent_records_at_end": {  # the outbox by kind and state, summed over the agents
            key: sum(box.get(key, 0) for box in (last.get("outbox") or {}).values())
            for key in sorted({k for box in (last.get("outbox") or {}).values() for k in box})
        },
        "penalties": {
            "count": len(penalties),
            "base_units": sum(int(r["penalty"]) for r in penalties),
            "of_a_site_killed_in_that_interval": sum(
                1 for r in penalties if addr_of.get(r["owner"]) in killed_in.get(int(r["interval"]), set())),
            "note": "a seller whose devices delivered less than it sold pays by the contract's rule; the demo's "
                    "simulated PV and batteries fall short at times, faults or not",
        },
        "faults": {"injected": sum(1 for f in soak.faults if f["signal"]),
                   "by_victim": dict(Counter(f["victim"] for f in soak.faults if f["signal"])),
                   "processes_that_died_by_themselves": [f for f in soak.faults if not f["signal"]],
                   "coordinator_tracebacks": text.count("Traceback"),
                   "agent_tracebacks": agent_text.count("Traceback")},
        "exit_codes_on_sigterm": codes,
        "growth_per_sim_day": growth,
        "at_end": {"procs": last.get("procs"), "files": last.get("files"), "outbox": last.get("outbox"),
                   "coordinator_rows": last.get("tables"), "hub_inflight": last.get("hub_inflight")},
        "samples": len(samples),
    }  # fmt: skip


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=3.0, help="wall minutes with faults (default %(default)s)")
    p.add_argument("--speed", type=float, default=100.0,
                   help="simulated seconds per wall second; a day takes 864 s at 100 (default %(default)s)")
    p.add_argument("--agents", type=int, default=4, help="agent processes (default %(default)s)")
    p.add_argument("--fault-every-s", type=float, default=40.0,
                   help="mean wall seconds between SIGKILLs (0: no faults; default %(default)s)")
    p.add_argument("--sample-s", type=float, default=5.0, help="wall seconds between samples (%(default)s)")
    p.add_argument("--drain-s", type=float, default=30.0, help="wall seconds for the last intervals (%(default)s)")
    p.add_argument("--clear-timeout-s", type=int, default=60, help="the contract's clear deadline, chain seconds")
    p.add_argument("--settle-timeout-s", type=int, default=300, help="the contract's settle deadline, chain seconds")
    p.add_argument("--warmup-s", type=float, default=60.0,
                   help="wall seconds of each process's life left out of its growth figure (%(default)s)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)


def run_bench(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per sample otherwise
    if args.agents < 2 or args.minutes <= 0 or args.speed <= 0:
        print("bench soak: error: --agents >= 2, --minutes > 0, --speed > 0", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gridswarm-soak-"))
    info = machine()
    soak = Soak(args, work)
    t0 = time.time()
    codes: dict[str, int | None] = {}
    try:
        soak.build()
        soak.run()
        codes = soak.stop_all()
        report = analyse(soak, codes)
    finally:
        for p in soak.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if getattr(soak, "node", None):
            soak.node.stop()
    result = {
        "benchmark": "soak: the real system on a compressed clock with random SIGKILLs",
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "command": "gridswarm bench soak " + " ".join(
            [f"--minutes {args.minutes}", f"--speed {args.speed}", f"--agents {args.agents}",
             f"--fault-every-s {args.fault_every_s}", f"--seed {args.seed}"]),
        "machine": {**info, "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "setup": {
            "clock": f"scaled {args.speed}x: one 15-minute interval per {INTERVAL_S / args.speed:.1f} wall s, "
                     f"one simulated day per {DAY / args.speed / 60:.1f} wall min",
            "gate_lead_s": GATE_LEAD_S, "meter_wait_s": METER_WAIT_S,
            "contract_deadlines_chain_s": {"clear": args.clear_timeout_s, "settle": args.settle_timeout_s},
            "faults": "SIGKILL of the coordinator (40 %) or a random agent, restarted after 1 s",
            "wall_seconds": round(time.time() - t0, 1),
        },
        **report,
        "work_dir": str(work),
    }  # fmt: skip
    write_results(args.out, result)
    bad = (report["intervals"]["orphaned"] or report["chain"]["orders_doubled"] or report["chain"]["fills_doubled"]
           or not report["chain"]["value_conserved"] or report["faults"]["processes_that_died_by_themselves"])
    print(json.dumps({k: result[k] for k in ("sim_days", "intervals", "chain", "readings", "penalties", "faults")},
                     indent=1))
    return 1 if bad else 0
