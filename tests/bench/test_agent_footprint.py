"""The agent footprint benchmark (bench/agent_footprint.py) runs and reports every figure."""

import argparse

from bench.agent_footprint import configure_bench, run_child


def test_footprint_bench_runs_and_reports_every_figure():
    args = configure_bench(argparse.ArgumentParser()).parse_args(
        ["--seconds", "0.3", "--tick-ms", "10", "--step-every", "0.1"])
    args.realtime = False
    figures = run_child(args)
    for key in ("cpu_share_of_core", "peak_rss_mb", "tick_jitter_p50_ms", "tick_jitter_p99_ms",
                "freq_step_to_setpoint_ms", "ticks"):
        assert key in figures
    assert figures["freq_steps"] >= 1  # fed steps reach the inverter
