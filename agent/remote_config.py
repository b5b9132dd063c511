"""Remote configuration: control settings an operator asks the site to change.

A ``config`` envelope (already verified as the coordinator's) names new values; this module
checks them against the site's own safety envelope, the owner's policy
(``remote_config:`` in the site's config file, see :class:`RemoteConfigPolicy`), and applies all
of them or none. The answer (applied, or refused with the reason) goes back as a
``config_result``. Applied settings are kept in a small JSON file beside the agent's store, so a
restarted agent keeps them (checked again against the policy in force then).

Settings (units as everywhere: SoC 0..1, W, Wh):

============================  =====================================================
``reserve_soc``               the owner's backup reserve; never below ``min_reserve_soc``
``low_threshold``             request energy below this SoC (must stay < high)
``high_threshold``            contribute above this SoC
``low_use_w``                 "local use is low" below this load
``flywheel_spike_w``          load above expected by more than this is a spike
``idle_mode``                 ``self_consumption`` or ``idle``
``emergency_opt_in``          may grid emergencies draw below the reserve (owner-only by default)
``trading_enabled``           take part in the market
``max_order_wh``              largest order the trader posts
============================  =====================================================
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

MAX_RESERVE_SOC = 0.95  # a reserve above this would leave the battery nothing to do
MAX_POWER_W = 1e7
CONTROL_KEYS = ("reserve_soc", "low_threshold", "high_threshold", "low_use_w", "flywheel_spike_w", "idle_mode",
                "emergency_opt_in")
TRADING_KEYS = ("trading_enabled", "max_order_wh")
KNOWN_KEYS = frozenset((*CONTROL_KEYS, *TRADING_KEYS))


class RemoteConfigPolicy(BaseModel):
    """What the site's owner lets an operator change from afar."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    min_reserve_soc: float = Field(default=0.1, ge=0.0, le=MAX_RESERVE_SOC)
    locked: list[str] = Field(default_factory=lambda: ["emergency_opt_in"])  # the owner's own choices


class Refused(ValueError):
    """A change the site will not apply; the message is the reason sent back."""


def _fraction(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise Refused(f"{key} must be a number within [0, 1], got {v!r}")
    return float(v)


def _power(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0.0 <= v <= MAX_POWER_W:
        raise Refused(f"{key} must be a number of W within [0, {MAX_POWER_W:g}], got {v!r}")
    return float(v)


def _flag(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise Refused(f"{key} must be true or false, got {v!r}")
    return v


def check(settings: dict[str, Any], control: Any, trading: Any, policy: RemoteConfigPolicy) -> dict[str, Any]:
    """The settings as they will be applied, or :class:`Refused` naming the first problem."""
    if not policy.enabled:
        raise Refused("remote configuration is disabled on this site by its owner")
    out: dict[str, Any] = {}
    for key, v in settings.items():
        if key not in KNOWN_KEYS:
            raise Refused(f"unknown setting {key!r}")
        if key in policy.locked:
            raise Refused(f"{key} is the owner's choice and is locked on this site")
        if key in ("reserve_soc", "low_threshold", "high_threshold"):
            out[key] = _fraction(key, v)
        elif key in ("low_use_w", "flywheel_spike_w"):
            out[key] = _power(key, v)
        elif key in ("emergency_opt_in", "trading_enabled"):
            out[key] = _flag(key, v)
        elif key == "idle_mode":
            if v not in ("self_consumption", "idle"):
                raise Refused(f"idle_mode must be self_consumption or idle, got {v!r}")
            out[key] = v
        elif key == "max_order_wh":
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < 2**32:
                raise Refused(f"max_order_wh must be a whole number of Wh within [1, 2^32), got {v!r}")
            out[key] = v
    reserve = out.get("reserve_soc", control.reserve_soc)
    if "reserve_soc" in out and reserve < policy.min_reserve_soc:
        floor = policy.min_reserve_soc
        raise Refused(f"reserve_soc {reserve:g} is below this site's floor of {floor:g} set by its owner")
    if reserve > MAX_RESERVE_SOC:
        raise Refused(f"reserve_soc {reserve:g} is above the safety limit of {MAX_RESERVE_SOC:g}")
    low = out.get("low_threshold", control.low_threshold)
    high = out.get("high_threshold", control.high_threshold)
    if low >= high:
        raise Refused(f"low_threshold {low:g} must stay below high_threshold {high:g}")
    if "max_order_wh" in out and out["max_order_wh"] < trading.min_order_wh:
        raise Refused(f"max_order_wh {out['max_order_wh']} is below min_order_wh {trading.min_order_wh}")
    return out


class RemoteConfig:
    """Checks and applies remote settings to one site and its trading settings."""

    def __init__(self, site: Any, trading: Any, policy: RemoteConfigPolicy, path: Path | None) -> None:
        self.site = site
        self.trading = trading
        self.policy = policy
        self.path = path

    def apply(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Apply all of ``settings`` or none; raises :class:`Refused` with the reason."""
        out = check(settings, self.site.control, self.trading, self.policy)
        self._set(out)
        self._save(out)
        return out

    def _set(self, out: dict[str, Any]) -> None:
        control = {k: v for k, v in out.items() if k in CONTROL_KEYS}
        if control:
            self.site.control = dataclasses.replace(self.site.control, **control)
        if "trading_enabled" in out:
            self.trading.enabled = out["trading_enabled"]
        if "max_order_wh" in out:
            self.trading.max_order_wh = out["max_order_wh"]

    def handle(self, config_id: int, settings: dict[str, Any]) -> dict[str, Any]:
        """The ``config_result`` body for one ``config`` message."""
        try:
            applied = self.apply(settings)
        except Refused as exc:
            logger.warning("remote configuration %d refused: %s", config_id, exc)
            return {"config_id": config_id, "ok": False, "reason": str(exc), "applied": {}}
        logger.info("remote configuration %d applied: %s", config_id, applied)
        return {"config_id": config_id, "ok": True, "reason": "", "applied": applied}

    def _save(self, applied: dict[str, Any]) -> None:
        if self.path is None:
            return
        kept = self._load()
        kept.update(applied)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(kept, sort_keys=True))
        tmp.replace(self.path)

    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            logger.warning("remote settings in %s unreadable (%s); ignoring them", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def restore(self) -> None:
        """Re-apply settings kept from before a restart, if the owner's policy still allows them."""
        kept = self._load()
        if not kept:
            return
        try:
            applied = check(kept, self.site.control, self.trading, self.policy)
        except Refused as exc:
            logger.warning("remote settings from before the restart not restored: %s", exc)
            return
        self._set(applied)
        logger.info("remote settings restored: %s", applied)
