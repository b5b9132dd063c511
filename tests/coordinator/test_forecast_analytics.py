"""Forecast vs actual, settlement latency and the agents' outbox backlog on a synthetic store:
figures against values computed here from the rows written, pages, retention. No chain."""

from __future__ import annotations

import json
import random

import pytest

from coordinator.store import FORECAST_KEEP_S, Store
from coordinator.store.analytics import SETTLE_BUCKETS_S, Analytics, AnalyticsError, CursorError, NotFound

SITE = "0x" + "11" * 20
T0 = 1_800_000_000.0
STEP = 300.0


def _telemetry(store: Store, n_steps: int, rng: random.Random) -> dict[float, list[float]]:
    """Telemetry every 30 s: a load (consumption negative) and PV; returns demand by step start."""
    by_step: dict[float, list[float]] = {}
    rows = []
    for i in range(int(n_steps * STEP / 30)):
        ts = T0 + 30.0 * i
        demand = 1000.0 + 500.0 * rng.random()
        devices = {"load0": {"kind": "load", "power_w": -demand}, "pv0": {"kind": "pv", "power_w": 200.0},
                   "grid": {"kind": "grid", "power_w": demand - 200.0}}
        rows.append({"sender": SITE, "record_id": i, "ts": ts, "net_export_w": 200.0 - demand, "soc": None,
                     "devices": json.dumps(devices), "outbox_pending": 7})
        by_step.setdefault(T0 + STEP * (i * 30 // STEP), []).append(demand)
    store.db["telemetry"].insert_all(rows, pk=("sender", "record_id"))
    return by_step


def _forecasts(store: Store, n_steps: int) -> None:
    """One record per step: 300 s and 900 s ahead, point 1250 W, bands 1100-1400 and 1000-1500."""
    for i in range(n_steps):
        made = T0 + STEP * i + 1.0
        points = [
            {"series": "demand", "horizon_s": h, "target_start": T0 + STEP * i + h - STEP,
             "target_end": T0 + STEP * i + h, "point_w": 1250.0, "lower80_w": 1100.0, "upper80_w": 1400.0,
             "lower95_w": 1000.0, "upper95_w": 1500.0, "model": "auto:persistence"}
            for h in (300.0, 900.0)
        ]
        store.add_forecasts(SITE, i + 1, made, points, made)


@pytest.fixture(scope="module")
def filled() -> tuple[Analytics, dict[float, list[float]]]:
    store = Store(":memory:")
    a = Analytics(store)
    store.db["participants"].insert({"address": SITE, "ed25519_key": "0x", "zone": 0, "registered": 1, "block": 1})
    by_step = _telemetry(store, 20, random.Random(4))
    _forecasts(store, 18)
    return a, by_step


def test_forecasts_are_paired_with_the_measured_demand(filled: tuple[Analytics, dict[float, list[float]]]) -> None:
    a, by_step = filled
    rows = a.forecasts(SITE, limit=1000).data
    assert len(rows) == 36
    assert [(r["target_start"], r["horizon_s"]) for r in rows] == sorted((r["target_start"], r["horizon_s"]) for r in rows)
    last_ts = max(t for t in by_step) + STEP - 30.0  # newest telemetry record
    measured = 0
    for r in rows:
        values = by_step.get(r["target_start"])
        if values is None or r["target_end"] > last_ts:
            assert r["actual_w"] is None and r["error_w"] is None and r["in_80"] is None
            continue
        measured += 1
        actual = sum(values) / len(values)
        assert r["actual_w"] == pytest.approx(actual, abs=0.06)
        assert r["actual_samples"] == len(values) == 10
        assert r["error_w"] == pytest.approx(1250.0 - actual, abs=0.11)
        assert r["in_80"] == (1100.0 <= actual <= 1400.0)
        assert r["in_95"] == (1000.0 <= actual <= 1500.0)
    assert measured >= 30


def test_forecast_error_summarises_the_measured_windows(filled: tuple[Analytics, dict[float, list[float]]]) -> None:
    a, _ = filled
    rows = a.forecasts(SITE, limit=1000).data
    err = a.forecast_error(SITE)
    assert [h["horizon_s"] for h in err["horizons"]] == [300.0, 900.0]
    for h in err["horizons"]:
        done = [r for r in rows if r["horizon_s"] == h["horizon_s"] and r["actual_w"] is not None]
        assert h["forecasts"] == 18 and h["n"] == len(done) > 0
        assert h["mae_w"] == pytest.approx(sum(abs(r["error_w"]) for r in done) / len(done), abs=0.1)
        mape = 100 * sum(abs(r["error_w"]) / r["actual_w"] for r in done) / len(done)
        assert h["mape_pct"] == pytest.approx(mape, abs=0.02)
        assert h["n_interval"] == len(done)  # every forecast here has a band
        assert h["coverage80"] == pytest.approx(sum(r["in_80"] for r in done) / len(done), abs=1e-4)
        assert h["coverage95"] == pytest.approx(sum(r["in_95"] for r in done) / len(done), abs=1e-4)
    pv = a.forecast_error(SITE, "pv")
    assert pv["horizons"] == []


def test_forecast_pages_and_filters(filled: tuple[Analytics, dict[float, list[float]]]) -> None:
    a, _ = filled
    every = a.forecasts(SITE, limit=1000).data
    walked, cursor = [], None
    while True:
        page = a.forecasts(SITE, cursor=cursor, limit=7)
        walked += page.data
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert walked == every
    only = a.forecasts(SITE, horizon_s=900.0, since=T0 + 3 * STEP, until=T0 + 6 * STEP).data
    assert [r["target_start"] for r in only] == [T0 + 3 * STEP, T0 + 4 * STEP, T0 + 5 * STEP]
    assert all(r["horizon_s"] == 900.0 for r in only)


def test_forecast_queries_refuse_bad_input(filled: tuple[Analytics, dict[float, list[float]]]) -> None:
    a, _ = filled
    with pytest.raises(NotFound):
        a.forecasts("0x" + "22" * 20)
    with pytest.raises(CursorError):
        a.forecasts(SITE, cursor=a.telemetry(SITE, limit=1).next_cursor)
    with pytest.raises(AnalyticsError):
        a.forecasts(SITE, since=10.0, until=5.0)
    with pytest.raises(AnalyticsError):
        a.forecast_error(SITE, "wind")


def test_forecasts_are_kept_for_a_week() -> None:
    store = Store(":memory:")
    p = {"series": "demand", "horizon_s": 300.0, "target_end": 0.0, "point_w": 1.0, "lower80_w": 1.0,
         "upper80_w": 1.0, "lower95_w": 1.0, "upper95_w": 1.0, "model": "m"}
    store.add_forecasts(SITE, 1, T0, [{**p, "target_start": T0, "target_end": T0 + STEP}], T0)
    store.add_forecasts(SITE, 99, T0, [{**p, "target_start": T0 + 1, "target_end": T0 + STEP}], T0)
    assert store.one("select count(*) as n from forecasts")["n"] == 2  # type: ignore[index]
    later = T0 + FORECAST_KEEP_S + 2
    store.add_forecasts(SITE, 100, later, [{**p, "target_start": later, "target_end": later + STEP}], later)
    assert [r["target_start"] for r in store.query("select target_start from forecasts")] == [later]
    # a re-sent record overwrites itself
    store.add_forecasts(SITE, 100, later, [{**p, "target_start": later, "target_end": later + STEP}], later)
    assert store.one("select count(*) as n from forecasts")["n"] == 1  # type: ignore[index]


def test_settlement_latency_and_backlog() -> None:
    store = Store(":memory:")
    a = Analytics(store)
    lat = [30.0, 90.0, 400.0, -50.0, 9000.0]  # the negative one settled before its delivery ended
    for k, d in enumerate(lat):
        store.set_stage(k, "settled", delivery_start=T0 - 900, delivery_end=T0, updated=T0 + d)
    store.set_stage(9, "cleared", delivery_start=T0 - 900, delivery_end=T0, updated=T0 + 5)
    counts, n, total = a.settlement_latency()
    clipped = [max(0.0, x) for x in lat]
    assert n == 5 and total == pytest.approx(sum(clipped))
    assert counts == [sum(1 for x in clipped if x <= b) for b in SETTLE_BUCKETS_S]
    for i, (sender, pending, ts) in enumerate([(SITE, 5, T0), (SITE, 9, T0 + 10), ("0x" + "33" * 20, 4, T0),
                                               ("0x" + "44" * 20, 100, T0 - 7200)]):
        store.db["telemetry"].insert({"sender": sender, "record_id": i, "ts": ts, "net_export_w": 0.0,
                                      "devices": "{}", "outbox_pending": pending})
    assert a.outbox_backlog(T0 + 20) == (2, 13, 9)  # the newest report of each site within the hour


def test_coverage_leaves_out_forecasts_without_an_interval() -> None:
    store = Store(":memory:")
    a = Analytics(store)
    store.db["participants"].insert({"address": SITE, "ed25519_key": "0x", "zone": 0, "registered": 1, "block": 1})
    _telemetry(store, 4, random.Random(1))
    flat = {"series": "demand", "horizon_s": 300.0, "point_w": 1250.0, "lower80_w": 1250.0, "upper80_w": 1250.0,
            "lower95_w": 1250.0, "upper95_w": 1250.0, "model": "auto:persistence"}
    wide = {**flat, "lower80_w": 900.0, "upper80_w": 1600.0, "lower95_w": 800.0, "upper95_w": 1700.0}
    store.add_forecasts(SITE, 1, T0, [{**flat, "target_start": T0, "target_end": T0 + STEP}], T0)
    store.add_forecasts(SITE, 2, T0 + STEP, [{**wide, "target_start": T0 + STEP, "target_end": T0 + 2 * STEP}], T0 + STEP)
    (h,) = a.forecast_error(SITE)["horizons"]
    assert h["n"] == 2 and h["n_interval"] == 1 and h["coverage80"] == 1.0 and h["coverage95"] == 1.0
