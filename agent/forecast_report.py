"""The site's forecasts, sent to the coordinator for forecast-vs-actual analytics.

Each time the planner (:mod:`agent.control.planner`) publishes an :class:`Outlook`, the
reporter turns it into one ``forecast`` record (see :class:`gridswarm.messages.Forecast`): for
every series (demand, and PV when the site has it) and horizon, the forecast of the horizon's
last step -- its target window, point, 80 % and 95 % bounds and the model that made it.

The record goes through the outbox like telemetry: signed, re-sent until acknowledged, expired
by the outbox rule (``agent.store.EXPIRE_AFTER_S["forecast"]``) and deduplicated by the
outlook's start, so a refresh that did not move on does not queue a second record. A record
that would be refused (a value not finite, out of range, bands that do not nest) is never
queued: it is dropped here with the reason logged once, and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from gridswarm.messages import Forecast

logger = logging.getLogger(__name__)

__all__ = ["ForecastReporter", "forecast_body"]


def forecast_body(outlook: Any, record_id: int) -> dict[str, Any]:
    """A ``forecast`` body for ``outlook``; ValueError with the reason when it cannot be sent."""
    points: list[dict[str, Any]] = []
    for series, by_horizon in (("demand", outlook.demand), ("pv", outlook.pv)):
        for h_s, o in sorted((by_horizon or {}).items()):
            if o.last_step is None:
                continue
            point, lo80, hi80, lo95, hi95 = o.last_step
            end = float(outlook.start_ts) + float(h_s)
            start = end - float(outlook.step_s)
            points.append({
                "series": series, "horizon_s": float(h_s), "target_start": start, "target_end": end,
                "point_w": _w(point), "lower80_w": _w(lo80), "upper80_w": _w(hi80),
                "lower95_w": _w(lo95), "upper95_w": _w(hi95), "model": str(o.model)[:64],
            })
    if not points:
        raise ValueError("the outlook has no forecast step to report")
    body = {"record_id": int(record_id), "made_ts": float(outlook.made_ts), "points": points}
    try:
        Forecast.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValueError(f"forecast field {loc!r}: {first['msg']}") from exc
    return body


def _w(x: float) -> float:
    """Rounded to 0.1 W; NaN and infinities stay as they are (and are refused by the check)."""
    return round(float(x), 1) if math.isfinite(float(x)) else float(x)


class ForecastReporter:
    """Queues one ``forecast`` record per new outlook; hooked to the planner by the runtime."""

    def __init__(self, store: Any, next_id: Callable[[], int], wake: Callable[[], None]) -> None:
        self.store = store
        self.next_id = next_id
        self.wake = wake
        self.sent = 0
        self.dropped = 0
        self.last_reason: str | None = None
        self._last_start: float | None = None

    def __call__(self, outlook: Any) -> bool:
        """Queue ``outlook``; returns whether a record was queued. Never raises."""
        try:
            if outlook is None or outlook.start_ts == self._last_start:
                return False
            body = forecast_body(outlook, 0)
            body["record_id"] = self.next_id()
            queued = self.store.enqueue("forecast", body, f"forecast:{outlook.start_ts:.0f}", outlook.made_ts)
            self._last_start = outlook.start_ts
        except ValueError as exc:
            self.dropped += 1
            if str(exc) != self.last_reason:
                logger.warning("forecast not reported: %s", exc)
            self.last_reason = str(exc)
            return False
        except Exception:  # noqa: BLE001 - reporting must never stop the planner
            self.dropped += 1
            logger.exception("forecast reporting failed")
            return False
        if self.last_reason is not None:
            logger.info("forecasts reported again")
            self.last_reason = None
        if queued:
            self.sent += 1
            self.wake()
        return bool(queued)
