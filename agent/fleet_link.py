"""What the agent tells the fleet: per-device telemetry and alarms raised and cleared.

Pure functions over a :class:`agent.site.SiteState`, so the runtime only queues what these
return (signed envelopes through the outbox, see ``docs/fleet.md``)::

    body = telemetry_body(state, site, record_id, fast_path)   # a ``telemetry`` body
    for alarm in tracker.update(state):                          # ``alarm`` bodies, raise/clear
        ...

Per storage device: power, SoC, usable energy above the owner's reserve (and the device's own
floor; as delivered after the device's discharge losses), available charge/discharge power, rating, state of health, temperature and status.
Units: W, Wh, SoC 0..1, degC; device sign (+ = delivering to the bus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.drivers.base import DeviceKind
from gridswarm.messages import draw_between_wh, grant_wh_between

__all__ = ["AlarmTracker", "borrow_need_w", "device_states", "draw_ahead_wh", "telemetry_body", "vb_order"]

TEMPERATURE_RANGE_C = (-20.0, 55.0)  # outside it a storage device is reported (warning)
LOW_SOH = 0.7  # state of health below this is reported (warning)
MAX_ALARMS = 64  # distinct alarms held active at once (bounded)
DRAW_HOURS = 24  # hours of the site's own draw ahead in each telemetry record


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def device_states(state: Any, site: Any) -> dict[str, dict[str, Any]]:
    """Each device's :class:`gridswarm.messages.DeviceState` body from one tick's readings.
    Values a device reported as NaN are left out rather than sent (the coordinator would refuse
    the whole record)."""
    reserve = float(site.control.reserve_soc)
    out: dict[str, dict[str, Any]] = {}
    for dev_id, tel in state.devices.items():
        d = site.drivers.get(dev_id)
        if d is None:
            continue
        power = _num(tel.power_w) or 0.0
        body: dict[str, Any] = {"kind": d.kind.value, "power_w": power, "status": str(tel.status)[:32]}
        if d.kind.is_storage:
            soc, cap = _num(tel.soc), _num(tel.capacity_wh)
            floor = max(reserve, float(tel.detail.get("soc_min", 0.0)))
            if d.kind is DeviceKind.UPS and tel.detail.get("reserve_soc") is not None:
                floor = max(floor, float(tel.detail["reserve_soc"]))
            if soc is not None:
                body["soc"] = min(1.0, max(0.0, soc))
            if cap is not None and cap >= 0:
                body["capacity_wh"] = cap
                if soc is not None:  # what it can deliver at its AC terminals, after conversion losses
                    eff = _num(tel.detail.get("discharge_efficiency"))
                    eff = eff if eff is not None and 0.0 < eff <= 1.0 else 1.0
                    body["usable_wh"] = min(cap, max(0.0, (soc - floor) * cap * eff))
            body["reserve_soc"] = min(1.0, max(0.0, floor))
            body["max_charge_w"] = max(0.0, _num(tel.available_charge_w) or 0.0)
            body["max_discharge_w"] = max(0.0, _num(tel.available_discharge_w) or 0.0)
            body["rated_w"] = max(0.0, max(-d.limits.min_w, d.limits.max_w))
            for name in ("soh", "temperature_c"):
                v = _num(getattr(tel, name))
                if v is not None:
                    body[name] = v
        out[dev_id] = body
    for dev_id, err in state.errors.items():
        if dev_id not in out and dev_id in site.drivers:
            out[dev_id] = {"kind": site.drivers[dev_id].kind.value, "power_w": 0.0, "status": "error"}
    return out


def draw_ahead_wh(site: Any, outlook: Any, now: float, hours: int = DRAW_HOURS) -> list[float] | None:
    """The site's own draw (loads less PV, Wh) in each of the next ``hours`` hours from ``now``,
    for ``Telemetry.draw_ahead_wh``: the forecast's 80 % upper bound of the site's import while
    the outlook covers the hour, else its loads' rating (without a forecast, nothing says the
    loads will draw less). None for a site without loads or forecast."""
    rated = sum(max(0.0, -float(d.limits.min_w)) for d in site.drivers.values() if d.kind is DeviceKind.LOAD)
    upper = getattr(outlook, "profile_upper80", None) if outlook is not None else None
    values = [_num(w) for w in upper] if upper else []
    steps = [max(0.0, w) for w in values if w is not None] if values and None not in values else None
    if steps is None and rated <= 0:
        return None
    start, step = (float(outlook.start_ts), float(outlook.step_s)) if steps else (0.0, 0.0)
    out: list[float] = []
    for i in range(hours):
        a, b = now + 3600.0 * i, now + 3600.0 * (i + 1)
        if steps and (b <= start + step * len(steps) or rated <= 0):
            wh = draw_between_wh(steps, start, a, b, step)  # before its first step: at that step's rate
        else:  # the hour is not (all) forecast: its loads' rating
            wh = rated
        out.append(round(min(wh, 1e10), 1))
    return out


def telemetry_body(state: Any, site: Any, record_id: int, ts: float, *,
                   response_w: float | None = None, outlook: Any = None) -> dict[str, Any]:
    """A ``telemetry`` body for one tick (``outlook``: the planner's latest, for the site's draw ahead)."""
    body: dict[str, Any] = {
        "ts": round(ts, 3),
        "net_export_w": float(state.net_export_w),
        "soc": None if state.soc is None else float(min(1.0, max(0.0, state.soc))),
        "devices": device_states(state, site),
        "record_id": record_id,
        "emergency_opt_in": bool(site.control.emergency_opt_in),
    }
    f = _num(state.frequency_hz)
    if f is not None and 40.0 <= f <= 70.0:
        body["frequency_hz"] = f
    if response_w is not None and _num(response_w) is not None:
        body["response_w"] = float(response_w)
    draw = draw_ahead_wh(site, outlook, ts)
    if draw is not None:
        body["draw_ahead_wh"] = draw
    return body


@dataclass(frozen=True, slots=True)
class _Alarm:
    code: str
    device: str | None
    severity: str
    message: str


def _arbiter_code(text: str) -> str:
    if text.startswith("unserved demand"):
        return "unserved_demand"
    if text.startswith("export"):
        return "export_over_limit"
    return "site_" + "_".join(text.split()[:2]).lower()[:40]


class AlarmTracker:
    """Turns each tick's conditions into alarm bodies: one when an alarm is raised, one when it
    clears. A condition already raised is not sent again while it lasts."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str | None], _Alarm] = {}

    def _conditions(self, state: Any, site: Any) -> dict[tuple[str, str | None], _Alarm]:
        now: dict[tuple[str, str | None], _Alarm] = {}

        def add(code: str, device: str | None, severity: str, message: str) -> None:
            now[(code, device)] = _Alarm(code, device, severity, message[:1024])

        for dev_id, err in state.errors.items():
            add("device_error", dev_id, "critical", f"{dev_id}: {err}")
        for dev_id, tel in state.devices.items():
            d = site.drivers.get(dev_id)
            if d is None:
                continue
            if d.kind.is_storage:
                t = _num(tel.temperature_c)
                lo, hi = TEMPERATURE_RANGE_C
                if t is not None and not lo <= t <= hi:
                    add("temperature", dev_id, "warning", f"{dev_id}: temperature {t:.1f} C outside [{lo:g}, {hi:g}] C")
                soh = _num(tel.soh)
                if soh is not None and soh < LOW_SOH:
                    add("low_soh", dev_id, "warning", f"{dev_id}: state of health {soh:.0%} below {LOW_SOH:.0%}")
            ok_status = ("ok", "idle", "charging", "discharging", "standby", "running")
            if tel.status not in ok_status and d.kind is not DeviceKind.GRID:
                add("device_status", dev_id, "warning", f"{dev_id}: status {tel.status}")
        if state.outage:
            add("grid_outage", None, "critical", "grid outage: site islanded")
        for text in state.decision.alarms:
            add(_arbiter_code(text), None, "warning", text)
        return now

    def update(self, state: Any, site: Any, ts: float) -> list[dict[str, Any]]:
        """Alarm bodies for what was raised or cleared since the last call."""
        now = self._conditions(state, site)
        out: list[dict[str, Any]] = []
        for key, a in self.active.items():
            if key not in now:
                out.append({"code": a.code, "device": a.device, "severity": "info", "active": False,
                            "message": f"cleared: {a.message}"[:1024], "ts": round(ts, 3)})
        for key, a in now.items():
            if key not in self.active and len(self.active) < MAX_ALARMS:
                out.append({"code": a.code, "device": a.device, "severity": a.severity, "active": True,
                            "message": a.message, "ts": round(ts, 3)})
        self.active = {k: now[k] for k in now if k in self.active or any(
            b["active"] and (b["code"], b["device"]) == k for b in out)}
        return out


def borrow_need_w(state: Any, site: Any) -> float:
    """What the site's own storage cannot cover now (W): its load less its PV, less what its
    storage can still deliver above the owner's reserve."""
    need = own = 0.0
    for dev_id, tel in state.devices.items():
        d = site.drivers.get(dev_id)
        if d is None:
            continue
        if d.kind is DeviceKind.LOAD:
            need += max(0.0, _num(tel.available_charge_w) or 0.0)
        elif d.kind is DeviceKind.PV:
            need -= max(0.0, _num(tel.power_w) or 0.0)
        elif d.kind.is_storage and d.writable:
            soc = _num(tel.soc)
            if soc is not None and soc > site.control.reserve_soc + 1e-3:
                own += max(0.0, _num(tel.available_discharge_w) or 0.0)
    return max(0.0, need - own)


def vb_order(grants: list[dict[str, Any]], start: float, end: float) -> tuple[str, int, int] | None:
    """The order (side, Wh, price) virtual-battery grants call for in the market interval
    ``[start, end)``: the lender offers, the borrower bids, the granted energy that falls in it at
    the operator's price (the borrower up to its ``bid_price``). None without grants there, or
    with grants of both roles."""
    wh = 0.0
    roles, prices = set(), set()
    for g in grants:
        if min(end, g["end"]) <= max(start, g["start"]):
            continue
        wh += grant_wh_between(g, start, end)
        roles.add(g["role"])
        prices.add(g["price"] if g["role"] == "lender" else (g.get("bid_price") or g["price"]))
    if not roles or len(roles) > 1 or len(prices) > 1 or round(wh) < 1:
        return None
    return ("offer" if roles == {"lender"} else "bid"), int(round(wh)), prices.pop()
