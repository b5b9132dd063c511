"""The coordinator rejects bad envelopes with a clear error and changes nothing."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
from nacl.signing import SigningKey

from gridswarm.chain import sign_meter_reading
from gridswarm.envelope import Signer
from tests.coordinator.conftest import RunningCoordinator

_seq = itertools.count(1)


def _signer(rc: RunningCoordinator, i: int = 0, key: SigningKey | None = None) -> Signer:
    p = rc.market.participants[i]
    return Signer(key or p.ed25519, p.account.address, rc.clock, lambda: next(_seq))


def _meter(rc: RunningCoordinator, i: int = 0, interval: int = 7, exported: int = 500) -> dict:
    p = rc.market.participants[i]
    sig = sign_meter_reading(p.account, rc.market.dep.chain_id, rc.market.dep.market, interval, exported, 0)
    return {"interval": interval, "exported_wh": exported, "imported_wh": 0, "signature": sig}


def _state(rc: RunningCoordinator) -> dict[str, object]:
    store = rc.coordinator.store
    return {
        t: store.query(f"select * from {t}")
        for t in ("readings", "telemetry", "acks", "envelope_seq", "orders", "intervals")
    }


def _post(rc: RunningCoordinator, payload: object) -> httpx.Response:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return httpx.post(rc.base + "/api/v1/messages", content=body, timeout=10)


def test_valid_meter_reading_is_stored_once(running: RunningCoordinator) -> None:
    env = _signer(running).sign("meter", _meter(running))
    r = _post(running, env.to_dict())
    assert r.status_code == 200, r.text
    rows = running.coordinator.store.query("select * from readings")
    assert [(x["interval"], x["exported_wh"]) for x in rows] == [(7, 500)]


@pytest.mark.parametrize(
    "case",
    ["forged", "replayed", "expired", "unknown_sender", "malformed_body", "unsigned", "not_json", "wrong_meter_signer"],
)
def test_bad_message_rejected_and_state_unchanged(running: RunningCoordinator, case: str) -> None:
    signer = _signer(running)
    good = signer.sign("meter", _meter(running))
    assert _post(running, good.to_dict()).status_code == 200
    before = _state(running)
    if case == "forged":
        data = signer.sign("meter", _meter(running, exported=900)).to_dict()
        data["body"]["exported_wh"] = 901
        payload: object = data
    elif case == "replayed":
        payload = good.to_dict()
    elif case == "expired":
        env = signer.sign("meter", _meter(running, exported=900))
        running.clock.advance(10_000)
        payload = env.to_dict()
    elif case == "unknown_sender":
        stranger = Signer(SigningKey(b"\x09" * 32), "0x" + "11" * 20, running.clock, lambda: 1)
        payload = stranger.sign("meter", _meter(running)).to_dict()
    elif case == "malformed_body":
        payload = signer.sign("meter", {"interval": 7, "exported_wh": "many"}).to_dict()
    elif case == "unsigned":
        data = signer.sign("meter", _meter(running)).to_dict()
        del data["signature"]
        payload = data
    elif case == "not_json":
        payload = "this is not an envelope"
    else:  # the EIP-712 reading is signed by another participant's Ethereum key
        other = _meter(running, i=1, exported=900)
        payload = signer.sign("meter", other).to_dict()
    r = _post(running, payload)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    expected_reason = {
        "forged": "forged",
        "replayed": "replayed",
        "expired": "expired",
        "unknown_sender": "unknown_sender",
        "malformed_body": "malformed",
        "unsigned": "unsigned",
        "not_json": "malformed",
        "wrong_meter_signer": "malformed",
    }[case]
    assert detail["reason"] == expected_reason
    assert detail["message"]
    assert _state(running) == before
    # and a fresh, valid message from the same sender is still accepted afterwards
    assert _post(running, signer.sign("meter", _meter(running, interval=8)).to_dict()).status_code == 200


def test_too_large_message_rejected(running: RunningCoordinator) -> None:
    r = _post(running, "x" * (300 * 1024))
    assert r.status_code == 413


def test_agents_may_not_send_dispatch(running: RunningCoordinator) -> None:
    body = {"interval": 1, "start": 0.0, "end": 900.0, "export_w": 1e6, "fills": []}
    r = _post(running, _signer(running).sign("dispatch", body).to_dict())
    assert r.status_code == 400
    assert "may not send" in r.json()["detail"]["message"]
