"""Analytics: market time series, order-book depth, trades, participants' money and energy,
sites' telemetry. Every list takes a time range, pages with a stable cursor, and answers in
JSON or CSV (``format=csv``; the next page's cursor is then in the ``X-Next-Cursor`` header)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel

from coordinator.api.deps import AnalyticsDep, CoordinatorDep
from coordinator.api.operator import ReadAccess
from coordinator.api.schemas_analytics import (
    ADDRESS,
    Depth,
    ForecastError,
    ForecastPage,
    MarketSeries,
    ParticipantIntervals,
    ParticipantSummary,
    Sites,
    TelemetryPage,
    TradesPage,
)
from coordinator.store.analytics import AnalyticsError, CursorError, NotFound, Page, Tariff

router = APIRouter(prefix="/api/v1", tags=["analytics"], dependencies=ReadAccess)

MAX_TS = 1e11  # seconds; beyond any plausible date
MAX_INT = 2**63 - 1
MAX_LIMIT = 1000

Since = Annotated[
    float | None, Query(ge=0, le=MAX_TS, allow_inf_nan=False, description="from this time (s, UTC epoch), inclusive")
]
Until = Annotated[
    float | None, Query(ge=0, le=MAX_TS, allow_inf_nan=False, description="up to this time (s, UTC epoch), exclusive")
]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$", description="next_cursor of the previous page"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")]
Format = Annotated[Literal["json", "csv"], Query(description="json, or csv for a spreadsheet")]
Address = Annotated[str, Path(pattern=ADDRESS, description="participant (site) address")]


class ErrorOut(BaseModel):
    """Every 4xx answer: ``detail`` says what was wrong (a string, or FastAPI's list of fields)."""

    detail: Any


_ERRORS = {
    400: "bad cursor, range or request body",
    401: "operator key missing or wrong",
    403: "no operator key is configured here",
    404: "unknown interval, participant or event",
    409: "the site's agent is not connected",
    422: "a parameter or field out of its range or of the wrong type",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorOut, "description": _ERRORS[c]} for c in codes}


READ_ERRORS = errors(400, 401, 404, 422)
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    **READ_ERRORS,
}

M = TypeVar("M", bound=BaseModel)


def run(fn: Callable[[], Any]) -> Any:
    """Map the store API's errors to HTTP ones, once."""
    try:
        return fn()
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except (CursorError, AnalyticsError) as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc


def _cell(v: Any) -> Any:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else v


def respond(page: Page, model: type[M], fmt: str) -> M | Response:
    if fmt == "csv":
        out = io.StringIO()
        fields = list(model.model_fields["data"].annotation.__args__[0].model_fields)  # type: ignore[union-attr]
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in page.data:
            writer.writerow({k: _cell(row.get(k)) for k in fields})
        headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else {}
        return Response(out.getvalue(), media_type="text/csv", headers=headers)
    return model.model_validate({"data": page.data, "next_cursor": page.next_cursor})


@router.get("/market/series", response_model=MarketSeries, responses=CSV_RESPONSE)
def market_series(
    analytics: AnalyticsDep,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 500,
    format: Format = "json",
) -> Any:
    """Price and volume per interval and per zone, welfare, grid fees, congestion rent and
    flows between zones, in interval order."""
    page = run(lambda: analytics.market_series(since, until, cursor, limit))
    if format == "csv":
        for r in page.data:  # one column per zone price for spreadsheets
            for name, z in r["zones"].items():
                r[f"price_{name}"] = z["price"]
    return respond(page, MarketSeries, format)


@router.get("/market/depth", response_model=Depth, responses=READ_ERRORS)
def market_depth(
    analytics: AnalyticsDep,
    interval: Annotated[int | None, Query(ge=0, le=MAX_INT, description="default: the latest with orders")] = None,
) -> Any:
    """Supply (offers, ascending price) and demand (bids, descending) curves of an interval."""
    k = interval if interval is not None else analytics.latest_interval()
    if k is None:
        raise HTTPException(status_code=404, detail="no interval has orders yet")
    return run(lambda: analytics.depth(k))


@router.get("/market/trades", response_model=TradesPage, responses=CSV_RESPONSE)
def market_trades(
    analytics: AnalyticsDep,
    since: Since = None,
    until: Until = None,
    owner: Annotated[str | None, Query(pattern=ADDRESS)] = None,
    interval: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
    cursor: Cursor = None,
    limit: Limit = 500,
    format: Format = "json",
) -> Any:
    """Filled orders with their settlement, in (interval, order id) order."""
    return respond(run(lambda: analytics.trades(since, until, owner, interval, cursor, limit)), TradesPage, format)


TariffImport = Annotated[
    int | None, Query(ge=0, le=2**32 - 1, description="grid import price, base units per Wh (default: configured)")
]
TariffExport = Annotated[
    int | None, Query(ge=0, le=2**32 - 1, description="grid export price, base units per Wh (default: configured)")
]


def _tariff(analytics: Any, imp: int | None, exp: int | None) -> Tariff:
    base = analytics.tariff
    return Tariff(base.import_price if imp is None else imp, base.export_price if exp is None else exp)


@router.get("/participants/{address}/summary", response_model=ParticipantSummary, responses=READ_ERRORS)
def participant_summary(
    analytics: AnalyticsDep,
    address: Address,
    since: Since = None,
    until: Until = None,
    tariff_import: TariffImport = None,
    tariff_export: TariffExport = None,
) -> Any:
    """Energy sold and bought, money paid and received, collateral forfeited and the saving
    against the grid tariff over a period."""
    tariff = _tariff(analytics, tariff_import, tariff_export)
    return run(lambda: analytics.participant_summary(address, since, until, tariff))


@router.get("/participants/{address}/intervals", response_model=ParticipantIntervals, responses=CSV_RESPONSE)
def participant_intervals(
    analytics: AnalyticsDep,
    address: Address,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 500,
    tariff_import: TariffImport = None,
    tariff_export: TariffExport = None,
    format: Format = "json",
) -> Any:
    """The same figures per interval the participant traded in."""
    tariff = _tariff(analytics, tariff_import, tariff_export)
    page = run(lambda: analytics.participant_intervals(address, since, until, cursor, limit, tariff))
    return respond(page, ParticipantIntervals, format)


@router.get("/sites", response_model=Sites, responses=errors(401))
def list_sites(analytics: AnalyticsDep, coord: CoordinatorDep) -> Sites:
    """Every site with its latest telemetry and whether its agent is connected now."""
    rows = analytics.sites()
    for r in rows:
        r["connected"] = r["address"] in coord.hub.links
    return Sites.model_validate({"data": rows, "count": len(rows)})


@router.get("/sites/{address}/telemetry", response_model=TelemetryPage, responses=CSV_RESPONSE)
def site_telemetry(
    analytics: AnalyticsDep,
    address: Address,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 500,
    format: Format = "json",
) -> Any:
    """A site's telemetry history: net export (W, + = export), SoC and per-device readings."""
    return respond(run(lambda: analytics.telemetry(address, since, until, cursor, limit)), TelemetryPage, format)


Series = Annotated[Literal["demand", "pv"], Query(description="the forecast series")]


@router.get("/sites/{address}/forecasts", response_model=ForecastPage, responses=CSV_RESPONSE)
def site_forecasts(
    analytics: AnalyticsDep,
    address: Address,
    series: Series = "demand",
    horizon_s: Annotated[
        float | None, Query(gt=0, le=86_400, allow_inf_nan=False, description="only this horizon (s), e.g. 300 or 900")
    ] = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 500,
    format: Format = "json",
) -> Any:
    """The site's own forecasts (sent by its agent) against what its telemetry measured, per
    target window (``since``/``until`` filter the window's start) and horizon: point, 80 % and
    95 % intervals, the model, the actual mean and the error. Demand is measured as the site's
    loads' consumption, PV as its PV output."""
    page = run(lambda: analytics.forecasts(address, series, horizon_s, since, until, cursor, limit))
    return respond(page, ForecastPage, format)


@router.get("/sites/{address}/forecasts/error", response_model=ForecastError, responses=READ_ERRORS)
def site_forecast_error(
    analytics: AnalyticsDep,
    address: Address,
    series: Series = "demand",
    since: Since = None,
    until: Until = None,
) -> Any:
    """The forecasts' error per horizon over a period (default: the day before the newest
    forecast): MAE, MAPE, bias and the coverage of the 80 % and 95 % intervals."""
    return run(lambda: analytics.forecast_error(address, series, since, until))
