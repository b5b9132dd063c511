"""The fleet: latest state of every site and device, health exclusions, the frequency service
sized and armed each interval, the fleet's mode (``docs/fleet.md``).

The hub hands every verified ``telemetry`` and ``alarm`` body here (from worker threads: the
state is guarded by a lock). Latest state lives in memory; history goes to the store
(telemetry rows, alarms, operator-visible events). The service re-sizes and re-arms every agent
(a signed ``arm``: deadband, droop, its share, an expiry) each market interval, whenever the
mode or an exclusion changes, and at least every ``rearm_s``. A unit with stale telemetry, an
active alarm, low state of health or an out-of-range temperature is excluded until it recovers;
each exclusion and recovery is an event the operator sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from coordinator.services.config import FleetSettings
from coordinator.services.modes import ARM_MODE, ModeController
from coordinator.services.sizing import Sizing, device_reasons, max_rate_w, size_service
from coordinator.services.vbattery import Lender, Request, available_w, lendable_w, plan
from gridswarm.messages import draw_between_wh, grant_wh_between

logger = logging.getLogger(__name__)

__all__ = ["DC", "FleetService", "dc_fraction"]

STORAGE = ("battery", "ups", "flywheel")
# GB Dynamic Containment's delivery curve, sent to every agent in its arm
DC = {"deadband_hz": 0.015, "knee_hz": 0.2, "knee_fraction": 0.05, "full_hz": 0.5}


def dc_fraction(df: float) -> float:
    """Share of contracted power DC asks for at a deviation ``df`` (Hz; + below nominal)."""
    d = abs(df)
    if d <= DC["deadband_hz"]:
        return 0.0
    if d <= DC["knee_hz"]:
        frac = DC["knee_fraction"] * (d - DC["deadband_hz"]) / (DC["knee_hz"] - DC["deadband_hz"])
    else:
        rest = min(1.0, (d - DC["knee_hz"]) / (DC["full_hz"] - DC["knee_hz"]))
        frac = DC["knee_fraction"] + (1 - DC["knee_fraction"]) * rest
    return math.copysign(frac, df)


@dataclass
class SiteRecord:
    address: str
    ts: float = 0.0  # the agent's clock time of the latest record
    received: float = 0.0  # our clock when it arrived
    soc: float | None = None
    net_export_w: float = 0.0
    frequency_hz: float | None = None
    response_w: float | None = None
    emergency_opt_in: bool = False
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)  # device id or "*" (whole site) -> reasons
    max_rate_w: float = 0.0
    share_w: float = 0.0
    draw_ahead_wh: list[float] | None = None  # its own draw in each hour from ts (Telemetry.draw_ahead_wh)


class FleetService:
    def __init__(self, settings: FleetSettings, store: Any, clock: Any, hub: Any) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.hub = hub
        self.sites: dict[str, SiteRecord] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=settings.max_events)
        self.frequency_events: deque[dict[str, Any]] = deque(maxlen=100)
        self.modes = ModeController(settings.mode, emergency_hz=settings.emergency_hz,
                                    hold_s=settings.emergency_hold_s, nominal_hz=settings.nominal_hz)
        self.sizing = Sizing(0.0, 0.0)
        self.arms_sent = 0
        self._unsaved: deque[dict[str, Any]] = deque(maxlen=settings.max_events)
        self.pending_borrows: deque[Request] = deque()
        self.grants: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.borrow_log: deque[dict[str, Any]] = deque(maxlen=1_000)
        # every borrowing request and what became of it (queued, refused, served W, unserved W)
        self.borrow_requests: deque[dict[str, Any]] = deque(maxlen=1_000)
        self._arrivals = 0
        # grants sent to lenders, by (lender, envelope seq), until the lender answers (bounded)
        self._lend_sent: dict[tuple[str, int], dict[str, Any]] = {}
        self._revoke: deque[dict[str, Any]] = deque(maxlen=1_000)  # refused grants to withdraw
        self._refused: deque[tuple[str, float, float]] = deque(maxlen=1_000)  # (lender, start, end)
        self._armed: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._mode_seen = self.modes.mode(clock.now())
        self._last_rearm = -math.inf
        self._last_prune = -math.inf
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ inbound (hub threads)

    def _poke(self) -> None:
        """Wake the service loop (safe from the hub's worker threads)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def on_telemetry(self, sender: str, body: Any) -> None:
        now = self.clock.now()
        with self._lock:
            rec = self.sites.setdefault(sender, SiteRecord(sender))
            if body.ts < rec.ts:
                return  # an older record resent after a newer one: history only
            rec.ts, rec.received = body.ts, now
            rec.soc, rec.net_export_w = body.soc, body.net_export_w
            rec.frequency_hz, rec.response_w = body.frequency_hz, body.response_w
            rec.emergency_opt_in = bool(body.emergency_opt_in)
            rec.draw_ahead_wh = list(body.draw_ahead_wh) if body.draw_ahead_wh else None
            rec.devices = {k: v.model_dump(exclude_none=True) for k, v in body.devices.items()}
            if body.frequency_hz is not None:
                if self.modes.measured(body.frequency_hz, now):
                    self._frequency_event(rec, now, extend=True)
                    self._poke()
                elif self.frequency_events and self.frequency_events[-1]["open"]:
                    self._frequency_event(rec, now, extend=False)

    def on_alarm(self, sender: str, body: Any) -> None:
        now = self.clock.now()
        with self._lock:
            rec = self.sites.setdefault(sender, SiteRecord(sender))
            key = (body.code, body.device)
            if body.active:
                rec.alarms[key] = {"code": body.code, "device": body.device, "severity": body.severity,
                                   "message": body.message, "ts": body.ts if body.ts is not None else now}
            else:
                rec.alarms.pop(key, None)
            self._poke()
        self.store.add_fleet_alarm({"sender": sender, "code": body.code, "device": body.device or "",
                                    "severity": body.severity, "active": int(body.active),
                                    "message": body.message, "ts": body.ts, "received": now})

    # ------------------------------------------------------------------ virtual battery

    def lenders(self, start: float, end: float) -> list[Lender]:
        """Who can lend over ``[start, end)`` and how much (W), net of grants already made: their
        power over the window, and the energy they have promised until the window ends (grants
        still to deliver, before or during it) and their own site's draw until then, out of the
        energy above the reserve their last telemetry reported. The own draw is the larger of
        what the site drew from its storage then, held, and what it said it expects to draw
        (``draw_ahead_wh``: its forecast's upper bound, or its loads' rating without one)."""
        out = []
        with self._lock:
            for rec in self.sites.values():
                if "*" in rec.excluded:
                    continue
                if any(g["borrower"] == rec.address and g["start"] < end and g["end"] > start for g in self.grants):
                    continue  # a site that borrows over the window does not lend in it
                if any(a == rec.address and s0 < end and e0 > start for a, s0, e0 in self._refused):
                    continue  # it refused a grant over the window: it knows better than its telemetry
                healthy = {d for d in rec.devices if d not in rec.excluded}
                power, headroom, cap = lendable_w(rec.devices, healthy, end - start)
                mine = [g for g in self.grants if g["lender"] == rec.address and g["end"] > rec.ts and g["start"] < end]
                lent = sum(g["power_w"] for g in mine if start < g["end"])
                promised = sum(grant_wh_between(g, rec.ts, math.inf) for g in mine)
                delivering = sum(g["power_w"] for g in mine if g["start"] <= rec.ts)
                usable = sum(d.get("usable_wh") or 0.0 for k, d in rec.devices.items()
                             if k in healthy and d.get("kind") in STORAGE)
                storage_w = sum(d.get("power_w") or 0.0 for k, d in rec.devices.items()
                                if k in healthy and d.get("kind") in STORAGE)
                own_w = max(0.0, storage_w - delivering)  # what its own site draws from its storage
                # what its own site still imports, grants aside: a lender must export, so its
                # storage first covers that (lending is measured by the lender's metered export)
                import_w = max(0.0, delivering - rec.net_export_w)
                own_to_end = own_w * max(0.0, end - rec.ts) / 3600.0
                own_to_start = own_w * max(0.0, start - rec.ts) / 3600.0
                if rec.draw_ahead_wh:
                    own_to_end = max(own_to_end, draw_between_wh(rec.draw_ahead_wh, rec.ts, rec.ts, end))
                    own_to_start = max(own_to_start, draw_between_wh(rec.draw_ahead_wh, rec.ts, rec.ts, start))
                left_wh = usable - promised - own_to_end
                power = min(max(0.0, power - rec.share_w - lent - import_w),
                            max(0.0, left_wh) * 3600.0 / (end - start))
                if cap > 0:
                    headroom = max(0.0, headroom - (promised + own_to_start) / cap)
                if power > 0:
                    out.append(Lender(rec.address, headroom, cap, power))
        return out

    def _lendable_total(self, start: float, end: float, remaining_w: float, exclude: str | None = None) -> float:
        """The fleet's lendable power over ``[start, end)`` before any grant: what is left plus
        what is already granted over an overlapping window (the base of the held-back shares)."""
        with self._lock:
            granted = sum(g["power_w"] for g in self.grants
                          if g["start"] < end and g["end"] > start and g["lender"] != exclude)
        return remaining_w + granted

    def on_borrow(self, sender: str, body: Any) -> tuple[bool, str]:
        """A borrowing request (hub thread): refused with the reason when the fleet could not lend
        that much to its class over the window even with nothing granted yet, else queued for the
        next plan, which serves the queued requests in priority order, in part when short."""
        s = self.settings
        if not s.borrowing:
            return False, "the fleet does not serve borrowing requests (fleet.borrowing)"
        if body.end <= self.clock.now():
            return False, "the window is already over"
        capacity = sum(ln.lendable_w for ln in self.lenders(body.start, body.end) if ln.address != sender)
        total = self._lendable_total(body.start, body.end, capacity, sender)
        may = available_w(total, total, body.priority, s.borrow_held_back)  # all it could ever get
        entry = {"address": sender, "request_id": body.request_id, "power_w": body.power_w, "start": body.start,
                 "end": body.end, "priority": body.priority, "ts": self.clock.now(), "outcome": "queued",
                 "served_w": 0.0, "unserved_w": 0.0}
        if body.power_w > may + 1e-6:
            held = f" ({total - may:.0f} W held back for requests above {body.priority})" if may < total else ""
            with self._lock:
                self.borrow_requests.append({**entry, "outcome": "refused", "unserved_w": body.power_w,
                                             "reason": f"the fleet can lend {may:.0f} W{held}"})
            self._event("borrow_refused", sender, None,
                        f"asks {body.power_w:.0f} W ({body.priority}), the fleet can lend {may:.0f} W{held}")
            self.save_events()
            return False, (f"asks {body.power_w:.0f} W; the fleet can lend at most {may:.0f} W over that window"
                           f" to a {body.priority} request{held}")
        with self._lock:
            if len(self.pending_borrows) >= s.max_pending_borrows:
                return False, "too many borrowing requests pending"
            self._arrivals += 1
            self.pending_borrows.append(Request(sender, body.request_id, body.power_w, body.start, body.end,
                                                body.priority, self._arrivals))
            self.borrow_requests.append(entry)
        self._poke()
        return True, "queued"

    def on_lend_answer(self, sender: str, seq: int, ok: bool, reason: str) -> None:
        """A lender's answer to its grant (hub thread). A refusal (the lender's own check: its
        reserve, what its site will draw, its device loop) withdraws the grant: it is no longer
        counted, the borrower is told to drop it, the lender is not asked again over that window
        and the borrower's request goes back to the queue for the power it lost."""
        with self._lock:
            grant = self._lend_sent.pop((sender, seq), None)
            if ok or grant is None or grant not in self.grants:
                return
            self.grants.remove(grant)
            grant["refused"] = reason
            self._refused.append((sender, grant["start"], grant["end"]))
            self._revoke.append(grant)
            self._arrivals += 1
            self.pending_borrows.append(Request(grant["borrower"], grant["request_id"], grant["power_w"],
                                                grant["start"], grant["end"], grant["priority"], self._arrivals))
        self._event("lend_refused", sender, None, f"refused {grant['energy_wh']} Wh for {grant['borrower']}: {reason}")
        self._poke()

    async def _withdraw_refused(self) -> None:
        """Tell each borrower of a refused grant to drop it (it would otherwise bid for energy no
        lender offers). A borrower not connected now is told on a later round, until the window
        starts (after that its bid, if any, simply finds no offer: no trade, no payment)."""
        later = []
        while self._revoke:
            g = self._revoke.popleft()
            body = {"request_id": g["request_id"], "power_w": round(g["power_w"], 3), "energy_wh": g["energy_wh"],
                    "start": g["start"], "end": g["end"], "price": g["price"], "role": "borrower",
                    "counterparty": g["lender"], "revoke": True}
            if not await self.hub.send(g["borrower"], "lend", body) and g["start"] > self.clock.now():
                later.append(g)
        self._revoke.extend(later)

    async def serve_borrowing(self) -> int:
        """Plan the pending requests and send each lender and borrower its signed grant."""
        await self._withdraw_refused()
        with self._lock:
            reqs = list(self.pending_borrows)
            self.pending_borrows.clear()
        if not reqs:
            return 0
        start, end = min(r.start for r in reqs), max(r.end for r in reqs)
        lenders = self.lenders(start, end)
        total = self._lendable_total(start, end, sum(ln.lendable_w for ln in lenders))
        p = plan(reqs, lenders, balance=self.settings.lender_choice == "highest_soc",
                 held_back=self.settings.borrow_held_back, total_w=total)
        price = self.settings.borrow_price
        sent = 0
        for g in p.grants:
            r = g.request
            if g.energy_wh < 1:
                continue
            grant = {"request_id": r.request_id, "borrower": r.address, "lender": g.lender, "power_w": g.power_w,
                     "energy_wh": g.energy_wh, "start": r.start, "end": r.end, "price": price,
                     "priority": r.priority, "ts": self.clock.now()}
            with self._lock:
                self.grants.append(grant)
            self.borrow_log.append(grant)
            common = {"request_id": r.request_id, "power_w": round(g.power_w, 3), "energy_wh": g.energy_wh,
                      "start": r.start, "end": r.end, "price": price,
                      "bid_price": price + self.settings.borrow_bid_margin}
            env = self.hub.sign("lend", {**common, "role": "lender", "counterparty": r.address})
            with self._lock:
                if len(self._lend_sent) >= 10_000:  # answers that never came: forget the oldest
                    self._lend_sent.pop(next(iter(self._lend_sent)))
                self._lend_sent[(g.lender, env.seq)] = grant
            await self.hub.send_envelope(g.lender, env)
            await self.hub.send(r.address, "lend", {**common, "role": "borrower", "counterparty": g.lender})
            self._event("lend", g.lender, None, f"lends {g.power_w:.0f} W ({g.energy_wh} Wh) to {r.address} "
                                                f"({r.priority}) at {price}/Wh")
            sent += 1
        for (addr, rid), w in p.unserved.items():
            self._event("borrow_unserved", addr, None, f"request {rid}: {w:.0f} W not served (shortage)")
        served: dict[tuple[str, int], float] = {}
        for g in p.grants:
            key = (g.request.address, g.request.request_id)
            served[key] = served.get(key, 0.0) + g.power_w
        with self._lock:
            for e in self.borrow_requests:
                key = (e["address"], e["request_id"])
                if e["outcome"] == "queued" and any((r.address, r.request_id) == key for r in reqs):
                    e["outcome"], e["served_w"] = "planned", served.get(key, 0.0)
                    e["unserved_w"] = p.unserved.get(key, 0.0)
        self.save_events()
        return sent

    # ------------------------------------------------------------------ health, sizing, arms

    def _event(self, kind: str, address: str, device: str | None, message: str) -> None:
        """Record an operator-visible event (in memory now, in the store by :meth:`save_events`:
        the store is never touched under the fleet's lock, so the two locks never cross)."""
        ev = {"ts": self.clock.now(), "kind": kind, "address": address, "device": device, "message": message}
        self.events.append(ev)
        self._unsaved.append(ev)
        logger.info("fleet %s: %s %s: %s", kind, address, device or "", message)

    def save_events(self) -> None:
        rows = []
        while self._unsaved:
            ev = self._unsaved.popleft()
            rows.append({**ev, "device": ev["device"] or ""})
        if rows:
            self.store.add_fleet_events(rows)

    def _frequency_event(self, rec: SiteRecord, now: float, *, extend: bool) -> None:
        evs = self.frequency_events
        if not evs or not evs[-1]["open"]:
            evs.append({"open": True, "start_ts": now, "end_ts": now, "min_hz": rec.frequency_hz,
                        "max_hz": rec.frequency_hz, "required_w": self.sizing.required_w,
                        "armed_w": self.sizing.armed_w, "peak_expected_w": 0.0, "peak_delivered_w": 0.0,
                        "sites_responding": 0})
            self._event("frequency", rec.address, None, f"measured {rec.frequency_hz:.3f} Hz: frequency event")
        ev = evs[-1]
        if extend:
            ev["end_ts"] = now
        f = rec.frequency_hz
        assert f is not None
        ev["min_hz"], ev["max_hz"] = min(ev["min_hz"], f), max(ev["max_hz"], f)
        # the fleet's response at this moment: each site's latest, against DC's curve for its share
        window = self.settings.stale_s
        expected = delivered = 0.0
        responding = 0
        for r in self.sites.values():
            if r.frequency_hz is None or now - r.received > window:
                continue
            expected += r.share_w * dc_fraction(self.settings.nominal_hz - r.frequency_hz)
            delivered += r.response_w or 0.0
            responding += (r.response_w or 0.0) > 0
        if abs(expected) > abs(ev["peak_expected_w"]):
            ev["peak_expected_w"], ev["peak_delivered_w"], ev["sites_responding"] = expected, delivered, responding

    def check(self, now: float) -> bool:
        """Recompute every unit's exclusions; record changes as events; True if any changed."""
        s = self.settings
        changed = False
        with self._lock:
            for rec in self.sites.values():
                excl: dict[str, list[str]] = {}
                if now - rec.received > s.stale_s:
                    excl["*"] = [f"telemetry silent for {now - rec.received:.0f} s (> {s.stale_s:g} s)"]
                site_alarms = [a for (_c, dev), a in rec.alarms.items()
                               if dev is None and a["severity"] == "critical"]
                if site_alarms:
                    excl.setdefault("*", []).extend(f"alarm {a['code']}" for a in site_alarms)
                for dev_id, d in rec.devices.items():
                    if d.get("kind") not in STORAGE:
                        continue
                    alarms = {code for (code, dev), a in rec.alarms.items()
                              if dev == dev_id and a["severity"] != "info"}
                    why = device_reasons(d, alarms, min_soh=s.min_soh, temperature_c=s.temperature_c)
                    if why:
                        excl[dev_id] = why
                for unit in set(excl) | set(rec.excluded):
                    if unit in excl and unit not in rec.excluded:
                        self._event("excluded", rec.address, None if unit == "*" else unit, "; ".join(excl[unit]))
                        changed = True
                    elif unit in rec.excluded and unit not in excl:
                        self._event("recovered", rec.address, None if unit == "*" else unit, "back in service")
                        changed = True
                rec.excluded = excl
            evs = self.frequency_events
            if evs and evs[-1]["open"] and self.modes.mode(now) != "emergency" and now - evs[-1]["end_ts"] > s.stale_s:
                evs[-1]["open"] = False
        self.save_events()
        return changed

    def required_w(self, available_w: float) -> float:
        s = self.settings
        return s.required_w if s.required_w is not None else s.required_fraction * available_w

    def resize(self, now: float) -> Sizing:
        mode = self.modes.mode(now)
        with self._lock:
            rates: dict[str, float] = {}
            for rec in self.sites.values():
                if "*" in rec.excluded:
                    rec.max_rate_w = 0.0
                else:
                    healthy = {d for d in rec.devices if d not in rec.excluded}
                    below = mode == "emergency" and rec.emergency_opt_in
                    rec.max_rate_w = max_rate_w(rec.devices, healthy, self.settings.sustain_s, below_reserve=below,
                                                response_w=rec.response_w or 0.0)
                rates[rec.address] = rec.max_rate_w
            sizing = size_service(rates, self.required_w(sum(rates.values())))
            for addr, share in sizing.shares.items():
                self.sites[addr].share_w = share
            self.sizing = sizing
        return sizing

    def arm_body(self, address: str, now: float) -> dict[str, Any]:
        rec = self.sites.get(address)
        mode = self.modes.mode(now)
        if rec is None or rec.share_w <= 0 or "*" in rec.excluded:
            return {"armed": False}
        return {"armed": True, "mode": ARM_MODE[mode], "deadband_hz": DC["deadband_hz"],
                "droop": (DC["full_hz"] - DC["deadband_hz"]) / self.settings.nominal_hz,
                "knee_hz": DC["knee_hz"], "knee_fraction": DC["knee_fraction"],
                "share_w": round(rec.share_w, 3), "until_ts": round(now + self.settings.arm_ttl_s, 3)}

    async def rearm(self, reason: str) -> int:
        """Re-size and send every linked agent its signed arm; returns how many were sent."""
        now = self.clock.now()
        self.check(now)
        sizing = self.resize(now)
        sent = 0
        for address in list(self.hub.links):
            body = self.arm_body(address, now)
            if await self.hub.send(address, "arm", body):
                self._armed[address] = body
                sent += 1
        self._last_rearm = now
        self.arms_sent += sent
        logger.info("fleet re-armed %d agents (%s): mode %s, required %.0f W, armed %.0f W of %.0f W available",
                    sent, reason, self.modes.mode(now), sizing.required_w, sizing.armed_w, sizing.available_w)
        return sent

    async def on_connect(self, address: str) -> None:
        now = self.clock.now()
        self.resize(now)
        body = self.arm_body(address, now)
        if await self.hub.send(address, "arm", body):
            self._armed[address] = body

    async def on_interval(self, k: int) -> None:
        """The market loop's per-interval hook."""
        try:
            await self.rearm(f"interval {k}")
        except Exception:  # noqa: BLE001 - the fleet must never stop an interval
            logger.exception("fleet re-arm for interval %d failed", k)

    def set_mode(self, mode: str, by: str = "operator") -> str:
        self.modes.set_base(mode)
        self._event("mode", by, None, f"operator mode set to {mode}")
        self.save_events()
        self._poke()
        return self.modes.mode(self.clock.now())

    async def run(self) -> None:
        """Health checks every ``check_s``; re-arm on a change of mode or exclusions and at
        least every ``rearm_s``; prune old fleet alarms and events hourly. Never dies on an error."""
        s = self.settings
        self._loop = asyncio.get_running_loop()
        failing = False
        while True:
            try:
                now = self.clock.now()
                changed = self.check(now)
                mode = self.modes.mode(now)
                if mode != self._mode_seen:
                    self._event("mode", "fleet", None, f"mode {self._mode_seen} -> {mode}")
                    self._mode_seen = mode
                    changed = True
                if changed or now - self._last_rearm >= s.rearm_s:
                    await self.rearm("mode/health change" if changed else "periodic")
                await self.serve_borrowing()
                if now - self._last_prune >= 3600.0:
                    await asyncio.to_thread(self.prune, now - s.history_s)
                    self._last_prune = now
                if failing:
                    logger.info("fleet service recovered")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - log the transition once, keep going
                if not failing:
                    logger.exception("fleet service step failed")
                failing = True
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, s.check_s / _speed(self.clock)))

    def prune(self, before: float) -> int:
        return self.store.prune_fleet(before)

    # ------------------------------------------------------------------ views (API, demo)

    def _site_view(self, rec: SiteRecord, now: float) -> dict[str, Any]:
        return {"address": rec.address, "ts": rec.ts, "age_s": round(now - rec.received, 3) if rec.received else None,
                "soc": rec.soc, "net_export_w": rec.net_export_w, "frequency_hz": rec.frequency_hz,
                "response_w": rec.response_w, "emergency_opt_in": rec.emergency_opt_in,
                "max_rate_w": rec.max_rate_w, "share_w": rec.share_w, "armed": self._armed.get(rec.address),
                "excluded": {k: v for k, v in rec.excluded.items()},
                "alarms": list(rec.alarms.values()), "devices": rec.devices}

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        with self._lock:
            sites = [self._site_view(r, now) for r in self.sites.values()]
            store_devs = [d for r in self.sites.values() for d in r.devices.values() if d.get("kind") in STORAGE]
            cap = sum(d.get("capacity_wh") or 0.0 for d in store_devs)
            totals = {
                "sites": len(sites),
                "sites_in_service": sum(1 for r in self.sites.values() if "*" not in r.excluded and r.share_w > 0),
                "storage_devices": len(store_devs),
                "capacity_wh": cap,
                "usable_wh": sum(d.get("usable_wh") or 0.0 for d in store_devs),
                "soc": (sum((d.get("soc") or 0.0) * (d.get("capacity_wh") or 0.0) for d in store_devs) / cap)
                if cap else None,
                "max_discharge_w": sum(d.get("max_discharge_w") or 0.0 for d in store_devs),
                "max_charge_w": sum(d.get("max_charge_w") or 0.0 for d in store_devs),
                "net_export_w": sum(r.net_export_w for r in self.sites.values()),
                "response_w": sum(r.response_w or 0.0 for r in self.sites.values()),
            }
            excluded = [{"address": r.address, "device": None if k == "*" else k, "reasons": v}
                        for r in self.sites.values() for k, v in r.excluded.items()]
            return {
                "ts": now, "mode": self.modes.mode(now), "operator_mode": self.modes.base,
                "service": {"product": "GB Dynamic Containment envelope", **DC,
                            "required_w": self.sizing.required_w, "available_w": self.sizing.available_w,
                            "armed_w": self.sizing.armed_w, "shortfall_w": self.sizing.shortfall_w,
                            "arms_sent": self.arms_sent},
                "totals": totals, "sites": sites, "excluded": excluded,
                "events": list(self.events)[-50:],
                "frequency_events": [{k: v for k, v in e.items()} for e in self.frequency_events],
                "borrowing": {"price": self.settings.borrow_price, "pending": len(self.pending_borrows),
                              "grants": [g for g in self.borrow_log if "refused" not in g],
                              "refused_grants": [g for g in self.borrow_log if "refused" in g],  # withdrawn
                              "requests": list(self.borrow_requests),
                              "lender_choice": self.settings.lender_choice,
                              "energy_wh": sum(g["energy_wh"] for g in self.borrow_log if "refused" not in g)},
            }

    def site(self, address: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self.sites.get(address)
            return None if rec is None else self._site_view(rec, self.clock.now())

    def history(self, address: str, limit: int) -> list[dict[str, Any]]:
        return self.store.telemetry_history(address, limit)


def _speed(clock: Any) -> float:
    return float(getattr(clock, "speed", 1.0)) or 1.0
