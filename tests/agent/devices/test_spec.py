"""Config validation: errors name the field; defaults are filled."""

import pytest

from agent.devices.spec import DeviceConfigError, validate_devices

BAT = {"type": "battery", "capacity_wh": 10_000, "max_charge_w": 5_000, "max_discharge_w": 5_000}


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ([BAT, {**BAT, "capacity_wh": 0}], "devices[1].capacity_wh: must be > 0"),
        ([{**BAT, "capacity_wh": "big"}], "devices[0].capacity_wh: must be a number"),
        ([{"type": "battery", "max_charge_w": 1, "max_discharge_w": 1}], "devices[0].capacity_wh: is required"),
        ([{**BAT, "round_trip_efficiency": 1.0}], "devices[0].round_trip_efficiency: must be < 1, got 1.0"),
        ([{**BAT, "colour": "red"}], "devices[0].colour: unknown field"),
        ([{"type": "toaster"}], "devices[0].type: must be one of"),
        ([BAT, {**BAT, "id": "battery1"}], "devices[1].id: duplicate id"),
        ([{**BAT, "soc_min": 0.5, "soc_max": 0.4}], "devices[0].soc_min: must be < soc_max"),
        ([{**BAT, "inverter": {"rated_w": -1}}], "devices[0].inverter.rated_w: must be > 0"),
        ([{"type": "grid", "outages": [[10, 5]]}], "devices[0].outages[0]: end_ts must be > start_ts"),
        ([{"type": "load", "driver": "sunspec", "host": "x"}], "devices[0].driver: sunspec drives"),
        ([{"type": "pv", "peak_w": 1, "profile": "mars"}], "devices[0].profile: must be one of"),
        ([], "devices: must name at least one device"),
    ],
)
def test_bad_fields_are_named(devices, message):
    with pytest.raises(DeviceConfigError) as err:
        validate_devices(devices)
    assert str(err.value).startswith(message)


def test_defaults_are_filled():
    [b, pv, ld] = validate_devices([BAT, {"type": "pv", "peak_w": 4_000}, {"type": "load"}])
    assert b.id == "battery1" and b.round_trip_efficiency == 0.92 and b.writable is True
    assert b.inverter.model_dump() == {"rated_w": 5_000.0, "efficiency": 0.97, "ramp_w_per_s": float("inf")}
    assert pv.inverter.rated_w == 4_000.0 and pv.inverter.efficiency == 0.96
    assert ld.peak_w == 5_000.0 and ld.sheddable_fraction == 0.3


def test_sunspec_devices_default_to_read_only():
    [d] = validate_devices([{"type": "battery", "driver": "sunspec", "host": "127.0.0.1"}])
    assert d.writable is False and d.port == 502
