"""The event log: alarms from agents, remote configuration sent, applied and refused, and
operator actions. Listed with filters and a cursor, streamed live as server-sent events, and
acknowledged by the operator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from coordinator.api.deps import AnalyticsDep, CoordinatorDep
from coordinator.api.operator import OperatorDep, ReadAccess
from coordinator.api.routes.analytics import (
    ADDRESS,
    CSV_RESPONSE,
    MAX_INT,
    Cursor,
    Format,
    Limit,
    Since,
    Until,
    errors,
    respond,
    run,
)
from coordinator.api.schemas_analytics import Event, EventsPage
from coordinator.store.analytics import EVENT_KINDS

router = APIRouter(prefix="/api/v1/events", tags=["events"])

STREAM_POLL_S = 0.5
STREAM_HEARTBEAT_S = 15.0
STREAM_BATCH = 200
EventKind = Literal["alarm", "config_sent", "config_applied", "config_refused", "operator"]
assert set(EventKind.__args__) == set(EVENT_KINDS)  # type: ignore[attr-defined]


@router.get("", response_model=EventsPage, responses=CSV_RESPONSE, dependencies=ReadAccess)
def list_events(
    analytics: AnalyticsDep,
    since: Since = None,
    until: Until = None,
    kind: EventKind | None = None,
    site: Annotated[str | None, Query(pattern=ADDRESS)] = None,
    unacked: Annotated[bool, Query(description="only alarms no operator has acknowledged")] = False,
    cursor: Cursor = None,
    limit: Limit = 500,
    format: Format = "json",
) -> Any:
    """Events in the order they were logged."""
    page = run(lambda: analytics.events(since, until, kind, site, unacked, cursor, None, limit))
    return respond(page, EventsPage, format)


# Left out of the OpenAPI schema: a stream that stays open is no request/response operation
# (schema-driven fuzzers would wait on it); docs/dashboard.md describes it.
@router.get("/stream", dependencies=ReadAccess, include_in_schema=False)
async def stream_events(
    request: Request,
    analytics: AnalyticsDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_INT, description="stream events after this id")] = None,
    max_seconds: Annotated[
        float, Query(gt=0, le=86_400, allow_inf_nan=False, description="end the stream after (s)")
    ] = 3600,
    last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^[0-9]+$")] = None,
) -> StreamingResponse:
    """Server-sent events: each new log entry as ``event: <kind>`` with its JSON. Without
    ``after`` (or a ``Last-Event-ID`` from a reconnecting browser) it starts with new events."""
    start = after
    if start is None and last_event_id is not None:
        start = min(int(last_event_id), MAX_INT)
    if start is None:
        start = await asyncio.to_thread(analytics.last_event_id)

    async def gen() -> AsyncIterator[str]:
        last = start
        loop = asyncio.get_running_loop()
        end = loop.time() + max_seconds
        beat = loop.time() + STREAM_HEARTBEAT_S
        yield f"retry: 2000\n: from {last}\n\n"
        while loop.time() < end and not await request.is_disconnected():
            page = await asyncio.to_thread(analytics.events, None, None, None, None, False, None, last, STREAM_BATCH)
            for ev in page.data:
                last = ev["id"]
                yield f"id: {ev['id']}\nevent: {ev['kind']}\ndata: {json.dumps(ev)}\n\n"
            if loop.time() >= beat:
                yield ": keep-alive\n\n"
                beat = loop.time() + STREAM_HEARTBEAT_S
            if not page.data:
                await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.post("/{event_id}/ack", response_model=Event, responses=errors(400, 401, 403, 404, 422))
def acknowledge(
    event_id: Annotated[int, Path(ge=1, le=MAX_INT)],
    analytics: AnalyticsDep,
    coord: CoordinatorDep,
    operator: OperatorDep,
) -> Any:
    """An operator acknowledges an event (an alarm): it stays in the log, marked as seen."""
    return run(lambda: analytics.acknowledge(event_id, coord.clock.now(), operator))
