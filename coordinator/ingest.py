"""Inbound agent messages in batches: one writer verifies and stores them, one transaction per batch.

Each message an agent link reads (``/ws/agent`` or ``POST /api/v1/messages``) is handed to
:meth:`Ingest.submit`, which queues it (a bounded queue) and waits. A single writer task takes
whatever is queued (up to ``MAX_BATCH``), checks every envelope (signature, freshness, the
sender's growing seq, the body) and stages what each one changes, a slice at a time between
yields to the event loop; then all of it -- records, each sender's last accepted seq, the
rejections -- is written in one SQLite transaction from a worker thread. Only then are the
waiting links answered, so an ``ack`` still means the record is stored. If that transaction
fails, nothing of the batch is acknowledged and the in-memory replay counters are read back
from the store. While one batch is written the next one gathers, so the batch size follows the
load: one message at a time when idle, hundreds under load.

Replay checks stay exact: the last accepted seq per sender lives in memory (loaded from the
store at start and written with every batch), and a message that verifies but is refused keeps
its sender's counter where it was. How this is measured: ``gridswarm bench ingest``
(docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coordinator.sigcheck import SigChecker
from coordinator.store import MessageBatch
from gridswarm.envelope import Envelope, EnvelopeError, canonical_bytes, forged

if TYPE_CHECKING:
    from coordinator.hub import Hub

logger = logging.getLogger(__name__)

MAX_BATCH = 512  # messages per transaction; the hub's in-flight limit bounds the queue anyway
PIPELINE_DEPTH = 2  # parsed batches (their signatures being checked) waiting for the writer
CHECK_SLICE = 32  # messages checked between two yields to the event loop
Prepared = tuple[Envelope, Any, bytes, bytes]  # Verifier.prepare: envelope, key, signature, signed bytes
QUEUE_LIMIT = 2048  # messages waiting for the writer (admission already keeps it near MAX_INFLIGHT)


@dataclass
class Staged:
    """What one accepted message changes: rows for the batch, work to do once they are stored,
    and the reply body."""

    reply: dict[str, Any]
    after: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class Outcome:
    env: Envelope | None = None
    reply: dict[str, Any] | None = None
    error: BaseException | None = None


def _sender_of(raw: Any) -> str | None:
    sender = raw.get("sender") if isinstance(raw, dict) else None
    return sender if isinstance(sender, str) else None


class Ingest:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # (message, the future its sender waits on, the frame's text when the link has it)
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Outcome], str | None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # one batch at a time touches the verifier's counters
        self.batches = 0
        self.messages = 0
        self.largest_batch = 0
        # Since this process started (Prometheus counters; a restart is a counter reset):
        self.accepted: Counter[str] = Counter()  # stored records, by envelope kind
        self.refused: Counter[str] = Counter()  # refused messages, by reason
        self.sigs = SigChecker()  # signatures of a batch are checked in a worker process

    # ------------------------------------------------------------------ event-loop side

    async def submit(self, raw: Any) -> tuple[Envelope, dict[str, Any]]:
        """Verify and store one message with the next batch; return it and its reply body once
        the batch is durable. Raises :class:`EnvelopeError` (nothing changed) if it is refused."""
        loop = asyncio.get_running_loop()
        self._ensure_writer(loop)
        assert self._queue is not None
        fut: asyncio.Future[Outcome] = loop.create_future()
        await self._queue.put((raw, fut, None))
        outcome = await fut
        if outcome.error is not None:
            raise outcome.error
        assert outcome.env is not None and outcome.reply is not None
        return outcome.env, outcome.reply

    def enqueue(self, raw: Any, text: str | None = None) -> asyncio.Future[Outcome]:
        """Queue one message for the next batch without waiting; the future gets its
        :class:`Outcome` once the batch is stored. Raises ``asyncio.QueueFull`` when the queue is
        full (the caller answers ``busy``). ``text``: the JSON text ``raw`` was parsed from (see
        :meth:`gridswarm.envelope.Verifier.prepare`)."""
        loop = asyncio.get_running_loop()
        self._ensure_writer(loop)
        assert self._queue is not None
        fut: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put_nowait((raw, fut, text))
        return fut

    def _ensure_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop or self._queue is None:
            self._loop = loop
            self._queue = asyncio.Queue(maxsize=QUEUE_LIMIT)
            self._task = None
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled() and self._task.exception() is not None:
                logger.error("message writer died; restarting it", exc_info=self._task.exception())
            self._task = loop.create_task(self._run(), name="ingest")

    async def _run(self) -> None:
        """Batches go through two stages, overlapped: this task takes what is queued, parses it
        and sends its signatures to the worker process (:meth:`_front`), and hands it on to the
        writer task, which checks the rest, writes it and answers its links (:meth:`_back`), up
        to ``PIPELINE_DEPTH`` batches behind. One batch at a time, the loop sat idle while the
        worker checked and the worker sat idle while the batch was written: the stages in turn,
        not the loop's time, bounded throughput (docs/operations.md, ingest)."""
        assert self._queue is not None
        queue = self._queue
        staged: asyncio.Queue[_Front] = asyncio.Queue(maxsize=PIPELINE_DEPTH)
        me = asyncio.current_task()
        writer = asyncio.get_running_loop().create_task(self._write(staged), name="ingest-writer")
        writer.add_done_callback(lambda t: _writer_ended(t, me))
        live: list[tuple[Any, asyncio.Future[Outcome]]] = []
        try:
            while True:
                items = [await queue.get()]
                while len(items) < MAX_BATCH and not queue.empty():
                    items.append(queue.get_nowait())
                kept = [item for item in items if not item[1].done()]  # a closed link stops waiting
                live = [(raw, fut) for raw, fut, _ in kept]
                if not live:
                    continue
                try:
                    front = await self._front(live, [text for _, _, text in kept])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every waiting link gets the failure, the writer goes on
                    logger.exception("checking a batch of %d messages failed", len(live))
                    _answer(live, [Outcome(error=exc) for _ in live])
                    continue
                try:
                    await staged.put(front)  # waits while PIPELINE_DEPTH batches are ahead of it
                except asyncio.CancelledError:
                    front.cancel()
                    raise
                live = []
        finally:
            writer.cancel()
            while not staged.empty():
                staged.get_nowait().cancel()
            for _, fut in live:
                fut.cancel()

    async def _write(self, staged: asyncio.Queue[_Front]) -> None:
        while True:
            front = await staged.get()
            await self._back(front)

    async def _front(self, live: list[tuple[Any, asyncio.Future[Outcome]]], texts: list[str | None]) -> _Front:
        """Parse a batch on the event loop, a slice at a time (each slice ends with a yield), and
        start checking its signatures in the worker process (coordinator/sigcheck.py; the loop
        serves sockets meanwhile). Checking them in a thread instead would cost a GIL hand-over
        per signature against the busy loop."""
        raws = [raw for raw, _ in live]
        keys = self.hub.keys_of({s for s in map(_sender_of, raws) if s is not None})
        prepared: list[Prepared | EnvelopeError] = []
        for i in range(0, len(raws), CHECK_SLICE):
            prepared += self.prepare(raws[i : i + CHECK_SLICE], keys, texts[i : i + CHECK_SLICE])
            await asyncio.sleep(0)
        sigs = asyncio.ensure_future(self._check_signatures([p for p in prepared if not isinstance(p, EnvelopeError)]))
        return _Front(live, raws, prepared, sigs)

    async def _check_signatures(self, ready: list[Prepared]) -> list[bool]:
        """Check ``ready``'s signatures in the worker. Those checked against the frame's own
        text that fail are checked again against the canonical bytes (a sender whose text is
        not the canonical JSON; or a forgery, which fails both)."""
        answers = await self.sigs.check([(bytes(key), sig, msg) for _, key, sig, msg in ready])
        again: list[tuple[int, bytes]] = []
        for i, ok in enumerate(answers):
            if not ok:
                try:
                    canonical = _canonical(ready[i][0])
                except EnvelopeError:
                    continue  # no canonical bytes: it stays refused (as forged), alone
                if canonical != ready[i][3]:
                    again.append((i, canonical))
        if again:
            second = await self.sigs.check([(bytes(ready[i][1]), ready[i][2], msg) for i, msg in again])
            for (i, _), ok in zip(again, second, strict=True):
                answers[i] = ok
        return answers

    async def _back(self, front: _Front) -> None:
        """Check what needs the replay counters and stage each message, on the loop a slice at
        a time, write the batch from a worker thread, and answer its links."""
        try:
            answers = iter(await front.sigs)  # one per message prepared
            sig_ok = [False if isinstance(p, EnvelopeError) else next(answers) for p in front.prepared]
            raws, prepared = front.raws, front.prepared
            work = self.begin(raws)
            try:
                for i in range(0, len(raws), CHECK_SLICE):
                    part = slice(i, i + CHECK_SLICE)
                    self.check(work, raws[part], prepared[part], sig_ok[part])
                    await asyncio.sleep(0)
                await asyncio.to_thread(self.commit, work)
            finally:
                self.end(work)
            outcomes = self.finish(work)
        except asyncio.CancelledError:
            front.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every waiting link gets the failure, the writer goes on
            logger.exception("storing a batch of %d messages failed", len(front.live))
            outcomes = [Outcome(error=exc) for _ in front.live]
        _answer(front.live, outcomes)

    def prepare(
        self, raws: list[Any], keys: dict[str, Any] | None = None, texts: list[str | None] | None = None
    ) -> list[Prepared | EnvelopeError]:
        out: list[Prepared | EnvelopeError] = []
        verifier = self.hub.verifier
        for j, raw in enumerate(raws):
            try:
                out.append(verifier.prepare(raw, keys, texts[j] if texts is not None else None))
            except EnvelopeError as exc:
                out.append(exc)
        return out

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.sigs.close()

    # ------------------------------------------------------------------ worker-thread side

    def process(self, raws: list[Any]) -> list[Outcome]:
        """Check, stage and store a batch at once (from a thread without the event loop); every
        outcome is final once this returns (stored, or refused with its error). Raises if the
        store could not write the batch (then nothing of it was acknowledged or kept)."""
        work = self.begin(raws)
        try:
            self.check(work, raws)
            self.commit(work)
        finally:
            self.end(work)
        return self.finish(work)

    def begin(self, raws: list[Any]) -> _Work:
        self._lock.acquire()  # one batch at a time moves the verifier's counters
        return _Work(n=len(raws))

    def end(self, work: _Work) -> None:
        if not work.committed:
            # Nothing of this batch is stored: forget the counters it moved.
            last_seq = self.hub.verifier.last_seq
            for sender in work.touched:
                stored = self.hub.store.last_seq(sender)
                if stored is None:
                    last_seq.pop(sender, None)
                else:
                    last_seq[sender] = stored
        self._lock.release()

    def check(
        self,
        work: _Work,
        raws: list[Any],
        prepared: list[Prepared | EnvelopeError] | None = None,
        sig_ok: list[bool] | None = None,
    ) -> None:
        """Verify and stage ``raws`` into ``work``: an outcome each, accepted or refused. With
        ``prepared`` and ``sig_ok`` (:meth:`prepare`, and whether each signature verified) the
        signatures were checked already; otherwise they are checked here."""
        hub = self.hub
        last_seq = hub.verifier.last_seq
        batch = work.batch
        for j, raw in enumerate(raws):
            sender = _sender_of(raw)
            before = last_seq.get(sender) if sender is not None else None
            env: Envelope | None = None
            try:
                if prepared is None or sig_ok is None:
                    env = hub.verifier.verify(raw)
                else:
                    p = prepared[j]
                    if isinstance(p, EnvelopeError):
                        raise p
                    if not sig_ok[j]:
                        raise forged(p[0])
                    env = hub.verifier.accept(p[0])
                staged = hub.stage(env, batch)
            except EnvelopeError as exc:
                if env is not None:  # authentic but refused: its sender's counter must not move
                    if before is None:
                        last_seq.pop(env.sender, None)
                    else:
                        last_seq[env.sender] = before
                batch.rejections.append(hub.rejection(raw, exc))
                work.outcomes.append(Outcome(error=exc))
                continue
            work.touched.add(env.sender)
            batch.seqs[env.sender] = env.seq
            work.after.extend(staged.after)
            work.outcomes.append(Outcome(env=env, reply=staged.reply))

    def commit(self, work: _Work) -> None:
        """Write the batch in one transaction."""
        self.hub.store.store_messages(work.batch)
        work.committed = True

    def finish(self, work: _Work) -> list[Outcome]:
        """After the batch is stored: the hooks that need it stored (e.g. the fleet's live view)."""
        for fn in work.after:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a view's failure must not un-acknowledge stored records
                logger.exception("after storing a message")
        readings = False
        for o in work.outcomes:
            if o.env is not None:
                self.accepted[o.env.kind] += 1
                readings = readings or o.env.kind == "meter"
            else:
                self.refused[str(getattr(o.error, "reason", None) or "error")] += 1
        if readings:
            self.hub.readings_stored.notify()
        self.batches += 1
        self.messages += work.n
        self.largest_batch = max(self.largest_batch, work.n)
        return work.outcomes


def _writer_ended(writer: asyncio.Task[None], front: asyncio.Task[Any] | None) -> None:
    """The writer task only ends when it is cancelled; if it ever fails, say so and stop its
    front task too (the next message starts both again, :meth:`Ingest._ensure_writer`)."""
    if writer.cancelled():
        return
    logger.error("message writer died; it restarts with the next message", exc_info=writer.exception())
    if front is not None:
        front.cancel()


def _canonical(env: Envelope) -> bytes:
    return canonical_bytes(env.unsigned_dict())


def _answer(live: list[tuple[Any, asyncio.Future[Outcome]]], outcomes: list[Outcome]) -> None:
    for (_, fut), outcome in zip(live, outcomes, strict=True):
        if not fut.done():
            fut.set_result(outcome)


@dataclass
class _Front:
    """A batch between the two stages: its messages (each with the future its link waits on),
    what :meth:`Ingest.prepare` made of them, and its signature check under way."""

    live: list[tuple[Any, asyncio.Future[Outcome]]]
    raws: list[Any]
    prepared: list[Prepared | EnvelopeError]
    sigs: asyncio.Future[list[bool]]

    def cancel(self) -> None:
        self.sigs.cancel()
        for _, fut in self.live:
            fut.cancel()


@dataclass
class _Work:
    """One batch on its way: staged rows, an outcome per message, the senders whose counters moved."""

    n: int
    batch: MessageBatch = field(default_factory=MessageBatch)
    outcomes: list[Outcome] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    committed: bool = False


class SeqReservation:
    """The coordinator's own envelope sequence numbers, reserved from the store ``block`` at a
    time (one write per block instead of one per message). Numbers grow across restarts: a new
    process starts above the last block reserved, so some numbers may be skipped, none reused."""

    def __init__(self, reserve: Callable[[int], int], block: int = 1000) -> None:
        self._reserve = reserve
        self._block = block
        self._next = 0
        self._end = 0  # first number not reserved
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            if self._next >= self._end:
                self._next = self._reserve(self._block)
                self._end = self._next + self._block
            seq = self._next
            self._next += 1
            return seq
