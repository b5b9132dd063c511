from __future__ import annotations

import itertools
import json

import pytest
from nacl.signing import SigningKey

from gridswarm import envelope
from gridswarm.clock import ManualClock
from gridswarm.envelope import (
    MAX_ENVELOPE_BYTES,
    ExpiredEnvelope,
    ForgedEnvelope,
    FutureEnvelope,
    MalformedEnvelope,
    ReplayedEnvelope,
    Signer,
    UnknownSender,
    UnsignedEnvelope,
    Verifier,
    canonical_bytes,
)
from gridswarm.messages import validate_body

ALICE = "0x" + "a1" * 20


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000.0)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(b"\x01" * 32)


@pytest.fixture
def signer(key: SigningKey, clock: ManualClock) -> Signer:
    counter = itertools.count(1)
    return Signer(key, ALICE, clock, lambda: next(counter), ttl_s=60)


@pytest.fixture
def verifier(key: SigningKey, clock: ManualClock) -> Verifier:
    return Verifier(clock=clock, keys=lambda s: key.verify_key if s == ALICE else None)


def test_signed_envelope_verifies_and_records_seq(signer: Signer, verifier: Verifier) -> None:
    env = signer.sign("hello", {"address": ALICE, "site": "a"})
    got = verifier.verify(env.to_json())
    assert got.body == {"address": ALICE, "site": "a"}
    assert verifier.last_seq[ALICE] == env.seq


def test_canonical_bytes_are_order_independent() -> None:
    assert canonical_bytes({"b": 1, "a": [1, 2]}) == canonical_bytes({"a": [1, 2], "b": 1})


def test_tampered_body_is_forged(signer: Signer, verifier: Verifier) -> None:
    data = signer.sign("hello", {"address": ALICE, "site": "a"}).to_dict()
    data["body"]["site"] = "b"
    with pytest.raises(ForgedEnvelope):
        verifier.verify(data)
    assert ALICE not in verifier.last_seq


def test_signature_of_another_key_is_forged(clock: ManualClock, verifier: Verifier) -> None:
    mallory = Signer(SigningKey(b"\x02" * 32), ALICE, clock, lambda: 1)
    with pytest.raises(ForgedEnvelope):
        verifier.verify(mallory.sign("hello", {"address": ALICE, "site": "a"}).to_json())


def test_replayed_and_older_seq_rejected(signer: Signer, verifier: Verifier) -> None:
    first = signer.sign("hello", {"address": ALICE, "site": "a"})
    second = signer.sign("hello", {"address": ALICE, "site": "a"})
    verifier.verify(second.to_json())
    with pytest.raises(ReplayedEnvelope):
        verifier.verify(second.to_json())
    with pytest.raises(ReplayedEnvelope):
        verifier.verify(first.to_json())
    assert verifier.last_seq[ALICE] == second.seq


def test_expired_rejected(signer: Signer, verifier: Verifier, clock: ManualClock) -> None:
    env = signer.sign("hello", {"address": ALICE, "site": "a"})
    clock.advance(61)
    with pytest.raises(ExpiredEnvelope):
        verifier.verify(env.to_json())


def test_future_rejected(key: SigningKey, verifier: Verifier) -> None:
    ahead = ManualClock(1_000_000.0 + 3600)
    env = Signer(key, ALICE, ahead, lambda: 5).sign("hello", {"address": ALICE, "site": "a"})
    with pytest.raises(FutureEnvelope):
        verifier.verify(env.to_json())


def test_unknown_sender(clock: ManualClock, verifier: Verifier) -> None:
    env = Signer(SigningKey(b"\x03" * 32), "0x" + "b2" * 20, clock, lambda: 1).sign("hello", {"address": "x", "site": "b"})
    with pytest.raises(UnknownSender):
        verifier.verify(env.to_json())


def test_unsigned(signer: Signer, verifier: Verifier) -> None:
    data = signer.sign("hello", {"address": ALICE, "site": "a"}).to_dict()
    data["signature"] = ""
    with pytest.raises(UnsignedEnvelope):
        verifier.verify(data)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("seq"),
        lambda d: d.update(seq="7"),
        lambda d: d.update(kind="launch_missiles"),
        lambda d: d.update(version=99),
        lambda d: d.update(extra=1),
        lambda d: d.update(body=[1, 2]),
        lambda d: d.update(seq=True),
    ],
)
def test_malformed(signer: Signer, verifier: Verifier, mutate) -> None:  # noqa: ANN001
    data = signer.sign("hello", {"address": ALICE, "site": "a"}).to_dict()
    mutate(data)
    with pytest.raises(MalformedEnvelope):
        verifier.verify(data)


def test_not_json_and_too_large(verifier: Verifier) -> None:
    with pytest.raises(MalformedEnvelope):
        verifier.verify("{nope")
    with pytest.raises(MalformedEnvelope, match="limit"):
        verifier.verify(json.dumps({"pad": "x" * MAX_ENVELOPE_BYTES}))


def test_body_validation_names_the_field() -> None:
    with pytest.raises(MalformedEnvelope, match="exported_wh"):
        validate_body("meter", {"interval": 1, "exported_wh": -5, "imported_wh": 0, "signature": "0x" + "00" * 65})
    with pytest.raises(MalformedEnvelope, match="export_w"):
        validate_body("dispatch", {"interval": 1, "start": 0.0, "end": 1.0, "export_w": "lots", "fills": []})


def test_the_bytes_to_check_come_from_the_text_as_a_signer_writes_it(
    signer: Signer, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = signer.sign("telemetry", {"ts": 1.0, "soc": 0.5, "note": "ü"})
    text = env.to_json()
    with monkeypatch.context() as m:
        m.setattr(envelope, "canonical_bytes", lambda _: pytest.fail("encoded again"))
        got_env, _, _, message = verifier.prepare(json.loads(text), text=text)
    assert message == canonical_bytes(env.unsigned_dict())  # what an honest sender signed
    assert got_env == env
    # another way of writing the same envelope: the canonical bytes are encoded again
    other = json.dumps(env.to_dict(), indent=1)
    assert verifier.prepare(json.loads(other), text=other)[3] == message
    # a text with something after the signature is not taken as written either
    trailing = text + " "
    assert verifier.prepare(json.loads(trailing), text=trailing)[3] == message


def test_a_text_with_nan_is_still_refused_as_not_canonical(signer: Signer, verifier: Verifier) -> None:
    env = signer.sign("telemetry", {"ts": 1.0, "soc": 0.5})
    text = env.to_json().replace('"soc":0.5', '"soc":NaN')
    with pytest.raises(MalformedEnvelope, match="canonical"):
        verifier.prepare(json.loads(text), text=text)
