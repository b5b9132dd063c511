"""The agent's trading: one order per interval on chain, virtual-battery grants and borrowing,
and recovery of our own locks in intervals the operator let lapse.

The trading policy itself (what to offer or bid, at what price) is :class:`agent.trader.Trader`;
this part turns its decisions into chain transactions with bounded retries, and keeps the
fleet's grants and our borrowing requests. It sees the site only through
:class:`agent.site_port.SitePort` and sends records through the outbox (``wake``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from agent.chain_client import AgentChain
from agent.config import AgentConfig
from agent.control.vb_intent import borrow_request_w, lend_allowed
from agent.fleet_link import draw_ahead_wh, vb_order
from agent.site_port import SitePort
from agent.store import AgentStore
from agent.trader import Trader
from gridswarm.chain import ChainError, ChainUnavailable
from gridswarm.clock import Clock
from gridswarm.envelope import Envelope
from gridswarm.messages import Ack, IntervalNotice, Lend, draw_between_wh, grant_wh_between

logger = logging.getLogger("agent.runtime")  # one logger for the agent process's story

__all__ = ["TRADE_RETRIES", "Trading"]

TRADE_RETRIES = 6  # attempts to post an order while the node is unreachable (bounded by the gate too)


class Trading:
    """Orders, grants, borrowing and lock recovery (see the module docstring)."""

    def __init__(self, cfg: AgentConfig, clock: Clock, store: AgentStore, chain: AgentChain, trader: Trader,
                 site: SitePort, address: str, *, wake: Callable[[], None],
                 schedule_meter: Callable[[int, float, float], None]) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.chain = chain
        self.trader = trader
        self.site = site
        self.address = address
        self.wake = wake
        self.schedule_meter = schedule_meter
        self.active: set[int] = set()  # intervals whose order is being decided or posted now
        self.grants: list[dict[str, Any]] = []  # virtual-battery grants not yet over
        self.borrow_replies: list[dict[str, Any]] = []  # the coordinator's answers to our requests (last 100)
        self.borrowed_for: set[float] = set()

    # ------------------------------------------------------------------ orders

    async def trade(self, notice: IntervalNotice) -> None:
        """At most one order per interval: the same notice can arrive twice (the broadcast and
        the obligations a reconnect brings), so a second task for an interval in hand returns."""
        k = notice.interval
        if k in self.active:
            return
        self.active.add(k)
        try:
            await self._trade(notice)
        finally:
            self.active.discard(k)

    async def _trade(self, notice: IntervalNotice) -> None:
        k = notice.interval
        t = self.cfg.trading
        if not t.enabled or self.store.order_for(k) is not None:
            return
        self.maybe_borrow(notice)
        d = self.trader.decide(k, self.address, notice.delivery_start, notice.delivery_end)
        side, qty, price = d.side, d.qty_wh, d.price
        vb = vb_order(self.grants, notice.delivery_start, notice.delivery_end)
        if vb is not None:  # virtual battery: trade the granted energy at the operator's price
            side, qty, price = vb
            d = type(d)(side, qty, price, "virtual-battery grant")
        if qty < t.min_order_wh:
            logger.info("interval %d: nothing to trade", k)
            return
        attempt = 0
        while True:
            try:
                # looked up first on every attempt, so a retry never posts twice
                existing = await asyncio.to_thread(self.chain.find_order, k)
                posted = existing or await asyncio.to_thread(self.chain.post_order, k, side, qty, price)
                break
            except ChainUnavailable as exc:  # the node is away: retry with back-off until the gate
                attempt += 1
                delay = min(10.0, 0.5 * 2 ** min(attempt, 5))
                if attempt > TRADE_RETRIES or self.clock.now() >= notice.gate_close:
                    logger.warning("interval %d: order not posted after %d attempts: %s", k, attempt, exc)
                    return
                logger.info("interval %d: chain unavailable (%s); retrying in %.1f s", k, exc, delay)
                await self.clock.wait(delay)
            except ChainError as exc:
                logger.warning("interval %d: order not posted: %s", k, exc)
                return
        self.store.record_order(
            k, posted.order_id, posted.side, posted.qty_wh, posted.price, posted.tx, notice.delivery_start, notice.delivery_end
        )
        logger.info("interval %d: posted %s %d Wh at %d from %s (gas %d)", k, side, qty, price, d.basis, posted.gas)
        self.schedule_meter(k, notice.delivery_start, notice.delivery_end)

    # ------------------------------------------------------------------ locks

    async def recover_locks_forever(self) -> None:
        """Release our own locks in intervals the operator let lapse, by ourselves: every
        ``chain_check_s``, each order not yet known finished is looked up on chain; a lapsed
        one is recovered, a finished one is marked so it is not asked about again."""
        while True:
            try:
                await self.recover_locks()
            except Exception as exc:  # noqa: BLE001 - the chain may be down; try again next round
                logger.warning("lock recovery check failed (%s: %s); retrying", exc.__class__.__name__, exc)
            await self.clock.wait(self.cfg.chain_check_s)

    async def recover_locks(self) -> list[int]:
        recovered = []
        for order in self.store.open_orders():
            if order["delivery_start"] > self.clock.now():
                continue  # the interval has not reached delivery yet
            k, oid = int(order["interval"]), int(order["order_id"])
            live, lapsed = await asyncio.to_thread(self.chain.order_state, oid, k)
            if not live:
                self.store.close_order(k)
            elif lapsed:
                await asyncio.to_thread(self.chain.recover, [oid])
                self.store.close_order(k)
                recovered.append(k)
                logger.warning("interval %d lapsed: recovered the lock of our order %d", k, oid)
        return recovered

    # ------------------------------------------------------------------ virtual battery

    def maybe_borrow(self, notice: IntervalNotice) -> None:
        """Ask the fleet for what our storage cannot cover over the next interval."""
        b = self.cfg.borrowing
        state = self.site.last_state
        if not b.enabled or state is None:
            return
        length = notice.delivery_end - notice.delivery_start
        start, end = notice.delivery_end, notice.delivery_end + length
        if start in self.borrowed_for:
            return
        want, why = borrow_request_w(state, self.site, end - start)  # the device loop's intent shapes it
        need = min(b.max_w, want)
        if need < b.min_w:
            return
        self.borrowed_for = {t for t in self.borrowed_for if t > self.clock.now() - 86_400} | {start}
        rid = self.store.next_counter("borrow")
        body = {"request_id": rid, "power_w": round(need, 3), "start": start, "end": end, "priority": b.priority}
        self.store.enqueue("borrow", body, f"borrow:{rid}", self.clock.now())
        logger.info("asking the fleet for %.0f W over [%.0f, %.0f) (%s): %s", need, start, end, b.priority, why)
        self.wake()

    def borrow_answered(self, ack: Ack) -> None:
        self.borrow_replies = [*self.borrow_replies[-99:], {"ok": ack.ok, "reason": ack.reason}]
        (logger.info if ack.ok else logger.warning)("borrowing request %s: %s",
                                                    "accepted" if ack.ok else "refused", ack.reason)

    def _kept_wh(self, now: float, until: float) -> float:
        """What the site keeps for itself until ``until``: its own draw ahead (its forecast's
        upper bound, or its loads' rating without one) and the lender grants it still owes."""
        planner = getattr(self.trader, "planner", None)
        outlook = planner.forecaster.outlook if planner is not None else None
        draw = draw_ahead_wh(self.site, outlook, now)
        kept = draw_between_wh(draw, now, now, until) if draw else 0.0
        return kept + sum(grant_wh_between(x, now, math.inf) for x in self.grants if x["role"] == "lender")

    def apply_lend(self, env: Envelope, g: Lend) -> None:
        """A virtual-battery grant: kept until its window is over; the next interval notice
        trades it on chain (the market's dispatch then moves the energy)."""
        now = self.clock.now()
        if g.revoke:  # its lender refused it: no lender offers that energy, so we do not bid for it
            key = (g.request_id, g.counterparty, g.role, g.start, g.end)
            before = len(self.grants)
            self.grants = [x for x in self.grants
                           if (x["request_id"], x["counterparty"], x["role"], x["start"], x["end"]) != key]
            reason = f"grant of request {g.request_id} from {g.counterparty} withdrawn ({before - len(self.grants)} dropped)"
            logger.info("virtual battery: %s", reason)
            self.store.log_command(now, "lend", env.seq, None, True, reason)
            self.store.enqueue("ack", {"kind": "lend", "seq": env.seq, "ok": True, "reason": ""}, f"ack:lend:{env.seq}", now)
            self.wake()
            return
        ok = g.end > now
        reason = f"{g.role} {g.power_w:.0f} W ({g.energy_wh} Wh) with {g.counterparty}" if ok else "grant already over"
        if ok and g.role == "lender":  # never below the owner's reserve, never while the site itself needs energy
            ok, why = lend_allowed(self.site.last_state, self.site, g.energy_wh, keep_wh=self._kept_wh(now, g.end))
            reason = reason if ok else f"lending refused: {why}"
        if ok:
            self.grants = [x for x in self.grants if x["end"] > now][-99:] + [g.model_dump()]
        logger.info("virtual battery: %s", reason)
        self.store.log_command(now, "lend", env.seq, None, ok, reason)
        ack = {"kind": "lend", "seq": env.seq, "ok": ok, "reason": "" if ok else reason}
        self.store.enqueue("ack", ack, f"ack:lend:{env.seq}", now)
        self.wake()
