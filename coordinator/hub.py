"""Agent links: verifies every incoming envelope, handles it, and sends signed envelopes out.

Incoming messages arrive over the WebSocket (``/ws/agent``) or HTTP (``POST /api/v1/messages``);
both go through :meth:`Hub.submit`, which checks and stores them in batches
(coordinator/ingest.py). A rejected message changes nothing and is logged (and recorded in
``rejections``) with its reason. Identity comes from the chain: a sender is a
participant address whose Ed25519 key the indexer read from ``ParticipantRegistered``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from nacl.signing import VerifyKey

from coordinator.ingest import Ingest, Staged
from coordinator.store import MessageBatch, Store
from gridswarm.chain import recover_meter_signer
from gridswarm.clock import Clock
from gridswarm.envelope import Envelope, EnvelopeError, MalformedEnvelope, Signer, Verifier, verify_key_from_hex
from gridswarm.messages import Ack, Alarm, BorrowRequest, ConfigResult, Forecast, Hello, Meter, Telemetry, validate_body

logger = logging.getLogger(__name__)

SendFn = Callable[[str], Awaitable[None]]
KEY_CACHE = 100_000  # parsed Ed25519 keys kept in memory (one per participant)
SEND_TIMEOUT_S = 5.0  # one outbound message may take this long on a link before the link is dropped
ROOM_WAIT_S = 1.0  # longest a link that shed a message waits before reading again
MAX_INFLIGHT = 2048  # messages read and not yet answered; past it a link is answered `busy` (docs/operations.md)


class Changed:
    """Something other tasks wait for (new meter readings stored): :meth:`notify` from any
    thread; a waiter reads :attr:`version`, checks its condition, then waits for a newer version
    (so a change between the check and the wait is never missed)."""

    def __init__(self) -> None:
        self.version = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def notify(self) -> None:
        with self._lock:
            self.version += 1
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

    async def wait(self, seen: int, until: Awaitable[None]) -> None:
        """Return once :attr:`version` is past ``seen`` or ``until`` (e.g. a clock deadline) is done."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            changed = self.version != seen
            if not changed:
                self._waiters.append((loop, fut))
        if changed:
            if asyncio.iscoroutine(until):
                until.close()  # never started: no "never awaited" warning
            return
        deadline = asyncio.ensure_future(until)
        try:
            await asyncio.wait({fut, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not fut]


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _printable(text: str) -> str:
    """``text`` safe to log and store: lone surrogates and the like escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _ack(kind: str, seq: int, interval: int | None = None, ok: bool = True, reason: str = "") -> dict[str, Any]:
    """An ``ack`` body (gridswarm.messages.Ack's fields), built as a plain dict: one per stored
    message, and a model built and dumped each time was a measurable part of ingest."""
    return {"kind": kind, "seq": seq, "interval": interval, "ok": ok, "reason": reason}


class Hub:
    def __init__(self, store: Store, clock: Clock, signer: Signer, chain_id: int, market: str) -> None:
        self.store = store
        self.clock = clock
        self.signer = signer
        self.chain_id = chain_id
        self.market = market
        self.verifier = Verifier(clock=clock, keys=self._key_of, last_seq=store.last_seqs())
        self.links: dict[str, SendFn] = {}
        self.events: Any = None  # coordinator.store.analytics.Analytics: alarms and config results are logged there
        # Load shedding: messages being verified and applied (or waiting for a worker thread);
        # past ``max_inflight`` a message is refused at once as ``busy`` and the agent sends it
        # again later from its outbox, so overload costs a reply, not an unbounded queue.
        self.inflight = 0
        self.max_inflight = MAX_INFLIGHT
        self.shed = 0
        self._room_waiters: set[asyncio.Future[None]] = set()  # links waiting for the low-water mark (one each)
        self.readings_stored = Changed()  # the market loop waits on it for the readings it settles with
        self.fleet: Any = None  # coordinator.services.FleetService, when the fleet runs
        self.ingest = Ingest(self)
        # Senders' parsed Ed25519 keys, kept while the store's participants stay the same (a
        # key rotated or a participant removed on chain empties it): the writer looks a batch's
        # keys up here, not in the store, whose one connection a batch being written holds.
        # Senders with no key are kept too (None), so a flood of unknown senders costs no query
        # each; a participant registered on chain also empties it.
        self._keys: dict[str, VerifyKey | None] = {}
        self._keys_version = -1

    def keys_of(self, senders: Collection[str]) -> dict[str, VerifyKey]:
        """The registered key of each of ``senders`` that has one; one store query for those not
        in memory."""
        if self._keys_version != self.store.participants_version or len(self._keys) > KEY_CACHE:
            self._keys = {}
            self._keys_version = self.store.participants_version
        cached = self._keys
        missing = {s for s in senders if s not in cached}
        if missing:
            found = self.store.participant_keys(missing)
            for sender in missing:
                text = found.get(sender)
                try:
                    cached[sender] = verify_key_from_hex(text) if text else None
                except (ValueError, TypeError):
                    logger.warning("participant %s has a malformed key on record", sender)
                    cached[sender] = None
        out: dict[str, VerifyKey] = {}
        for s in senders:
            key = cached.get(s)
            if key is not None:
                out[s] = key
        return out

    def _key_of(self, sender: str) -> VerifyKey | None:
        return self.keys_of((sender,)).get(sender)

    # ------------------------------------------------------------------ inbound

    def admit(self, kind: object = None) -> bool:
        """Take a slot for one inbound message, or say no (the caller answers ``busy``). A
        ``hello`` is always admitted: without it the agent's link cannot start."""
        if self.inflight >= self.max_inflight and kind != "hello":
            self.shed += 1
            return False
        self.inflight += 1
        return True

    def release(self) -> None:
        self.inflight -= 1
        if self._room_waiters and self.has_room():
            for fut in self._room_waiters:
                if not fut.done():
                    fut.set_result(None)
            self._room_waiters.clear()

    def has_room(self) -> bool:
        """Below the low-water mark (half the in-flight limit): links that shed may read again."""
        return self.inflight <= self.max_inflight // 2

    async def wait_for_room(self, timeout_s: float = ROOM_WAIT_S) -> None:
        """After shedding a message, a link stops reading until the hub has drained to half its
        limit (or ``timeout_s`` passed): reading and refusing every frame of an overloaded link
        costs the event loop almost what taking it does, and starved the writer that frees
        room, so throughput collapsed under overload. Unread frames wait in the socket's buffers
        (bounded by TCP flow control), not in the coordinator's memory. (A future per waiting
        link and a timer, not ``asyncio.wait_for``: that costs a task per wait.)"""
        if self.has_room():
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._room_waiters.add(fut)
        timer = loop.call_later(timeout_s, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            timer.cancel()
            self._room_waiters.discard(fut)

    async def submit(self, raw: str | bytes | dict[str, Any]) -> tuple[Envelope, dict[str, Any]]:
        """Verify and apply one message with the next batch (coordinator/ingest.py); return it and
        the reply body (an ``ack``) once it is stored. Raises :class:`EnvelopeError` (nothing
        changed) for anything invalid."""
        return await self.ingest.submit(raw)

    def handle(self, raw: str | bytes | dict[str, Any]) -> tuple[Envelope, dict[str, Any]]:
        """:meth:`submit` for one message, from a thread without the event loop."""
        outcome = self.ingest.process([raw])[0]
        if outcome.error is not None:
            raise outcome.error
        assert outcome.env is not None and outcome.reply is not None
        return outcome.env, outcome.reply

    def rejection(self, raw: object, exc: EnvelopeError) -> tuple[str, str, str, float]:
        """Log a refused message; return its ``rejections`` row."""
        sender = _printable(str(raw.get("sender", "?")) if isinstance(raw, dict) else "?")[:100]
        logger.warning("rejected message from %s: %s (%s)", sender, _printable(str(exc)), exc.reason)
        return (sender, exc.reason, _printable(str(exc))[:500], self.clock.now())

    def stage(self, env: Envelope, batch: MessageBatch) -> Staged:
        """Check one verified message's body and add what it changes to ``batch``; raises
        :class:`EnvelopeError` for a body that is not valid (nothing is staged then)."""
        body = validate_body(env.kind, env.body)
        if isinstance(body, Hello):
            if body.address != env.sender:
                raise MalformedEnvelope(f"hello address {body.address} is not the sender {env.sender}")
            return Staged(_ack(kind=env.kind, seq=env.seq))
        if isinstance(body, Telemetry):
            devices = (json.dumps({k: v.model_dump(exclude_none=True) for k, v in body.devices.items()})
                       if body.devices else "{}")
            batch.telemetry.append(
                (env.sender, body.record_id, body.ts, body.net_export_w, body.soc, devices, body.outbox_pending)
            )
            staged = Staged(_ack(kind=env.kind, seq=env.seq))
            if self.fleet is not None:
                fleet = self.fleet
                staged.after.append(lambda: fleet.on_telemetry(env.sender, body))
            return staged
        if isinstance(body, Meter):
            signer = recover_meter_signer(
                self.chain_id,
                self.market,
                env.sender,
                body.interval,
                body.exported_wh,
                body.imported_wh,
                body.signature,
            )
            if signer != env.sender:
                raise MalformedEnvelope(f"meter reading for interval {body.interval} is not signed by {env.sender}")
            batch.readings.append((body.interval, env.sender, body.exported_wh, body.imported_wh, body.signature))
            return Staged(_ack(kind=env.kind, seq=env.seq, interval=body.interval))
        if isinstance(body, Ack):
            interval = body.interval if body.interval is not None else -1
            batch.acks.append((env.sender, interval, body.kind, body.seq, int(body.ok), body.reason))
            # Acknowledged like every other record, so the agent's outbox lets it go.
            staged = Staged(_ack(kind=env.kind, seq=env.seq, interval=body.interval))
            if body.kind == "lend" and self.fleet is not None:  # a lender's answer to its grant
                fleet, answer = self.fleet, body
                staged.after.append(lambda: fleet.on_lend_answer(env.sender, answer.seq, answer.ok, answer.reason))
            return staged
        if isinstance(body, BorrowRequest):
            if self.fleet is None:
                return Staged(_ack(kind=env.kind, seq=env.seq, ok=False, reason="no fleet service"))
            ok, reason = self.fleet.on_borrow(env.sender, body)
            return Staged(_ack(kind=env.kind, seq=env.seq, ok=ok, reason=reason))
        if isinstance(body, Alarm):
            logger.warning("alarm %s from %s: %s", "raised" if body.active else "cleared", env.sender, body.message)
            if self.fleet is not None:
                self.fleet.on_alarm(env.sender, body)
            if self.events is not None:
                self.events.record_alarm(self.clock.now(), env.sender, body.model_dump())
            return Staged(_ack(kind=env.kind, seq=env.seq))
        if isinstance(body, Forecast):
            now = self.clock.now()
            if not now - 86_400.0 <= body.made_ts <= now + 300.0:  # agents expire them after a day too
                raise MalformedEnvelope(
                    f"forecast made_ts {body.made_ts:.0f} is not within the last day (now {now:.0f})")
            points = [p.model_dump() for p in body.points]
            batch.forecasts.append((env.sender, body.record_id, body.made_ts, points, now))
            return Staged(_ack(kind=env.kind, seq=env.seq))
        if isinstance(body, ConfigResult):
            if self.events is not None:
                self.events.record_config_result(self.clock.now(), env.sender, body.model_dump())
            return Staged(_ack(kind=env.kind, seq=env.seq))
        raise MalformedEnvelope(f"agents may not send {env.kind!r} messages")

    # ------------------------------------------------------------------ outbound

    def sign(self, kind: str, body: dict[str, Any]) -> Envelope:
        return self.signer.sign(kind, body)

    async def send(self, address: str, kind: str, body: dict[str, Any]) -> bool:
        if address not in self.links:
            return False  # nothing signed for an agent that is not here
        return await self.send_envelope(address, self.sign(kind, body))

    async def send_envelope(self, address: str, env: Envelope) -> bool:
        """Send ``env`` (signed by the caller, who may keep its seq to match the agent's answer).
        False if the agent has no link or it broke."""
        link = self.links.get(address)
        if link is None:
            return False
        try:
            await link(env.to_json())
            return True
        except Exception as exc:  # noqa: BLE001 - a broken link is dropped, the agent reconnects
            logger.info("link to %s broken: %s", address, exc)
            self.links.pop(address, None)
            return False

    async def send_all(
        self, messages: list[tuple[str, str, dict[str, Any]]], timeout_s: float = SEND_TIMEOUT_S
    ) -> list[bool]:
        """Send ``(address, kind, body)`` messages at once, each link on its own: a slow or stuck
        link delays only its own message (for at most ``timeout_s``). Each envelope is signed
        right before its link writes it, so every link still sees the coordinator's seqs in
        increasing order. ``True`` for each message handed to its link."""

        async def one(address: str, kind: str, body: dict[str, Any]) -> bool:
            try:
                return await asyncio.wait_for(self.send(address, kind, body), timeout_s)
            except TimeoutError:
                logger.warning("link to %s took over %.0f s for one %s; not sent", address, timeout_s, kind)
                return False

        return list(await asyncio.gather(*(one(a, k, b) for a, k, b in messages)))

    async def broadcast(self, kind: str, body: dict[str, Any]) -> int:
        return sum(await self.send_all([(address, kind, body) for address in list(self.links)]))
