"""The agent reports its forecasts: an outlook becomes one signed-outbox ``forecast`` record,
bad values are refused with a reason (here and by the coordinator's schema), and the record
expires by the outbox rule."""

from __future__ import annotations

import math

import pytest

from agent.forecast.online import Outlook, SeriesOutlook, SiteForecaster
from agent.forecast_report import ForecastReporter, forecast_body
from agent.store import EXPIRE_AFTER_S, AgentStore
from gridswarm.clock import ManualClock
from gridswarm.envelope import MalformedEnvelope
from gridswarm.messages import validate_body

T0 = 1_800_000_000.0


def _series(h: float, last: tuple[float, float, float, float, float] | None) -> SeriesOutlook:
    return SeriesOutlook(h, 1000.0, 900.0, 1100.0, 1200.0, 0.0, "auto:persistence", None, last)


def _outlook(start: float = T0, last: tuple[float, float, float, float, float] = (1000.0, 900.0, 1100.0, 850.0, 1150.0),
             pv: bool = True) -> Outlook:
    demand = {300.0: _series(300.0, last), 900.0: _series(900.0, last)}
    pvs = {300.0: _series(300.0, (200.0, 150.0, 250.0, 100.0, 300.0))} if pv else None
    return Outlook(start + 1.0, start, 300.0, demand, pvs, 12)


def test_body_names_each_target_window() -> None:
    body = forecast_body(_outlook(), 7)
    assert body["record_id"] == 7 and body["made_ts"] == T0 + 1.0
    got = {(p["series"], p["horizon_s"]): (p["target_start"], p["target_end"]) for p in body["points"]}
    assert got == {("demand", 300.0): (T0, T0 + 300.0), ("demand", 900.0): (T0 + 600.0, T0 + 900.0),
                   ("pv", 300.0): (T0, T0 + 300.0)}
    p = body["points"][0]
    assert (p["point_w"], p["lower80_w"], p["upper80_w"], p["lower95_w"], p["upper95_w"]) == (1000.0, 900.0, 1100.0, 850.0, 1150.0)
    validate_body("forecast", body)  # what the coordinator checks


@pytest.mark.parametrize(
    ("last", "reason"),
    [
        ((math.nan, 900.0, 1100.0, 850.0, 1150.0), "point_w"),
        ((1000.0, 900.0, math.inf, 850.0, 1150.0), "upper80_w"),
        ((1e12, 900.0, 1100.0, 850.0, 1150.0), "point_w"),
        ((-5.0, 900.0, 1100.0, 850.0, 1150.0), "point_w"),
        ((1000.0, 950.0, 1100.0, 990.0, 1150.0), "nest"),
    ],
)
def test_absurd_forecasts_are_refused_with_a_reason(last: tuple[float, ...], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        forecast_body(_outlook(last=last), 1)  # type: ignore[arg-type]
    store = AgentStore(":memory:")
    rep = ForecastReporter(store, lambda: 1, lambda: None)
    assert rep(_outlook(last=last)) is False  # type: ignore[arg-type]
    assert rep.dropped == 1 and reason in (rep.last_reason or "") and store.pending_count() == 0


def test_the_coordinator_schema_refuses_bad_records() -> None:
    good = forecast_body(_outlook(), 1)
    bad = [
        {**good, "points": []},
        {**good, "made_ts": float("nan")},
        {**good, "points": [{**good["points"][0], "target_end": good["points"][0]["target_start"]}]},
        {**good, "points": [{**good["points"][0], "series": "wind"}]},
        {**good, "points": [{**good["points"][0], "target_start": T0 + 5 * 86_400, "target_end": T0 + 5 * 86_400 + 300}]},
        {**good, "points": [good["points"][0]] * 17},
        {**good, "extra": 1},
    ]
    for body in bad:
        with pytest.raises(MalformedEnvelope, match="forecast body field"):
            validate_body("forecast", body)


def test_reporter_queues_one_record_per_outlook_which_expires_by_rule() -> None:
    store = AgentStore(":memory:")
    ids = iter(range(1, 100))
    woken = []
    rep = ForecastReporter(store, lambda: next(ids), lambda: woken.append(1))
    assert rep(_outlook()) is True
    assert rep(_outlook()) is False  # the same outlook again: nothing new
    assert rep(_outlook(T0 + 300.0)) is True
    pending = [(k, b["record_id"]) for _, k, b in store.pending_fair()]
    assert pending == [("forecast", 1), ("forecast", 2)] and len(woken) == 2
    assert store.expire(T0 + 1.0 + EXPIRE_AFTER_S["forecast"] - 10) == 0
    assert store.expire(T0 + 301.0 + EXPIRE_AFTER_S["forecast"] + 10) == 2
    assert store.pending_count() == 0


def test_a_real_forecaster_outlook_is_reportable() -> None:
    clock = ManualClock(T0)
    f = SiteForecaster(clock, has_pv=True)
    for i in range(12 * 300 // 10):
        ts = T0 + 10.0 * i
        f.observe(ts, 1000.0 + 300.0 * math.sin(i / 50), 400.0)
    clock.set(T0 + 12 * 300 + 1)
    outlook = f.refresh()
    assert outlook is not None
    body = forecast_body(outlook, 1)
    assert {(p["series"], p["horizon_s"]) for p in body["points"]} == {
        ("demand", 300.0), ("demand", 900.0), ("pv", 300.0), ("pv", 900.0)}
    for p in body["points"]:
        assert p["lower95_w"] <= p["lower80_w"] <= p["upper80_w"] <= p["upper95_w"]
        assert p["target_end"] - p["target_start"] == 300.0
