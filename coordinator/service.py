"""Wires the coordinator together: chain, store, indexer, hub, market loop and the FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from coordinator.hub import Hub
from coordinator.indexer import Indexer
from coordinator.ingest import SeqReservation
from coordinator.market.loop import MarketLoop
from coordinator.metrics import registry_for
from coordinator.services import FleetService
from coordinator.settings import CoordinatorSettings
from coordinator.store import Store
from coordinator.store.analytics import Analytics, Tariff
from gridswarm import memdump
from gridswarm.chain import Deployment, TxSender, connect
from gridswarm.clock import Clock
from gridswarm.envelope import Signer
from gridswarm.keys import load_ed25519, load_eth_key

logger = logging.getLogger(__name__)

GRACEFUL_S = 10.0  # wall seconds a stopping coordinator waits for open connections and tasks
WORKER_THREADS = 32  # threads for blocking calls (chain, store, hub); see create_app


class Coordinator:
    def __init__(self, settings: CoordinatorSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or settings.clock.build()
        self.w3 = connect(settings.rpc_url)
        self.deployment = Deployment.load(settings.deployment)
        self.chain_id = int(self.w3.eth.chain_id)
        if self.chain_id != self.deployment.chain_id:
            raise ValueError(
                f"deployment {settings.deployment} is for chain {self.deployment.chain_id}, "
                f"but {settings.rpc_url} is chain {self.chain_id}"
            )
        self.store = Store(settings.db_path)
        self.indexer = Indexer(self.w3, self.deployment, self.store)
        self.operator = TxSender(self.w3, load_eth_key(settings.operator_key_file), self.deployment.decoder())
        key = load_ed25519(settings.ed25519_key_file)
        self._seqs = SeqReservation(lambda n: self.store.reserve_seqs("coordinator", n))
        self.signer = Signer(key, "coordinator", self.clock, self._next_seq, ttl_s=settings.message_ttl_s)
        market = self.deployment.market_contract(self.w3)
        published = bytes(market.functions.coordinatorKey().call())
        if published != bytes(key.verify_key):
            raise ValueError("the coordinator's Ed25519 key is not the one published on chain (setCoordinatorKey)")
        self.hub = Hub(self.store, self.clock, self.signer, self.chain_id, self.deployment.market)
        d = settings.dashboard
        tariff = Tariff(d.tariff_import_price, d.tariff_export_price)
        self.analytics = Analytics(self.store, settings.market.zones, tariff)
        self.hub.events = self.analytics
        self.metrics = registry_for(self)
        self.dead_tasks: dict[str, str] = {}  # long-running tasks that stopped, and why
        self.fleet: FleetService | None = None
        if settings.fleet.enabled:
            self.fleet = self.hub.fleet = FleetService(settings.fleet, self.store, self.clock, self.hub)
        self.loop: MarketLoop | None = None
        if settings.run_market:
            self.loop = MarketLoop(
                settings.market,
                self.clock,
                self.store,
                self.hub,
                self.indexer,
                self.operator,
                self.deployment,
            )

    def _next_seq(self) -> int:
        """The coordinator's own sequence numbers, reserved in blocks in the store so they keep
        growing across restarts (coordinator/ingest.py)."""
        return self._seqs()

    def task_ended(self, task: asyncio.Task[None]) -> None:
        """No long-running task ends silently: a failure is logged with its traceback and
        reported by ``/healthz`` (``problems``) until the service is restarted."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("coordinator task %s died: %r", task.get_name(), exc, exc_info=exc)
            self.dead_tasks[task.get_name()] = f"{exc.__class__.__name__}: {exc}"
        elif task.get_name() != "market":  # the market loop ends after its `intervals`
            self.dead_tasks[task.get_name()] = "ended"

    async def index_forever(self) -> None:
        failing = False
        while True:
            try:
                await asyncio.to_thread(self.indexer.sync)
                if failing:
                    logger.info("indexer recovered")
                failing = False
            except Exception as exc:  # noqa: BLE001 - keep polling; log the transition once
                if not failing:
                    logger.warning("indexer failing: %s", exc)
                failing = True
            await self.clock.wait(self.settings.index_poll_s)

    async def housekeep_forever(self) -> None:
        """Apply the retention rule (``retention`` in the settings) every ``every_s`` on the
        coordinator's clock; a failure is logged and retried next round."""
        r = self.settings.retention
        while True:
            try:
                gone = await asyncio.to_thread(self.store.prune_messages, self.clock.now() - r.history_s,
                                               r.rejections_kept)
                if any(gone.values()):
                    logger.info("retention: deleted %s", ", ".join(f"{n} {t}" for t, n in gone.items() if n))
            except Exception:  # noqa: BLE001 - keep the service up; try again next round
                logger.exception("retention failed; retrying in %.0f s", r.every_s)
            await self.clock.sleep(r.every_s)


def create_app(settings: CoordinatorSettings, clock: Clock | None = None) -> FastAPI:
    from coordinator.api.routes import (  # noqa: I001
        agents,
        analytics,
        dashboard,
        events,
        fleet,
        health,
        intervals,
        participants,
        remote_config,
        trades,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Chain calls, message handling, the indexer and health checks all block in worker
        # threads; the default pool (CPUs + 4) lets a slow node starve the market's steps.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="coordinator")
        )
        coord = Coordinator(settings, clock)
        await asyncio.to_thread(coord.indexer.sync)
        app.state.coordinator = coord
        tasks = [asyncio.create_task(coord.index_forever(), name="indexer"),
                 asyncio.create_task(coord.housekeep_forever(), name="retention")]
        if coord.loop:
            tasks.append(asyncio.create_task(coord.loop.run(), name="market"))
        if coord.fleet:
            tasks.append(asyncio.create_task(coord.fleet.run(), name="fleet"))
        for t in tasks:
            t.add_done_callback(coord.task_ended)
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await coord.hub.ingest.close()

    app = FastAPI(title="GridSwarm coordinator", version="0.1.0", lifespan=lifespan)
    for module in (health, intervals, trades, participants, agents, fleet, analytics, events, remote_config, dashboard):
        app.include_router(module.router)
    return app


def serve(settings: CoordinatorSettings) -> None:
    """Run until SIGINT or SIGTERM. Either stops the service gracefully: the market loop hands
    every interval in flight over to the next start (which resumes it from the chain) and the
    process exits with code 0. (uvicorn re-raises the signal after its shutdown; the handlers
    set here take it, instead of the default one that would end the process by the signal.)"""
    import faulthandler
    import signal

    import uvicorn

    extra: dict[str, Any] = {}
    if settings.log_json:
        from gridswarm.jsonlog import use_json_logs

        use_json_logs()
        extra["log_config"] = None  # keep the JSON handler for uvicorn's loggers too
    app = create_app(settings)
    def stopped(*_: object) -> None:
        # Before uvicorn runs (nothing started yet) and after it returns, a stop signal ends
        # the process with code 0; while it runs, uvicorn's own handlers shut down gracefully.
        logger.info("coordinator stopped")
        raise SystemExit(0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopped)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack to the log
    memdump.install()  # `kill -USR2 PID`: where memory grew (with PYTHONTRACEMALLOC=1)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=GRACEFUL_S, **extra
    )
