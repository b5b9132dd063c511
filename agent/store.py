"""The agent's local SQLite file: outbox, sequence counters, its orders, and its command log.

Telemetry, meter readings and acknowledgements go through the outbox: a record stays until
the coordinator acknowledges it, so nothing is lost while the link is down, and each record
has a dedup key so the coordinator stores it exactly once however often it is re-sent.

The outbox never blocks and stays bounded (docs/operations.md): each send takes meter
readings first, then acknowledgements, then telemetry, each kind with its own share of the
batch, so a backlog of one kind cannot starve another; every kind that is not acknowledged
expires by rule (``EXPIRE_AFTER_S``: a stale record is marked expired and no longer sent);
finished records are deleted after ``KEEP_DONE_S``; and past ``MAX_PENDING`` pending records
the oldest telemetry is expired first.
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
create table if not exists state (key text primary key, value text not null);
create table if not exists commands (
  id integer primary key autoincrement, ts real not null, kind text not null, seq integer,
  interval integer, accepted integer not null, reason text not null);
"""


# Outbox record states (column ``acked``).
PENDING, ACKED, REJECTED, EXPIRED = 0, 1, 2, 3
# Priority and share of each send batch, by kind; kinds not listed share what is left.
PRIORITY: tuple[tuple[str, float], ...] = (("meter", 0.5), ("ack", 0.25), ("telemetry", 0.25))
# Clock seconds after which an unacknowledged record of a kind is no longer worth sending.
EXPIRE_AFTER_S = {"meter": 7 * 86_400.0, "ack": 3_600.0, "telemetry": 86_400.0, "alarm": 86_400.0,
                  "forecast": 86_400.0}
DEFAULT_EXPIRE_S = 86_400.0
KEEP_DONE_S = 86_400.0  # acknowledged, rejected and expired records are deleted after this
MAX_PENDING = 20_000  # beyond this many pending records the oldest telemetry expires early


class AgentStore:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("pragma journal_mode=wal")
        self._conn.executescript(_SCHEMA)
        cols = {r[1] for r in self._conn.execute("pragma table_info(orders)")}
        if "closed" not in cols:  # files from before lock recovery
            self._conn.execute("alter table orders add column closed integer not null default 0")
        if "done" not in {r[1] for r in self._conn.execute("pragma table_info(outbox)")}:
            # when a record finished, on the injected clock (for an ack or a rejection: the newest record's time)
            self._conn.execute("alter table outbox add column done real")
        self._conn.execute("create index if not exists outbox_pending on outbox (acked, kind, id)")
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

    def pending_fair(self, limit: int = 200) -> list[tuple[int, str, dict[str, Any]]]:
        """Up to ``limit`` pending records, oldest first within a kind: meter readings first,
        then acknowledgements, then telemetry, each with its share of ``limit``; a share one
        kind leaves unused goes to the next, so no kind's backlog can starve another."""
        picked: list[tuple[int, str, dict[str, Any]]] = []
        with self._lock:
            kinds = [k for k, _ in PRIORITY]
            rows_by_kind = {}
            for kind, share in PRIORITY:
                rows_by_kind[kind] = self._conn.execute(
                    "select id, kind, body from outbox where acked = 0 and kind = ? order by id limit ?",
                    (kind, limit),
                ).fetchall()
            marks = ",".join("?" * len(kinds))
            rows_by_kind["*"] = self._conn.execute(
                f"select id, kind, body from outbox where acked = 0 and kind not in ({marks}) order by id limit ?",
                (*kinds, limit),
            ).fetchall()
        quotas = {kind: max(1, int(limit * share)) for kind, share in PRIORITY}
        quotas["*"] = max(1, limit - sum(quotas.values()))
        order = [*kinds, "*"]
        for kind in order:  # each kind's share first
            picked.extend(rows_by_kind[kind][: quotas[kind]])
        for kind in order:  # then whatever room is left, by priority
            room = limit - len(picked)
            if room <= 0:
                break
            picked.extend(rows_by_kind[kind][quotas[kind] : quotas[kind] + room])
        return [(int(i), str(k), json.loads(b)) for i, k, b in picked[:limit]]

    def expire(self, now: float) -> int:
        """Apply the outbox rules: expire stale records, bound the backlog, delete old finished
        records. Returns how many records expired."""
        expired = 0
        with self._lock:
            for kind, age in EXPIRE_AFTER_S.items():
                expired += self._conn.execute(
                    "update outbox set acked = ?, done = ? where acked = 0 and kind = ? and created < ?",
                    (EXPIRED, now, kind, now - age),
                ).rowcount
            kinds = tuple(EXPIRE_AFTER_S)
            marks = ",".join("?" * len(kinds))
            expired += self._conn.execute(
                f"update outbox set acked = ?, done = ? where acked = 0 and kind not in ({marks}) and created < ?",
                (EXPIRED, now, *kinds, now - DEFAULT_EXPIRE_S),
            ).rowcount
            n = int(self._conn.execute("select count(*) from outbox where acked = 0").fetchone()[0])
            if n > MAX_PENDING:
                expired += self._conn.execute(
                    "update outbox set acked = ?, done = ? where id in "
                    "(select id from outbox where acked = 0 and kind = 'telemetry' order by id limit ?)",
                    (EXPIRED, now, n - MAX_PENDING),
                ).rowcount
            # records finished before ``done`` was kept count from when they were created
            self._conn.execute(
                "delete from outbox where acked != 0 and coalesce(done, created) < ?", (now - KEEP_DONE_S,)
            )
        return expired

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Records by kind and state (pending, acked, rejected, expired)."""
        names = {PENDING: "pending", ACKED: "acked", REJECTED: "rejected", EXPIRED: "expired"}
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for kind, state, n in self._conn.execute("select kind, acked, count(*) from outbox group by kind, acked"):
                out.setdefault(kind, {})[names.get(state, str(state))] = int(n)
        return out

    def ack(self, outbox_id: int) -> None:
        with self._lock:
            self._conn.execute(
                "update outbox set acked = 1, done = (select max(created) from outbox) where id = ?", (outbox_id,)
            )

    def reject(self, outbox_id: int) -> None:
        """The coordinator refused this record for good (it is kept, marked, for inspection)."""
        with self._lock:
            self._conn.execute(
                "update outbox set acked = 2, done = (select max(created) from outbox) where id = ?", (outbox_id,)
            )

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
                "insert or replace into orders (interval, order_id, side, qty_wh, price, tx, delivery_start, "
                "delivery_end, closed) values (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (interval, str(order_id), side, qty_wh, price, tx, start, end),
            )

    def open_orders(self) -> list[dict[str, Any]]:
        """Orders not yet known to be finished on chain (settled, recovered or cancelled)."""
        with self._lock:
            rows = self._conn.execute("select interval from orders where closed = 0 order by interval").fetchall()
        return [o for (i,) in rows if (o := self.order_for(int(i))) is not None]

    def close_order(self, interval: int) -> None:
        with self._lock:
            self._conn.execute("update orders set closed = 1 where interval = ?", (interval,))

    # ------------------------------------------------------------------ small durable state

    def put_state(self, key: str, value: Any) -> None:
        with self._lock:
            self._conn.execute("insert or replace into state (key, value) values (?, ?)", (key, json.dumps(value)))

    def get_state(self, key: str) -> Any:
        with self._lock:
            row = self._conn.execute("select value from state where key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_state(self, key: str) -> None:
        with self._lock:
            self._conn.execute("delete from state where key = ?", (key,))

    def states_with_prefix(self, prefix: str) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute(
                "select key, value from state where key >= ? and key < ?", (prefix, prefix + "\uffff")
            ).fetchall()
        return {str(k): json.loads(v) for k, v in rows}

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
