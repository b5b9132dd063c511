"""Fleet settings (the ``fleet:`` section of the coordinator's config, ``docs/fleet.md``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FleetSettings(BaseModel):
    """How the coordinator runs the fleet's grid services.

    ``required_w``: the frequency response the fleet must hold (W at full delivery); None asks
    for ``required_fraction`` of what the healthy fleet has. ``sustain_s``: a unit's response
    must last this long from its energy above the owner's reserve. A unit is excluded when its
    telemetry is older than ``stale_s``, it has an active warning/critical alarm, its state of
    health is below ``min_soh`` or its temperature is outside ``temperature_c``. The mode goes
    to ``emergency`` when a site measures ``|f - nominal| >= emergency_hz`` and back to the
    operator's mode ``emergency_hold_s`` after the last such reading.
    """

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    mode: Literal["standby", "support", "emergency"] = "support"
    required_w: float | None = Field(default=None, ge=0.0)
    required_fraction: float = Field(default=0.8, gt=0.0, le=1.0)
    sustain_s: float = Field(default=900.0, gt=0.0)
    nominal_hz: float = Field(default=50.0, ge=45.0, le=65.0)
    stale_s: float = Field(default=120.0, gt=0.0)
    min_soh: float = Field(default=0.7, ge=0.0, le=1.0)
    temperature_c: tuple[float, float] = (-20.0, 55.0)
    emergency_hz: float = Field(default=0.2, gt=0.0, le=5.0)
    emergency_hold_s: float = Field(default=300.0, ge=0.0)
    arm_ttl_s: float = Field(default=1800.0, gt=0.0)  # arms expire this long after they are sent
    rearm_s: float = Field(default=300.0, gt=0.0)  # re-arm at least this often (clock s)
    check_s: float = Field(default=10.0, gt=0.0)  # health check period (clock s)
    history_s: float = Field(default=7 * 86_400.0, gt=0.0)  # fleet alarms and events kept in the store
    max_events: int = Field(default=1_000, ge=10)  # operator-visible events kept in memory
    borrowing: bool = True  # serve virtual-battery requests
    borrow_price: int = Field(default=150, gt=0, lt=2**24)  # token base units per Wh for borrowed energy
    borrow_bid_margin: int = Field(default=0, ge=0, lt=2**23)  # borrowers bid up to price + this (grid fees)
    max_pending_borrows: int = Field(default=1_000, ge=1)
    # who lends first: the highest SoC above the reserve (levels the fleet's SoC), or a fixed
    # order (the lenders' addresses; no levelling, kept to measure what levelling buys)
    lender_choice: Literal["highest_soc", "fixed_order"] = "highest_soc"
    # the share of the fleet's lendable power each class may not take, kept for the classes above
    # it (grants are firm once made, so a shortage is met by holding back, docs/fleet.md)
    borrow_held_back: dict[Literal["critical", "essential", "flexible"], float] = Field(
        default_factory=lambda: {"critical": 0.0, "essential": 0.1, "flexible": 0.2})

    @model_validator(mode="after")
    def _held_back_by_class(self) -> FleetSettings:
        held = [self.borrow_held_back.get(c, 0.0) for c in ("critical", "essential", "flexible")]
        if any(not 0.0 <= h < 1.0 for h in held) or held != sorted(held):
            raise ValueError(
                "borrow_held_back: each share must be in [0, 1) and a lower class may not be held back less "
                f"than a higher one (critical <= essential <= flexible), got {self.borrow_held_back}"
            )
        return self
