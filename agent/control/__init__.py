"""Control (docs/architecture.md §4): pure controllers from state to setpoints. The arbiter
(:mod:`agent.control.arbiter`) is the one place where every source's setpoint meets; the safety
envelope, frequency response and device loop live beside it."""
