"""Typed read (and event-log write) API over the coordinator's store, for the analytics routes,
the dashboard and the metrics. No SQL lives in the routes; all of it is here.

Every list is a :class:`Page`: rows in a fixed order and an opaque ``next_cursor`` naming the
last row's sort key (keyset pagination: stable while rows are appended, never skips or repeats).
Time filters take seconds (UTC epoch, the coordinator's clock): an interval is in a range when
its ``delivery_start`` is, a telemetry record or event when its ``ts`` is.

Money in token base units (6 decimals), energy in Wh, prices in base units per Wh.

Errors::

    AnalyticsError (ValueError)
     ├── CursorError        a cursor that this API did not hand out
     └── NotFound (LookupError)   an unknown interval, participant or event
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from coordinator.store import TRADES_SQL, Store
from gridswarm.errors import GridSwarmError

__all__ = [
    "EVENT_KINDS",
    "MAX_EVENTS_KEPT",
    "Analytics",
    "AnalyticsError",
    "CursorError",
    "NotFound",
    "Page",
    "Tariff",
]

MAX_EVENTS_KEPT = 100_000  # the event log keeps the newest this many entries
EVENT_KINDS = ("alarm", "config_sent", "config_applied", "config_refused", "operator")


class AnalyticsError(GridSwarmError, ValueError):
    """A query that cannot be answered as asked."""


class CursorError(AnalyticsError):
    def __init__(self, cursor: str) -> None:
        super().__init__(f"cursor {cursor[:40]!r} is not one this API handed out")
        self.cursor = cursor


class NotFound(AnalyticsError, LookupError):
    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key} not found")
        self.what = what
        self.key = key


@dataclass(frozen=True, slots=True)
class Tariff:
    """What a participant would pay the grid per Wh imported and get per Wh exported."""

    import_price: int
    export_price: int


@dataclass(slots=True)
class Page:
    data: list[dict[str, Any]]
    next_cursor: str | None = None
    columns: list[str] = field(default_factory=list)


def encode_cursor(kind: str, key: list[Any]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str, types: tuple[type, ...]) -> list[Any] | None:
    """The sort key a cursor names, checked against the list it was made for."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise CursorError(cursor) from exc
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != kind:
        raise CursorError(cursor)
    key = value[1:]
    for v, t in zip(key, types, strict=True):
        if isinstance(v, bool) or not isinstance(v, t):
            raise CursorError(cursor)
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            raise CursorError(cursor)
    return key


def _range(col: str, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    if since is not None and until is not None and until < since:
        raise AnalyticsError(f"until ({until:g}) is before since ({since:g})")
    sql, params = "", []
    if since is not None:
        sql += f" and {col} >= ?"
        params.append(since)
    if until is not None:
        sql += f" and {col} < ?"
        params.append(until)
    return sql, params


_EVENT_TABLE = {
    "id": int,
    "ts": float,
    "kind": str,
    "site": str,
    "device": str,
    "code": str,
    "severity": str,
    "active": int,
    "message": str,
    "data": str,
    "acked_at": float,
    "acked_by": str,
}

# Covering indexes, ordered so that one participant's (or one interval's) rows are adjacent
# and the joins below walk two indexes side by side instead of seeking across the tables.
_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("intervals", ("delivery_start",)),
    ("fills", ("owner", "interval", "order_id", "side", "qty_wh")),
    ("fills", ("interval", "order_id", "side", "qty_wh")),
    ("settlements", ("owner", "interval", "order_id", "delivered_wh", "amount", "penalty")),
    ("orders", ("interval", "id", "zone")),
    ("orders", ("interval", "side", "price")),
    ("telemetry", ("sender", "ts")),
    ("telemetry", ("ts",)),
    ("event_log", ("ts",)),
    ("event_log", ("site", "id")),
    ("forecasts", ("sender", "series", "target_start", "horizon_s")),
    ("lifecycle", ("stage", "delivery_end", "updated")),  # settlement latency, read from the index alone
)

# Which telemetry devices a forecast series is measured by, and the sign that makes it positive
# (device sign: + = delivering, so a load's consumption is negative).
_ACTUAL = {"demand": ("load", -1.0), "pv": ("pv", 1.0)}
FORECAST_SUMMARY_S = 86_400.0  # the error summary's default period: the day before the newest forecast
SETTLE_BUCKETS_S = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)  # settlement latency histogram


class Analytics:
    """Queries over one :class:`Store`; ``zones`` maps on-chain zone numbers to names."""

    def __init__(self, store: Store, zones: dict[int, str] | None = None, tariff: Tariff | None = None) -> None:
        self.store = store
        self.zones = dict(zones or {})
        self.tariff = tariff or Tariff(import_price=300, export_price=80)
        db = store.db
        with store.lock:
            if not db.table("event_log").exists():
                db.table("event_log").create(_EVENT_TABLE, pk="id", not_null={"ts", "kind"})
            # Written by the market loop (with alter=True) only once an interval clears.
            for col in ("fee_revenue", "buyers_pay", "sellers_receive"):
                if col not in db.table("intervals").columns_dict:
                    db.table("intervals").add_column(col, int)
            for table, cols in _INDEXES:
                if db.table(table).exists():
                    db.table(table).create_index(list(cols), if_not_exists=True)

    def zone_name(self, zone: int) -> str:
        return self.zones.get(int(zone), str(zone))

    # ------------------------------------------------------------------ market

    def market_series(
        self, since: float | None = None, until: float | None = None, cursor: str | None = None, limit: int = 500
    ) -> Page:
        """Per interval: price, volume, welfare, fees, congestion rent, and per zone price and
        energy sold/bought by that zone's participants."""
        after = decode_cursor(cursor, "market", (int,))
        where, params = _range("delivery_start", since, until)
        if after:
            where += " and id > ?"
            params.append(after[0])
        rows = self.store.query(
            f"""select id, status, delivery_start, delivery_end, mechanism, clearing_price, volume_wh,
                       welfare, fee_revenue, buyers_pay, sellers_receive, zone_prices, flows,
                       delivered_wh, shortfall_wh, n_orders, n_fills
                from intervals where 1 = 1 {where} order by id limit ?""",
            [*params, limit],
        )
        zone_volume = self._zone_volumes(int(rows[0]["id"]), int(rows[-1]["id"])) if rows else {}
        data = []
        for r in rows:
            zone_prices = json.loads(r.pop("zone_prices") or "{}")
            flows = json.loads(r.pop("flows") or "{}")
            pay, receive, fees = r.get("buyers_pay"), r.get("sellers_receive"), r.get("fee_revenue")
            rent = None
            if pay is not None and receive is not None and fees is not None:
                rent = pay - receive - fees
            r["congestion_rent"] = rent
            zones: dict[str, dict[str, Any]] = {}
            for name, price in zone_prices.items():
                zones.setdefault(name, {"price": None, "sold_wh": 0, "bought_wh": 0})["price"] = price
            for (zone, side), qty in zone_volume.get(int(r["id"]), {}).items():
                z = zones.setdefault(self.zone_name(zone), {"price": r["clearing_price"], "sold_wh": 0, "bought_wh": 0})
                z["sold_wh" if side == "offer" else "bought_wh"] += qty
            r["zones"] = zones
            r["flows"] = flows
            data.append(r)
        nxt = encode_cursor("market", [data[-1]["id"]]) if len(data) == limit else None
        return Page(data, nxt)

    def _zone_volumes(self, first: int, last: int) -> dict[int, dict[tuple[int, str], int]]:
        rows = self.store.query(
            """select f.interval, o.zone, f.side, sum(f.qty_wh) as qty
               from fills f join orders o on o.interval = f.interval and o.id = f.order_id
               where f.interval between ? and ? and f.qty_wh > 0
               group by f.interval, o.zone, f.side""",
            [first, last],
        )
        out: dict[int, dict[tuple[int, str], int]] = {}
        for r in rows:
            out.setdefault(int(r["interval"]), {})[(int(r["zone"]), str(r["side"]))] = int(r["qty"])
        return out

    def latest_interval(self, status: str | None = None) -> int | None:
        if status:
            row = self.store.one("select max(id) as id from intervals where status = ?", [status])
        else:
            row = self.store.one("select max(id) as id from intervals where n_orders > 0")
        return None if row is None or row["id"] is None else int(row["id"])

    def depth(self, interval: int) -> dict[str, Any]:
        """The interval's order book as supply (offers, ascending price) and demand (bids,
        descending price) step curves: cumulative Wh at each price, per zone and overall."""
        head = self.store.one("select id, status, clearing_price, zone_prices from intervals where id = ?", [interval])
        if head is None:
            raise NotFound("interval", interval)
        rows = self.store.query(
            """select side, price, zone, sum(qty_wh) as qty from orders where interval = ?
               group by side, zone, price""",
            [interval],
        )

        def curve(side: str, zone: int | None) -> list[dict[str, int]]:
            levels: dict[int, int] = {}
            for r in rows:
                if r["side"] == side and (zone is None or int(r["zone"]) == zone):
                    levels[int(r["price"])] = levels.get(int(r["price"]), 0) + int(r["qty"])
            out, total = [], 0
            for price in sorted(levels, reverse=(side == "bid")):
                total += levels[price]
                out.append({"price": price, "qty_wh": levels[price], "cumulative_wh": total})
            return out

        zones = sorted({int(r["zone"]) for r in rows})
        return {
            "interval": interval,
            "status": head["status"],
            "clearing_price": head["clearing_price"],
            "zone_prices": json.loads(head["zone_prices"] or "{}"),
            "supply": curve("offer", None),
            "demand": curve("bid", None),
            "zones": {self.zone_name(z): {"supply": curve("offer", z), "demand": curve("bid", z)} for z in zones},
        }

    def trades(
        self,
        since: float | None = None,
        until: float | None = None,
        owner: str | None = None,
        interval: int | None = None,
        cursor: str | None = None,
        limit: int = 500,
    ) -> Page:
        after = decode_cursor(cursor, "trades", (int, str))
        where, params = "", []
        r, p = self._interval_range(since, until)
        where += r
        params += p
        if owner is not None:
            where += " and f.owner = ?"
            params.append(owner)
        if interval is not None:
            where += " and f.interval = ?"
            params.append(interval)
        if after:
            where += " and (f.interval > ? or (f.interval = ? and f.order_id > ?))"
            params += [after[0], after[0], after[1]]
        rows = self.store.query(f"{TRADES_SQL} {where} order by f.interval, f.order_id limit ?", [*params, limit])
        nxt = encode_cursor("trades", [rows[-1]["interval"], rows[-1]["order_id"]]) if len(rows) == limit else None
        return Page(rows, nxt)

    def _interval_range(self, since: float | None, until: float | None) -> tuple[str, list[Any]]:
        """``f.interval`` bounds for a time range. Interval ids grow with delivery time (interval
        k delivers from k × interval length, see coordinator/market/loop.py), so the intervals
        that start in a range are a range of ids: a bound the owner-ordered indexes can use."""
        if since is None and until is None:
            return "", []
        where, params = _range("delivery_start", since, until)
        row = self.store.one(f"select min(id) as lo, max(id) as hi from intervals where 1 = 1 {where}", params)
        if row is None or row["lo"] is None:
            return " and 0", []
        return " and f.interval between ? and ?", [int(row["lo"]), int(row["hi"])]

    # ------------------------------------------------------------------ participants

    def participant(self, address: str) -> dict[str, Any]:
        row = self.store.one("select address, zone, registered from participants where address = ?", [address])
        if row is None:
            raise NotFound("participant", address)
        row["zone_name"] = self.zone_name(int(row["zone"]))
        return row

    def _money_sql(self, extra: str) -> str:
        return f"""
            select f.interval,
              sum(case when f.side = 'offer' then coalesce(s.delivered_wh, 0) else 0 end) as sold_wh,
              sum(case when f.side = 'bid' then coalesce(s.delivered_wh, 0) else 0 end) as bought_wh,
              sum(case when f.side = 'offer' then coalesce(s.amount, 0) else 0 end) as received,
              sum(case when f.side = 'bid' then coalesce(s.amount, 0) else 0 end) as paid,
              sum(case when f.side = 'offer' then coalesce(s.penalty, 0) else 0 end) as forfeited,
              sum(case when f.side = 'bid' then coalesce(s.penalty, 0) else 0 end) as compensated,
              sum(f.qty_wh) as traded_wh
            from fills f left join settlements s
              on s.owner = f.owner and s.interval = f.interval and s.order_id = f.order_id
            where f.owner = ? and f.qty_wh > 0 {extra}
            """

    def _with_saving(self, r: dict[str, Any], tariff: Tariff) -> dict[str, Any]:
        # The saving against the grid: what the bought energy would have cost at the import
        # tariff less what it cost here, plus what was received here less what the sold
        # energy would have earned at the export tariff; forfeits count against it.
        for k in ("sold_wh", "bought_wh", "received", "paid", "forfeited", "compensated", "traded_wh"):
            r[k] = int(r.get(k) or 0)
        r["grid_cost"] = r["bought_wh"] * tariff.import_price
        r["grid_revenue"] = r["sold_wh"] * tariff.export_price
        r["saving"] = (
            r["grid_cost"] - r["paid"] + r["received"] - r["grid_revenue"] - r["forfeited"] + r["compensated"]
        )
        return r

    def participant_summary(
        self, address: str, since: float | None = None, until: float | None = None, tariff: Tariff | None = None
    ) -> dict[str, Any]:
        """Energy, money, forfeits and the saving against the tariff over a period."""
        tariff = tariff or self.tariff
        head = self.participant(address)
        extra, params = self._interval_range(since, until)
        row = self.store.one(self._money_sql(extra), [address, *params]) or {}
        row.pop("interval", None)
        n = self.store.one(
            f"select count(distinct f.interval) as n from fills f where f.owner = ? and f.qty_wh > 0 {extra}",
            [address, *params],
        )
        out = {**head, **self._with_saving(row, tariff), "intervals": int(n["n"]) if n else 0}
        out["tariff"] = {"import_price": tariff.import_price, "export_price": tariff.export_price}
        return out

    def participant_intervals(
        self,
        address: str,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 500,
        tariff: Tariff | None = None,
    ) -> Page:
        tariff = tariff or self.tariff
        self.participant(address)
        after = decode_cursor(cursor, "pint", (int,))
        extra, params = self._interval_range(since, until)
        if after:
            extra += " and f.interval > ?"
            params.append(after[0])
        rows = self.store.query(
            self._money_sql(extra) + " group by f.interval order by f.interval limit ?", [address, *params, limit]
        )
        data = [self._with_saving(r, tariff) for r in rows]
        nxt = encode_cursor("pint", [data[-1]["interval"]]) if len(data) == limit else None
        return Page(data, nxt)

    def participants(self) -> list[dict[str, Any]]:
        rows = self.store.query("select address, zone, registered from participants order by block, address")
        for r in rows:
            r["zone_name"] = self.zone_name(int(r["zone"]))
        return rows

    # ------------------------------------------------------------------ sites (telemetry)

    def sites(self) -> list[dict[str, Any]]:
        """Every participant with its latest telemetry (``None`` fields when it never sent any)."""
        rows = self.store.query(
            """select p.address, p.zone, t.ts, t.net_export_w, t.soc, t.devices
               from participants p left join telemetry t on t.sender = p.address and t.record_id =
                 (select record_id from telemetry where sender = p.address order by ts desc limit 1)
               order by p.block, p.address"""
        )
        for r in rows:
            r["zone_name"] = self.zone_name(int(r["zone"]))
            r["devices"] = json.loads(r["devices"]) if r["devices"] else {}
        return rows

    def telemetry(
        self,
        sender: str,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 500,
    ) -> Page:
        self.participant(sender)
        after = decode_cursor(cursor, "tel", (float, int))
        where, params = _range("ts", since, until)
        if after:
            where += " and (ts > ? or (ts = ? and record_id > ?))"
            params += [after[0], after[0], after[1]]
        rows = self.store.query(
            f"""select ts, record_id, net_export_w, soc, devices from telemetry
                where sender = ? {where} order by ts, record_id limit ?""",
            [sender, *params, limit],
        )
        for r in rows:
            r["ts"] = float(r["ts"])
            r["devices"] = json.loads(r["devices"]) if r["devices"] else {}
        nxt = encode_cursor("tel", [rows[-1]["ts"], rows[-1]["record_id"]]) if len(rows) == limit else None
        return Page(rows, nxt)

    # ------------------------------------------------------------------ forecast vs actual

    def _actuals(
        self, sender: str, series: str, start: float, end: float
    ) -> tuple[list[float], list[float], float | None]:
        """The site's measured ``series`` power per telemetry record in ``[start, end)`` (times
        and values, in time order; records without such a device are left out) and the newest
        telemetry time of the site."""
        kind, sign = _ACTUAL[series]
        rows = self.store.query(
            """select ts, (select sum(json_extract(d.value, '$.power_w')) from json_each(t.devices) d
                              where json_extract(d.value, '$.kind') = ?) as p
               from telemetry t where sender = ? and ts >= ? and ts < ? order by ts""",
            [kind, sender, start, end],
        )
        last = self.store.one("select max(ts) as ts from telemetry where sender = ?", [sender])
        ts = [float(r["ts"]) for r in rows if r["p"] is not None]
        vals = [sign * float(r["p"]) for r in rows if r["p"] is not None]
        return ts, vals, (float(last["ts"]) if last and last["ts"] is not None else None)

    def _with_actuals(self, sender: str, series: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each forecast row with the actual mean over its window (None until the window has
        passed in the site's telemetry) and its error."""
        import bisect

        if not rows:
            return rows
        ts, vals, last = self._actuals(sender, series, min(r["target_start"] for r in rows),
                                       max(r["target_end"] for r in rows))
        for r in rows:
            lo, hi = bisect.bisect_left(ts, r["target_start"]), bisect.bisect_left(ts, r["target_end"])
            done = last is not None and last >= r["target_end"] and hi > lo
            actual = sum(vals[lo:hi]) / (hi - lo) if done else None
            r["actual_w"] = None if actual is None else round(actual, 1)
            r["actual_samples"] = hi - lo if done else 0
            r["error_w"] = None if actual is None else round(r["point_w"] - actual, 1)
            r["in_80"] = None if actual is None else r["lower80_w"] <= actual <= r["upper80_w"]
            r["in_95"] = None if actual is None else r["lower95_w"] <= actual <= r["upper95_w"]
        return rows

    def forecasts(
        self,
        sender: str,
        series: str = "demand",
        horizon_s: float | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 500,
    ) -> Page:
        """A site's forecasts of ``series`` against what its telemetry measured, by target
        window (``since``/``until`` filter ``target_start``), then horizon."""
        self.participant(sender)
        if series not in _ACTUAL:
            raise AnalyticsError(f"unknown series {series!r}")
        after = decode_cursor(cursor, "fc", (float, float))
        where, params = _range("target_start", since, until)
        if horizon_s is not None:
            where += " and horizon_s = ?"
            params.append(float(horizon_s))
        if after:
            where += " and (target_start > ? or (target_start = ? and horizon_s > ?))"
            params += [after[0], after[0], after[1]]
        rows = self.store.query(
            f"""select series, horizon_s, target_start, target_end, made_ts, point_w, lower80_w, upper80_w,
                       lower95_w, upper95_w, model
                from forecasts where sender = ? and series = ? {where}
                order by target_start, horizon_s limit ?""",
            [sender, series, *params, limit],
        )
        for r in rows:
            for k in ("horizon_s", "target_start", "target_end", "made_ts"):
                r[k] = float(r[k])
        rows = self._with_actuals(sender, series, rows)
        nxt = encode_cursor("fc", [rows[-1]["target_start"], rows[-1]["horizon_s"]]) if len(rows) == limit else None
        return Page(rows, nxt)

    def forecast_error(
        self, sender: str, series: str = "demand", since: float | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """Per horizon over a period (default: the day before the site's newest forecast): MAE,
        MAPE (over windows whose actual is at least 1 W), bias (mean of forecast - actual) and how
        often the actual fell inside the 80 % and 95 % intervals. Only windows already measured
        count (``n``); coverage counts only forecasts with an interval (``n_interval``): until a
        site's forecaster has calibrated its intervals it sends zero-width bands."""
        self.participant(sender)
        if series not in _ACTUAL:
            raise AnalyticsError(f"unknown series {series!r}")
        _range("target_start", since, until)  # checks the order
        if since is None:
            newest = self.store.one("select max(target_start) as t from forecasts where sender = ? and series = ?",
                                    [sender, series])
            if newest and newest["t"] is not None:
                since = float(newest["t"]) - FORECAST_SUMMARY_S
                if until is not None and until < since:
                    since = until
        where, params = _range("target_start", since, until)
        rows = self.store.query(
            f"""select horizon_s, target_start, target_end, point_w, lower80_w, upper80_w, lower95_w, upper95_w
                from forecasts where sender = ? and series = ? {where} order by target_start""",
            [sender, series, *params],
        )
        rows = self._with_actuals(sender, series, rows)
        out: list[dict[str, Any]] = []
        for h in sorted({float(r["horizon_s"]) for r in rows}):
            done = [r for r in rows if float(r["horizon_s"]) == h and r["actual_w"] is not None]
            n = len(done)
            pct = [abs(r["error_w"]) / r["actual_w"] for r in done if r["actual_w"] >= 1.0]
            banded = [r for r in done if r["upper95_w"] > r["lower95_w"]]
            nb = len(banded)
            out.append({
                "horizon_s": h,
                "forecasts": sum(1 for r in rows if float(r["horizon_s"]) == h),
                "n": n,
                "mae_w": round(sum(abs(r["error_w"]) for r in done) / n, 1) if n else None,
                "mape_pct": round(100.0 * sum(pct) / len(pct), 2) if pct else None,
                "bias_w": round(sum(r["error_w"] for r in done) / n, 1) if n else None,
                "n_interval": nb,
                "coverage80": round(sum(bool(r["in_80"]) for r in banded) / nb, 4) if nb else None,
                "coverage95": round(sum(bool(r["in_95"]) for r in banded) / nb, 4) if nb else None,
            })
        return {"address": sender, "series": series, "since": since, "until": until, "horizons": out}

    # ------------------------------------------------------------------ event log

    def add_event(
        self,
        ts: float,
        kind: str,
        message: str,
        *,
        site: str | None = None,
        device: str | None = None,
        code: str | None = None,
        severity: str = "info",
        active: bool | None = None,
        data: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry; the log keeps the newest :data:`MAX_EVENTS_KEPT`."""
        if kind not in EVENT_KINDS:
            raise AnalyticsError(f"unknown event kind {kind!r}")
        with self.store.transaction() as db:
            table = db.table("event_log")
            table.insert(
                {
                    "ts": float(ts),
                    "kind": kind,
                    "site": site,
                    "device": device,
                    "code": code,
                    "severity": severity,
                    "active": None if active is None else int(active),
                    "message": message[:1024],
                    "data": json.dumps(data or {}),
                }
            )
            event_id = int(table.last_pk)  # type: ignore[arg-type]  # an integer primary key
            if event_id % 1000 == 0:
                db.execute("delete from event_log where id <= ?", [event_id - MAX_EVENTS_KEPT])
        return event_id

    def record_alarm(self, ts: float, site: str, body: dict[str, Any]) -> int:
        """An ``alarm`` envelope's body; ``device``, ``severity`` and ``active`` are optional."""
        severity = str(body["severity"]) if body.get("severity") in ("info", "warning", "critical") else "warning"
        active = body.get("active")
        return self.add_event(
            ts,
            "alarm",
            str(body.get("message", "")),
            site=site,
            device=body.get("device"),
            code=str(body.get("code", "")),
            severity=severity,
            active=None if active is None else bool(active),
            data={k: v for k, v in body.items() if k not in ("message", "code", "device", "severity", "active")},
        )

    def record_config_result(self, ts: float, site: str, body: dict[str, Any]) -> int:
        """A ``config_result`` from an agent: the change applied, or refused with its reason."""
        ok = bool(body.get("ok"))
        applied = body.get("applied") or {}
        reason = str(body.get("reason") or "")
        if ok:
            message = "applied " + ", ".join(f"{k}={v}" for k, v in applied.items())
        else:
            message = f"refused: {reason}"
        return self.add_event(
            ts,
            "config_applied" if ok else "config_refused",
            message,
            site=site,
            severity="info" if ok else "warning",
            data={"config_id": body.get("config_id"), "reason": reason, "applied": applied},
        )

    def event(self, event_id: int) -> dict[str, Any]:
        row = self.store.one("select * from event_log where id = ?", [event_id])
        if row is None:
            raise NotFound("event", event_id)
        return self._event_row(row)

    @staticmethod
    def _event_row(row: dict[str, Any]) -> dict[str, Any]:
        row["data"] = json.loads(row["data"] or "{}")
        row["active"] = None if row["active"] is None else bool(row["active"])
        return row

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
        site: str | None = None,
        unacked: bool = False,
        cursor: str | None = None,
        after_id: int | None = None,
        limit: int = 500,
    ) -> Page:
        after = decode_cursor(cursor, "ev", (int,))
        where, params = _range("ts", since, until)
        if after or after_id is not None:
            where += " and id > ?"
            params.append(max(after[0] if after else -1, after_id if after_id is not None else -1))
        if kind is not None:
            where += " and kind = ?"
            params.append(kind)
        if site is not None:
            where += " and site = ?"
            params.append(site)
        if unacked:
            where += " and acked_at is null and kind = 'alarm'"
        rows = self.store.query(f"select * from event_log where 1 = 1 {where} order by id limit ?", [*params, limit])
        data = [self._event_row(r) for r in rows]
        nxt = encode_cursor("ev", [data[-1]["id"]]) if len(data) == limit else None
        return Page(data, nxt)

    def acknowledge(self, event_id: int, ts: float, by: str) -> dict[str, Any]:
        """Mark an event seen by an operator; acknowledging twice keeps the first."""
        with self.store.transaction() as db:
            row = self.store.one("select id, acked_at from event_log where id = ?", [event_id])
            if row is None:
                raise NotFound("event", event_id)
            if row["acked_at"] is None:
                db.execute("update event_log set acked_at = ?, acked_by = ? where id = ?", [ts, by, event_id])
        return self.event(event_id)

    def last_event_id(self) -> int:
        row = self.store.one("select max(id) as id from event_log")
        return int(row["id"]) if row and row["id"] is not None else 0

    # ------------------------------------------------------------------ counts for /metrics

    def clearing_totals(self) -> tuple[int, float]:
        """Intervals cleared and committed, and the seconds that took in all."""
        row = self.store.one(
            "select count(clear_seconds) as n, coalesce(sum(clear_seconds), 0) as s from intervals"
            " where clear_seconds is not null"
        )
        return (int(row["n"]), float(row["s"])) if row else (0, 0.0)

    def unacknowledged_alarms(self) -> int:
        row = self.store.one("select count(*) as n from event_log where kind = 'alarm' and acked_at is null")
        return int(row["n"]) if row else 0

    def interval_counts(self) -> dict[str, int]:
        rows = self.store.query("select coalesce(status, 'unknown') as status, count(*) as n from intervals group by 1")
        return {str(r["status"]): int(r["n"]) for r in rows}

    def settlement_latency(self) -> tuple[list[int], int, float]:
        """Settled intervals' time from the end of delivery to the market loop seeing them
        settled on chain (the coordinator's clock; 0 for an interval settled before its delivery
        ended, e.g. one with nothing to deliver): cumulative counts per
        :data:`SETTLE_BUCKETS_S` bound, the count and the sum (s)."""
        lat = "max(0.0, updated - delivery_end)"
        buckets = ", ".join(
            f"sum(case when {lat} <= {b!r} then 1 else 0 end) as b{i}" for i, b in enumerate(SETTLE_BUCKETS_S)
        )
        row = self.store.one(
            f"""select {buckets}, count(*) as n, coalesce(sum({lat}), 0.0) as s from lifecycle
                where stage = 'settled' and updated is not null and delivery_end is not null"""
        ) or {}
        counts = [int(row.get(f"b{i}") or 0) for i in range(len(SETTLE_BUCKETS_S))]
        return counts, int(row.get("n") or 0), float(row.get("s") or 0.0)

    def outbox_backlog(self, now: float, max_age_s: float = 3_600.0) -> tuple[int, int, int]:
        """The outbox backlog agents reported in their newest telemetry of the last
        ``max_age_s``: sites reporting, total pending records, the largest one site has."""
        row = self.store.one(
            """select count(*) as n, coalesce(sum(p), 0) as total, coalesce(max(p), 0) as top from (
                 select (select outbox_pending from telemetry t where t.sender = s.sender and t.ts >= ?
                         order by t.ts desc limit 1) as p
                 from (select distinct sender from telemetry where ts >= ?) s) where p is not null""",
            [now - max_age_s, now - max_age_s],
        ) or {}
        return int(row.get("n") or 0), int(row.get("total") or 0), int(row.get("top") or 0)

    def latest_settled(self) -> dict[str, Any] | None:
        return self.store.one(
            """select id, clear_seconds, gas_commit, gas_settle from intervals
               where status = 'settled' order by id desc limit 1"""
        )
