"""The site's config file (``gridswarm agent --config site.yaml``), validated.

A wrong field gets an error that names it, e.g. ``trading.offer_price: must be > 0, got 0``.
The ``devices`` section is a list of the models in :mod:`agent.devices.spec` (their reference,
generated from the models, is ``docs/devices.md``). Paths are relative to the config file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.devices.spec import DEVICE_MODELS, Devices
from gridswarm.clock import ClockConfig
from gridswarm.errors import UserError
from gridswarm.validation import error_lines, field_error

MAX_POWER_W = 1e7  # the largest power threshold a site takes (W)
MAX_RESERVE_SOC = 0.95  # a reserve above this would leave the battery nothing to do
IdleMode = Literal["self_consumption", "idle"]  # what the battery does with no market commitment


class ConfigError(UserError, ValueError):
    """The config file is missing, unreadable or has a bad field (named in the message)."""


class TradingConfig(BaseModel):
    """The simple trading policy: sell what the site can spare above the owner's reserve, buy
    what it lacks, at limit prices in token base units per Wh (6 decimals: 250 = 0.25 token/kWh)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    role: Literal["auto", "seller", "buyer"] = "auto"
    offer_price: int = Field(default=120, gt=0, lt=2**24)
    bid_price: int = Field(default=250, gt=0, lt=2**24)
    price_jitter: int = Field(default=30, ge=0, lt=2**23)
    min_order_wh: int = Field(default=10, ge=1)
    max_order_wh: int = Field(default=1_000_000, ge=1, lt=2**32)


class ControlSection(BaseModel):
    """Local control (docs/architecture.md §4): the owner's choices and the device loop's thresholds."""

    model_config = ConfigDict(extra="forbid")
    emergency_opt_in: bool = False  # may grid emergencies draw below the owner's reserve?
    idle_mode: IdleMode = "self_consumption"
    low_threshold: float = Field(default=0.3, ge=0.0, le=1.0)  # request energy below this SoC
    high_threshold: float = Field(default=0.8, ge=0.0, le=1.0)  # contribute above this SoC
    low_use_w: float = Field(default=500.0, ge=0.0, le=MAX_POWER_W)  # "local use is low" below this load
    flywheel_spike_w: float = Field(default=1_000.0, ge=0.0, le=MAX_POWER_W)  # load above expected by more is a spike

    @model_validator(mode="after")
    def _thresholds(self) -> ControlSection:
        check_thresholds(self.low_threshold, self.high_threshold)
        return self


def check_thresholds(low: float, high: float) -> None:
    """The device loop requests energy below ``low`` and contributes above ``high``, so ``low``
    must stay below ``high`` (the site's config file and remote configuration, agent/remote_config.py)."""
    if low >= high:
        raise field_error("low_threshold", f"must be < high_threshold ({high:g}), got {low:g}")


class RemoteConfigPolicy(BaseModel):
    """What the site's owner lets an operator change from afar (agent/remote_config.py)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    min_reserve_soc: float = Field(default=0.1, ge=0.0, le=MAX_RESERVE_SOC)
    locked: list[str] = Field(default_factory=lambda: ["emergency_opt_in"])  # the owner's own choices


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of fields")
    return data


def _validation_error(path: Path, exc: ValidationError) -> ConfigError:
    return ConfigError(f"config {path}: " + "; ".join(error_lines(exc, drop=DEVICE_MODELS)))


class DeviceSectionConfig(BaseModel):
    """What ``gridswarm agent --check`` needs from a site config: the devices and the fields that
    shape how they are built. Everything else (keys, coordinator and chain URLs, deployment) is
    ignored, so a device section can be checked before the rest of the site exists."""

    model_config = ConfigDict(extra="ignore")
    seed: int = 0
    reserve_soc: float = Field(default=0.2, ge=0.0, le=1.0)
    clock: ClockConfig = ClockConfig()
    control: ControlSection = ControlSection()
    devices: Devices

    @classmethod
    def load(cls, path: Path) -> DeviceSectionConfig:
        path = Path(path)
        data = _read_mapping(path)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(path, exc) from exc


class FrequencySection(BaseModel):
    """The agent's fast frequency path (``docs/fleet.md``): how often the measured grid
    frequency is read from the drivers (clock seconds) and the smallest change of response (W)
    that rewrites the storage setpoints between control ticks."""

    model_config = ConfigDict(extra="forbid")
    fast_path: bool = True
    poll_s: float = Field(default=0.05, gt=0, le=60.0)
    min_change_w: float = Field(default=10.0, ge=0.0)
    # event mode (agent/control/fast_path.py): poll this often while the frequency moves fast
    # or sits far off nominal; None polls at poll_s throughout
    event_poll_s: float | None = Field(default=0.01, gt=0, le=60.0)
    record_path: Path | None = None  # JSON-lines record of the fast path's writes (None: none)


class BorrowingSection(BaseModel):
    """Virtual battery (``docs/fleet.md``): when the site's own storage cannot cover its need,
    ask the fleet for the shortfall over the next market interval (off by default)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    priority: Literal["critical", "essential", "flexible"] = "essential"
    min_w: float = Field(default=50.0, gt=0.0)  # smaller shortfalls are not worth a request
    max_w: float = Field(default=1e7, gt=0.0, le=1e7)  # never ask for more than this


class PlannerSection(BaseModel):
    """The site planner (agent/control/planner.py): the flywheel readiness kept between peaks
    (recharged only below the peak threshold) and the billing window of the peak the flywheels
    shave (a day; a monthly demand charge: 2592000)."""

    model_config = ConfigDict(extra="forbid")
    flywheel_readiness: float = Field(default=0.9, ge=0.0, le=1.0)
    peak_window_s: float = Field(default=86400.0, ge=300.0, le=366 * 86400.0)


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str = Field(min_length=1, max_length=64)
    eth_key_file: Path
    ed25519_key_file: Path
    coordinator_url: str = Field(pattern=r"^https?://")
    rpc_url: str = Field(pattern=r"^https?://")
    deployment: Path
    store_path: Path = Path("agent.sqlite")
    seed: int = DeviceSectionConfig.model_fields["seed"]
    tick_s: float = Field(default=60.0, gt=0)
    telemetry_every_s: float = Field(default=300.0, gt=0)
    reserve_soc: float = DeviceSectionConfig.model_fields["reserve_soc"]
    reconnect_s: float = Field(default=1.0, gt=0)
    chain_check_s: float = Field(default=5.0, gt=0)  # wall seconds between chain reachability probes
    message_ttl_s: float = Field(default=120.0, gt=0, le=3600)  # lifetime of envelopes we sign (clock s)
    clock: ClockConfig = ClockConfig()
    trading: TradingConfig = TradingConfig()
    control: ControlSection = ControlSection()
    remote_config: RemoteConfigPolicy = RemoteConfigPolicy()
    frequency: FrequencySection = FrequencySection()
    borrowing: BorrowingSection = BorrowingSection()
    planner: PlannerSection = PlannerSection()
    devices: Devices = Field(default_factory=list)  # empty only when the site is given to the runtime

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        path = Path(path)
        data = _read_mapping(path)
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(path, exc) from exc
        base = path.parent
        for name in ("eth_key_file", "ed25519_key_file", "deployment", "store_path"):
            value = getattr(cfg, name)
            if not value.is_absolute():
                setattr(cfg, name, base / value)
        return cfg
