"""docs/devices.md is generated from the device models' JSON schema; it must match them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_device_docs", ROOT / "scripts" / "gen_device_docs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_device_reference_is_current() -> None:
    gen = _generator()
    assert (ROOT / "docs" / "devices.md").read_text() == gen.render(), (
        "docs/devices.md is stale: run python scripts/gen_device_docs.py")


def test_reference_follows_the_models(monkeypatch) -> None:
    """A changed default or range shows up in the rendered reference (so the check above can fail)."""
    from typing import Literal

    from pydantic import Field

    from agent.devices.spec import BatteryConfig

    gen = _generator()
    assert "| `round_trip_efficiency` | number |  | `0.92` | > 0, < 1 |" in gen.render()

    class Changed(BatteryConfig):
        type: Literal["battery"]
        round_trip_efficiency: float = Field(0.9, gt=0.5, lt=1, description="changed")

    monkeypatch.setattr(gen, "DEVICE_MODELS", {"battery": Changed})
    assert "| `round_trip_efficiency` | number |  | `0.9` | > 0.5, < 1 | changed |" in gen.render()
