"""Agent messages are checked and stored in batches (coordinator/ingest.py), through a running
coordinator: replies in order and only once stored, exact replay checks inside a batch, nothing
acknowledged when the batch cannot be stored, and the coordinator's own seqs reserved in blocks."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from nacl.signing import SigningKey

from coordinator.hub import Hub
from coordinator.ingest import SeqReservation
from coordinator.store import Store
from gridswarm.clock import ManualClock
from gridswarm.envelope import Signer
from gridswarm.messages import MAX_ACKS
from tests.coordinator.conftest import RunningCoordinator
from tests.support.waiting import wait_until_async

_record = itertools.count(1)


def _signer(rc: RunningCoordinator, i: int, start: int = 1) -> Signer:
    p = rc.market.participants[i]
    return Signer(p.ed25519, p.account.address, rc.clock, itertools.count(start).__next__)


def _telemetry(**extra: Any) -> dict[str, Any]:
    return {"ts": 1.0, "net_export_w": 10.0, "soc": 0.5, "devices": {}, "record_id": next(_record), **extra}


def _url(rc: RunningCoordinator) -> str:
    return rc.base.replace("http://", "ws://") + "/ws/agent"


def _hello(signer: Signer) -> str:
    return signer.sign("hello", {"address": signer.sender, "site": "t"}).to_json()


def _answers(env: dict[str, Any]) -> list[dict[str, Any]]:
    """One reply per message answered by ``env``: an ``acks`` envelope answers several, and so
    does a ``busy`` error listing ``seqs``; each keeps the envelope's own ``seq``."""
    if env["kind"] == "acks":
        return [{**env, "kind": "ack", "body": b} for b in env["body"]["acks"]]
    if env["kind"] == "error" and env["body"].get("seqs"):
        return [{**env, "body": {**env["body"], "seq": q}} for q in env["body"]["seqs"]]
    return [env]


async def _exchange(
    rc: RunningCoordinator, hello: str, frames: list[str], envelopes: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Say ``hello``, send ``frames`` back to back without waiting, return one reply per frame
    (the envelopes as they came go to ``envelopes``)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(_url(rc)) as ws:
        await ws.send_str(hello)
        assert json.loads((await ws.receive(timeout=20)).data)["kind"] == "welcome"
        for f in frames:
            await ws.send_str(f)
        replies: list[dict[str, Any]] = []
        while len(replies) < len(frames):
            msg = await ws.receive(timeout=20)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            env = json.loads(msg.data)
            if envelopes is not None:
                envelopes.append(env)
            replies.extend(_answers(env))
        return replies


def _rows(rc: RunningCoordinator, sql: str, *params: object) -> list[dict[str, Any]]:
    return rc.coordinator.store.query(sql, list(params))


def test_a_burst_on_one_link_is_batched_stored_and_acked_in_order(running: RunningCoordinator) -> None:
    signer = _signer(running, 0)
    hello = _hello(signer)
    envs = [signer.sign("telemetry", _telemetry()) for _ in range(150)]
    before = running.coordinator.hub.ingest.batches
    envelopes: list[dict[str, Any]] = []
    replies = asyncio.run(_exchange(running, hello, [e.to_json() for e in envs], envelopes))
    assert [r["kind"] for r in replies] == ["ack"] * 150
    assert [r["body"]["seq"] for r in replies] == [e.seq for e in envs]  # in the order sent
    coordinator_seqs = [e["seq"] for e in envelopes]
    assert coordinator_seqs == sorted(coordinator_seqs) and len(set(coordinator_seqs)) == len(envelopes)
    # the acks of messages stored together go out together, under one signature
    assert {e["kind"] for e in envelopes} <= {"ack", "acks"} and len(envelopes) < 150
    assert all(1 <= len(e["body"]["acks"]) <= MAX_ACKS for e in envelopes if e["kind"] == "acks")
    stored = _rows(running, "select record_id from telemetry where sender = ?", signer.sender)
    assert sorted(r["record_id"] for r in stored) == sorted(e.body["record_id"] for e in envs)
    assert _rows(running, "select last_seq from envelope_seq where sender = ?", signer.sender) == [
        {"last_seq": envs[-1].seq}
    ]
    ingest = running.coordinator.hub.ingest
    assert ingest.largest_batch > 1  # more than one message per transaction
    assert ingest.batches - before < 150


def test_replays_and_refusals_inside_one_batch_are_exact(running: RunningCoordinator) -> None:
    signer = _signer(running, 1, start=100)
    hello = _hello(signer)
    a = signer.sign("telemetry", _telemetry())
    bad = signer.sign("telemetry", {"ts": 1.0})  # authentic, but not a telemetry body
    # the same seq as the refused one, now with a valid body: the refusal must not have moved
    # the sender's counter
    again = Signer(signer.key, signer.sender, running.clock, iter([bad.seq]).__next__).sign("telemetry", _telemetry())
    older = Signer(signer.key, signer.sender, running.clock, iter([5]).__next__).sign("telemetry", _telemetry())
    frames = [a.to_json(), a.to_json(), older.to_json(), bad.to_json(), again.to_json()]
    replies = asyncio.run(_exchange(running, hello, frames))
    got = [(r["kind"], r["body"].get("reason") or None, r["body"]["seq"]) for r in replies]
    assert got == [
        ("ack", None, a.seq),
        ("error", "replayed", a.seq),
        ("error", "replayed", 5),
        ("error", "malformed", bad.seq),
        ("ack", None, again.seq),
    ]
    ids = {r["record_id"] for r in _rows(running, "select record_id from telemetry where sender = ?", signer.sender)}
    assert ids == {a.body["record_id"], again.body["record_id"]}
    assert _rows(running, "select last_seq from envelope_seq where sender = ?", signer.sender) == [{"last_seq": again.seq}]


def test_nothing_is_acknowledged_when_the_batch_cannot_be_stored(
    running: RunningCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = running.coordinator.store
    signer = _signer(running, 2, start=1000)
    hello = _hello(signer)
    env = signer.sign("telemetry", _telemetry())
    real = store.store_messages
    calls: list[int] = []

    def fail_once(batch: Any) -> None:
        if len(batch.telemetry) and not calls:
            calls.append(1)
            raise OSError("disk full")
        real(batch)

    async def scenario() -> tuple[dict[str, Any], int]:
        async with aiohttp.ClientSession() as session, session.ws_connect(_url(running)) as ws:
            await ws.send_str(hello)
            assert json.loads((await ws.receive(timeout=20)).data)["kind"] == "welcome"
            monkeypatch.setattr(store, "store_messages", fail_once)
            await ws.send_str(env.to_json())
            reply = json.loads((await ws.receive(timeout=20)).data)
            closed = await ws.receive(timeout=20)
            return reply, int(closed.data)

    reply, code = asyncio.run(scenario())
    assert calls == [1]
    assert reply["kind"] == "error" and reply["body"]["reason"] == "internal" and code == 1011
    assert _rows(running, "select * from telemetry where sender = ?", signer.sender) == []
    # the replay counter was put back: the same envelope is taken when the agent sends it again
    r = httpx.post(running.base + "/api/v1/messages", content=env.to_json(), timeout=10)
    assert r.status_code == 200, r.text
    assert len(_rows(running, "select * from telemetry where sender = ?", signer.sender)) == 1


def test_coordinator_seqs_are_reserved_in_blocks_and_grow_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    first = SeqReservation(lambda n: Store(db).reserve_seqs("coordinator", n), block=10)
    used = [first() for _ in range(13)]
    assert used == list(range(1, 14))
    assert Store(db).last_seq("coordinator") == 20  # two blocks reserved, one write each
    again = SeqReservation(lambda n: Store(db).reserve_seqs("coordinator", n), block=10)  # a restart
    assert again() == 21 > used[-1]


def test_signatures_of_a_large_batch_are_checked_in_the_worker_and_forgeries_refused(
    running: RunningCoordinator,
) -> None:
    signer = _signer(running, 3, start=5000)
    hello = _hello(signer)
    envs = [signer.sign("telemetry", _telemetry()).to_dict() for _ in range(60)]
    forged = {7, 30, 59}
    for i in forged:
        envs[i]["body"] = {**envs[i]["body"], "net_export_w": 9999.0}  # the signature no longer covers it
    checker = running.coordinator.hub.ingest.sigs
    before = checker.remote_batches
    replies = asyncio.run(_exchange(running, hello, [json.dumps(e) for e in envs]))
    got = {r["body"]["seq"]: (r["kind"], r["body"].get("reason") or None) for r in replies}
    assert got == {
        e["seq"]: (("error", "forged") if i in forged else ("ack", None)) for i, e in enumerate(envs)
    }
    stored = {r["record_id"] for r in _rows(running, "select record_id from telemetry where sender = ?", signer.sender)}
    assert stored == {e["body"]["record_id"] for i, e in enumerate(envs) if i not in forged}
    assert checker.remote_batches > before  # a batch went to the worker process


def test_the_next_batch_is_parsed_and_its_signatures_checked_while_one_is_written(
    running: RunningCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two stages overlap (coordinator/ingest.py): while a batch's write is held, the next
    batch still reaches the signature check; once the write goes on, both are stored and acked."""
    store = running.coordinator.store
    checker = running.coordinator.hub.ingest.sigs
    first, second = _signer(running, 0, start=20_000), _signer(running, 1, start=20_000)
    hellos = [_hello(first), _hello(second)]
    a = first.sign("telemetry", _telemetry())
    bs = [second.sign("telemetry", _telemetry()) for _ in range(12)]
    held, release = threading.Event(), threading.Event()
    real_store, real_check = store.store_messages, checker.check
    events: list[str] = []

    def slow_store(batch: Any) -> None:
        if any(row[0] == first.sender for row in batch.telemetry) and not release.is_set():
            events.append("write held")
            held.set()
            release.wait(20)
        real_store(batch)
        events.append(f"written {len(batch.telemetry)}")

    async def counting_check(items: Any) -> list[bool]:
        events.append(f"check {len(items)}")
        return await real_check(items)

    async def scenario() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(_url(running)) as w1, session.ws_connect(_url(running)) as w2:
                for ws, hello in zip((w1, w2), hellos, strict=True):
                    await ws.send_str(hello)
                    assert json.loads((await ws.receive(timeout=20)).data)["kind"] == "welcome"
                monkeypatch.setattr(store, "store_messages", slow_store)
                monkeypatch.setattr(checker, "check", counting_check)
                await w1.send_str(a.to_json())
                await wait_until_async(held.is_set, "the first batch's write under way")
                for b in bs:
                    await w2.send_str(b.to_json())
                await wait_until_async(lambda: _checked_after_hold(events), "the next batch at the signature check")
                assert "written 1" not in events  # ... while the first write is still held
                release.set()
                replies = [json.loads((await w1.receive(timeout=20)).data)]
                while sum(len(_answers(r)) for r in replies) < 1 + len(bs):
                    replies.append(json.loads((await w2.receive(timeout=20)).data))
                return [x for r in replies for x in _answers(r)]

    replies = asyncio.run(scenario())
    assert [(r["kind"], r["body"]["seq"]) for r in replies] == [("ack", a.seq)] + [("ack", b.seq) for b in bs]
    assert _checked_after_hold(events[: events.index("written 1")])
    ids = {r["record_id"] for r in _rows(running, "select record_id from telemetry where sender in (?, ?)",
                                         first.sender, second.sender)}
    assert {e.body["record_id"] for e in (a, *bs)} <= ids


def _checked_after_hold(events: list[str]) -> int:
    """Signatures checked since the write was held."""
    held = events.index("write held") if "write held" in events else len(events)
    return sum(int(e.split()[1]) for e in events[held:] if e.startswith("check "))


def test_senders_keys_are_kept_in_memory_until_a_key_changes_on_chain(tmp_path: Path) -> None:
    """The hub's key cache follows the chain: a key rotated (or a participant removed) is seen at
    once, not after the cache happens to be emptied."""
    store = Store(tmp_path / "c.sqlite")
    old, new = SigningKey.generate(), SigningKey.generate()
    account = "0x" + "ab" * 20
    log = itertools.count()

    def event(name: str, **args: Any) -> dict[str, Any]:
        i = next(log)
        return {"event": name, "args": {"account": account, **args}, "transactionHash": bytes([i]) * 32,
                "logIndex": 0, "blockNumber": i + 1}

    store.apply_chain_events([event("ParticipantRegistered", ed25519Key=bytes(old.verify_key), zone=0)], "c", 1)
    hub = Hub(store, ManualClock(1_000.0), Signer(SigningKey.generate(), "coordinator", ManualClock(1_000.0),
                                                 itertools.count(1).__next__), 1337, "0x" + "00" * 20)
    stranger = "0x" + "cd" * 20
    assert bytes(hub.keys_of([account, stranger])[account]) == bytes(old.verify_key)
    queries: list[object] = []
    real = store.participant_keys
    store.participant_keys = lambda senders: queries.append(senders) or real(senders)  # type: ignore[method-assign]
    assert hub.keys_of([account, stranger]).keys() == {account}
    assert queries == []  # from memory, the stranger's lack of a key too
    store.apply_chain_events([event("ParticipantKeyRotated", ed25519Key=bytes(new.verify_key))], "c", 2)
    assert bytes(hub.keys_of([account])[account]) == bytes(new.verify_key)
    store.apply_chain_events([event("ParticipantRemoved")], "c", 3)
    assert hub.keys_of([account]) == {}
    account = stranger  # registered later: seen at once, though its absence was kept
    store.apply_chain_events([event("ParticipantRegistered", ed25519Key=bytes(old.verify_key), zone=0)], "c", 4)
    assert bytes(hub.keys_of([stranger])[stranger]) == bytes(old.verify_key)


def test_frames_are_checked_against_their_own_text_and_other_spellings_and_forgeries_still_sorted(
    running: RunningCoordinator,
) -> None:
    """The coordinator checks a frame's signature against the frame's own text first (the
    canonical bytes, when the agent writes its envelope as gridswarm's Signer does). An
    envelope spelt otherwise (reordered, indented) but signed over the canonical bytes is still
    taken; a frame whose text was changed is refused as forged."""
    signer = _signer(running, 3, start=60_000)
    hello = _hello(signer)
    envs = [signer.sign("telemetry", _telemetry()) for _ in range(12)]
    frames = [e.to_json() for e in envs]
    frames[3] = json.dumps(dict(reversed(list(envs[3].to_dict().items()))), indent=2)  # another spelling
    frames[5] = frames[5].replace('"net_export_w":10.0', '"net_export_w":99.0')  # changed after signing
    frames[9] = frames[9].replace('"soc":0.5', '"soc":0.50')  # the same value, other bytes: taken
    assert frames[5] != envs[5].to_json() and frames[9] != envs[9].to_json()
    replies = asyncio.run(_exchange(running, hello, frames))
    got = {r["body"]["seq"]: (r["kind"], r["body"].get("reason") or None) for r in replies}
    assert got == {e.seq: (("error", "forged") if i == 5 else ("ack", None)) for i, e in enumerate(envs)}
