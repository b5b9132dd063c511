"""The coordinator's SQLite database (sqlite-utils): chain events indexed into tables, plus
telemetry, meter readings and acknowledgements from agents. Source of the analytics API.

One connection guarded by a lock: the market loop, the indexer and the API share it from the
event loop and from worker threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

SCHEMA: dict[str, tuple[dict[str, Any], str | tuple[str, ...]]] = {
    "cursor": ({"name": str, "block": int}, "name"),
    "meta": ({"key": str, "value": str}, "key"),
    "events": (
        {"key": str, "block": int, "log_index": int, "tx": str, "name": str, "args": str},
        "key",
    ),
    "participants": (
        {"address": str, "ed25519_key": str, "zone": int, "registered": int, "block": int},
        "address",
    ),
    "intervals": (
        {
            "id": int,
            "status": str,
            "clear_by": int,
            "settle_by": int,
            "delivery_start": float,
            "delivery_end": float,
            "clearing_price": int,
            "volume_wh": int,
            "n_orders": int,
            "n_fills": int,
            "buy_value": int,
            "sell_value": int,
            "welfare": float,
            "mechanism": str,
            "zone_prices": str,
            "flows": str,
            "commit_txs": str,
            "settle_tx": str,
            "delivered_wh": int,
            "shortfall_wh": int,
            "surplus": int,
            "gas_commit": int,
            "gas_settle": int,
            "clear_seconds": float,
        },
        "id",
    ),
    "orders": (
        {
            "id": str,
            "interval": int,
            "owner": str,
            "side": str,
            "qty_wh": int,
            "price": int,
            "zone": int,
            "locked": int,
            "status": str,
            "block": int,
            "log_index": int,
            "tx": str,
            "gas": int,
        },
        "id",
    ),
    "fills": (
        {"order_id": str, "interval": int, "owner": str, "side": str, "qty_wh": int, "price": int, "tx": str},
        "order_id",
    ),
    "settlements": (
        {
            "order_id": str,
            "interval": int,
            "owner": str,
            "delivered_wh": int,
            "amount": int,
            "penalty": int,
            "released": int,
            "tx": str,
        },
        "order_id",
    ),
    "readings": (
        {"interval": int, "participant": str, "exported_wh": int, "imported_wh": int, "signature": str},
        ("interval", "participant"),
    ),
    "telemetry": (
        {"sender": str, "record_id": int, "ts": float, "net_export_w": float, "soc": float, "devices": str},
        ("sender", "record_id"),
    ),
    "acks": (
        {"sender": str, "interval": int, "kind": str, "seq": int, "ok": int, "reason": str},
        ("sender", "interval", "kind"),
    ),
    "envelope_seq": ({"sender": str, "last_seq": int}, "sender"),
    # The market loop's own progress through each interval (coordinator/market/lifecycle.py);
    # chain-derived state stays in ``intervals``, written by the indexer.
    "lifecycle": (
        {
            "interval": int,
            "stage": str,
            "delivery_start": float,
            "delivery_end": float,
            "gate_close": float,
            "dispatched": int,
            "updated": float,
            "error": str,
        },
        "interval",
    ),
    "dispatch": ({"interval": int, "address": str, "body": str}, ("interval", "address")),
    "rejections": ({"id": int, "sender": str, "reason": str, "message": str, "ts": float}, "id"),
}


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        for name, (cols, pk) in SCHEMA.items():
            if not self.db[name].exists():
                self.db[name].create(cols, pk=pk)
        for table, col in (("orders", "interval"), ("fills", "interval"), ("settlements", "interval"), ("orders", "owner")):
            self.db[table].create_index([col], if_not_exists=True)

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """All writes inside commit together or not at all."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.db.query(sql, params))

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------ small helpers

    def meta(self, key: str) -> str | None:
        row = self.one("select value from meta where key = ?", [key])
        return str(row["value"]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db["meta"].upsert({"key": key, "value": value}, pk="key")

    def cursor(self, name: str, default: int) -> int:
        row = self.one("select block from cursor where name = ?", [name])
        return int(row["block"]) if row else default

    def upsert_interval(self, interval_id: int, **fields: Any) -> None:
        for key in ("zone_prices", "flows", "commit_txs"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        with self.transaction() as db:
            db["intervals"].upsert({"id": interval_id, **fields}, pk="id", alter=True)

    # ------------------------------------------------------------ interval lifecycle

    def set_stage(self, interval_id: int, stage: str, **fields: Any) -> None:
        with self.transaction() as db:
            db["lifecycle"].upsert({"interval": interval_id, "stage": stage, **fields}, pk="interval", alter=True)

    def lifecycle(self, interval_id: int) -> dict[str, Any] | None:
        return self.one("select * from lifecycle where interval = ?", [interval_id])

    def lifecycle_rows(self, stages: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        if stages is None:
            return self.query("select * from lifecycle order by interval")
        marks = ",".join("?" * len(stages))
        return self.query(f"select * from lifecycle where stage in ({marks}) order by interval", list(stages))

    def lifecycle_count(self) -> int:
        row = self.one("select count(*) as n from lifecycle")
        return int(row["n"]) if row else 0

    def chain_unsettled(self) -> list[int]:
        """Intervals the indexer saw opened on chain that have not settled."""
        rows = self.query("select id from intervals where status in ('open', 'closed', 'cleared') order by id")
        return [int(r["id"]) for r in rows]

    def save_dispatch(self, interval_id: int, dispatch: dict[str, dict[str, Any]]) -> None:
        with self.transaction() as db:
            for address, body in dispatch.items():
                db["dispatch"].upsert(
                    {"interval": interval_id, "address": address, "body": json.dumps(body)}, pk=("interval", "address")
                )

    def dispatch_of(self, interval_id: int, address: str) -> dict[str, Any] | None:
        row = self.one("select body from dispatch where interval = ? and address = ?", [interval_id, address])
        return json.loads(row["body"]) if row else None

    def committed_fills(self, interval_id: int) -> list[tuple[int, int, int]]:
        """The fills committed on chain for an interval (indexed), in ascending order id."""
        rows = self.query("select order_id, qty_wh, price from fills where interval = ?", [interval_id])
        return sorted((int(r["order_id"]), int(r["qty_wh"]), int(r["price"])) for r in rows)

    def fill_dispatch(self, interval_id: int) -> dict[str, dict[str, Any]]:
        """Each owner's committed fills of an interval, as the loop dispatches them."""
        rows = self.query(
            "select order_id, owner, side, qty_wh, price from fills where interval = ?", [interval_id]
        )
        out: dict[str, dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: int(r["order_id"])):
            d = out.setdefault(r["owner"], {"net_wh": 0, "fills": []})
            qty = int(r["qty_wh"])
            d["net_wh"] += qty if r["side"] == "offer" else -qty
            d["fills"].append({"order_id": int(r["order_id"]), "side": r["side"], "qty_wh": qty, "price": int(r["price"])})
        return out

    def reading_senders(self, interval_id: int) -> set[str]:
        return {r["participant"] for r in self.query("select participant from readings where interval = ?", [interval_id])}

    def last_seqs(self) -> dict[str, int]:
        return {r["sender"]: int(r["last_seq"]) for r in self.query("select sender, last_seq from envelope_seq")}

    def participant_key(self, address: str) -> str | None:
        row = self.one("select ed25519_key from participants where address = ? and registered = 1", [address])
        return str(row["ed25519_key"]) if row else None

    # ------------------------------------------------------------ agent messages (coordinator/ingest.py)

    def participant_keys(self, addresses: set[str] | list[str]) -> dict[str, str]:
        """The registered Ed25519 key (hex) of each of ``addresses`` that has one."""
        wanted = sorted({a for a in addresses if isinstance(a, str)})
        out: dict[str, str] = {}
        for i in range(0, len(wanted), 500):  # SQLite's bound on host parameters
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            for r in self.query(
                f"select address, ed25519_key from participants where registered = 1 and address in ({marks})", part
            ):
                out[str(r["address"])] = str(r["ed25519_key"])
        return out

    def last_seq(self, sender: str) -> int | None:
        row = self.one("select last_seq from envelope_seq where sender = ?", [sender])
        return int(row["last_seq"]) if row else None

    def reserve_seqs(self, sender: str, count: int) -> int:
        """Reserve ``count`` sequence numbers for ``sender``'s own envelopes; return the first.
        The stored mark is the last one reserved, so after a restart numbering resumes above
        every number that may have been used."""
        with self.transaction() as db:
            rows = list(db.query("select last_seq from envelope_seq where sender = ?", [sender]))
            first = (int(rows[0]["last_seq"]) if rows else 0) + 1
            db.execute(
                "insert into envelope_seq (sender, last_seq) values (?, ?)"
                " on conflict(sender) do update set last_seq = excluded.last_seq",
                [sender, first + count - 1],
            )
        return first

    def store_messages(self, batch: MessageBatch) -> None:
        """Everything a batch of agent messages changes, in one transaction: its records,
        each sender's last accepted seq and the rejections."""
        with self.transaction() as db:
            conn = db.conn
            if batch.telemetry:
                conn.executemany(
                    "insert into telemetry (sender, record_id, ts, net_export_w, soc, devices) values (?, ?, ?, ?, ?, ?)"
                    " on conflict(sender, record_id) do update set ts = excluded.ts,"
                    " net_export_w = excluded.net_export_w, soc = excluded.soc, devices = excluded.devices",
                    batch.telemetry,
                )
            if batch.readings:
                conn.executemany(
                    "insert into readings (interval, participant, exported_wh, imported_wh, signature)"
                    " values (?, ?, ?, ?, ?) on conflict(interval, participant) do update set"
                    " exported_wh = excluded.exported_wh, imported_wh = excluded.imported_wh,"
                    " signature = excluded.signature",
                    batch.readings,
                )
            if batch.acks:
                conn.executemany(
                    "insert into acks (sender, interval, kind, seq, ok, reason) values (?, ?, ?, ?, ?, ?)"
                    " on conflict(sender, interval, kind) do update set seq = excluded.seq, ok = excluded.ok,"
                    " reason = excluded.reason",
                    batch.acks,
                )
            if batch.seqs:
                conn.executemany(
                    "insert into envelope_seq (sender, last_seq) values (?, ?)"
                    " on conflict(sender) do update set last_seq = excluded.last_seq",
                    sorted(batch.seqs.items()),
                )
            if batch.rejections:
                conn.executemany(
                    "insert into rejections (sender, reason, message, ts) values (?, ?, ?, ?)", batch.rejections
                )


@dataclass
class MessageBatch:
    """Rows from a batch of agent messages, written by :meth:`Store.store_messages`."""

    telemetry: list[tuple[str, int, float, float, float, str]] = field(default_factory=list)
    readings: list[tuple[int, str, int, int, str]] = field(default_factory=list)
    acks: list[tuple[str, int, str, int, int, str | None]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)  # sender -> last accepted seq
    rejections: list[tuple[str, str, str, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.telemetry) + len(self.readings) + len(self.acks) + len(self.seqs) + len(self.rejections)
