"""Signature checks in the worker process (coordinator/sigcheck.py): the same answers as
checking in-process, bad records answered False, and a worker that dies or garbles its answer
costs a restart, never a wrong answer."""

from __future__ import annotations

import asyncio
import io
import struct
import sys

import pytest
from nacl.signing import SigningKey

from coordinator.sigcheck import SigChecker, decode_request, encode_request, serve, verify_one
from tests.support.waiting import wait_until_async


def _items(n: int, forged: set[int]) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for i in range(n):
        key = SigningKey(bytes([i % 250 + 1]) * 32)
        message = f"message {i}".encode() * (i % 5 + 1)
        sig = key.sign(message).signature
        if i in forged:
            message += b"!"  # the signature no longer covers it
        out.append((bytes(key.verify_key), sig, message))
    return out


def test_the_wire_format_round_trips_and_refuses_garbage() -> None:
    items = _items(5, set())
    request = encode_request(items)
    assert decode_request(request[4:]) == items
    with pytest.raises(ValueError, match="trailing"):
        decode_request(request[4:] + b"x")
    with pytest.raises(ValueError, match="truncated"):
        decode_request(request[4:-1])
    # a key or signature of the wrong size is sent as zeros: it cannot verify
    short = encode_request([(b"k" * 31, b"s" * 64, b"m")])
    assert decode_request(short[4:]) == [(b"\0" * 32, b"\0" * 64, b"m")]


def test_the_worker_loop_answers_each_record_and_stops_at_end_of_input() -> None:
    items = _items(12, {3, 7})
    out = io.BytesIO()
    assert serve(io.BytesIO(encode_request(items) + encode_request(items[:2])), out) == 0
    data = out.getvalue()
    assert data[:4] == (12).to_bytes(4, "little")
    assert list(data[4:16]) == [0 if i in (3, 7) else 1 for i in range(12)]
    assert data[16:] == (2).to_bytes(4, "little") + b"\x01\x01"


def test_the_worker_process_gives_the_in_process_answers() -> None:
    items = _items(64, {0, 10, 63})
    items.append((items[1][0], b"\0" * 64, items[1][2]))  # a zero signature
    want = [verify_one(*it) for it in items]
    assert want.count(False) == 4

    async def main() -> tuple[list[bool], list[bool], int]:
        checker = SigChecker()
        try:
            remote = await checker.check(items)
            small = await checker.check(items[:3])  # below the threshold: checked here
            return remote, small, checker.remote_batches
        finally:
            await checker.close()

    remote, small, batches = asyncio.run(main())
    assert remote == want and small == want[:3]
    assert batches == 1


def test_a_dead_worker_is_replaced_and_its_batch_checked_here(caplog: pytest.LogCaptureFixture) -> None:
    items = _items(20, {5})
    want = [verify_one(*it) for it in items]

    async def main() -> tuple[list[bool], list[bool], int, int]:
        checker = SigChecker()
        try:
            assert await checker.check(items) == want
            proc = checker._proc
            assert proc is not None
            proc.kill()  # dies unseen: the next request finds a broken pipe
            after_kill = await checker.check(items)  # fails over to in-process, logged
            during = await checker.check(items)  # within the back-off: checked here too
            assert checker.remote_batches == 1 and checker._proc is None
            loop = asyncio.get_running_loop()
            await wait_until_async(lambda: loop.time() >= checker._idle_until, "the worker's back-off", timeout=10)
            again = await checker.check(items)  # a new worker
            assert during == want
            return after_kill, again, checker.restarts, checker.remote_batches
        finally:
            await checker.close()

    after_kill, again, restarts, batches = asyncio.run(main())
    assert after_kill == want and again == want
    assert restarts == 1 and batches == 2
    assert "signature worker failed" in caplog.text


def test_a_garbled_answer_is_not_believed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that answers every record "verifies" but with the wrong count: the batch is
    checked here instead, so a forged record is still refused."""
    items = _items(10, {4})
    fake = "import sys; sys.stdin.buffer.read(4); sys.stdout.buffer.write(bytes([3, 0, 0, 0, 1, 1, 1])); sys.stdout.flush()"

    async def main() -> tuple[list[bool], int]:
        checker = SigChecker()

        async def worker() -> asyncio.subprocess.Process:
            if checker._proc is None:
                checker._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", fake, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
                )
            return checker._proc

        monkeypatch.setattr(checker, "_worker", worker)
        try:
            return await checker.check(items), checker.restarts
        finally:
            await checker.close()

    answers, restarts = asyncio.run(main())
    assert answers == [i != 4 for i in range(10)]
    assert restarts == 1


def test_a_link_that_shed_waits_for_the_low_water_mark_or_its_timeout() -> None:
    """Hub.wait_for_room: a link that was answered ``busy`` reads again once the hub has drained
    to half its limit, or after the timeout, and leaves no waiter behind."""
    from coordinator.hub import Hub
    from coordinator.store import Store
    from gridswarm.clock import WallClock
    from gridswarm.envelope import Signer

    async def main() -> tuple[float, float, int]:
        clock = WallClock()
        key = SigningKey(b"\x05" * 32)
        hub = Hub(Store(":memory:"), clock, Signer(key, "0x" + "00" * 20, clock, iter(range(10**6)).__next__), 1337, "0x0")
        hub.max_inflight = 4
        for _ in range(4):
            assert hub.admit("telemetry")
        assert not hub.admit("telemetry")  # full: this one is shed
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        waiter = asyncio.ensure_future(hub.wait_for_room(timeout_s=30.0))
        for _ in range(5):
            await asyncio.sleep(0)  # yields: the waiter is parked
        hub.release()  # 3 in flight: above the low-water mark (2), still waiting
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done() and len(hub._room_waiters) == 1
        hub.release()  # 2: room
        await waiter
        woke = loop.time() - t0
        for _ in range(2):
            assert hub.admit("telemetry")  # full again
        t1 = loop.time()
        await hub.wait_for_room(timeout_s=0.2)  # nobody releases: the timeout ends the wait
        return woke, loop.time() - t1, len(hub._room_waiters)

    woke, timed_out, left = asyncio.run(main())
    assert woke < 5.0 and 0.15 <= timed_out < 5.0
    assert left == 0


def test_a_check_cancelled_mid_request_never_lets_its_late_answer_through() -> None:
    """A batch cancelled while the worker answers (e.g. at shutdown): that worker is dropped, so
    the next batch -- with a forgery in it -- gets its own answers, not the late "all valid"."""
    good = _items(20, set())
    mixed = _items(20, {2, 11})
    want = [verify_one(*it) for it in mixed]

    class Observed(SigChecker):
        """The same exchange, telling the test when the request is written and the answer not
        yet read."""

        written: asyncio.Event

        async def _ask(self, request: bytes) -> bytes:
            proc = await self._worker()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(request)
            await proc.stdin.drain()
            self.written.set()
            (n,) = struct.unpack("<I", await proc.stdout.readexactly(4))
            return await proc.stdout.readexactly(n)

    async def main() -> tuple[list[bool], int]:
        checker = Observed()
        checker.written = asyncio.Event()
        try:
            await checker.check(good)  # the worker is up
            # a request of the same size as the next, slow to answer (1 MB messages, all valid)
            key = SigningKey(b"\x09" * 32)
            big = [(bytes(key.verify_key), key.sign(m).signature, m) for m in (bytes([i]) * 2**20 for i in range(20))]
            checker.written.clear()
            task = asyncio.ensure_future(checker.check(big))
            await checker.written.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await checker.check(mixed), checker.remote_batches
        finally:
            await checker.close()

    answers, batches = asyncio.run(main())
    assert answers == want
    assert batches == 2
