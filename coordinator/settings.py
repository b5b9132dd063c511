"""Coordinator settings, read from a YAML file (``gridswarm coordinator --config FILE``) with
``GRIDSWARM_*`` environment variables overriding top-level fields. See ``.env.example``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from coordinator.services.config import FleetSettings
from gridswarm.clock import ClockConfig


class MarketSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval_s: float = Field(default=900.0, gt=0)
    gate_lead_s: float = Field(default=300.0, gt=0)
    meter_wait_s: float = Field(default=300.0, ge=0)
    intervals: int | None = Field(default=None, ge=1)
    expected_agents: int = Field(default=0, ge=0)
    agent_wait_s: float = Field(default=120.0, ge=0)
    mechanism: Literal["uniform", "pay-as-bid"] = "uniform"
    commit_chunk: int = Field(default=300, ge=1)
    commit_gas_fraction: float = Field(default=0.5, gt=0, le=1)  # share of the block gas limit per commit tx
    # Network-aware clearing: the on-chain zone number of each participant -> zone name, and a
    # ZONES.csv of links (from_zone,to_zone,fee,limit_wh; see docs/clearing.md). Without a
    # network file every order meets in one market.
    zones: dict[int, str] = Field(default_factory=dict)
    network_file: Path | None = None


class FrequencyResponseSettings(BaseModel):
    """Arm every agent's local droop response when it connects (K4); off by default."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    droop: float = Field(default=0.04, gt=0.0, le=0.5)
    deadband_hz: float = Field(default=0.02, ge=0.0, le=1.0)
    mode: Literal["standby", "grid_support", "emergency"] = "grid_support"


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
    fleet: FleetSettings = FleetSettings(enabled=False)  # fleet grid services (docs/fleet.md)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> CoordinatorSettings:
        data: dict[str, Any] = {}
        if path is not None:
            data = yaml.safe_load(Path(path).read_text()) or {}
        for name in ("rpc_url", "deployment", "operator_key_file", "ed25519_key_file", "db_path", "host", "port"):
            env = os.environ.get(f"GRIDSWARM_{name.upper()}")
            if env is not None:
                data[name] = env
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)
