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
        {"sender": str, "record_id": int, "ts": float, "net_export_w": float, "soc": float, "devices": str,
         "outbox_pending": int},
        ("sender", "record_id"),
    ),
    # Sites' own forecasts (``forecast`` envelopes), one row per target window, series and horizon.
    "forecasts": (
        {"sender": str, "series": str, "horizon_s": float, "target_start": float, "target_end": float,
         "made_ts": float, "point_w": float, "lower80_w": float, "upper80_w": float, "lower95_w": float,
         "upper95_w": float, "model": str, "record_id": int},
        ("sender", "series", "horizon_s", "target_start"),
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


FORECAST_KEEP_S = 7 * 86_400.0  # forecasts are kept as long as the fleet keeps telemetry by default


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
        if "outbox_pending" not in self.db["telemetry"].columns_dict:  # files from before agents reported it
            self.db["telemetry"].add_column("outbox_pending", int)
        self.db["forecasts"].create_index(["target_start"], if_not_exists=True)  # retention

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

    # ------------------------------------------------------------ forecasts (read by coordinator/analytics.py)

    def add_forecasts(
        self, sender: str, record_id: int, made_ts: float, points: list[dict[str, Any]], now: float
    ) -> int:
        """Store one ``forecast`` record's points (a re-sent record overwrites itself) and apply
        the retention rule (:data:`FORECAST_KEEP_S` on the coordinator's clock) every 100th
        record of a sender. Returns how many points were stored."""
        rows = [{"sender": sender, "made_ts": made_ts, "record_id": record_id, **p} for p in points]
        with self.transaction() as db:
            db["forecasts"].upsert_all(rows, pk=("sender", "series", "horizon_s", "target_start"))
            if record_id % 100 == 0:
                db.execute("delete from forecasts where target_start < ?", [now - FORECAST_KEEP_S])
        return len(rows)

    def prune_forecasts(self, before: float) -> int:
        with self.transaction() as db:
            return int(db.execute("delete from forecasts where target_start < ?", [before]).rowcount)

    def participant_key(self, address: str) -> str | None:
        row = self.one("select ed25519_key from participants where address = ? and registered = 1", [address])
        return str(row["ed25519_key"]) if row else None
