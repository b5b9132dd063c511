"""The agents' side of the API: signed envelopes over WebSocket or HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect

from coordinator.api.deps import CoordinatorDep
from coordinator.api.guard import BadInput, parse_json, read_limited
from coordinator.api.schemas import MessageAccepted, error_responses
from coordinator.ingest import Outcome
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


ENVELOPE_SCHEMA = {
    "type": "object",
    "description": "a signed envelope (docs/architecture.md, messages); at most 256 KiB",
    "required": ["version", "kind", "sender", "seq", "issued_at", "expires_at", "body", "signature"],
    "properties": {
        "version": {"type": "integer"},
        "kind": {"type": "string"},
        "sender": {"type": "string"},
        "seq": {"type": "integer", "minimum": 0},
        "issued_at": {"type": "number"},
        "expires_at": {"type": "number"},
        "body": {"type": "object"},
        "signature": {"type": "string"},
    },
}

LINK_PIPELINE = 64  # messages of one link waiting for their replies before the link stops reading
BUSY = "coordinator overloaded: the message was not read; send it again later"

# WebSocket close codes (RFC 6455) for frames that cannot be a message at all.
CLOSE_UNSUPPORTED = 1003  # a binary frame
CLOSE_INVALID = 1007  # not JSON text, too deep, lone surrogates
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011


@router.post(
    "/api/v1/messages",
    response_model=MessageAccepted,
    responses=error_responses(400, 413, 422, 503),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": ENVELOPE_SCHEMA}}}},
)
async def post_message(request: Request, coord: CoordinatorDep) -> MessageAccepted:
    try:
        raw = await read_limited(request.stream(), request.headers.get("content-length"))
        data = parse_json(raw)
        if not isinstance(data, dict):
            raise BadInput(400, "malformed", "an envelope is a JSON object")
    except BadInput as exc:
        raise HTTPException(status_code=exc.status, detail={"reason": exc.reason, "message": str(exc)}) from exc
    if not coord.hub.admit(data.get("kind")):
        raise HTTPException(
            status_code=503, detail={"reason": "busy", "message": BUSY}, headers={"Retry-After": "1"}
        )
    try:
        env, reply = await coord.hub.submit(data)
    except EnvelopeError as exc:
        raise HTTPException(status_code=400, detail={"reason": exc.reason, "message": str(exc)}) from exc
    finally:
        coord.hub.release()
    return MessageAccepted(accepted=True, kind=env.kind, seq=env.seq, reply=reply)


@router.websocket("/ws/agent")
async def agent_socket(ws: WebSocket, coord: CoordinatorDep) -> None:
    await ws.accept()
    hub = coord.hub
    address: str | None = None

    async def send_text(text: str) -> None:
        await ws.send_text(text)

    async def refuse(reason: str, message: str, code: int, seq: int | None = None) -> None:
        """Answer a frame that cannot be a message with a signed error, then close with ``code``."""
        logger.warning("closing agent socket (%s): %s", reason, message)
        await ws.send_text(hub.sign("error", {"reason": reason, "message": message, "seq": seq}).to_json())
        await ws.close(code=code, reason=reason)

    # Messages other than ``hello`` are pipelined: the link reads on while earlier ones wait for
    # their batch (coordinator/ingest.py), and the replies go out in the order the messages came.
    pending: asyncio.Queue[tuple[asyncio.Future[Outcome], str]] = asyncio.Queue(maxsize=LINK_PIPELINE)

    async def answer_in_order() -> None:
        while True:
            fut, raw = await pending.get()
            try:
                outcome = await fut
                if outcome.error is None:
                    if outcome.reply:
                        await ws.send_text(hub.sign("ack", outcome.reply).to_json())
                elif isinstance(outcome.error, EnvelopeError):
                    exc = outcome.error
                    body = {"reason": exc.reason, "message": str(exc), "seq": _seq_of(raw)}
                    await ws.send_text(hub.sign("error", body).to_json())
                else:
                    logger.error("agent message failed: %r", outcome.error, exc_info=outcome.error)
                    await refuse("internal", outcome.error.__class__.__name__, CLOSE_INTERNAL, _seq_of(raw))
                    return
            finally:
                pending.task_done()

    replier = asyncio.create_task(answer_in_order(), name="agent-replies")
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                break
            raw = frame.get("text")
            if raw is None:
                await refuse("binary", "send envelopes as text frames", CLOSE_UNSUPPORTED)
                break
            if len(raw) > MAX_ENVELOPE_BYTES:
                await refuse("too_large", f"frame over {MAX_ENVELOPE_BYTES} bytes", CLOSE_TOO_BIG)
                break
            try:
                data = parse_json(raw)
            except BadInput as exc:
                await refuse(exc.reason, str(exc), CLOSE_INVALID)
                break
            kind = data.get("kind") if isinstance(data, dict) else None
            if not hub.admit(kind):
                await ws.send_text(hub.sign("error", {"reason": "busy", "message": BUSY, "seq": _seq_of(raw)}).to_json())
                continue
            if kind != "hello":
                try:
                    fut = hub.ingest.enqueue(data)
                except asyncio.QueueFull:
                    hub.release()
                    hub.shed += 1
                    await ws.send_text(hub.sign("error", {"reason": "busy", "message": BUSY, "seq": _seq_of(raw)}).to_json())
                    continue
                fut.add_done_callback(lambda _: hub.release())
                await pending.put((fut, raw))
                if replier.done():
                    break  # the socket broke or the link was refused
                continue
            if replier.done():
                break
            await pending.join()  # a hello is answered after everything before it
            try:
                env, reply = await hub.submit(data)
            except EnvelopeError as exc:
                body: dict[str, Any] = {"reason": exc.reason, "message": str(exc), "seq": _seq_of(raw)}
                await ws.send_text(hub.sign("error", body).to_json())
                continue
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the server; the agent reconnects
                logger.exception("agent message failed")
                await refuse("internal", f"{exc.__class__.__name__}", CLOSE_INTERNAL, _seq_of(raw))
                break
            finally:
                hub.release()
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
                if coord.loop is not None:
                    await coord.loop.obligations(address)
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # noqa: BLE001 - e.g. the socket broke mid-send: drop this link only
        logger.info("agent socket ended: %s: %s", exc.__class__.__name__, exc)
    finally:
        replier.cancel()
        while not pending.empty():  # the link is gone: stop waiting for what it sent
            pending.get_nowait()[0].cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await replier
        if address and hub.links.get(address) is send_text:
            hub.links.pop(address, None)
            logger.info("agent %s disconnected", address)
