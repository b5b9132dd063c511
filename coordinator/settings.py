"""Coordinator settings, read from a YAML file (``gridswarm coordinator --config FILE``) with
``GRIDSWARM_*`` environment variables overriding top-level fields. See ``.env.example``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coordinator.services.config import FleetSettings
from gridswarm.clock import ClockConfig
from gridswarm.errors import UserError


class MarketSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval_s: float = Field(default=900.0, gt=0)
    gate_lead_s: float = Field(default=300.0, gt=0)
    meter_wait_s: float = Field(default=300.0, ge=0)
    intervals: int | None = Field(default=None, ge=1)  # stop after this many; None runs forever
    expected_agents: int = Field(default=0, ge=0)  # wait for this many agent links before the first interval
    agent_wait_s: float = Field(default=120.0, ge=0)  # wall seconds to wait for them
    mechanism: Literal["uniform", "pay-as-bid"] = "uniform"
    commit_chunk: int = Field(default=300, ge=1)  # at most this many fills per commit transaction (bounds calldata too)
    commit_gas_fraction: float = Field(default=0.5, gt=0, le=1)  # each commit tx uses at most this share of block gas
    # Network-aware clearing: the on-chain zone number of each participant -> zone name, and a
    # ZONES.csv of links (from_zone,to_zone,fee,limit_wh; see docs/clearing.md). Without a
    # network file every order meets in one market.
    zones: dict[int, str] = Field(default_factory=dict)
    network_file: Path | None = None

    @model_validator(mode="after")
    def _gate_inside_interval(self) -> MarketSettings:
        if self.gate_lead_s >= self.interval_s:
            raise ValueError(
                f"gate_lead_s ({self.gate_lead_s:g}) must be less than interval_s ({self.interval_s:g}): "
                "orders are taken from an interval's opening until gate_lead_s before its delivery"
            )
        return self


class FrequencyResponseSettings(BaseModel):
    """Arm every agent's local droop response when it connects (swarm frequency response, docs/architecture.md §1); off by default."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    droop: float = Field(default=0.04, gt=0.0, le=0.5)
    deadband_hz: float = Field(default=0.02, ge=0.0, le=1.0)
    mode: Literal["standby", "grid_support", "emergency"] = "grid_support"


class DashboardSettings(BaseModel):
    """The dashboard and analytics API (docs/dashboard.md).

    State-changing endpoints (remote configuration, acknowledging alarms) need the operator
    key, sent as ``Authorization: Bearer KEY``; only its SHA-256 is stored here. Without one,
    every change is refused. The tariff prices the saving against the grid (base units per Wh).
    """

    model_config = ConfigDict(extra="forbid")
    operator_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    public_read: bool = True  # read-only analytics without the operator key
    tariff_import_price: int = Field(default=300, ge=0, lt=2**32)
    tariff_export_price: int = Field(default=80, ge=0, lt=2**32)


class RetentionSettings(BaseModel):
    """How long the coordinator keeps what agents send (docs/operations.md): telemetry, forecasts
    and refused messages older than ``history_s`` go, and at most ``rejections_kept`` refusals are
    kept, so a sender flooding bad messages cannot fill the disk. Chain-derived rows (the ledger's
    history) and meter readings are kept."""

    model_config = ConfigDict(extra="forbid")
    history_s: float = Field(default=7 * 86_400.0, gt=0.0)
    rejections_kept: int = Field(default=100_000, ge=100)
    every_s: float = Field(default=3_600.0, gt=0.0)  # how often the rule is applied (clock s)


class SettingsError(UserError, ValueError):
    """The settings file is missing, unreadable or has a bad field (named in the one-line message)."""


class CoordinatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rpc_url: str
    deployment: Path
    operator_key_file: Path
    ed25519_key_file: Path
    db_path: Path = Path("coordinator.sqlite")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    index_poll_s: float = Field(default=0.5, gt=0)
    message_ttl_s: float = Field(default=120.0, gt=0, le=3600)  # lifetime of envelopes we sign (clock s)
    run_market: bool = True
    clock: ClockConfig = ClockConfig()
    market: MarketSettings = MarketSettings()
    frequency_response: FrequencyResponseSettings = FrequencyResponseSettings()
    dashboard: DashboardSettings = DashboardSettings()
    log_json: bool = False  # log records as JSON lines
    fleet: FleetSettings = FleetSettings(enabled=False)  # fleet grid services (docs/fleet.md)
    retention: RetentionSettings = RetentionSettings()

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> CoordinatorSettings:
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = yaml.safe_load(Path(path).read_text()) or {}
            except OSError as exc:
                raise SettingsError(f"cannot read config {path}: {exc.strerror}") from exc
            except yaml.YAMLError as exc:
                where = getattr(exc, "problem_mark", None)
                line = f" at line {where.line + 1}" if where is not None else ""
                raise SettingsError(f"config {path} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from exc
            if not isinstance(data, dict):
                raise SettingsError(f"config {path} must be a mapping of fields")
        for name in ("rpc_url", "deployment", "operator_key_file", "ed25519_key_file", "db_path", "host", "port",
                     "log_json"):
            env = os.environ.get(f"GRIDSWARM_{name.upper()}")
            if env is not None:
                data[name] = env
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            parts = []
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "(root)"
                parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
            raise SettingsError(f"config {path or '(environment)'}: " + "; ".join(parts)) from exc
