"""The agent's link to the coordinator: the WebSocket and the outbox it drains.

Every record the agent owes the coordinator (telemetry, readings, acks, alarms, requests) waits
in the agent store's outbox until the coordinator acknowledges it (``docs/operations.md``). The
link signs and sends pending records while connected, keeps each one "in flight" for
``RESEND_AFTER_S`` real seconds, sends it again after that, and expires what is never
acknowledged. All waits go through the injected clock (``clock.wait``/``clock.monotonic``).

The runtime (:mod:`agent.runtime`) owns what the messages mean: the link hands it every text
frame (``on_message``) and tells it when the link goes up or down (``on_change``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from agent.config import AgentConfig
from agent.store import AgentStore
from gridswarm.clock import Clock
from gridswarm.envelope import EnvelopeError, Signer
from gridswarm.messages import Error

logger = logging.getLogger("agent.runtime")  # one logger for the agent process's story

__all__ = ["RESEND_AFTER_S", "TRANSIENT_REJECTIONS", "CoordinatorLink"]

RESEND_AFTER_S = 5.0  # real seconds (clock.monotonic) before an unacknowledged record is sent again
TRANSIENT_REJECTIONS = frozenset({"expired", "future", "replayed"})


class CoordinatorLink:
    """The WebSocket to the coordinator and the outbox (see the module docstring)."""

    def __init__(self, cfg: AgentConfig, clock: Clock, store: AgentStore, signer: Signer, address: str, *,
                 on_message: Callable[[str], Awaitable[None]], on_change: Callable[[], None],
                 key_ready: asyncio.Event, prune: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.signer = signer
        self.address = address
        self.on_message = on_message
        self.on_change = on_change
        self.key_ready = key_ready
        self.prune = prune
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.inflight: dict[int, tuple[int, float]] = {}  # envelope seq -> (outbox id, monotonic time sent)
        self.wake_event = asyncio.Event()
        self.failing = False
        self.up = False

    @property
    def ws_url(self) -> str:
        base = self.cfg.coordinator_url.rstrip("/")
        return base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws/agent"

    def wake(self) -> None:
        """Something new waits in the outbox: send it now."""
        self.wake_event.set()

    # ------------------------------------------------------------------ connection

    async def run(self) -> None:
        await self.key_ready.wait()  # the coordinator's replies can only be verified with its key
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.ws_connect(self.ws_url, heartbeat=10.0, max_msg_size=1 << 20) as ws:
                        self.ws = ws
                        hello = self.signer.sign("hello", {"address": self.address, "site": self.cfg.site})
                        await ws.send_str(hello.to_json())
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                await self.on_message(msg.data)
                            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                                break
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    if not self.failing:
                        logger.warning("coordinator link down (%s): running autonomously", exc.__class__.__name__)
                    self.failing = True
                finally:
                    self.ws = None
                    self.connected.clear()
                    self.inflight.clear()
                    self.up = False
                    self.on_change()
                await self.clock.wait(self.cfg.reconnect_s)

    def welcomed(self) -> None:
        """The coordinator answered our hello: the link is up; send what waits."""
        if self.failing:
            logger.info("coordinator link recovered")
        self.failing = False
        self.up = True
        self.on_change()
        self.connected.set()
        self.wake()

    # ------------------------------------------------------------------ answers to our records

    def acked(self, seq: int) -> None:
        entry = self.inflight.pop(seq, None)
        if entry is not None:
            self.store.ack(entry[0])

    def refused(self, err: Error) -> None:
        """A record the coordinator refused: retry at once if the refusal was about timing
        (a fresh envelope fixes it), give it up (marked, kept) if the record itself is bad."""
        if err.reason == "busy":  # the coordinator shed them: the periodic resend sends them again
            seqs = dict.fromkeys([*([err.seq] if err.seq is not None else []), *err.seqs])
            shed = [entry for seq in seqs if (entry := self.inflight.pop(seq, None)) is not None]
            if shed:
                logger.info("coordinator busy; %d record(s) go again with the next resend", len(shed))
            else:
                logger.warning("coordinator rejected a message: %s", err.message)
            return
        entry = self.inflight.pop(err.seq, None) if err.seq is not None else None
        if entry is None:
            logger.warning("coordinator rejected a message: %s", err.message)
            return
        if err.reason in TRANSIENT_REJECTIONS:
            logger.info("coordinator refused record %d (%s); sending it again", entry[0], err.reason)
            self.wake()
        else:
            logger.error("coordinator refused record %d for good: %s", entry[0], err.message)
            self.store.reject(entry[0])

    # ------------------------------------------------------------------ the outbox

    async def outbox_loop(self) -> None:
        while True:
            await self.wake_event.wait()
            self.wake_event.clear()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the outbox must outlive any one bad record
                logger.exception("outbox flush failed; retrying on the next wake-up")

    async def flush(self) -> int:
        """Send every unacknowledged record not already in flight; returns how many were sent."""
        ws = self.ws
        if ws is None or not self.connected.is_set():
            return 0
        in_flight = {oid for oid, sent in self.inflight.values() if self.clock.monotonic() - sent < RESEND_AFTER_S}
        sent = 0
        for outbox_id, kind, body in self.store.pending_fair(limit=200):
            if outbox_id in in_flight:
                continue
            try:
                env = self.signer.sign(kind, body)
            except EnvelopeError as exc:  # a record that can never be sent: set aside, keep the rest moving
                logger.error("outbox record %d (%s) cannot be signed: %s", outbox_id, kind, exc)
                self.store.reject(outbox_id)
                continue
            self.inflight[env.seq] = (outbox_id, self.clock.monotonic())
            try:
                await ws.send_str(env.to_json())
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return sent
            sent += 1
        return sent

    async def resend_forever(self) -> None:
        while True:
            await self.clock.wait(RESEND_AFTER_S)
            try:
                expired = self.store.expire(self.clock.now())
                if expired:
                    logger.warning("outbox: %d records expired unacknowledged", expired)
                self.prune()
            except Exception:  # noqa: BLE001 - a failed clean-up is retried next round
                logger.exception("outbox clean-up failed")
            self.wake()
