"""The analytics store API on a synthetic store: figures against sums computed here from the
rows written, stable cursors, range filters, the event log. No chain needed."""

from __future__ import annotations

import pytest

from coordinator.store import Store
from coordinator.store.analytics import MAX_EVENTS_KEPT, Analytics, AnalyticsError, CursorError, NotFound, Tariff
from coordinator.store.synthetic import START_TS, ZONES, populate, site_address

DAYS, SITES, FIRST = 2, 6, 1_000_000


@pytest.fixture(scope="module")
def analytics() -> Analytics:
    store = Store(":memory:")
    a = Analytics(store, ZONES, Tariff(import_price=300, export_price=80))
    populate(store, DAYS, SITES, first_id=FIRST)
    return a


def _walk(fetch, limit):  # noqa: ANN001, ANN202 - every page of a listing through its cursor
    rows, cursor = [], None
    while True:
        page = fetch(cursor=cursor, limit=limit)
        rows += page.data
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


def test_market_series_pages_cover_everything_once(analytics: Analytics) -> None:
    rows = _walk(analytics.market_series, 37)
    assert [r["id"] for r in rows] == list(range(FIRST, FIRST + DAYS * 96))
    one = analytics.market_series(limit=1000).data
    assert rows == one


def test_market_series_zone_volumes_match_the_fills(analytics: Analytics) -> None:
    store = analytics.store
    k = FIRST + 17
    point = analytics.market_series(since=START_TS + 17 * 900, until=START_TS + 18 * 900).data
    assert [p["id"] for p in point] == [k]
    fills = store.query("select f.owner, f.side, f.qty_wh from fills f where interval = ?", [k])
    zone_of = {r["address"]: r["zone"] for r in store.query("select address, zone from participants")}
    for zone, name in ZONES.items():
        sold = sum(f["qty_wh"] for f in fills if f["side"] == "offer" and zone_of[f["owner"]] == zone)
        bought = sum(f["qty_wh"] for f in fills if f["side"] == "bid" and zone_of[f["owner"]] == zone)
        assert point[0]["zones"][name]["sold_wh"] == sold
        assert point[0]["zones"][name]["bought_wh"] == bought
    iv = store.one("select * from intervals where id = ?", [k])
    assert point[0]["congestion_rent"] == iv["buyers_pay"] - iv["sellers_receive"] - iv["fee_revenue"]
    assert point[0]["zones"]["feeder-b"]["price"] == iv["clearing_price"] + 3


def test_cursor_is_stable_while_rows_are_appended() -> None:
    store = Store(":memory:")
    a = Analytics(store, ZONES)
    populate(store, 1, 2, first_id=10)
    first = a.market_series(limit=50)
    store.db.conn.execute(
        "insert into intervals (id, status, delivery_start) values (?, 'open', ?)", [9, START_TS - 900]
    )  # a row that sorts before the cursor must not shift the next page
    second = a.market_series(cursor=first.next_cursor, limit=50)
    assert second.data[0]["id"] == first.data[-1]["id"] + 1


@pytest.mark.parametrize(
    "cursor",
    ["zzz", "", "WyJ0cmFkZXMiLDFd", "WyJtYXJrZXQiLCJ4Il0", "WyJtYXJrZXQiLDk5OTk5OTk5OTk5OTk5OTk5OTk5OTldXQ", "!!"],
)
def test_foreign_cursors_are_refused(analytics: Analytics, cursor: str) -> None:
    with pytest.raises(CursorError):
        analytics.market_series(cursor=cursor or "=")


def test_cursor_of_one_list_is_refused_by_another(analytics: Analytics) -> None:
    c = analytics.trades(limit=1).next_cursor
    assert c is not None
    with pytest.raises(CursorError):
        analytics.market_series(cursor=c)


def test_backwards_range_is_an_error(analytics: Analytics) -> None:
    with pytest.raises(AnalyticsError, match="before since"):
        analytics.market_series(since=START_TS + 10, until=START_TS)


def test_trades_pages_are_complete_and_ordered(analytics: Analytics) -> None:
    rows = _walk(lambda cursor, limit: analytics.trades(owner=site_address(1), cursor=cursor, limit=limit), 25)
    assert len(rows) == DAYS * 96
    keys = [(r["interval"], r["order_id"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_participant_summary_matches_its_settlements(analytics: Analytics) -> None:
    store = analytics.store
    seller, buyer = site_address(0), site_address(1)
    since, until = START_TS + 86_400, START_TS + 2 * 86_400
    ids = [r["id"] for r in store.query("select id from intervals where delivery_start >= ? and delivery_start < ?",
                                        [since, until])]
    for who in (seller, buyer):
        s = store.query(
            f"select s.*, f.side from settlements s join fills f using (order_id) where s.owner = ? "
            f"and s.interval in ({','.join('?' * len(ids))})",
            [who, *ids],
        )
        got = analytics.participant_summary(who, since, until)
        sold = sum(r["delivered_wh"] for r in s if r["side"] == "offer")
        bought = sum(r["delivered_wh"] for r in s if r["side"] == "bid")
        received = sum(r["amount"] for r in s if r["side"] == "offer")
        paid = sum(r["amount"] for r in s if r["side"] == "bid")
        forfeited = sum(r["penalty"] for r in s if r["side"] == "offer")
        compensated = sum(r["penalty"] for r in s if r["side"] == "bid")
        assert (got["sold_wh"], got["bought_wh"], got["received"], got["paid"]) == (sold, bought, received, paid)
        assert got["forfeited"] == forfeited and got["compensated"] == compensated
        assert got["intervals"] == 96
        assert got["saving"] == bought * 300 - paid + received - sold * 80 - forfeited + compensated
    assert analytics.participant_summary(seller)["forfeited"] > 0  # site 0 under-delivers now and then
    cheap = analytics.participant_summary(buyer, tariff=Tariff(import_price=0, export_price=0))
    assert cheap["saving"] == -cheap["paid"] + cheap["compensated"]


def test_participant_intervals_sum_to_the_summary(analytics: Analytics) -> None:
    who = site_address(2)
    rows = _walk(lambda cursor, limit: analytics.participant_intervals(who, cursor=cursor, limit=limit), 40)
    total = analytics.participant_summary(who)
    for key in ("sold_wh", "received", "forfeited", "saving"):
        assert sum(r[key] for r in rows) == total[key]


def test_unknown_ids_are_not_found(analytics: Analytics) -> None:
    with pytest.raises(NotFound):
        analytics.participant_summary("0x" + "ab" * 20)
    with pytest.raises(NotFound):
        analytics.depth(5)
    with pytest.raises(NotFound):
        analytics.telemetry("0x" + "ab" * 20)
    with pytest.raises(NotFound):
        analytics.acknowledge(10**12, 0.0, "operator")


def test_depth_curves_are_cumulative_and_sorted(analytics: Analytics) -> None:
    k = FIRST + 5
    d = analytics.depth(k)
    offers = analytics.store.query("select price, qty_wh from orders where interval = ? and side = 'offer'", [k])
    assert d["supply"][-1]["cumulative_wh"] == sum(o["qty_wh"] for o in offers)
    assert [lvl["price"] for lvl in d["supply"]] == sorted(lvl["price"] for lvl in d["supply"])
    assert [lvl["price"] for lvl in d["demand"]] == sorted((lvl["price"] for lvl in d["demand"]), reverse=True)
    assert set(d["zones"]) == set(ZONES.values())


def test_telemetry_range_and_pages(analytics: Analytics) -> None:
    who = site_address(3)
    rows = _walk(lambda cursor, limit: analytics.telemetry(who, START_TS, START_TS + 86_400, cursor, limit), 30)
    assert len(rows) == 96 and all(START_TS <= r["ts"] < START_TS + 86_400 for r in rows)
    sites = analytics.sites()
    assert len(sites) == SITES and sites[3]["ts"] == START_TS + (DAYS * 96 - 1) * 900


def test_alarm_without_optional_fields_and_acknowledgement() -> None:
    a = Analytics(Store(":memory:"))
    bare = a.record_alarm(10.0, "0xabc", {"code": "link", "message": "lost the inverter"})
    full = a.record_alarm(11.0, "0xabc", {"code": "overtemp", "message": "hot", "device": "battery0",
                                          "severity": "critical", "active": True, "extra": 1})
    ev = a.event(bare)
    assert (ev["severity"], ev["device"], ev["active"]) == ("warning", None, None)
    ev = a.event(full)
    assert (ev["severity"], ev["device"], ev["active"], ev["data"]) == ("critical", "battery0", True, {"extra": 1})
    assert [e["id"] for e in a.events(kind="alarm", unacked=True).data] == [bare, full]
    acked = a.acknowledge(full, 12.0, "operator")
    assert acked["acked_at"] == 12.0 and acked["acked_by"] == "operator"
    assert a.acknowledge(full, 13.0, "someone")["acked_at"] == 12.0  # the first acknowledgement stays
    assert [e["id"] for e in a.events(kind="alarm", unacked=True).data] == [bare]
    with pytest.raises(AnalyticsError):
        a.add_event(1.0, "nonsense", "x")


def test_config_results_are_logged_with_the_reason() -> None:
    a = Analytics(Store(":memory:"))
    a.record_config_result(1.0, "0xabc", {"config_id": 4, "ok": False, "reason": "below floor", "applied": {}})
    a.record_config_result(2.0, "0xabc", {"config_id": 5, "ok": True, "reason": "", "applied": {"reserve_soc": 0.4}})
    refused, applied = a.events().data
    assert refused["kind"] == "config_refused" and "below floor" in refused["message"]
    assert applied["kind"] == "config_applied" and applied["data"]["applied"] == {"reserve_soc": 0.4}


def test_event_log_is_bounded() -> None:
    a = Analytics(Store(":memory:"))
    a.store.db.conn.execute(
        "insert into event_log (id, ts, kind, message, data) values (?, 0, 'operator', 'old', '{}')",
        [MAX_EVENTS_KEPT * 2 - 1],
    )
    a.store.db.conn.executemany(
        "insert into event_log (id, ts, kind, message, data) values (?, 0, 'operator', 'old', '{}')",
        [(i,) for i in range(1, 50)],
    )
    new = a.add_event(1.0, "operator", "the one that prunes")
    assert new % 1000 == 0
    assert a.store.one("select min(id) as m from event_log")["m"] > new - MAX_EVENTS_KEPT
