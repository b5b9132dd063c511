"""The reserve trigger: predicted AND actual demand, a hold time, safe without a forecast."""

import math

from agent.control.reserve import ReserveState, naive_trigger, reserve_trigger


def test_needs_both_predicted_and_actual_demand_above_the_threshold():
    s = reserve_trigger(ReserveState(), 0.0, actual_w=11.0, predicted_w=9.0, threshold_w=10.0)
    assert not s.active
    s = reserve_trigger(ReserveState(), 0.0, actual_w=9.0, predicted_w=11.0, threshold_w=10.0)
    assert not s.active
    s = reserve_trigger(ReserveState(), 0.0, actual_w=11.0, predicted_w=12.0, threshold_w=10.0)
    assert s.active and s.activations == 1 and "predicted" in s.reason


def test_hold_time_stops_chatter_on_a_hovering_load():
    hold, naive = ReserveState(), ReserveState()
    for k in range(600):  # demand flips around the threshold every second for 10 minutes
        actual = 10.5 if k % 2 == 0 else 9.5
        hold = reserve_trigger(hold, float(k), actual_w=actual, predicted_w=10.6, threshold_w=10.0, hold_s=60.0)
        naive = naive_trigger(naive, float(k), actual_w=actual, threshold_w=10.0)
    assert hold.activations == 1 and hold.active
    assert naive.activations == 300


def test_releases_only_after_the_need_has_been_gone_for_the_hold_time():
    s = reserve_trigger(ReserveState(), 0.0, actual_w=12.0, predicted_w=12.0, threshold_w=10.0, hold_s=60.0)
    for t in range(1, 60):
        s = reserve_trigger(s, float(t), actual_w=5.0, predicted_w=5.0, threshold_w=10.0, hold_s=60.0)
        assert s.active
    s = reserve_trigger(s, 61.0, actual_w=5.0, predicted_w=5.0, threshold_w=10.0, hold_s=60.0)
    assert not s.active and s.activations == 1


def test_missing_or_nan_forecast_falls_back_to_actual_demand():
    for pred in (None, math.nan, math.inf):
        s = reserve_trigger(ReserveState(), 0.0, actual_w=11.0, predicted_w=pred, threshold_w=10.0)
        assert s.active and "no forecast" in s.reason
    on = reserve_trigger(ReserveState(), 0.0, actual_w=11.0, predicted_w=11.0, threshold_w=10.0)
    kept = reserve_trigger(on, 1.0, actual_w=math.nan, predicted_w=11.0, threshold_w=10.0)
    assert kept.active  # a non-finite reading never stops a running reserve


def test_a_jump_the_forecast_missed_starts_the_reserve_after_the_ride_through():
    from agent.control.reserve import ReserveState, reserve_trigger

    strict = ours = ReserveState()
    starts = []
    for k in range(10):  # demand 12 kW above an 10 kW threshold; the forecast says 8 kW
        t = 1_000.0 + k * 10.0
        strict = reserve_trigger(strict, t, actual_w=12_000.0, predicted_w=8_000.0, threshold_w=10_000.0)
        ours = reserve_trigger(ours, t, actual_w=12_000.0, predicted_w=8_000.0, threshold_w=10_000.0,
                               confirm_s=30.0)
        starts.append(ours.active)
    assert not strict.active  # the strict AND rule misses it
    assert starts.index(True) == 3 and ours.activations == 1  # after 30 s above: started, once
    assert "missed it" in ours.reason or "held" in ours.reason


def test_confirmation_does_not_chatter_on_a_hovering_load():
    from agent.control.reserve import ReserveState, reserve_trigger

    st = ReserveState()
    for k in range(200):  # above for 20 s, below for 20 s, repeatedly: never 30 s above
        t = k * 10.0
        actual = 10_500.0 if (k // 2) % 2 == 0 else 9_500.0
        st = reserve_trigger(st, t, actual_w=actual, predicted_w=8_000.0, threshold_w=10_000.0, confirm_s=30.0)
    assert st.activations == 0
