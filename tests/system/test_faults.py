"""Faults in the running system, at small scale on a compressed clock.

A coordinator and four agents run as separate OS processes on Ganache (the demo's set-up).
During the run the coordinator is killed with SIGKILL at two lifecycle stages and stopped
once with SIGTERM, and a selling agent is killed with SIGKILL at the start of a delivery; each
is restarted. Afterwards every interval has settled (or lapsed by the contract's rule), no
order or fill is doubled, value is conserved, no lock is left, and the restarted agent re-applied
its dispatch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent.devices.spec import device_mappings
from app.demo import site_devices
from app.devnet import Ganache, free_port
from gridswarm.chain import interval_lapsed
from gridswarm.keys import write_ed25519, write_eth_key
from tests.conftest import Market, deploy_fresh
from tests.support.waiting import healthy, wait_until

INTERVAL_S = 900.0
# One 15-minute interval every 12 s of wall time: slow enough that a restarted process (about
# 3 s to start) is back before the gate or the delivery it was killed in is over.
SPEED = 75.0
INTERVALS = 6
DOWN_S = 75.0  # simulated seconds the coordinator stays down after the first kill (1 s of wall time)


class System:
    def __init__(self, m: Market, tmp: Path) -> None:
        self.m = m
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.clock = {"kind": "scaled", "sim_start": 1_782_054_000.0, "speed": SPEED, "wall_anchor": time.time()}
        dep_path = str(m.dep.save(tmp / "deployment.json"))
        self.db = tmp / "coordinator.sqlite"
        self.coord_cfg = tmp / "coordinator.yaml"
        self.coord_cfg.write_text(
            yaml.safe_dump(
                {
                    "rpc_url": m.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
                    "deployment": dep_path,
                    "operator_key_file": str(write_eth_key(tmp / "operator.key", m.operator)),
                    "ed25519_key_file": str(write_ed25519(tmp / "coordinator.ed25519", m.coordinator_key)),
                    "db_path": str(self.db),
                    "port": self.port,
                    "message_ttl_s": 600.0,
                    "index_poll_s": 0.2,
                    "clock": self.clock,
                    "market": {
                        "interval_s": INTERVAL_S,
                        "gate_lead_s": 300.0,
                        "meter_wait_s": 300.0,
                        "intervals": INTERVALS,
                        "expected_agents": len(m.participants),
                        "agent_wait_s": 60.0,
                    },
                }
            )
        )
        self.roles = ["seller", "seller", "buyer", "buyer"]
        self.agent_cfgs = []
        for i, (spec, role) in enumerate(zip(m.participants, self.roles, strict=True)):
            cfg = {
                "site": f"site{i}-{role}",
                "eth_key_file": str(write_eth_key(tmp / f"a{i}.key", spec.account)),
                "ed25519_key_file": str(write_ed25519(tmp / f"a{i}.ed25519", spec.ed25519)),
                "coordinator_url": self.base,
                "rpc_url": m.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
                "deployment": dep_path,
                "store_path": str(tmp / f"agent{i}.sqlite"),
                "seed": 7000 + i,
                "tick_s": 30.0,
                "telemetry_every_s": 300.0,
                "reserve_soc": 0.3,
                "message_ttl_s": 600.0,
                "reconnect_s": 0.3,
                "clock": self.clock,
                "trading": {"role": role},
                "devices": device_mappings(site_devices(role, i)),
            }
            path = tmp / f"site{i}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            self.agent_cfgs.append(path)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = {}

    def start(self, name: str) -> None:
        self.starts[name] = self.starts.get(name, 0) + 1
        if name == "coordinator":
            args = ["coordinator", "--config", str(self.coord_cfg)]
        else:
            args = ["agent", "--config", str(self.agent_cfgs[int(name.removeprefix("agent"))])]
        log = open(self.tmp / f"{name}.{self.starts[name]}.log", "wb")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        proc = self.procs[name]
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGUSR1)  # the coordinator prints its stacks (faulthandler)
            log = self.tmp / f"{name}.{self.starts[name]}.log"
            with contextlib.suppress(AssertionError):  # the timeout below is what the test reports
                wait_until(lambda: "most recent call first" in log.read_text(errors="replace"), "its stacks", 10)
            proc.kill()
            raise

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def now(self) -> float:
        c = self.clock
        return c["sim_start"] + (time.time() - c["wall_anchor"]) * c["speed"]

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            with sqlite3.connect(self.db, timeout=5) as conn:
                conn.row_factory = sqlite3.Row
                return list(conn.execute(sql, params))
        except sqlite3.OperationalError:  # not created yet
            return []

    def wait(self, pred: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
        """Wait for ``pred``; stop at once if a process expected up has exited."""
        return wait_until(pred, f"{what}; logs in {self.tmp}", timeout, check=self.check_up)

    def check_up(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None and name in self.expected_up:
                raise AssertionError(f"{name} exited with {proc.returncode}; see {self.tmp}")

    expected_up: set[str] = set()


@pytest.fixture
def system(ganache: Ganache, tmp_path: Path) -> System:
    # A clear deadline the test can outlive (chain seconds = wall seconds): an interval whose gate
    # passed while the coordinator was down lapses by rule, and its owners recover their locks.
    s = System(deploy_fresh(ganache, n_participants=4, clear_timeout_s=90), tmp_path)
    yield s
    s.stop_all()


def _stage(s: System, stage: str) -> int | None:
    rows = s.rows("select interval from lifecycle where stage = ? order by interval", (stage,))
    return int(rows[0]["interval"]) if rows else None


def test_kills_and_restarts_leave_every_interval_settled(system: System) -> None:
    s = system
    agents = [f"agent{i}" for i in range(4)]
    s.start("coordinator")
    for a in agents:
        s.start(a)
    s.expected_up = {"coordinator", *agents}

    # 1. SIGKILL the coordinator right after it opened an interval on chain
    opened = s.wait(lambda: _stage(s, "open"), "an interval open")
    s.expected_up.discard("coordinator")
    s.kill("coordinator")
    down = s.now()
    s.wait(lambda: s.now() >= down + DOWN_S, f"{DOWN_S:.0f} simulated seconds of downtime")
    s.start("coordinator")
    s.expected_up.add("coordinator")

    # 2. SIGKILL it again while an interval is cleared (dispatched, in delivery or waiting for readings)
    s.wait(
        lambda: s.rows("select interval from lifecycle where stage = 'cleared' and dispatched = 1 and interval > ?", (opened,)),
        "an interval cleared after the restart",
    )
    s.expected_up.discard("coordinator")
    s.kill("coordinator")
    s.start("coordinator")
    s.expected_up.add("coordinator")

    # 3. SIGKILL a selling agent early in a delivery it has a fill in, restart it
    def delivering() -> int | None:
        for r in s.rows("select interval, delivery_start, delivery_end from lifecycle where stage = 'cleared'"):
            # a minute or two into the delivery: some energy metered before the kill, most after
            if r["delivery_start"] + 60 <= s.now() < r["delivery_start"] + 200:
                filled = s.rows(
                    "select 1 from fills where interval = ? and owner = ? and qty_wh >= 300",
                    (r["interval"], s.m.participants[0].account.address),
                )
                if filled:
                    return int(r["interval"])
        return None

    k_agent = s.wait(delivering, "agent0 delivering a fill", timeout=120)
    s.expected_up.discard("agent0")
    s.kill("agent0")
    s.start("agent0")
    s.expected_up.add("agent0")

    # 4. SIGTERM the coordinator mid-run: it stops cleanly and the next one carries on
    s.wait(lambda: healthy(s.base), "the coordinator serving")
    s.expected_up.discard("coordinator")
    assert s.kill("coordinator", signal.SIGTERM) == 0
    s.start("coordinator")
    s.expected_up.add("coordinator")

    final = ("settled", "lapsed", "skipped")
    s.wait(
        lambda: len(s.rows("select 1 from lifecycle where stage in ('settled', 'lapsed', 'skipped')")) >= INTERVALS,
        f"{INTERVALS} intervals final",
        timeout=180,
    )
    lifecycle = s.rows("select interval, stage from lifecycle order by interval")
    assert len(lifecycle) == INTERVALS
    assert all(r["stage"] in final for r in lifecycle)
    assert [r["stage"] for r in lifecycle].count("settled") >= INTERVALS - 1, [dict(r) for r in lifecycle]

    health = httpx.get(s.base + "/healthz", timeout=10)
    assert health.status_code == 200, health.text
    assert health.json()["intervals_stuck"] == []

    m = s.m
    market = m.market
    # chain: every interval final, one order per owner and interval, every order committed once
    for r in lifecycle:
        k = int(r["interval"])
        status = int(market.functions.intervalOf(k).call()[0])
        assert status == 4 or interval_lapsed(m.w3, market, k), (k, status)
        posted = market.events.OrderPosted.get_logs(argument_filters={"interval": k}, from_block=m.dep.block)
        owners = [e["args"]["owner"] for e in posted]
        assert len(owners) == len(set(owners)), f"interval {k}: an order was posted twice"
        committed = market.events.FillsCommitted.get_logs(argument_filters={"interval": k}, from_block=m.dep.block)
        ids = [int(f["orderId"]) for e in committed for f in e["args"]["fills"]]
        assert len(ids) == len(set(ids)) == len(owners) or status != 4, f"interval {k}: a fill was committed twice"
    # value conserved, no lock left behind (after a lapse, once its owners recovered their locks)
    s.wait(lambda: m.ledger()[2] == 0, "every lock released", timeout=60)
    m.assert_conserved_and_unlocked()
    # the restarted agent got its dispatch again and applied it, and metered the interval
    with sqlite3.connect(s.tmp / "agent0.sqlite") as conn:
        applied = conn.execute(
            "select count(*) from commands where kind = 'dispatch' and interval = ? and accepted = 1", (k_agent,)
        ).fetchone()[0]
        metered = conn.execute("select count(*) from outbox where kind = 'meter' and dedup = ?", (f"meter:{k_agent}",)).fetchone()[0]
    assert applied >= 2, "the restarted agent did not re-apply its dispatch"
    assert metered == 1
    # its reading counts the energy metered before the restart as well as after it
    with sqlite3.connect(s.tmp / "agent0.sqlite") as conn:
        parts = dict(conn.execute("select key, value from state where key like ?", (f"meter:{k_agent}:%",)).fetchall())
    runs = {key: json.loads(v)[0] for key, v in parts.items()}
    assert runs.get(f"meter:{k_agent}:1", 0) > 0, runs  # delivered before the kill
    seller = m.participants[0].account.address
    reading = s.rows("select exported_wh from readings where interval = ? and participant = ?", (k_agent, seller))
    assert abs(reading[0]["exported_wh"] - sum(runs.values())) <= 1, (dict(reading[0]), runs)
    settled = s.rows("select delivered_wh from settlements where interval = ? and owner = ?", (k_agent, seller))
    assert settled[0]["delivered_wh"] > runs[f"meter:{k_agent}:1"] - 1
