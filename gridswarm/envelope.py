"""Signed envelopes for every off-chain message (docs/architecture.md §5).

An envelope is ``{version, kind, sender, seq, issued_at, expires_at, body}`` plus an Ed25519
signature (PyNaCl) over its canonical bytes: UTF-8 JSON with sorted keys, no whitespace, no
floats in ambiguous forms (bodies carry ints, strings, lists, dicts, bools and finite floats).

Errors::

    EnvelopeError
    ├── MalformedEnvelope      not an envelope, wrong types, body not what its kind needs
    ├── UnsignedEnvelope       no signature
    ├── UnknownSender          the sender has no registered key
    ├── ForgedEnvelope         the signature does not verify
    ├── ReplayedEnvelope       seq not greater than the last accepted from that sender
    ├── ExpiredEnvelope        expires_at is past
    └── FutureEnvelope         issued_at is further ahead than the allowed clock skew
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gridswarm.clock import Clock
from gridswarm.errors import GridSwarmError

VERSION = 1
MAX_ENVELOPE_BYTES = 256 * 1024
DEFAULT_TTL_S = 120.0
DEFAULT_SKEW_S = 30.0

KINDS = frozenset(
    {"hello", "welcome", "telemetry", "forecast", "interval", "dispatch", "ack", "arm", "meter", "alarm", "error"}
    | {"config", "config_result", "borrow", "lend", "acks"}
)


class EnvelopeError(GridSwarmError, ValueError):
    """Root of envelope rejections; ``reason`` is a short machine-readable word."""

    reason = "invalid"


class MalformedEnvelope(EnvelopeError):
    reason = "malformed"


class UnsignedEnvelope(EnvelopeError):
    reason = "unsigned"


class UnknownSender(EnvelopeError):
    reason = "unknown_sender"


class ForgedEnvelope(EnvelopeError):
    reason = "forged"


class ReplayedEnvelope(EnvelopeError):
    reason = "replayed"


class ExpiredEnvelope(EnvelopeError):
    reason = "expired"


class FutureEnvelope(EnvelopeError):
    reason = "future"


def canonical_bytes(obj: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed: sorted-key compact JSON, ASCII only."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise MalformedEnvelope(f"body is not canonical JSON: {exc}") from exc


@dataclass(frozen=True)
class Envelope:
    kind: str
    sender: str
    seq: int
    issued_at: float
    expires_at: float
    body: dict[str, Any]
    signature: str = ""
    version: int = VERSION
    # The JSON text, kept by :meth:`Signer.sign` (the signed bytes plus the signature): not
    # serialised a second time for the wire.
    text: str = field(default="", compare=False, repr=False)

    def unsigned_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "sender": self.sender,
            "seq": self.seq,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "body": self.body,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.unsigned_dict(), "signature": self.signature}

    def to_json(self) -> str:
        return self.text or json.dumps(self.to_dict(), separators=(",", ":"))


def key_hex(key: VerifyKey) -> str:
    return "0x" + bytes(key).hex()


def verify_key_from_hex(text: str) -> VerifyKey:
    raw = bytes.fromhex(text.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return VerifyKey(raw)


class Signer:
    """Signs envelopes for one sender with strictly increasing sequence numbers.

    ``next_seq`` is called for each message; give it a persistent counter (the agent's store)
    so that sequence numbers keep growing across restarts.
    """

    def __init__(
        self, key: SigningKey, sender: str, clock: Clock, next_seq: Callable[[], int], ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        self.key = key
        self.sender = sender
        self.clock = clock
        self._next_seq = next_seq
        self.ttl_s = ttl_s

    @property
    def public_key_hex(self) -> str:
        return key_hex(self.key.verify_key)

    def sign(self, kind: str, body: dict[str, Any], ttl_s: float | None = None) -> Envelope:
        if kind not in KINDS:
            raise ValueError(f"unknown envelope kind {kind!r}")
        now = self.clock.now()
        unsigned = {
            "version": VERSION,
            "kind": kind,
            "sender": self.sender,
            "seq": self._next_seq(),
            "issued_at": round(now, 3),
            "expires_at": round(now + (self.ttl_s if ttl_s is None else ttl_s), 3),
            "body": body,
        }
        signed = canonical_bytes(unsigned)
        signature = base64.b64encode(self.key.sign(signed).signature).decode()
        # The wire text is the signed JSON with the signature added: any JSON reader parses it
        # to the same envelope, and the bytes a verifier rebuilds are the signed ones.
        text = signed[:-1].decode() + _signature_tail(signature)
        return Envelope(**unsigned, signature=signature, text=text)


def _signature_tail(signature: str) -> str:
    """How a signed envelope's wire text ends: the signature as the last member, after the
    signed bytes' closing brace is taken off (:meth:`Signer.sign`, :meth:`Verifier.prepare`)."""
    return ',"signature":"' + signature + '"}'


def parse(raw: str | bytes | Mapping[str, Any]) -> Envelope:
    """Parse and type-check an envelope (no signature check yet)."""
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_ENVELOPE_BYTES:
            raise MalformedEnvelope(f"envelope is {len(raw)} bytes, the limit is {MAX_ENVELOPE_BYTES}")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEnvelope(f"not JSON: {exc}") from exc
    else:
        data = dict(raw)
    if not isinstance(data, dict):
        raise MalformedEnvelope("an envelope is a JSON object")
    if not data.get("signature"):
        raise UnsignedEnvelope("envelope has no signature")
    expected = {
        "version": int,
        "kind": str,
        "sender": str,
        "seq": int,
        "issued_at": (int, float),
        "expires_at": (int, float),
        "body": dict,
        "signature": str,
    }
    for name, typ in expected.items():
        if name not in data:
            raise MalformedEnvelope(f"envelope field {name!r} is missing")
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, typ):
            raise MalformedEnvelope(f"envelope field {name!r} has the wrong type")
    extra = set(data) - set(expected)
    if extra:
        raise MalformedEnvelope(f"unexpected envelope fields: {sorted(extra)}")
    if data["version"] != VERSION:
        raise MalformedEnvelope(f"unsupported envelope version {data['version']}")
    if data["kind"] not in KINDS:
        raise MalformedEnvelope(f"unknown envelope kind {data['kind']!r}")
    if data["seq"] < 0:
        raise MalformedEnvelope("seq must not be negative")
    for name in ("issued_at", "expires_at"):
        if not math.isfinite(data[name]):
            raise MalformedEnvelope(f"{name} must be finite")
    return Envelope(**data)


def forged(env: Envelope) -> ForgedEnvelope:
    return ForgedEnvelope(f"signature of {env.kind} #{env.seq} from {env.sender} does not verify")


@dataclass
class Verifier:
    """Checks envelopes: signature by the sender's registered key, growing seq, freshness.

    ``keys`` maps sender -> VerifyKey (from the chain); ``last_seq`` holds the last accepted
    sequence number per sender (persist it to keep replay protection across restarts).
    Nothing is recorded for a rejected envelope.
    """

    clock: Clock
    keys: Callable[[str], VerifyKey | None]
    last_seq: dict[str, int] = field(default_factory=dict)
    skew_s: float = DEFAULT_SKEW_S
    max_ttl_s: float = 3600.0

    def verify(self, raw: str | bytes | Mapping[str, Any]) -> Envelope:
        env, key, sig, message = self.prepare(raw)
        try:
            key.verify(message, sig)
        except (BadSignatureError, ValueError) as exc:
            raise forged(env) from exc
        return self.accept(env)

    def prepare(
        self, raw: str | bytes | Mapping[str, Any], keys: Mapping[str, VerifyKey] | None = None,
        text: str | None = None,
    ) -> tuple[Envelope, VerifyKey, bytes, bytes]:
        """The first half of :meth:`verify`, for a caller that checks signatures in batches:
        the parsed envelope, its sender's key, the signature and the bytes to check it against.
        Raises for a malformed envelope, an unknown sender or a signature that is not 64 bytes
        of base64. ``keys``: the senders' keys, looked up by the caller for a whole batch (else
        :attr:`keys` is asked).

        ``text``: the JSON text ``raw`` was parsed from. When it is written as :meth:`Signer.sign`
        writes it (the signed bytes, then the signature as the last member), the bytes to check
        are taken from it instead of encoding the envelope again: they are the canonical bytes
        whenever the sender is honest. A signature that verifies against them covers every byte
        of the text but the signature itself, so what was parsed is what was signed. A caller
        whose check fails checks again against :func:`canonical_bytes` (a sender that wrote its
        text differently); a forgery fails both."""
        env = parse(raw)
        key = keys.get(env.sender) if keys is not None else self.keys(env.sender)
        if key is None:
            raise UnknownSender(f"no registered key for sender {env.sender!r}")
        try:
            sig = base64.b64decode(env.signature, validate=True)
        except ValueError as exc:
            raise forged(env) from exc
        if len(sig) != 64:
            raise forged(env)
        # (the canonical bytes are ASCII and hold no NaN or Infinity, which json reads but
        # canonical_bytes refuses: such a text takes the exact path below and is refused there)
        if text is not None and text.isascii() and "NaN" not in text and "Infinity" not in text:
            tail = _signature_tail(env.signature)
            if text.endswith(tail):
                return env, key, sig, (text[: -len(tail)] + "}").encode()
        return env, key, sig, canonical_bytes(env.unsigned_dict())

    def accept(self, env: Envelope) -> Envelope:
        """The second half of :meth:`verify`, once ``env``'s signature verified: freshness and
        the sender's growing seq (which it then records)."""
        now = self.clock.now()
        if env.expires_at < now:
            raise ExpiredEnvelope(f"{env.kind} #{env.seq} from {env.sender} expired {now - env.expires_at:.1f} s ago")
        if env.issued_at > now + self.skew_s:
            raise FutureEnvelope(
                f"{env.kind} #{env.seq} from {env.sender} is issued {env.issued_at - now:.1f} s in the future"
            )
        if env.expires_at - env.issued_at > self.max_ttl_s:
            raise MalformedEnvelope(f"{env.kind} #{env.seq} lives longer than {self.max_ttl_s} s")
        last = self.last_seq.get(env.sender)
        if last is not None and env.seq <= last:
            raise ReplayedEnvelope(f"{env.kind} #{env.seq} from {env.sender} is not after #{last}")
        self.last_seq[env.sender] = env.seq
        return env
