"""Hostile input on the coordinator's API gets a clear 4xx (or a WebSocket error and close code),
changes nothing, and never reaches a server error."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import httpx

from coordinator.api.guard import MAX_DEPTH
from coordinator.hub import MAX_INFLIGHT
from gridswarm.envelope import MAX_ENVELOPE_BYTES
from tests.coordinator.conftest import RunningCoordinator


def _rejections(rc: RunningCoordinator) -> int:
    return int(rc.coordinator.store.one("select count(*) as n from rejections")["n"])


def _raw_post(rc: RunningCoordinator, head: bytes, body: bytes) -> str:
    """Send a request by hand and read the status line without finishing the body: only a
    server that enforces the limit while reading can answer at all."""
    host, port = rc.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head + b"\r\n" + body)
        return sock.recv(4096).decode(errors="replace")


def test_body_size_is_enforced_while_reading(running: RunningCoordinator) -> None:
    # a declared length over the limit: refused before any of the body is read
    reply = _raw_post(running, b"Content-Length: 262144000\r\n", b"{")
    assert reply.startswith("HTTP/1.1 413"), reply[:80]
    # a chunked body with no length: refused once the chunks read pass the limit, though the
    # body never ends
    chunk = b" " * (MAX_ENVELOPE_BYTES + 1024)
    reply = _raw_post(running, b"Transfer-Encoding: chunked\r\n", b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    assert reply.startswith("HTTP/1.1 413"), reply[:80]
    assert httpx.get(running.base + "/healthz", timeout=10).status_code == 200


def test_bad_json_is_a_400_and_changes_nothing(running: RunningCoordinator) -> None:
    before = _rejections(running)
    url = running.base + "/api/v1/messages"
    deep = "[" * 1000 + "]" * 1000
    surrogate = '{"version": 1, "kind": "hello", "sender": "\\ud800", "seq": 1, "issued_at": 1, "expires_at": 2, "body": {}, "signature": "x"}'
    huge_int = '{"version": 1, "kind": "hello", "sender": "a", "seq": ' + str(2**80) + ', "issued_at": 1, "expires_at": 2, "body": {}, "signature": "x"}'
    lower = surrogate.replace("\\ud800", "\\uDBff")  # any case of the escape
    negative = huge_int.replace(str(2**80), "-" + str(2**63 + 1))  # 19 digits, just outside
    cases = [(deep, "too_deep"), (surrogate, "bad_text"), (lower, "bad_text"), (huge_int, "out_of_range"),
             (negative, "out_of_range"), ("{", "malformed"), ("[1]", "malformed")]
    for body, reason in cases:
        r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code == 400, body[:40]
        assert r.json()["detail"]["reason"] == reason
    # JSON in UTF-16 is read too, so it is checked too (its escapes are not ASCII bytes)
    r = httpx.post(url, content=surrogate.encode("utf-16"), headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["detail"]["reason"] == "bad_text"
    nested = {"a": 1}
    for _ in range(MAX_DEPTH + 2):
        nested = {"a": nested}
    r = httpx.post(url, content=json.dumps(nested), timeout=10)
    assert r.status_code == 400 and r.json()["detail"]["reason"] == "too_deep"
    assert _rejections(running) == before  # refused before the hub saw it


def test_query_and_path_integers_are_bounded(running: RunningCoordinator) -> None:
    big = str(2**64)
    for path, params in (
        ("/api/v1/intervals/" + big, {}),
        ("/api/v1/intervals", {"offset": big}),
        ("/api/v1/trades", {"interval": big}),
        ("/api/v1/trades", {"offset": big}),
        ("/api/v1/participants", {"offset": big}),
        ("/api/v1/intervals/-1", {}),
    ):
        r = httpx.get(running.base + path, params=params, timeout=10)
        assert r.status_code == 422, (path, params, r.status_code)
    # the largest value SQLite holds is fine
    r = httpx.get(running.base + "/api/v1/intervals", params={"offset": str(2**63 - 1)}, timeout=10)
    assert r.status_code == 200 and r.json()["data"] == []


def test_participants_honours_limit_and_offset(running: RunningCoordinator) -> None:
    url = running.base + "/api/v1/participants"
    everyone = httpx.get(url, timeout=10).json()
    assert everyone["count"] == len(everyone["data"]) == 4
    page = httpx.get(url, params={"limit": 2, "offset": 1}, timeout=10).json()
    assert [p["address"] for p in page["data"]] == [p["address"] for p in everyone["data"][1:3]]
    assert page["count"] == 4


def test_openapi_lists_error_responses_and_the_message_body(running: RunningCoordinator) -> None:
    spec = httpx.get(running.base + "/openapi.json", timeout=10).json()
    post = spec["paths"]["/api/v1/messages"]["post"]
    assert {"400", "413", "422"} <= set(post["responses"])
    assert "signature" in post["requestBody"]["content"]["application/json"]["schema"]["required"]
    assert {"404", "422"} <= set(spec["paths"]["/api/v1/intervals/{interval_id}"]["get"]["responses"])
    assert "503" in spec["paths"]["/healthz"]["get"]["responses"]


def test_websocket_bad_frames_get_a_reason_and_a_close_code(running: RunningCoordinator) -> None:
    url = running.base.replace("http://", "ws://") + "/ws/agent"

    async def exchange(send: object) -> tuple[dict[str, object], int | None]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            if isinstance(send, bytes):
                await ws.send_bytes(send)
            else:
                await ws.send_str(str(send))
            reply = await ws.receive(timeout=10)
            error = json.loads(reply.data)
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            return error, ws.close_code

    async def main() -> None:
        for frame, reason, code in (
            (b"\x00\x01", "binary", 1003),
            ("[" * 1000 + "]" * 1000, "too_deep", 1007),
            ('{"sender": "\\udfff"}', "bad_text", 1007),
            ("x" * (MAX_ENVELOPE_BYTES + 1), "too_large", 1009),
        ):
            error, close_code = await exchange(frame)
            assert error["kind"] == "error"
            assert error["body"]["reason"] == reason  # type: ignore[index]
            assert close_code == code
        # an envelope error keeps the socket open: the agent can send the next one
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str("{}")
            first = json.loads((await ws.receive(timeout=10)).data)
            await ws.send_str('{"kind": 1}')
            second = json.loads((await ws.receive(timeout=10)).data)
            assert first["kind"] == second["kind"] == "error"

    asyncio.run(main())
    assert httpx.get(running.base + "/healthz", timeout=10).status_code == 200


def test_healthz_reports_what_stops_the_coordinator(running: RunningCoordinator) -> None:
    coord = running.coordinator
    url = running.base + "/healthz"
    assert httpx.get(url, timeout=10).json()["status"] == "ok"
    # a head behind the indexed block: the node was reset
    store = coord.store
    indexed = store.cursor("market", -1)
    store.db["cursor"].upsert({"name": "market", "block": indexed + 10_000}, pk="name")
    try:
        r = httpx.get(url, timeout=10)
        assert r.status_code == 503
        assert r.json()["status"] == "degraded"
        assert any("behind the indexed block" in p for p in r.json()["problems"])
    finally:
        store.db["cursor"].upsert({"name": "market", "block": indexed}, pk="name")
    # a market address with no code
    real = coord.deployment.market
    coord.deployment.market = "0x" + "22" * 20
    try:
        r = httpx.get(url, timeout=10)
        assert r.status_code == 503 and any("no contract code" in p for p in r.json()["problems"])
    finally:
        coord.deployment.market = real
    # a long-running task that died
    coord.dead_tasks["indexer"] = "RuntimeError: boom"
    try:
        r = httpx.get(url, timeout=10)
        assert r.status_code == 503 and "task indexer stopped: RuntimeError: boom" in r.json()["problems"]
    finally:
        coord.dead_tasks.clear()
    assert httpx.get(url, timeout=10).status_code == 200


def test_overload_is_shed_with_a_clear_status(running: RunningCoordinator) -> None:
    """Past its in-flight limit the coordinator refuses at once (HTTP 503 ``busy`` with
    Retry-After; a WebSocket ``error`` with reason ``busy``) instead of queueing."""
    hub = running.coordinator.hub
    before = _rejections(running)
    hub.max_inflight = 0
    try:
        r = httpx.post(running.base + "/api/v1/messages", content=b'{"kind": "telemetry"}', timeout=10)
        assert r.status_code == 503 and r.json()["detail"]["reason"] == "busy"
        assert r.headers["retry-after"] == "1"

        async def ws_busy() -> dict[str, object]:
            url = running.base.replace("http://", "ws://") + "/ws/agent"
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                await ws.send_str('{"kind": "telemetry", "seq": 7}')
                return json.loads((await ws.receive(timeout=10)).data)

        async def ws_hello() -> dict[str, object]:
            url = running.base.replace("http://", "ws://") + "/ws/agent"
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                await ws.send_str('{"kind": "hello", "seq": 3}')
                return json.loads((await ws.receive(timeout=10)).data)

        assert asyncio.run(ws_hello())["body"]["reason"] != "busy"  # type: ignore[index]  # hello always read
        before += 1  # (and that malformed hello was rejected and recorded)
        error = asyncio.run(ws_busy())
        assert error["kind"] == "error" and error["body"] == {"reason": "busy", "message": error["body"]["message"], "seq": 7}  # type: ignore[index]
        assert hub.shed >= 2
    finally:
        hub.max_inflight = MAX_INFLIGHT
    assert hub.inflight == 0
    assert _rejections(running) == before  # nothing was read, nothing recorded


def test_a_burst_shed_on_one_link_is_answered_with_one_busy_per_run(running: RunningCoordinator) -> None:
    """Shed messages cost one signed ``busy`` listing their seqs, not one each (a signature per
    shed message was what collapsed ingest under overload); every seq is answered once."""
    hub = running.coordinator.hub
    hub.max_inflight = 0
    try:
        async def burst() -> list[dict[str, Any]]:
            url = running.base.replace("http://", "ws://") + "/ws/agent"
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                for q in range(100, 140):
                    await ws.send_str(json.dumps({"kind": "telemetry", "seq": q}))
                got: list[dict[str, Any]] = []
                while sum(len(e["body"].get("seqs") or [e["body"]["seq"]]) for e in got) < 40:
                    got.append(json.loads((await ws.receive(timeout=10)).data))
                return got

        envelopes = asyncio.run(burst())
    finally:
        hub.max_inflight = MAX_INFLIGHT
    assert all(e["kind"] == "error" and e["body"]["reason"] == "busy" for e in envelopes)
    seqs = [q for e in envelopes for q in (e["body"].get("seqs") or [e["body"]["seq"]])]
    assert seqs == list(range(100, 140))  # each once, in order
    assert all(e["body"]["seq"] == (e["body"].get("seqs") or [e["body"]["seq"]])[0] for e in envelopes)
    assert len(envelopes) < 40
    assert hub.inflight == 0
