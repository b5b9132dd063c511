"""The operator dashboard (``/``), its assets, and ``/metrics``.

The page and its scripts live in ``coordinator/web/``; the charting library (Apache ECharts)
comes from the project's npm lock (``node_modules/echarts``) and is served from here, so the
page works with no internet access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coordinator.api.deps import CoordinatorDep
from coordinator.api.operator import ReadAccess
from coordinator.api.routes.analytics import errors

router = APIRouter(tags=["dashboard"])

WEB = Path(__file__).resolve().parents[2] / "web"
ROOT = Path(__file__).resolve().parents[3]
VENDOR = {"echarts.min.js": ROOT / "node_modules" / "echarts" / "dist" / "echarts.min.js"}
ASSETS = {p.name: p for p in WEB.iterdir() if p.suffix in (".js", ".css", ".svg")} if WEB.is_dir() else {}
MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/assets/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    path = ASSETS.get(name) or VENDOR.get(name)
    if path is None or not path.is_file():
        hint = " (run `make setup` to install the npm packages)" if name in VENDOR else ""
        raise HTTPException(status_code=404, detail=f"no asset {name!r}{hint}")
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"))


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(coord: CoordinatorDep) -> Response:
    """Prometheus exposition format: intervals by status, clearing time, gas, messages accepted
    and refused, connected agents, unacknowledged alarms."""
    return Response(generate_latest(coord.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/dashboard/fleet", responses=errors(401), dependencies=ReadAccess)
def dashboard_fleet(coord: CoordinatorDep) -> dict[str, Any]:
    """The fleet service's snapshot (totals, service, sites, excluded units) for the page, or
    ``{"available": false}`` on a coordinator that runs no fleet service: the page shows what
    telemetry alone gives then, without a failing request."""
    fleet = getattr(coord, "fleet", None)
    if fleet is None:
        return {"available": False}
    return {"available": True, **fleet.snapshot()}
