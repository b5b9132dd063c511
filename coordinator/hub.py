"""Agent links: verifies every incoming envelope, handles it, and sends signed envelopes out.

Incoming messages arrive over the WebSocket (``/ws/agent``) or HTTP (``POST /api/v1/messages``);
both go through :meth:`Hub.handle`. A rejected message changes nothing and is logged (and
recorded in ``rejections``) with its reason. Identity comes from the chain: a sender is a
participant address whose Ed25519 key the indexer read from ``ParticipantRegistered``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nacl.signing import VerifyKey

from coordinator.store import Store
from gridswarm.chain import recover_meter_signer
from gridswarm.clock import Clock
from gridswarm.envelope import Envelope, EnvelopeError, MalformedEnvelope, Signer, Verifier, verify_key_from_hex
from gridswarm.messages import Ack, Alarm, BorrowRequest, ConfigResult, Forecast, Hello, Meter, Telemetry, validate_body

logger = logging.getLogger(__name__)

SendFn = Callable[[str], Awaitable[None]]
MAX_INFLIGHT = 256  # about half a second of work at the measured ingest rate (bench/results/ingest.json)


def _printable(text: str) -> str:
    """``text`` safe to log and store: lone surrogates and the like escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Hub:
    def __init__(self, store: Store, clock: Clock, signer: Signer, chain_id: int, market: str) -> None:
        self.store = store
        self.clock = clock
        self.signer = signer
        self.chain_id = chain_id
        self.market = market
        self.verifier = Verifier(clock=clock, keys=self._key_of, last_seq=store.last_seqs())
        self.links: dict[str, SendFn] = {}
        self.events: Any = None  # coordinator.analytics.Analytics: alarms and config results are logged there
        # Load shedding: messages being verified and applied (or waiting for a worker thread);
        # past ``max_inflight`` a message is refused at once as ``busy`` and the agent sends it
        # again later from its outbox, so overload costs a reply, not an unbounded queue.
        self.inflight = 0
        self.max_inflight = MAX_INFLIGHT
        self.shed = 0
        self.fleet: Any = None  # coordinator.services.FleetService, when the fleet runs

    def _key_of(self, sender: str) -> VerifyKey | None:
        key = self.store.participant_key(sender)
        return verify_key_from_hex(key) if key else None

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

    def handle(self, raw: str | bytes | dict[str, Any]) -> tuple[Envelope, dict[str, Any]]:
        """Verify and apply one message; return it and the reply body (an ``ack``).

        Raises :class:`EnvelopeError` (nothing changed) for anything invalid.
        """
        try:
            with self.store.lock:
                env = self.verifier.verify(raw)
                try:
                    body = validate_body(env.kind, env.body)
                    reply = self._apply(env, body)
                except EnvelopeError:
                    # The message was authentic but invalid: its seq stays unused for replays
                    # of this exact message, but the sender's counter must not move.
                    self._forget_seq(env)
                    raise
                self.store.db["envelope_seq"].upsert({"sender": env.sender, "last_seq": env.seq}, pk="sender")
                return env, reply
        except EnvelopeError as exc:
            sender = _printable(str(raw.get("sender", "?")) if isinstance(raw, dict) else "?")[:100]
            logger.warning("rejected message from %s: %s (%s)", sender, _printable(str(exc)), exc.reason)
            with self.store.transaction() as db:
                db["rejections"].insert(
                    {"sender": sender, "reason": exc.reason, "message": _printable(str(exc))[:500], "ts": self.clock.now()}
                )
            raise

    def _forget_seq(self, env: Envelope) -> None:
        stored = self.store.one("select last_seq from envelope_seq where sender = ?", [env.sender])
        if stored is None:
            self.verifier.last_seq.pop(env.sender, None)
        else:
            self.verifier.last_seq[env.sender] = int(stored["last_seq"])

    def _apply(self, env: Envelope, body: Any) -> dict[str, Any]:
        if isinstance(body, Hello):
            if body.address != env.sender:
                raise MalformedEnvelope(f"hello address {body.address} is not the sender {env.sender}")
            return Ack(kind=env.kind, seq=env.seq).model_dump()
        if isinstance(body, Telemetry):
            with self.store.transaction() as db:
                db["telemetry"].upsert(
                    {
                        "sender": env.sender,
                        "record_id": body.record_id,
                        "ts": body.ts,
                        "net_export_w": body.net_export_w,
                        "soc": body.soc,
                        "devices": json.dumps({k: v.model_dump(exclude_none=True) for k, v in body.devices.items()}),
                        "outbox_pending": body.outbox_pending,
                    },
                    pk=("sender", "record_id"),
                )
            if self.fleet is not None:
                self.fleet.on_telemetry(env.sender, body)
            return Ack(kind=env.kind, seq=env.seq).model_dump()
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
            with self.store.transaction() as db:
                db["readings"].upsert(
                    {
                        "interval": body.interval,
                        "participant": env.sender,
                        "exported_wh": body.exported_wh,
                        "imported_wh": body.imported_wh,
                        "signature": body.signature,
                    },
                    pk=("interval", "participant"),
                )
            return Ack(kind=env.kind, seq=env.seq, interval=body.interval).model_dump()
        if isinstance(body, Ack):
            with self.store.transaction() as db:
                db["acks"].upsert(
                    {
                        "sender": env.sender,
                        "interval": body.interval if body.interval is not None else -1,
                        "kind": body.kind,
                        "seq": body.seq,
                        "ok": int(body.ok),
                        "reason": body.reason,
                    },
                    pk=("sender", "interval", "kind"),
                )
            # Acknowledged like every other record, so the agent's outbox lets it go.
            return Ack(kind=env.kind, seq=env.seq, interval=body.interval).model_dump()
        if isinstance(body, BorrowRequest):
            if self.fleet is None:
                return Ack(kind=env.kind, seq=env.seq, ok=False, reason="no fleet service").model_dump()
            ok, reason = self.fleet.on_borrow(env.sender, body)
            return Ack(kind=env.kind, seq=env.seq, ok=ok, reason=reason).model_dump()
        if isinstance(body, Alarm):
            logger.warning("alarm %s from %s: %s", "raised" if body.active else "cleared", env.sender, body.message)
            if self.fleet is not None:
                self.fleet.on_alarm(env.sender, body)
            if self.events is not None:
                self.events.record_alarm(self.clock.now(), env.sender, body.model_dump())
            return Ack(kind=env.kind, seq=env.seq).model_dump()
        if isinstance(body, Forecast):
            now = self.clock.now()
            if not now - 86_400.0 <= body.made_ts <= now + 300.0:  # agents expire them after a day too
                raise MalformedEnvelope(
                    f"forecast made_ts {body.made_ts:.0f} is not within the last day (now {now:.0f})")
            points = [p.model_dump() for p in body.points]
            self.store.add_forecasts(env.sender, body.record_id, body.made_ts, points, now)
            return Ack(kind=env.kind, seq=env.seq).model_dump()
        if isinstance(body, ConfigResult):
            if self.events is not None:
                self.events.record_config_result(self.clock.now(), env.sender, body.model_dump())
            return Ack(kind=env.kind, seq=env.seq).model_dump()
        raise MalformedEnvelope(f"agents may not send {env.kind!r} messages")

    # ------------------------------------------------------------------ outbound

    def sign(self, kind: str, body: dict[str, Any]) -> Envelope:
        return self.signer.sign(kind, body)

    async def send(self, address: str, kind: str, body: dict[str, Any]) -> bool:
        link = self.links.get(address)
        if link is None:
            return False
        try:
            await link(self.sign(kind, body).to_json())
            return True
        except Exception as exc:  # noqa: BLE001 - a broken link is dropped, the agent reconnects
            logger.info("link to %s broken: %s", address, exc)
            self.links.pop(address, None)
            return False

    async def broadcast(self, kind: str, body: dict[str, Any]) -> int:
        sent = 0
        for address in list(self.links):
            sent += await self.send(address, kind, body)
        return sent
