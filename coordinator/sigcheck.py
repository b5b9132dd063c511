"""Ed25519 signature checks in a worker process, beside the coordinator's event loop.

Checking a signature is a third of what a signed message costs the coordinator's one event loop
(``gridswarm bench ingest``, docs/operations.md); the loop is single-threaded, and a checking
thread would hand the GIL back and forth once per signature against the busy loop. So a batch
of checks goes to one worker process over a pipe and the loop serves sockets meanwhile.

The worker is ``python -m coordinator.sigcheck``: it reads requests from stdin and answers on
stdout, and exits when stdin closes (so it dies with the coordinator). It imports PyNaCl only.

Wire format (binary, no pickle): a request is ``u32 length`` + ``u32 count`` + ``count``
records of ``u32 message length, 32-byte key, 64-byte signature, message``; the answer is
``u32 count`` + one byte per record (1: the signature verifies). A request over
``MAX_REQUEST_BYTES`` is refused by the worker (it exits; the caller restarts it).

:class:`SigChecker` is the caller's side: ``await check(items)`` returns one bool per item. A
small batch is checked in-process (a round trip costs more than a few checks), and if the worker
fails (died, garbled answer, took too long) the batch is checked in-process, and so are the
batches of a back-off (1 s, doubling to 60 s while it keeps failing) before the worker is started
again -- the outcome is the same either way, only where it ran differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import sys
from collections.abc import Sequence

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

logger = logging.getLogger(__name__)

KEY_BYTES = 32
SIG_BYTES = 64
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # a larger batch (huge bodies) is checked in-process
IN_PROCESS_BELOW = 8  # batches smaller than this are checked in-process
ANSWER_TIMEOUT_S = 30.0
MAX_BACKOFF_S = 60.0  # a worker that keeps failing is tried again at most this seldom
_HEAD = struct.Struct("<I")
_REC = struct.Struct("<I")

Item = tuple[bytes, bytes, bytes]  # (public key, signature, message)


def verify_one(key: bytes, sig: bytes, message: bytes) -> bool:
    if len(key) != KEY_BYTES or len(sig) != SIG_BYTES:
        return False
    try:
        crypto_sign_open(sig + message, key)
    except (BadSignatureError, ValueError):
        return False
    return True


def encode_request(items: Sequence[Item]) -> bytes:
    parts = [_HEAD.pack(len(items))]
    for key, sig, message in items:
        if len(key) != KEY_BYTES or len(sig) != SIG_BYTES:
            key, sig = b"\0" * KEY_BYTES, b"\0" * SIG_BYTES  # cannot verify: answered False
        parts += [_REC.pack(len(message)), key, sig, message]
    body = b"".join(parts)
    return _HEAD.pack(len(body)) + body


def decode_request(body: bytes) -> list[Item]:
    (count,) = _HEAD.unpack_from(body, 0)
    pos = _HEAD.size
    items: list[Item] = []
    for _ in range(count):
        (n,) = _REC.unpack_from(body, pos)
        pos += _REC.size
        key = body[pos : pos + KEY_BYTES]
        sig = body[pos + KEY_BYTES : pos + KEY_BYTES + SIG_BYTES]
        pos += KEY_BYTES + SIG_BYTES
        message = body[pos : pos + n]
        if len(message) != n:
            raise ValueError("truncated record")
        pos += n
        items.append((key, sig, message))
    if pos != len(body):
        raise ValueError("trailing bytes")
    return items


def _read_exact(stream: object, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))  # type: ignore[attr-defined]
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def serve(stdin: object = None, stdout: object = None) -> int:
    """The worker's loop: answer requests until stdin closes."""
    src = stdin or sys.stdin.buffer
    dst = stdout or sys.stdout.buffer
    while True:
        try:
            (length,) = _HEAD.unpack(_read_exact(src, _HEAD.size))
            if length > MAX_REQUEST_BYTES:
                return 2
            items = decode_request(_read_exact(src, length))
        except EOFError:
            return 0
        answer = bytes(verify_one(k, s, m) for k, s, m in items)
        dst.write(_HEAD.pack(len(answer)) + answer)  # type: ignore[attr-defined]
        dst.flush()  # type: ignore[attr-defined]


class SigChecker:
    """Checks batches of signatures in the worker process (started on first use)."""

    def __init__(self, in_process_below: int = IN_PROCESS_BELOW, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.in_process_below = in_process_below
        self.timeout_s = timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._lock: asyncio.Lock | None = None
        self.restarts = 0  # worker failures (each logged)
        self.remote_batches = 0
        self._failures_in_row = 0
        self._idle_until = 0.0  # after a failure, batches are checked here until then (back-off)

    async def check(self, items: Sequence[Item]) -> list[bool]:
        if len(items) < self.in_process_below:
            return [verify_one(*it) for it in items]
        request = encode_request(items)
        loop = asyncio.get_running_loop()
        if len(request) > MAX_REQUEST_BYTES or loop.time() < self._idle_until:
            return [verify_one(*it) for it in items]
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one request on the pipe at a time
            try:
                answer = await asyncio.wait_for(self._ask(request), self.timeout_s)
                if len(answer) != len(items):
                    raise ValueError(f"{len(answer)} answers for {len(items)} checks")
                self.remote_batches += 1
                self._failures_in_row = 0
                return [b == 1 for b in answer]
            except asyncio.CancelledError:
                # The request may be out without its answer read: that worker's pipe is out of
                # step, and its late answer must never be read as the next batch's.
                self._discard()
                raise
            except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.restarts += 1
                self._failures_in_row += 1
                backoff = min(MAX_BACKOFF_S, 2.0 ** (self._failures_in_row - 1))
                self._idle_until = loop.time() + backoff
                logger.error("signature worker failed (%s: %s); batches are checked here for %.0f s, then it restarts",
                             exc.__class__.__name__, exc, backoff)
                await self.close()
        return [verify_one(*it) for it in items]

    def _discard(self) -> None:
        """Drop the worker at once (it is killed; nothing more is read from it)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _ask(self, request: bytes) -> bytes:
        proc = await self._worker()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(request)
        await proc.stdin.drain()
        (n,) = _HEAD.unpack(await proc.stdout.readexactly(_HEAD.size))
        return await proc.stdout.readexactly(n)

    async def _worker(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "coordinator.sigcheck",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
        return self._proc

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except (TimeoutError, asyncio.TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


if __name__ == "__main__":
    raise SystemExit(serve())
