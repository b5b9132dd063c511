"""Remote configuration: control settings an operator asks the site to change.

A ``config`` envelope (already verified as the coordinator's) names new values; this module
checks them (:class:`RemoteSettings`: the bounds of the site's config file, ``agent/config.py``)
against the site's own safety envelope and the owner's policy (``remote_config:`` in the site's
config file, see :class:`RemoteConfigPolicy`), and applies all of them or none. The answer
(applied, or refused with the reason) goes back as a ``config_result``. Applied settings are
kept in a small JSON file beside the agent's store, so a restarted agent keeps them (checked
again against the policy in force then).

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
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from agent.config import (
    MAX_RESERVE_SOC,
    ControlSection,
    DeviceSectionConfig,
    IdleMode,
    RemoteConfigPolicy,
    TradingConfig,
    check_thresholds,
)
from gridswarm.errors import GridSwarmError
from gridswarm.validation import error_lines, field_error

logger = logging.getLogger(__name__)

_CONTROL = ControlSection.model_fields
_TRADING = TradingConfig.model_fields
TRADING_KEYS = {"trading_enabled": "enabled", "max_order_wh": "max_order_wh"}  # setting -> trading field


class Refused(GridSwarmError, ValueError):
    """A change the site will not apply; the message is the reason sent back."""


class RemoteSettings(BaseModel):
    """The settings an operator may change, each with the bounds of the site's config file.

    Only the settings given are checked and applied (the defaults are never used). Strict: a
    boolean is not a number, a string is not a number, and NaN or infinity is refused. The checks
    that need the site's current values read them from the validation context (see :func:`check`):
    ``control`` (the site's control settings), ``trading`` (its trading settings) and ``policy``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    reserve_soc: float = DeviceSectionConfig.model_fields["reserve_soc"]
    low_threshold: float = _CONTROL["low_threshold"]
    high_threshold: float = _CONTROL["high_threshold"]
    low_use_w: float = _CONTROL["low_use_w"]
    flywheel_spike_w: float = _CONTROL["flywheel_spike_w"]
    idle_mode: IdleMode = _CONTROL["idle_mode"]
    emergency_opt_in: bool = _CONTROL["emergency_opt_in"]
    trading_enabled: bool = _TRADING["enabled"]
    max_order_wh: int = _TRADING["max_order_wh"]

    @model_validator(mode="before")
    @classmethod
    def _unlocked(cls, data: Any, info: ValidationInfo) -> Any:
        policy: RemoteConfigPolicy = info.context["policy"]
        for key in data if isinstance(data, dict) else ():
            if key in policy.locked:
                raise field_error(key, "is the owner's choice and is locked on this site")
        return data

    @model_validator(mode="after")
    def _within_site(self, info: ValidationInfo) -> RemoteSettings:
        control, trading, policy = info.context["control"], info.context["trading"], info.context["policy"]
        given = self.model_fields_set
        reserve = self.reserve_soc if "reserve_soc" in given else control.reserve_soc
        if "reserve_soc" in given and reserve < policy.min_reserve_soc:
            floor = policy.min_reserve_soc
            raise field_error("reserve_soc", f"{reserve:g} is below this site's floor of {floor:g} set by its owner")
        if reserve > MAX_RESERVE_SOC:
            raise field_error("reserve_soc", f"{reserve:g} is above the safety limit of {MAX_RESERVE_SOC:g}")
        check_thresholds(
            self.low_threshold if "low_threshold" in given else control.low_threshold,
            self.high_threshold if "high_threshold" in given else control.high_threshold,
        )
        if "max_order_wh" in given and self.max_order_wh < trading.min_order_wh:
            raise field_error("max_order_wh", f"{self.max_order_wh} is below min_order_wh ({trading.min_order_wh})")
        return self


def check(settings: dict[str, Any], control: Any, trading: Any, policy: RemoteConfigPolicy) -> dict[str, Any]:
    """The settings as they will be applied, or :class:`Refused` naming the settings at fault
    (one line, ``setting: problem``, as the config file's errors)."""
    if not policy.enabled:
        raise Refused("remote configuration is disabled on this site by its owner")
    try:
        valid = RemoteSettings.model_validate(
            settings, context={"control": control, "trading": trading, "policy": policy}
        )
    except ValidationError as exc:
        raise Refused("; ".join(error_lines(exc))) from None
    return {key: getattr(valid, key) for key in settings}


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
        control = {k: v for k, v in out.items() if k not in TRADING_KEYS}
        if control:
            self.site.control = dataclasses.replace(self.site.control, **control)
        for key, field in TRADING_KEYS.items():
            if key in out:
                setattr(self.trading, field, out[key])

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
