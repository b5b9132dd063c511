"""The agent's local SQLite file: outbox, sequence counters, its orders, and its command log.

Telemetry, meter readings and acknowledgements go through the outbox: a record stays until
the coordinator acknowledges it, so nothing is lost while the link is down, and each record
has a dedup key so the coordinator stores it exactly once however often it is re-sent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
create table if not exists kv (key text primary key, value integer not null);
create table if not exists outbox (
  id integer primary key autoincrement,
  kind text not null, body text not null, dedup text not null unique,
  created real not null, acked integer not null default 0);
create table if not exists orders (
  interval integer primary key, order_id text not null, side text not null,
  qty_wh integer not null, price integer not null, tx text not null,
  delivery_start real not null, delivery_end real not null);
create table if not exists commands (
  id integer primary key autoincrement, ts real not null, kind text not null, seq integer,
  interval integer, accepted integer not null, reason text not null);
"""


class AgentStore:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("pragma journal_mode=wal")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def next_counter(self, key: str) -> int:
        with self._lock:
            self._conn.execute("begin immediate")
            row = self._conn.execute("select value from kv where key = ?", (key,)).fetchone()
            value = (row[0] if row else 0) + 1
            self._conn.execute("insert or replace into kv (key, value) values (?, ?)", (key, value))
            self._conn.execute("commit")
            return int(value)

    # ------------------------------------------------------------------ outbox

    def enqueue(self, kind: str, body: dict[str, Any], dedup: str, now: float) -> bool:
        """Add a record unless one with the same dedup key exists; returns whether it was added."""
        with self._lock:
            cur = self._conn.execute(
                "insert or ignore into outbox (kind, body, dedup, created) values (?, ?, ?, ?)",
                (kind, json.dumps(body), dedup, now),
            )
            return cur.rowcount == 1

    def pending(self, limit: int = 100) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            rows = self._conn.execute(
                "select id, kind, body from outbox where acked = 0 order by id limit ?", (limit,)
            ).fetchall()
        return [(int(i), str(k), json.loads(b)) for i, k, b in rows]

    def ack(self, outbox_id: int) -> None:
        with self._lock:
            self._conn.execute("update outbox set acked = 1 where id = ?", (outbox_id,))

    def reject(self, outbox_id: int) -> None:
        """The coordinator refused this record for good (it is kept, marked, for inspection)."""
        with self._lock:
            self._conn.execute("update outbox set acked = 2 where id = ?", (outbox_id,))

    def prune(self, kinds: tuple[str, ...], before: float) -> int:
        """Drop records of ``kinds`` created before ``before`` (clock s), sent or not: telemetry
        and alarms older than that are history the coordinator no longer needs, and dropping
        them keeps the outbox bounded through a long coordinator outage. Returns how many."""
        marks = ",".join("?" for _ in kinds)
        with self._lock:
            cur = self._conn.execute(
                f"delete from outbox where kind in ({marks}) and created < ?", (*kinds, before)  # noqa: S608
            )
            return int(cur.rowcount)

    def pending_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("select count(*) from outbox where acked = 0").fetchone()[0])

    # ------------------------------------------------------------------ orders and commands

    def order_for(self, interval: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "select order_id, side, qty_wh, price, tx, delivery_start, delivery_end from orders where interval = ?",
                (interval,),
            ).fetchone()
        if row is None:
            return None
        keys = ("order_id", "side", "qty_wh", "price", "tx", "delivery_start", "delivery_end")
        return {"interval": interval, **dict(zip(keys, row, strict=True))}

    def record_order(
        self, interval: int, order_id: int, side: str, qty_wh: int, price: int, tx: str, start: float, end: float
    ) -> None:
        with self._lock:
            self._conn.execute(
                "insert or replace into orders values (?, ?, ?, ?, ?, ?, ?, ?)",
                (interval, str(order_id), side, qty_wh, price, tx, start, end),
            )

    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("select interval from orders order by interval").fetchall()
        return [o for (i,) in rows if (o := self.order_for(int(i))) is not None]

    def log_command(self, ts: float, kind: str, seq: int | None, interval: int | None, accepted: bool, reason: str) -> None:
        with self._lock:
            self._conn.execute(
                "insert into commands (ts, kind, seq, interval, accepted, reason) values (?, ?, ?, ?, ?, ?)",
                (ts, kind, seq, interval, int(accepted), reason),
            )

    def commands(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("select ts, kind, seq, interval, accepted, reason from commands order by id").fetchall()
        return [dict(zip(("ts", "kind", "seq", "interval", "accepted", "reason"), r, strict=True)) for r in rows]
