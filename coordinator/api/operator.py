"""Operator authentication and read access for the dashboard's endpoints.

The operator proves itself with an operator key sent as ``Authorization: Bearer KEY``; the
coordinator stores only the key's SHA-256 (``dashboard.operator_key_sha256``) and compares in
constant time. Without a configured hash every state-changing request is refused. Read-only
analytics are public unless ``dashboard.public_read`` is false.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from coordinator.settings import DashboardSettings
from gridswarm.keys import hash_operator_key as hash_key

BEARER = "bearer "
MAX_KEY_CHARS = 512


def _settings(conn: HTTPConnection) -> DashboardSettings:
    return conn.app.state.coordinator.settings.dashboard  # type: ignore[no-any-return]


def _presented_key(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith(BEARER):
        return header[len(BEARER):].strip()[:MAX_KEY_CHARS]
    return None


def _is_operator(conn: HTTPConnection) -> bool:
    expected = _settings(conn).operator_key_sha256
    key = _presented_key(conn)
    return bool(expected and key and hmac.compare_digest(hash_key(key), expected))


def require_operator(conn: HTTPConnection) -> str:
    """The operator's identity for the event log; 401/403 with a reason otherwise."""
    if not _settings(conn).operator_key_sha256:
        raise HTTPException(status_code=403, detail="no operator key is configured: changes are disabled")
    if _presented_key(conn) is None:
        raise HTTPException(
            status_code=401,
            detail="operator key required (Authorization: Bearer KEY)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _is_operator(conn):
        raise HTTPException(status_code=401, detail="wrong operator key", headers={"WWW-Authenticate": "Bearer"})
    return "operator"


def require_read(conn: HTTPConnection) -> None:
    if not _settings(conn).public_read and not _is_operator(conn):
        raise HTTPException(
            status_code=401,
            detail="analytics are private here: operator key required",
            headers={"WWW-Authenticate": "Bearer"},
        )


OperatorDep = Annotated[str, Depends(require_operator)]
ReadAccess = [Depends(require_read)]
