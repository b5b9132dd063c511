"""Remote configuration on the agent: the site's own safety envelope decides, all or nothing,
and a forged or malformed ``config`` envelope changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from nacl.signing import SigningKey

from agent.config import AgentConfig, ControlSection, TradingConfig
from agent.control.arbiter import ControlConfig
from agent.remote_config import Refused, RemoteConfig, RemoteConfigPolicy, RemoteSettings, check
from agent.runtime import AgentRuntime
from gridswarm.clock import ManualClock
from gridswarm.envelope import Signer
from tests.agent.test_runtime import agent_config, chain_market  # noqa: F401 - module fixture
from tests.conftest import Market

CONTROL = ControlConfig(reserve_soc=0.3, low_threshold=0.3, high_threshold=0.8)
TRADING = SimpleNamespace(enabled=True, max_order_wh=1_000_000, min_order_wh=10)
POLICY = RemoteConfigPolicy(min_reserve_soc=0.2)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"reserve_soc": 0.1}, "below this site's floor"),
        ({"reserve_soc": 0.99}, "above the safety limit"),
        ({"reserve_soc": "0.4"}, "must be a number"),
        ({"reserve_soc": True}, "must be a number"),
        ({"reserve_soc": float("nan")}, "must be a number"),
        ({"low_threshold": 0.85}, "must be < high_threshold"),
        ({"low_threshold": 0.5, "high_threshold": 0.4}, "must be < high_threshold"),
        ({"low_use_w": -5}, "low_use_w: must be >= 0"),
        ({"low_use_w": 1e12}, "low_use_w: must be <= 1e"),
        ({"emergency_opt_in": True}, "locked"),
        ({"trading_enabled": 1}, "true or false"),
        ({"idle_mode": "turbo"}, "idle_mode"),
        ({"max_order_wh": 5}, "below min_order_wh"),
        ({"max_order_wh": 2.5}, "must be an integer"),
        ({"voltage": 230}, "voltage: unknown field"),
    ],
)
def test_out_of_envelope_settings_are_refused(settings: dict[str, object], reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        check(settings, CONTROL, TRADING, POLICY)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # a boolean is not a number, a string is not a number, NaN and infinity are not numbers
        ({"max_order_wh": True}, "max_order_wh: must be an integer, got True"),
        ({"low_use_w": False}, "low_use_w: must be a number, got False"),
        ({"max_order_wh": "500"}, "max_order_wh: must be an integer, got '500'"),
        ({"flywheel_spike_w": "100"}, "flywheel_spike_w: must be a number, got '100'"),
        ({"high_threshold": float("nan")}, "high_threshold: must be a number, got nan"),
        ({"low_use_w": float("inf")}, "low_use_w: must be a number, got inf"),
        ({"trading_enabled": "true"}, "trading_enabled: must be true or false, got 'true'"),
        # out of range: the bounds of the site's config file
        ({"reserve_soc": -0.1}, "reserve_soc: must be >= 0, got -0.1"),
        ({"high_threshold": 1.2}, "high_threshold: must be <= 1, got 1.2"),
        ({"max_order_wh": 0}, "max_order_wh: must be >= 1, got 0"),
        ({"max_order_wh": 2**32}, f"max_order_wh: must be < {2**32:g}, got {2**32}"),
        ({"idle_mode": "turbo"}, "idle_mode: must be one of 'self_consumption' or 'idle', got 'turbo'"),
        # unknown and locked settings, the owner's floor and the safety limit
        ({"voltage": 230}, "voltage: unknown field"),
        ({"emergency_opt_in": False}, "emergency_opt_in: is the owner's choice and is locked on this site"),
        ({"reserve_soc": 0.1}, "reserve_soc: 0.1 is below this site's floor of 0.2 set by its owner"),
        ({"reserve_soc": 0.99}, "reserve_soc: 0.99 is above the safety limit of 0.95"),
        # low < high across the site's current values and the new ones (current: 0.3 and 0.8)
        ({"high_threshold": 0.3}, "low_threshold: must be < high_threshold (0.3), got 0.3"),
        ({"low_threshold": 0.8}, "low_threshold: must be < high_threshold (0.8), got 0.8"),
        ({"max_order_wh": 9}, "max_order_wh: 9 is below min_order_wh (10)"),
        # every problem, on one line
        (
            {"reserve_soc": "x", "low_use_w": -1},
            "reserve_soc: must be a number, got 'x'; low_use_w: must be >= 0, got -1",
        ),
    ],
)
def test_each_refusal_is_one_line_naming_the_setting(settings: dict[str, object], message: str) -> None:
    with pytest.raises(Refused) as refused:
        check(settings, CONTROL, TRADING, POLICY)
    assert str(refused.value) == message


def test_remote_bounds_are_the_config_files() -> None:
    """One set of bounds: a remote setting is checked as the site's config file checks it."""
    for name in ("low_threshold", "high_threshold", "low_use_w", "flywheel_spike_w", "idle_mode", "emergency_opt_in"):
        assert RemoteSettings.model_fields[name].metadata == ControlSection.model_fields[name].metadata
    assert RemoteSettings.model_fields["reserve_soc"].metadata == AgentConfig.model_fields["reserve_soc"].metadata
    assert RemoteSettings.model_fields["max_order_wh"].metadata == TradingConfig.model_fields["max_order_wh"].metadata
    assert RemoteSettings.model_fields["idle_mode"].annotation == ControlSection.model_fields["idle_mode"].annotation
    applied = check({"low_use_w": 200, "max_order_wh": 500}, CONTROL, TRADING, POLICY)
    assert applied == {"low_use_w": 200.0, "max_order_wh": 500} and isinstance(applied["low_use_w"], float)


def test_good_settings_pass_and_owner_choices_can_be_unlocked() -> None:
    ok = {
        "reserve_soc": 0.35,
        "high_threshold": 0.85,
        "trading_enabled": False,
        "max_order_wh": 500,
        "idle_mode": "idle",
    }
    assert check(ok, CONTROL, TRADING, POLICY) == ok
    open_policy = RemoteConfigPolicy(min_reserve_soc=0.2, locked=[])
    assert check({"emergency_opt_in": True}, CONTROL, TRADING, open_policy) == {"emergency_opt_in": True}
    with pytest.raises(Refused, match="disabled"):
        check(ok, CONTROL, TRADING, RemoteConfigPolicy(enabled=False))


def test_all_or_nothing_and_kept_across_restarts(tmp_path: Path) -> None:
    site = SimpleNamespace(control=CONTROL)
    trading = SimpleNamespace(**vars(TRADING))
    rc = RemoteConfig(site, trading, POLICY, tmp_path / "remote.json")
    refused = rc.handle(1, {"reserve_soc": 0.5, "low_threshold": 0.9})
    assert refused["ok"] is False and site.control == CONTROL  # the good half was not applied either
    applied = rc.handle(2, {"reserve_soc": 0.5, "trading_enabled": False})
    assert applied == {
        "config_id": 2,
        "ok": True,
        "reason": "",
        "applied": {"reserve_soc": 0.5, "trading_enabled": False},
    }
    assert site.control.reserve_soc == 0.5 and trading.enabled is False
    site2, trading2 = SimpleNamespace(control=CONTROL), SimpleNamespace(**vars(TRADING))
    RemoteConfig(site2, trading2, POLICY, tmp_path / "remote.json").restore()
    assert site2.control.reserve_soc == 0.5 and trading2.enabled is False
    # a stricter owner policy after the restart: the kept settings are not restored
    site3 = SimpleNamespace(control=CONTROL)
    RemoteConfig(
        site3, SimpleNamespace(**vars(TRADING)), RemoteConfigPolicy(min_reserve_soc=0.6), tmp_path / "remote.json"
    ).restore()
    assert site3.control == CONTROL


def test_runtime_answers_config_and_ignores_forgeries(tmp_path: Path, chain_market: Market) -> None:  # noqa: F811
    clock = ManualClock(1_800_000_000.0)
    rt = AgentRuntime(agent_config(tmp_path, chain_market, 0, "http://127.0.0.1:1", reserve_soc=0.3), clock=clock)
    coord_key = SigningKey(b"\x07" * 32)
    rt._coordinator_key = coord_key.verify_key
    seqs = iter(range(1, 100))
    signer = Signer(coord_key, "coordinator", clock, lambda: next(seqs), ttl_s=60)
    forger = Signer(SigningKey(b"\x08" * 32), "coordinator", clock, lambda: next(seqs), ttl_s=60)

    async def main() -> None:
        await rt.site.connect()
        await rt.on_message(forger.sign("config", {"config_id": 1, "settings": {"reserve_soc": 0.5}}).to_json())
        assert rt.site.control.reserve_soc == 0.3 and rt.rejected[-1][0] == "forged"
        await rt.on_message(signer.sign("config", {"config_id": 2, "settings": {}}).to_json())
        assert rt.rejected[-1][0] == "malformed"
        await rt.on_message(signer.sign("config", {"config_id": 3, "settings": {"reserve_soc": 0.5}}).to_json())
        assert rt.site.control.reserve_soc == 0.5
        await rt.on_message(signer.sign("config", {"config_id": 4, "settings": {"reserve_soc": 0.01}}).to_json())
        assert rt.site.control.reserve_soc == 0.5

    asyncio.run(main())
    answers = [body for _, kind, body in rt.store.pending(limit=100) if kind == "config_result"]
    assert [(a["config_id"], a["ok"]) for a in answers] == [(3, True), (4, False)]
    assert "floor" in answers[1]["reason"]
    assert [c["accepted"] for c in rt.store.commands() if c["kind"] == "config"] == [1, 0]
