"""The agent's trading policy: what to bid or offer for a delivery interval (DESIGN §3 step 1).

The site's net export (W, + = export) is learnt from its own meter: every ``step_s`` the mean
of the last step is fed to a forecaster from :mod:`agent.forecast` (``auto`` by default: it
scores every candidate on the site's own recent history and logs which one it uses). An order
is sized from that forecast:

- a **seller** offers the 80 % lower bound of its forecast surplus over the window plus what
  its storage holds above the owner's reserve (``Site.available_export_wh`` caps it: an offer
  never sells below the reserve or beyond the connection);
- a **buyer** bids for its forecast deficit (the point forecast).

Until the forecaster has ``min_history`` steps, the site's device models stand in (logged once).
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
        site: Any,
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
        self.forecaster = make_forecaster(model, step_s=step_s, clock=clock, nonnegative=False, background=True)
        self._fitted = False
        self._next_step: float | None = None
        self._last_basis: str | None = None

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

    @property
    def model(self) -> str:
        return str(self.forecaster.model)

    # ------------------------------------------------------------------ deciding

    def decide(self, interval: int, address: str, start: float, end: float) -> Decision:
        t = self.cfg
        rng = random.Random(f"{self.seed}/{address}/{interval}")
        jitter = rng.randint(-t.price_jitter, t.price_jitter) if t.price_jitter else 0
        modelled_net = float(self.site.expected_net_wh(start, end))
        storage_and_net = float(self.site.available_export_wh(start, end))
        fc = self.forecast_net_wh(start, end)
        if fc is None:
            basis, point, lower = "device models", modelled_net, modelled_net
        else:
            basis, (point, lower) = f"forecast ({self.model})", fc
        if basis != self._last_basis:
            logger.info("interval %d: orders sized from %s", interval, basis)
            self._last_basis = basis
        # storage above the reserve (what the site model adds on top of its own net estimate)
        storage = max(0.0, storage_and_net - max(0.0, modelled_net))
        can_sell = min(storage_and_net if fc is None else max(0.0, lower) + storage, storage_and_net)
        if t.role != "buyer" and can_sell >= t.min_order_wh:
            return Decision("offer", int(min(can_sell, t.max_order_wh)), max(1, t.offer_price + jitter), basis)
        if t.role != "seller" and point <= -t.min_order_wh:
            return Decision("bid", int(min(-point, t.max_order_wh)), max(1, t.bid_price + jitter), basis)
        return Decision("offer", 0, 0, basis)
