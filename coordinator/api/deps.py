"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from coordinator.store import Store
from coordinator.store.analytics import Analytics

if TYPE_CHECKING:
    from coordinator.service import Coordinator


def get_store(request: HTTPConnection) -> Store:
    return request.app.state.coordinator.store  # type: ignore[no-any-return]


def get_coordinator(request: HTTPConnection) -> Coordinator:
    return request.app.state.coordinator  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
CoordinatorDep = Annotated["Coordinator", Depends(get_coordinator)]


def get_analytics(request: HTTPConnection) -> Analytics:
    return request.app.state.coordinator.analytics  # type: ignore[no-any-return]


AnalyticsDep = Annotated[Analytics, Depends(get_analytics)]
