"""The agent's trading policy: what to bid or offer for a delivery interval (docs/architecture.md §3, step 1).

The site's net export (W, + = export) is learnt from its own meter: every ``step_s`` the mean
of the last step is fed to a forecaster from :mod:`agent.forecast` (``auto`` by default: it
scores every candidate on the site's own recent history and logs which one it uses). An order
is sized from that forecast:

- a **seller** offers the 80 % lower bound of its forecast surplus over the window plus what
  its storage holds above the owner's reserve (``Site.available_export_wh`` caps it: an offer
  never sells below the reserve or beyond the connection);
- a **buyer** bids for its forecast deficit (the point forecast).

Until the forecaster has ``min_history`` steps, the site planner's demand/PV forecast stands
in when it covers the window (agent/control/planner.py), else the site's device models (logged
once).

The **device loop** (agent/control/device_loop.py) shapes the order: a site whose store is
below its low threshold (``request``) never offers and bids for its forecast deficit plus the
energy its store wants (within what the store can take in the window); a site above its high
threshold with low local use (``contribute``) offers at least that energy — never more than
``Site.available_export_wh``, which keeps the owner's reserve.
Limit prices come from the config, with a deterministic per-interval jitter from the seed.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.config import TradingConfig
from agent.site_port import SitePort
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    side: str
    qty_wh: int
    price: int
    basis: str  # which forecast the quantity came from


class Trader:
    def __init__(
        self,
        cfg: TradingConfig,
        site: SitePort,
        clock: Clock,
        seed: str,
        step_s: float = 300.0,
        model: str = "auto",
        min_history: int = 4,
    ) -> None:
        from agent.forecast import make_forecaster

        self.cfg = cfg
        self.site = site
        self.clock = clock
        self.seed = seed
        self.step_s = step_s
        self.min_history = min_history
        # the history-only candidates: numpy is enough (dshw would load scipy, lstm a model file,
        # together ~90 MB more in the agent process) and ``auto`` picks per horizon among them
        from agent.forecast.online import CANDIDATES

        extra: dict[str, Any] = {"candidates": list(CANDIDATES)} if model == "auto" else {}
        self.forecaster = make_forecaster(model, step_s=step_s, clock=clock, nonnegative=False, background=True,
                                          **extra)
        self._fitted = False
        self._next_step: float | None = None
        self._last_basis: str | None = None
        self.planner: Any = None  # agent.control.planner.SitePlanner, when the runtime has one

    # ------------------------------------------------------------------ learning

    def observe(self, now: float) -> None:
        """Feed every completed step of metered net export to the forecaster (cheap; call each tick)."""
        if self._next_step is None:
            self._next_step = math.ceil(now / self.step_s) * self.step_s + self.step_s
            return
        while now >= self._next_step:
            start = self._next_step - self.step_s
            exported, imported = self.site.meter_window(start, self._next_step)
            net_w = (exported - imported) * 3600.0 / self.step_s
            if not self._fitted:
                self.forecaster.fit(np.array([net_w]), start)
                self._fitted = True
            else:
                self.forecaster.update(np.array([net_w]), ts=start)
            self._next_step += self.step_s

    def forecast_net_wh(self, start: float, end: float) -> tuple[float, float] | None:
        """(point, 80 % lower bound) of net export in Wh over ``[start, end)``, or None while
        the history is too short."""
        if not self._fitted or self.forecaster.n_obs < self.min_history:
            return None
        last = float(self.forecaster.last_ts)
        first_step = last + self.step_s  # the forecast starts at the step after the last seen
        horizon = max(1, math.ceil((end - first_step) / self.step_s))
        fc = self.forecaster.predict(horizon)
        point = lower = 0.0
        for i in range(horizon):
            s = first_step + i * self.step_s
            overlap = max(0.0, min(end, s + self.step_s) - max(start, s))
            point += float(fc.point[i]) * overlap / 3600.0
            lower += float(fc.lower80[i]) * overlap / 3600.0
        return point, lower

    def _site_forecast_wh(self, start: float, end: float) -> tuple[float, float] | None:
        """(point, 80 % lower) net export in Wh from the planner's demand/PV forecast, when the
        window lies within its horizon."""
        outlook = getattr(self.planner, "forecaster", None)
        outlook = getattr(outlook, "outlook", None)
        if outlook is None:
            return None
        h = max(outlook.demand)
        if end > outlook.start_ts + h + self.step_s:
            return None
        d = outlook.demand[h]
        pv = outlook.pv[h] if outlook.pv else None
        hours = (end - start) / 3600.0
        point = ((pv.point_w if pv else 0.0) - d.point_w) * hours
        lower = ((pv.lower80_w if pv else 0.0) - d.upper80_w) * hours
        return point, lower

    def _shaped(self, interval: int, d: Decision, intent_wh: float) -> Decision:
        logger.info("interval %d: %s %d Wh shaped by the device loop (store wants/offers %.0f Wh; %s)",
                    interval, d.side, d.qty_wh, intent_wh, d.basis)
        return d

    @property
    def model(self) -> str:
        return str(self.forecaster.model)

    # ------------------------------------------------------------------ deciding

    def decide(self, interval: int, address: str, start: float, end: float) -> Decision:
        d = self._decide(interval, address, start, end)
        if self.planner is not None:
            state = self.site.last_state
            intent = state.intent if state is not None else None
            self.planner.note_order({"interval": interval, "side": d.side, "qty_wh": d.qty_wh, "basis": d.basis,
                                     "intent": intent.kind if intent else None,
                                     "intent_wh": round(intent.energy_wh, 1) if intent else None,
                                     "shaped": "device loop" in d.basis})
        return d

    def _decide(self, interval: int, address: str, start: float, end: float) -> Decision:
        t = self.cfg
        rng = random.Random(f"{self.seed}/{address}/{interval}")
        jitter = rng.randint(-t.price_jitter, t.price_jitter) if t.price_jitter else 0
        modelled_net = float(self.site.expected_net_wh(start, end))
        storage_and_net = float(self.site.available_export_wh(start, end))
        fc = self.forecast_net_wh(start, end)
        site_fc = self._site_forecast_wh(start, end) if fc is None else None
        if fc is not None:
            basis, (point, lower) = f"forecast ({self.model})", fc
        elif site_fc is not None:
            basis, (point, lower) = "site forecast (demand/PV)", site_fc
            fc = site_fc
        else:
            basis, point, lower = "device models", modelled_net, modelled_net
        if basis != self._last_basis:
            logger.info("interval %d: orders sized from %s", interval, basis)
            self._last_basis = basis
        # storage above the reserve (what the site model adds on top of its own net estimate)
        storage = max(0.0, storage_and_net - max(0.0, modelled_net))
        can_sell = min(storage_and_net if fc is None else max(0.0, lower) + storage, storage_and_net)
        state = self.site.last_state
        intent = state.intent if state is not None else None
        if intent is not None and intent.kind == "request":
            # below the low threshold: never offer; buy the deficit and what the store wants
            lo, _hi = self.site.storage_range()
            want = min(intent.energy_wh, -lo * (end - start) / 3600.0)
            qty = int(min(max(0.0, -point) + want, t.max_order_wh))
            if t.role != "seller" and qty >= t.min_order_wh:
                return self._shaped(interval, Decision("bid", qty, max(1, t.bid_price + jitter),
                                                       f"{basis}; device loop: {intent.reason}"), want)
            return self._shaped(interval, Decision("offer", 0, 0, f"{basis}; device loop: {intent.reason}"), 0.0)
        if intent is not None and intent.kind == "contribute" and t.role != "buyer":
            extra = min(intent.energy_wh, storage_and_net)
            if extra > can_sell and extra >= t.min_order_wh:
                return self._shaped(interval, Decision("offer", int(min(extra, t.max_order_wh)),
                                                       max(1, t.offer_price + jitter),
                                                       f"{basis}; device loop: {intent.reason}"), extra)
        if t.role != "buyer" and can_sell >= t.min_order_wh:
            return Decision("offer", int(min(can_sell, t.max_order_wh)), max(1, t.offer_price + jitter), basis)
        if t.role != "seller" and point <= -t.min_order_wh:
            return Decision("bid", int(min(-point, t.max_order_wh)), max(1, t.bid_price + jitter), basis)
        return Decision("offer", 0, 0, basis)
