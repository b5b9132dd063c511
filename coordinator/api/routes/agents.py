"""The agents' side of the API: signed envelopes over WebSocket or HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect

from coordinator.api.deps import CoordinatorDep
from coordinator.api.guard import BadInput, parse_json, read_limited
from coordinator.api.schemas import MessageAccepted, error_responses
from coordinator.ingest import Outcome
from gridswarm.envelope import MAX_ENVELOPE_BYTES, EnvelopeError
from gridswarm.messages import MAX_ACKS

logger = logging.getLogger(__name__)
router = APIRouter(tags=["agents"])


def _seq_of(data: Any) -> int | None:
    """The envelope's seq, when it can be read, so the sender knows which message a refusal is
    about (read from the frame's JSON, before any check)."""
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


class Shed(EnvelopeError):
    """Not read: the hub was full (answered ``busy``; the agent sends it again later)."""

    reason = "busy"


def _shed() -> asyncio.Future[Outcome]:
    fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    fut.set_result(Outcome(error=Shed(BUSY)))
    return fut


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
    # Replies that are ready together are sent together: the acks of one link's messages stored
    # in one batch as one signed ``acks``, the messages shed while the hub was full as one signed
    # ``busy`` listing their seqs. A signature and a socket write per message cost a third of
    # the coordinator's ingest time, and under overload a signed ``busy`` per message was what
    # collapsed it (docs/operations.md, ingest).
    pending: asyncio.Queue[tuple[asyncio.Future[Outcome], int | None]] = asyncio.Queue(maxsize=LINK_PIPELINE)

    async def answer_in_order() -> None:
        while True:
            items = [await pending.get()]
            try:
                await items[0][0]  # its outcome (futures only ever get a result, or are cancelled)
                while not pending.empty() and len(items) < MAX_ACKS:
                    items.append(pending.get_nowait())
                acks: list[dict[str, Any]] = []
                shed: list[int | None] = []
                for fut, seq in items:
                    if not fut.done():  # still in its batch: what is ready goes first
                        await _flush(acks, shed)
                    outcome = await fut
                    if outcome.error is None:
                        if outcome.reply:
                            acks.append(outcome.reply)
                    elif isinstance(outcome.error, Shed):
                        shed.append(seq)
                    elif isinstance(outcome.error, EnvelopeError):
                        await _flush(acks, shed)
                        exc = outcome.error
                        await ws.send_text(
                            hub.sign("error", {"reason": exc.reason, "message": str(exc), "seq": seq}).to_json()
                        )
                    else:
                        logger.error("agent message failed: %r", outcome.error, exc_info=outcome.error)
                        await _flush(acks, shed)
                        await refuse("internal", outcome.error.__class__.__name__, CLOSE_INTERNAL, seq)
                        return
                await _flush(acks, shed)
            finally:
                for _ in items:
                    pending.task_done()

    async def _flush(acks: list[dict[str, Any]], shed: list[int | None]) -> None:
        if acks:
            text = (hub.sign("ack", acks[0]) if len(acks) == 1 else hub.sign("acks", {"acks": acks})).to_json()
            acks.clear()
            await ws.send_text(text)
        if shed:
            # (a frame without a readable seq is still told: one busy with seq null)
            named = [q for q in shed if q is not None]
            body: dict[str, Any] = {"reason": "busy", "message": BUSY, "seq": named[0] if named else None}
            if len(named) > 1:
                body["seqs"] = named
            text = hub.sign("error", body).to_json()
            shed.clear()
            await ws.send_text(text)

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
            seq = _seq_of(data)
            if kind != "hello":
                shed = False
                if not hub.admit(kind):
                    fut, shed = _shed(), True
                else:
                    try:
                        fut = hub.ingest.enqueue(data, raw)
                    except asyncio.QueueFull:
                        hub.release()
                        hub.shed += 1
                        fut, shed = _shed(), True
                    else:
                        fut.add_done_callback(lambda _: hub.release())
                if pending.full():
                    await pending.put((fut, seq))  # the link stops reading until replies drain
                else:
                    pending.put_nowait((fut, seq))
                if replier.done():
                    break  # the socket broke or the link was refused
                if shed:
                    await hub.wait_for_room()  # stop reading this link until the hub drains
                continue
            if not hub.admit(kind):
                await ws.send_text(hub.sign("error", {"reason": "busy", "message": BUSY, "seq": seq}).to_json())
                continue
            if replier.done():
                break
            await pending.join()  # a hello is answered after everything before it
            try:
                env, reply = await hub.submit(data)
            except EnvelopeError as exc:
                body: dict[str, Any] = {"reason": exc.reason, "message": str(exc), "seq": seq}
                await ws.send_text(hub.sign("error", body).to_json())
                continue
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the server; the agent reconnects
                logger.exception("agent message failed")
                await refuse("internal", f"{exc.__class__.__name__}", CLOSE_INTERNAL, seq)
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
