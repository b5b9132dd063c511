"""The agent process: one per site (docs/architecture.md §2).

Four concerns run side by side on one asyncio loop, all on the injected clock:

- the **control loop** ticks the site (drivers, arbiter, safety envelope) on a fixed grid and
  queues telemetry;
- the **link** (:mod:`agent.link`) keeps a WebSocket to the coordinator, says ``hello`` and
  drains the outbox; this module verifies every incoming envelope against the coordinator key
  published on chain and decides what it means;
- **trading** (:mod:`agent.trading`) answers each ``interval`` notice with at most one order on
  chain (checked against the chain first, so a restart never posts twice), keeps virtual-battery
  grants and borrowing requests, and recovers our own locks in lapsed intervals;
- dispatches are accepted or refused by a pure check (:mod:`agent.dispatch_check`).
- **metering** signs the site's export/import for each traded interval (EIP-712) and queues it.

The runtime talks to the site through :class:`agent.site_port.SitePort`.
Losing the link or the chain drops the site to autonomous self-consumption (a watchdog probes
the chain every ``chain_check_s``); the outbox keeps everything
until the coordinator acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

from nacl.signing import VerifyKey

from agent.chain_client import AgentChain, WrongMarket
from agent.config import AgentConfig
from agent.devices.spec import AnyDevice, BatteryConfig, FlywheelConfig, UPSConfig
from agent.dispatch_check import dispatch_refusal
from agent.fleet_link import AlarmTracker, telemetry_body
from agent.link import RESEND_AFTER_S, TRANSIENT_REJECTIONS, CoordinatorLink
from agent.remote_config import RemoteConfig
from agent.site_port import SitePort
from agent.store import AgentStore
from agent.trader import Trader
from agent.trading import TRADE_RETRIES, Trading
from gridswarm import memdump
from gridswarm.chain import sign_meter_reading
from gridswarm.clock import Clock
from gridswarm.envelope import Envelope, EnvelopeError, Signer, Verifier
from gridswarm.keys import load_ed25519, load_eth_key
from gridswarm.messages import Ack, Acks, Arm, Config, Dispatch, Error, IntervalNotice, Lend, validate_body

logger = logging.getLogger(__name__)

COORDINATOR = "coordinator"
__all__ = ["RESEND_AFTER_S", "TRADE_RETRIES", "TRANSIENT_REJECTIONS", "AgentRuntime", "build_site", "run_agent"]


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("task %s failed: %r", task.get_name(), task.exception(), exc_info=task.exception())


async def _cancel_all(tasks: list[asyncio.Task[Any]], *, rounds: int = 5, wait_s: float = 2.0) -> None:
    """Cancel ``tasks`` and wait for them. A task that is still running after ``wait_s`` is
    cancelled again: on Python 3.11, ``asyncio.wait_for`` (which the Modbus client uses) can
    swallow a cancellation that lands just as its answer arrives, and a loop that swallowed its
    cancellation would otherwise keep the agent from stopping (and from reverting its devices)."""
    pending = set(tasks)
    for _ in range(rounds):
        for t in pending:
            t.cancel()
        done, pending = await asyncio.wait(pending, timeout=wait_s)
        for t in done:
            if not t.cancelled():
                t.exception()  # retrieved: a loop's failure at shutdown is not news
        if not pending:
            return
    logger.error("tasks still running at shutdown: %s", ", ".join(sorted(t.get_name() for t in pending)))


def build_site(cfg: AgentConfig, clock: Clock, saved_soc: dict[str, float] | None = None) -> SitePort:
    """The site of ``cfg``; ``saved_soc`` (device id -> SoC kept in the agent store) starts each
    simulated storage device where the last run left it instead of at its configured SoC."""
    from agent.site import Site

    if saved_soc:
        cfg = cfg.model_copy(update={"devices": _with_saved_soc(cfg.devices, saved_soc)})
    return Site.from_section(cfg, clock)


def _with_saved_soc(devices: list[AnyDevice], saved: dict[str, float]) -> list[AnyDevice]:
    out: list[AnyDevice] = []
    for dev in devices:
        soc = saved.get(dev.id or "")
        if soc is not None and isinstance(dev, (BatteryConfig, FlywheelConfig, UPSConfig)):
            dev = dev.model_copy(update={"initial_soc": min(dev.soc_max, max(dev.soc_min, float(soc)))})
        out.append(dev)
    return out


class AgentRuntime:
    def __init__(self, cfg: AgentConfig, clock: Clock | None = None, site: SitePort | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or cfg.clock.build()
        self.store = AgentStore(cfg.store_path)
        self.account = load_eth_key(cfg.eth_key_file)
        self.address = str(self.account.address)
        self.signer = Signer(
            load_ed25519(cfg.ed25519_key_file), self.address, self.clock, self._next_seq, ttl_s=cfg.message_ttl_s
        )
        self.chain = AgentChain(cfg.rpc_url, cfg.deployment, self.account)
        self.site: SitePort = site if site is not None else build_site(cfg, self.clock, self.store.get_state("soc"))
        self.trader = Trader(cfg.trading, self.site, self.clock, seed=str(cfg.seed))
        remote_path = None if str(cfg.store_path) == ":memory:" else Path(f"{cfg.store_path}.remote.json")
        self.remote = RemoteConfig(self.site, cfg.trading, cfg.remote_config, remote_path)
        self.remote.restore()
        from agent.control.planner import build_planner  # forecasts -> flywheel plan, reserve, trader

        self.planner = build_planner(self.site, self.clock, cfg.store_path, cfg.planner)
        self.trader.planner = self.planner
        self._coordinator_key: VerifyKey | None = None
        self.verifier = Verifier(clock=self.clock, keys=self._key_of)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._metered: set[int] = set()
        self._commitments: dict[int, tuple[float, float]] = {}  # accepted dispatch windows by interval
        self._meter_windows: dict[int, tuple[float, float]] = {}  # deliveries being metered
        self._run = self.store.next_counter("run")  # this process's run number (restarts count up)
        self._chain_up = True
        self._key_ready = asyncio.Event()
        self.link = CoordinatorLink(cfg, self.clock, self.store, self.signer, self.address,
                                    on_message=self.on_message, on_change=self._update_autonomy,
                                    key_ready=self._key_ready, prune=self._prune_state)
        self.trading = Trading(cfg, self.clock, self.store, self.chain, self.trader, self.site, self.address,
                               wake=self.link.wake, schedule_meter=self._schedule_meter)
        # (reason, message) of the latest rejected inbound envelopes (a hostile peer cannot grow it)
        self.rejected: deque[tuple[str, str]] = deque(maxlen=100)
        self.alarms = AlarmTracker()
        if self.planner is not None:  # the planner's forecasts go to the coordinator too
            from agent.forecast_report import ForecastReporter

            self.planner.on_outlook = ForecastReporter(
                self.store, lambda: self.store.next_counter("forecast"), self._wake_outbox.set)
        self.fast_path: Any = None
        if cfg.frequency.fast_path:
            from agent.control.fast_path import FrequencyFastPath

            fq = cfg.frequency
            self.fast_path = FrequencyFastPath(self.site, self.clock, fq.poll_s, fq.min_change_w,
                                               event_poll_s=min(fq.event_poll_s or fq.poll_s, fq.poll_s),
                                               record_path=fq.record_path)

    # the link's and trading's state, under the names the runtime has always had
    @property
    def ws(self) -> Any:
        return self.link.ws

    @property
    def connected(self) -> asyncio.Event:
        return self.link.connected

    @property
    def _inflight(self) -> dict[int, tuple[int, float]]:
        return self.link.inflight

    @_inflight.setter
    def _inflight(self, value: dict[int, tuple[int, float]]) -> None:
        self.link.inflight = value

    @property
    def _wake_outbox(self) -> asyncio.Event:
        return self.link.wake_event

    @property
    def _link_up(self) -> bool:
        return self.link.up

    @property
    def grants(self) -> list[dict[str, Any]]:
        return self.trading.grants

    @grants.setter
    def grants(self, value: list[dict[str, Any]]) -> None:
        self.trading.grants = value

    @property
    def borrow_replies(self) -> list[dict[str, Any]]:
        return self.trading.borrow_replies

    @property
    def ws_url(self) -> str:
        return self.link.ws_url

    def _next_seq(self) -> int:
        return self.store.next_counter("seq")

    def _key_of(self, sender: str) -> VerifyKey | None:
        return self._coordinator_key if sender == COORDINATOR else None

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def _supervise(self, name: str, factory: Any) -> None:
        """Run one of the agent's loops; if it ever fails, log it and start it again after a
        bounded back-off, so that no loop can die silently. A loop that returns is done."""
        failures = 0
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged loudly, then restarted
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                failures += 1
                logger.exception("agent loop %s failed (%d times); restarting it in %.1f s", name, failures, delay)
                await self.clock.wait(delay)
                logger.info("agent loop %s restarted", name)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        await self.site.connect()
        self._resume_dispatch()
        self._resume_metering()
        loops = [
            # the site runs from the first moment, chain or no chain; messages from the
            # coordinator are refused (unknown sender) until its key has been read from chain
            asyncio.create_task(self._supervise("coordinator-key", lambda: self._load_coordinator_key(stop)), name="coordinator-key"),
            asyncio.create_task(self._supervise("control", self.control_loop), name="control"),
            asyncio.create_task(self._supervise("link", self.link_loop), name="link"),
            asyncio.create_task(self._supervise("outbox", self.outbox_loop), name="outbox"),
            asyncio.create_task(self._supervise("resend", self.resend_forever), name="resend"),
            asyncio.create_task(self._supervise("chain-watchdog", self.chain_watchdog), name="chain-watchdog"),
            asyncio.create_task(self._supervise("lock-recovery", self.recover_locks_forever), name="lock-recovery"),
        ]
        if self.planner is not None:
            loops.append(asyncio.create_task(self._supervise("planner", self.planner.run), name="planner"))
        if self.fast_path is not None:
            loops.append(asyncio.create_task(self._supervise("frequency-fast-path", self.fast_path.run),
                                             name="frequency-fast-path"))
        try:
            await stop.wait()
        finally:
            await _cancel_all([*loops, *self._tasks])
            with contextlib.suppress(Exception):
                await self.site.close()
            self.store.close()

    async def _load_coordinator_key(self, stop: asyncio.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                raw = await asyncio.to_thread(self.chain.coordinator_key)
                self._coordinator_key = VerifyKey(raw)
                self._key_ready.set()
                if failing:
                    logger.info("chain reachable again")
                return
            except WrongMarket as exc:
                if not failing:
                    logger.error("%s; running autonomously until it is fixed", exc)
                failing = True
                await self.clock.wait(max(self.cfg.reconnect_s, self.cfg.chain_check_s))
            except Exception as exc:  # noqa: BLE001 - node down or answering nonsense: keep trying
                if not failing:
                    logger.warning("cannot read the coordinator key from chain: %s: %s; retrying", exc.__class__.__name__, exc)
                failing = True
                await self.clock.wait(self.cfg.reconnect_s)

    def _prune_state(self, keep_s: float = 86_400.0) -> None:
        """Forget stored dispatch windows and partial meter readings a day after their delivery."""
        now = self.clock.now()
        for key, (_, end, _) in self.store.states_with_prefix("dispatch:").items():
            if end < now - keep_s:
                self.store.delete_state(key)
                self._commitments.pop(int(key.split(":")[1]), None)
        for key in self.store.states_with_prefix("meter:"):
            order = self.store.order_for(int(key.split(":")[1]))
            if order is None or order["delivery_end"] < now - keep_s:
                self.store.delete_state(key)

    def _committed_now(self) -> bool:
        now = self.clock.now()
        return any(start <= now < end for start, end in self._commitments.values())

    def _resume_dispatch(self) -> None:
        """After a restart, re-apply every accepted dispatch whose window has not ended (the
        coordinator sends it again too when the link comes back)."""
        now = self.clock.now()
        for key, (start, end, export_w) in self.store.states_with_prefix("dispatch:").items():
            k = int(key.split(":")[1])
            if end <= now:
                continue
            before_e, before_i = self._earlier_runs_metered(k)  # delivered before the restart
            try:
                self.site.set_market_schedule(start, end, export_w, reason=f"interval {k} (resumed)",
                                              delivered_wh=before_e - before_i)
            except ValueError as exc:
                logger.warning("interval %d: stored dispatch not re-applied: %s", k, exc)
                continue
            self._commitments[k] = (start, end)
            logger.info("interval %d: dispatch %.0f W re-applied after a restart", k, export_w)

    def _resume_metering(self) -> None:
        """After a restart, meter every recent traded interval that has not been metered yet."""
        for order in self.store.orders():
            if order["delivery_end"] > self.clock.now() - 86_400:
                self._schedule_meter(int(order["interval"]), order["delivery_start"], order["delivery_end"])

    # ------------------------------------------------------------------ control

    async def control_loop(self) -> None:
        tick = self.cfg.tick_s
        t = math.ceil(self.clock.now() / tick) * tick
        next_telemetry = t
        while True:
            await self.clock.sleep_until(t)
            try:
                state = await self.site.tick()
                self.trader.observe(self.clock.now())
                self._save_partial_meters()
                self._update_autonomy()
            except Exception:  # noqa: BLE001 - the loop must survive anything a device does
                logger.exception("site tick failed")
                state = None
            if state is not None and self.planner is not None:
                self.planner.observe_safely(state)
            if state is not None:
                self._queue_alarms(state)
            if state is not None and t >= next_telemetry:
                self._queue_telemetry(state)
                self._save_soc(state)
                next_telemetry = t + self.cfg.telemetry_every_s
            now = self.clock.now()
            t += tick
            if t < now - tick:  # fell far behind (process was paused): skip ahead, don't spin
                t = math.ceil(now / tick) * tick

    def _save_soc(self, state: Any) -> None:
        """Keep each storage device's SoC in the agent store, so a restarted simulated site
        resumes from it (see :func:`build_site`)."""
        socs = {dev: float(t.soc) for dev, t in getattr(state, "devices", {}).items() if getattr(t, "soc", None) is not None}
        if socs:
            self.store.put_state("soc", socs)

    def _queue_telemetry(self, state: Any) -> None:
        record_id = self.store.next_counter("telemetry")
        response = self.site.frequency_delivered_w
        outlook = self.planner.forecaster.outlook if self.planner is not None else None
        body = telemetry_body(state, self.site, record_id, self.clock.now(), response_w=response, outlook=outlook)
        body["outbox_pending"] = self.store.pending_count()  # the coordinator's /metrics shows the backlog
        self.store.enqueue("telemetry", body, f"telemetry:{record_id}", self.clock.now())
        self._wake_outbox.set()

    def _queue_alarms(self, state: Any) -> None:
        """Alarms raised or cleared this tick, each an ``alarm`` record in the outbox."""
        try:
            bodies = self.alarms.update(state, self.site, self.clock.now())
        except Exception:  # noqa: BLE001 - alarms must never stop the control loop
            logger.exception("alarm bookkeeping failed")
            return
        for body in bodies:
            n = self.store.next_counter("alarm")
            self.store.enqueue("alarm", body, f"alarm:{n}", self.clock.now())
            log = logger.warning if body["active"] else logger.info
            log("alarm %s: %s", "raised" if body["active"] else "cleared", body["message"])
        if bodies:
            self._wake_outbox.set()

    # ------------------------------------------------------------------ link

    async def link_loop(self) -> None:
        await self.link.run()

    def _update_autonomy(self) -> None:
        """Autonomous self-consumption unless both the coordinator link and the chain are up,
        except that a dispatch accepted for the delivery under way is kept while only the link
        is down: the fill is committed on chain, and the reading waits in the outbox."""
        on = not self._chain_up or not (self._link_up or self._committed_now())
        if self.site.autonomous != on:
            self.site.set_autonomous(on)

    async def chain_watchdog(self) -> None:
        failing = False
        while True:
            try:
                await asyncio.to_thread(lambda: self.chain.w3.eth.block_number)
                up = True
            except Exception as exc:  # noqa: BLE001 - any failure to reach the node counts as down
                up = False
                if not failing:
                    logger.warning("chain unreachable (%s): running autonomously", exc.__class__.__name__)
            if up and failing:
                logger.info("chain reachable again")
            failing = not up
            self._chain_up = up
            self._update_autonomy()
            await self.clock.wait(self.cfg.chain_check_s)

    async def on_message(self, raw: str) -> None:
        try:
            env = self.verifier.verify(raw)
            body = validate_body(env.kind, env.body)
        except EnvelopeError as exc:
            logger.warning("rejected message: %s (%s)", exc, exc.reason)
            self.rejected.append((exc.reason, str(exc)))
            self.store.log_command(self.clock.now(), "?", None, None, False, f"{exc.reason}: {exc}")
            return
        if env.kind == "welcome":
            market = str(env.body.get("market", ""))
            if market and market.lower() != self.chain.deployment.market.lower():
                logger.error(
                    "the coordinator at %s runs market %s, but our deployment names %s: fix `deployment` or "
                    "`coordinator_url` in the site config",
                    self.cfg.coordinator_url, market, self.chain.deployment.market,
                )
            self.link.welcomed()
        elif isinstance(body, Ack | Acks):
            for ack in body.acks if isinstance(body, Acks) else [body]:
                self.link.acked(ack.seq)
                if ack.kind == "borrow":
                    self.trading.borrow_answered(ack)
        elif isinstance(body, Lend):
            self.apply_lend(env, body)
        elif isinstance(body, Error):
            self._on_error(body)
        elif isinstance(body, IntervalNotice):
            self._spawn(self.trade(body), f"trade-{body.interval}")
        elif isinstance(body, Dispatch):
            self.apply_dispatch(env, body)
        elif isinstance(body, Arm):
            self.apply_arm(env, body)
        elif isinstance(body, Config):
            self.apply_config(env, body)

    def _on_error(self, err: Error) -> None:
        self.link.refused(err)

    async def outbox_loop(self) -> None:
        await self.link.outbox_loop()

    async def flush_outbox(self) -> int:
        """Send every unacknowledged record not already in flight; returns how many were sent."""
        return await self.link.flush()

    async def resend_forever(self) -> None:
        await self.link.resend_forever()

    async def recover_locks_forever(self) -> None:
        await self.trading.recover_locks_forever()

    async def recover_locks(self) -> list[int]:
        return await self.trading.recover_locks()

    # ------------------------------------------------------------------ trading (agent/trading.py)

    async def trade(self, notice: IntervalNotice) -> None:
        await self.trading.trade(notice)

    def _maybe_borrow(self, notice: IntervalNotice) -> None:
        self.trading.maybe_borrow(notice)

    def apply_lend(self, env: Envelope, g: Lend) -> None:
        self.trading.apply_lend(env, g)

    # ------------------------------------------------------------------ dispatch and metering

    def apply_dispatch(self, env: Envelope, d: Dispatch) -> None:
        reason = dispatch_refusal(d, self.store.order_for(d.interval), self.clock.now())
        if not reason:
            before_e, before_i = self._earlier_runs_metered(d.interval)  # delivered before a restart
            try:
                self.site.set_market_schedule(d.start, d.end, d.export_w, reason=f"interval {d.interval}",
                                              delivered_wh=before_e - before_i)
            except ValueError as exc:  # out of the site's range: changes nothing
                reason = str(exc)
        ok = not reason
        if ok:
            logger.info("interval %d: dispatch %.0f W accepted", d.interval, d.export_w)
            self._commitments[d.interval] = (d.start, d.end)
            self.store.put_state(f"dispatch:{d.interval}", [d.start, d.end, d.export_w])
        else:
            logger.warning("interval %d: dispatch rejected: %s", d.interval, reason)
        self.store.log_command(self.clock.now(), "dispatch", env.seq, d.interval, ok, reason or "applied")
        ack = {"kind": "dispatch", "seq": env.seq, "interval": d.interval, "ok": ok, "reason": reason}
        self.store.enqueue("ack", ack, f"ack:dispatch:{d.interval}:{env.seq}", self.clock.now())
        self._wake_outbox.set()

    def apply_arm(self, env: Envelope, a: Arm) -> None:
        """Arm or disarm local frequency response; the site's arbiter keeps the owner's reserve
        (unless the owner opted in to emergencies) and the device limits above it."""
        reason = "armed" if a.armed else "disarmed"
        try:
            if a.armed:
                self.site.arm_frequency_response(**arm_kwargs(a, self.clock.now(), self.site))
            else:
                self.site.disarm_frequency_response()
            ok = True
        except ValueError as exc:
            ok, reason = False, str(exc)
        logger.info("frequency response %s", reason)
        self.store.log_command(self.clock.now(), "arm", env.seq, None, ok, reason)
        ack = {"kind": "arm", "seq": env.seq, "ok": ok, "reason": "" if ok else reason}
        self.store.enqueue("ack", ack, f"ack:arm:{env.seq}", self.clock.now())
        self._wake_outbox.set()

    def apply_config(self, env: Envelope, c: Config) -> None:
        """Remote configuration (see :mod:`agent.remote_config`): applied or refused, logged, answered."""
        result = self.remote.handle(c.config_id, dict(c.settings))
        self.store.log_command(self.clock.now(), "config", env.seq, None, result["ok"], result["reason"] or "applied")
        self.store.enqueue("config_result", result, f"config:{c.config_id}", self.clock.now())
        self._wake_outbox.set()

    def _schedule_meter(self, k: int, start: float, end: float) -> None:
        if k in self._metered:
            return
        self._metered.add(k)
        self._meter_windows[k] = (start, end)
        self._spawn(self._meter_after(k, start, end), f"meter-{k}")

    def _save_partial_meters(self) -> None:
        """Keep what this process has metered of each delivery in progress, so that a restarted
        agent's reading counts the energy delivered before the restart too."""
        now = self.clock.now()
        for k, (start, end) in list(self._meter_windows.items()):
            if now < start:
                continue
            exported, imported = self.site.meter_window(start, min(now, end))
            self.store.put_state(f"meter:{k}:{self._run}", [exported, imported])
            if now >= end:
                self._meter_windows.pop(k, None)

    def _earlier_runs_metered(self, k: int) -> tuple[float, float]:
        exported = imported = 0.0
        for key, (e, i) in self.store.states_with_prefix(f"meter:{k}:").items():
            if key != f"meter:{k}:{self._run}":
                exported += float(e)
                imported += float(i)
        return exported, imported

    async def _meter_after(self, k: int, start: float, end: float) -> None:
        await self.clock.sleep_until(end + min(self.cfg.tick_s, 0.1 * (end - start)))
        exported, imported = self.site.meter_window(start, end)
        before_e, before_i = self._earlier_runs_metered(k)  # metered by this agent before a restart
        if before_e or before_i:
            logger.info("interval %d: adding %.0f Wh export metered before a restart", k, before_e)
        exported, imported = exported + before_e, imported + before_i
        exp_wh, imp_wh = int(round(exported)), int(round(imported))
        dep = self.chain.deployment
        signature = sign_meter_reading(self.account, dep.chain_id, dep.market, k, exp_wh, imp_wh)
        body = {"interval": k, "exported_wh": exp_wh, "imported_wh": imp_wh, "signature": signature}
        if self.store.enqueue("meter", body, f"meter:{k}", self.clock.now()):
            logger.info("interval %d: metered export %d Wh, import %d Wh", k, exp_wh, imp_wh)
        self._wake_outbox.set()


def arm_kwargs(a: Arm, now: float, site: SitePort) -> dict[str, Any]:
    """The site's arming for an ``arm`` message; ValueError (nothing changes) for an arm that
    has already expired or a share above the site's storage rating."""
    if a.until_ts is not None and a.until_ts <= now:
        raise ValueError(f"arm expired at {a.until_ts:.0f} (now {now:.0f})")
    kw: dict[str, Any] = {"droop": a.droop, "deadband_hz": a.deadband_hz, "max_power_w": a.max_power_w,
                          "mode": a.mode, "until_ts": a.until_ts, "knee_hz": a.knee_hz,
                          "knee_fraction": a.knee_fraction}
    if a.share_w is not None:
        lo, hi = site.storage_range()
        rating = max(-lo, hi)
        if a.share_w > rating + 1e-6:
            raise ValueError(f"share_w {a.share_w:.0f} W above the site's storage rating {rating:.0f} W")
        kw["p_ref_w"] = a.share_w
        kw["max_power_w"] = a.share_w if a.max_power_w is None else min(a.share_w, a.max_power_w)
    return kw


async def run_agent(cfg: AgentConfig) -> None:
    runtime = AgentRuntime(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    memdump.install()  # `kill -USR2 PID`: where memory grew (with PYTHONTRACEMALLOC=1)
    await runtime.run(stop)

