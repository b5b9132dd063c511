"""The agents' side of the API: signed envelopes over WebSocket or HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect

from coordinator.api.deps import CoordinatorDep
from coordinator.api.schemas import MessageAccepted
from gridswarm.envelope import MAX_ENVELOPE_BYTES, EnvelopeError

logger = logging.getLogger(__name__)
router = APIRouter(tags=["agents"])


def _seq_of(raw: str) -> int | None:
    """The rejected envelope's seq, when it can be read, so the sender knows which one failed."""
    try:
        seq = json.loads(raw).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


@router.post("/api/v1/messages", response_model=MessageAccepted)
async def post_message(request: Request, coord: CoordinatorDep) -> MessageAccepted:
    raw = await request.body()
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise HTTPException(status_code=413, detail=f"message larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        env, reply = await asyncio.to_thread(coord.hub.handle, raw)
    except EnvelopeError as exc:
        raise HTTPException(status_code=400, detail={"reason": exc.reason, "message": str(exc)}) from exc
    return MessageAccepted(accepted=True, kind=env.kind, seq=env.seq, reply=reply)


@router.websocket("/ws/agent")
async def agent_socket(ws: WebSocket, coord: CoordinatorDep) -> None:
    await ws.accept()
    hub = coord.hub
    address: str | None = None

    async def send_text(text: str) -> None:
        await ws.send_text(text)

    try:
        while True:
            raw = await ws.receive_text()
            try:
                env, reply = await asyncio.to_thread(hub.handle, raw)
            except EnvelopeError as exc:
                body: dict[str, Any] = {"reason": exc.reason, "message": str(exc), "seq": _seq_of(raw)}
                await ws.send_text(hub.sign("error", body).to_json())
                continue
            if env.kind == "hello":
                address = env.sender
                hub.links[address] = send_text
                logger.info("agent %s connected", address)
                await ws.send_text(
                    hub.sign(
                        "welcome", {"address": address, "market": coord.deployment.market, "chain_id": coord.chain_id}
                    ).to_json()
                )
                fr = coord.settings.frequency_response
                if coord.fleet is not None:
                    await coord.fleet.on_connect(address)
                elif fr.enabled:
                    arm = {"armed": True, "droop": fr.droop, "deadband_hz": fr.deadband_hz, "mode": fr.mode}
                    await ws.send_text(hub.sign("arm", arm).to_json())
            elif reply:
                await ws.send_text(hub.sign("ack", reply).to_json())
    except WebSocketDisconnect:
        pass
    finally:
        if address and hub.links.get(address) is send_text:
            hub.links.pop(address, None)
            logger.info("agent %s disconnected", address)
