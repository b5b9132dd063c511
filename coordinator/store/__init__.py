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
    # Fleet history (coordinator/services/fleet.py keeps the live state in memory).
    "fleet_alarms": (
        {
            "id": int,
            "sender": str,
            "code": str,
            "device": str,
            "severity": str,
            "active": int,
            "message": str,
            "ts": float,
            "received": float,
        },
        "id",
    ),
    "fleet_events": ({"id": int, "ts": float, "kind": str, "address": str, "device": str, "message": str}, "id"),
}


# Traded fills joined with their settlement where there is one: the one query behind the trade
# list (offset pages) and the analytics trades (cursor pages); callers add filters and order.
TRADES_SQL = (
    "select f.interval, f.order_id, f.owner, f.side, f.qty_wh, f.price, f.tx as commit_tx,"
    " s.delivered_wh, s.amount, s.penalty, s.tx as settle_tx"
    " from fills f left join settlements s on s.order_id = f.order_id where f.qty_wh > 0"
)
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
        # Moves each time participants' keys may have changed (registered, rotated, removed):
        # the hub keeps keys in memory while it stays the same.
        self.participants_version = 0
        for name, (cols, pk) in SCHEMA.items():
            if not self.db[name].exists():
                self.db[name].create(cols, pk=pk)
        for table, col in (
            ("orders", "interval"),
            ("fills", "interval"),
            ("settlements", "interval"),
            ("orders", "owner"),
            ("telemetry", "ts"),
        ):
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

    def apply_chain_events(self, events: list[Any], cursor: str, block: int) -> None:
        """Project decoded chain events into the tables and move the block cursor, together."""
        from coordinator.store.projection import ChainProjection

        projection = ChainProjection()
        with self.transaction() as db:
            for ev in events:
                projection.apply(db, ev)
            db["cursor"].upsert({"name": cursor, "block": block}, pk="name")
        if any(str(ev["event"]).startswith("Participant") for ev in events):
            self.participants_version += 1  # caches of participants' keys start again

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

    # ------------------------------------------------------------ forecasts (read by coordinator/store/analytics.py)

    def add_forecasts(
        self, sender: str, record_id: int, made_ts: float, points: list[dict[str, Any]], now: float
    ) -> int:
        """Store one ``forecast`` record's points (a re-sent record overwrites itself) and apply
        the retention rule (:data:`FORECAST_KEEP_S` on the coordinator's clock) every 100th
        record of a sender. Returns how many points were stored."""
        with self.transaction() as db:
            return _put_forecasts(db, sender, record_id, made_ts, points, now)

    def prune_messages(self, before: float, rejections_kept: int) -> dict[str, int]:
        """The retention rule for what agents send: telemetry and forecasts older than ``before``,
        and refused messages older than it or beyond the newest ``rejections_kept``, are deleted.
        Returns the rows deleted per table."""
        with self.transaction() as db:
            out = {
                "telemetry": db.execute("delete from telemetry where ts < ?", [before]).rowcount,
                "forecasts": db.execute("delete from forecasts where target_start < ?", [before]).rowcount,
                "rejections": db.execute(
                    "delete from rejections where ts < ? or id <= (select coalesce(max(id), 0) from rejections) - ?",
                    [before, rejections_kept],
                ).rowcount,
            }
        return {k: int(v) for k, v in out.items()}

    def prune_forecasts(self, before: float) -> int:
        with self.transaction() as db:
            return int(db.execute("delete from forecasts where target_start < ?", [before]).rowcount)

    def participant_key(self, address: str) -> str | None:
        row = self.one("select ed25519_key from participants where address = ? and registered = 1", [address])
        return str(row["ed25519_key"]) if row else None

    # ------------------------------------------------------------ reads for the public API

    def count_intervals(self, status: str | None = None) -> int:
        where, params = ("where status = ?", [status]) if status else ("", [])
        row = self.one(f"select count(*) as n from intervals {where}", params)
        return int(row["n"]) if row else 0

    def interval_rows(self, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        where, params = ("where status = ?", [status]) if status else ("", [])
        return self.query(f"select * from intervals {where} order by id limit ? offset ?", [*params, limit, offset])

    def interval_row(self, interval_id: int) -> dict[str, Any] | None:
        return self.one("select * from intervals where id = ?", [interval_id])

    def interval_orders(self, interval_id: int) -> list[dict[str, Any]]:
        return self.query("select * from orders where interval = ? order by block, log_index", [interval_id])

    def trade_rows(self, interval: int | None, owner: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Fills with a quantity, joined with their settlement where there is one."""
        extra, params = "", []
        if interval is not None:
            extra += " and f.interval = ?"
            params.append(interval)
        if owner is not None:
            extra += " and f.owner = ?"
            params.append(owner)
        return self.query(
            f"{TRADES_SQL} {extra} order by f.interval, f.order_id limit ? offset ?", [*params, limit, offset]
        )

    def participant_rows(self, limit: int, offset: int) -> list[dict[str, Any]]:
        """Participants in registration order, with the energy each has sold and bought."""
        return self.query(
            """
            select p.address, p.ed25519_key, p.zone, p.registered,
              coalesce((select sum(s.delivered_wh) from settlements s join orders o on o.id = s.order_id
                        where s.owner = p.address and o.side = 'offer'), 0) as sold_wh,
              coalesce((select sum(s.delivered_wh) from settlements s join orders o on o.id = s.order_id
                        where s.owner = p.address and o.side = 'bid'), 0) as bought_wh
            from participants p order by p.block, p.address limit ? offset ?
            """,
            [limit, offset],
        )

    def count_participants(self) -> int:
        row = self.one("select count(*) as n from participants")
        return int(row["n"]) if row else 0

    def next_own_seq(self, sender: str) -> int:
        """The next sequence number for one of the coordinator's own senders, persisted so it
        keeps growing across restarts."""
        return self.reserve_seqs(sender, 1)

    def close(self) -> None:
        with self.lock:
            self.db.conn.close()

    # ------------------------------------------------------------ reads for the market lifecycle

    def traders(self, interval_id: int) -> set[str]:
        """Owners with a traded (non-zero) fill in the interval."""
        return {r["owner"] for r in self.query("select owner from fills where interval = ? and qty_wh > 0", [interval_id])}

    def live_orders(self, interval_id: int) -> list[dict[str, Any]]:
        """Every live order of the interval (partly committed ones included) in chain order."""
        return self.query(
            "select * from orders where interval = ? and status in ('open', 'filled', 'unfilled') "
            "order by block, log_index",
            [interval_id],
        )

    def order_locks(self, interval_id: int) -> dict[int, dict[str, Any]]:
        """Each order's escrow lock, by chain order id."""
        rows = self.query("select id, locked from orders where interval = ?", [interval_id])
        return {int(r["id"]): r for r in rows}

    def readings(self, interval_id: int) -> list[dict[str, Any]]:
        """The signed meter readings received for the interval."""
        return self.query("select * from readings where interval = ?", [interval_id])

    # ------------------------------------------------------------ fleet history

    def add_fleet_alarm(self, row: dict[str, Any]) -> None:
        with self.transaction() as db:
            db["fleet_alarms"].insert(row)

    def add_fleet_events(self, rows: list[dict[str, Any]]) -> None:
        with self.transaction() as db:
            db["fleet_events"].insert_all(rows)

    def prune_fleet(self, before: float) -> int:
        """Delete the fleet's alarm and event history older than ``before`` (telemetry follows the
        coordinator's retention rule, :meth:`prune_messages`); returns the rows deleted."""
        with self.transaction() as db:
            n = db.execute("delete from fleet_alarms where received < ?", [before]).rowcount
            n += db.execute("delete from fleet_events where ts < ?", [before]).rowcount
        return int(n)

    def telemetry_history(self, address: str, limit: int) -> list[dict[str, Any]]:
        """A site's newest telemetry records first, devices decoded."""
        rows = self.query(
            "select record_id, ts, net_export_w, soc, devices from telemetry where sender = ? order by ts desc limit ?",
            [address, limit],
        )
        for r in rows:
            r["devices"] = json.loads(r["devices"]) if r["devices"] else {}
        return rows

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
                    "insert into telemetry (sender, record_id, ts, net_export_w, soc, devices, outbox_pending)"
                    " values (?, ?, ?, ?, ?, ?, ?) on conflict(sender, record_id) do update set ts = excluded.ts,"
                    " net_export_w = excluded.net_export_w, soc = excluded.soc, devices = excluded.devices,"
                    " outbox_pending = excluded.outbox_pending",
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
            for sender, record_id, made_ts, points, now in batch.forecasts:
                _put_forecasts(db, sender, record_id, made_ts, points, now)
            if batch.rejections:
                conn.executemany(
                    "insert into rejections (sender, reason, message, ts) values (?, ?, ?, ?)", batch.rejections
                )


@dataclass
class MessageBatch:
    """Rows from a batch of agent messages, written by :meth:`Store.store_messages`."""

    telemetry: list[tuple[str, int, float, float, float, str, int | None]] = field(default_factory=list)
    # (sender, record_id, made_ts, points, now): one ``forecast`` record each
    forecasts: list[tuple[str, int, float, list[dict[str, Any]], float]] = field(default_factory=list)
    readings: list[tuple[int, str, int, int, str]] = field(default_factory=list)
    acks: list[tuple[str, int, str, int, int, str | None]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)  # sender -> last accepted seq
    rejections: list[tuple[str, str, str, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.telemetry) + len(self.forecasts) + len(self.readings) + len(self.acks) + len(self.seqs) + len(self.rejections)


def _put_forecasts(
    db: sqlite_utils.Database, sender: str, record_id: int, made_ts: float, points: list[dict[str, Any]], now: float
) -> int:
    """One ``forecast`` record's points (a re-sent record overwrites itself); every 100th record
    of a sender also applies the retention rule (:data:`FORECAST_KEEP_S` on the coordinator's clock)."""
    rows = [{"sender": sender, "made_ts": made_ts, "record_id": record_id, **p} for p in points]
    db["forecasts"].upsert_all(rows, pk=("sender", "series", "horizon_s", "target_start"))
    if record_id % 100 == 0:
        db.execute("delete from forecasts where target_start < ?", [now - FORECAST_KEEP_S])
    return len(rows)
