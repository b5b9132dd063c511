"""The demo report's dashboard figures, read from the running coordinator's API: each site's
forecast vs actual (``/api/v1/sites/{address}/forecasts/error``) and the settlement latency and
outbox backlog from ``/metrics`` (docs/dashboard.md)."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["dashboard_figures", "print_dashboard"]

_METRICS = ("gridswarm_settlement_latency_seconds_count", "gridswarm_settlement_latency_seconds_sum",
            "gridswarm_agent_outbox_pending", "gridswarm_agent_outbox_pending_max",
            "gridswarm_agents_reporting_outbox")


def dashboard_figures(client: httpx.Client, addresses: list[str]) -> dict[str, Any]:
    """Forecast error per site and horizon, and the metrics above; never raises (a figure the
    coordinator cannot give is left out, with the reason)."""
    out: dict[str, Any] = {"forecasts": {}, "metrics": {}}
    try:
        for addr in addresses:
            err = client.get(f"/api/v1/sites/{addr}/forecasts/error").json()
            out["forecasts"][addr] = err.get("horizons", [])
        text = client.get("/metrics").text
        for line in text.splitlines():
            name = line.split(" ")[0]
            if name in _METRICS:
                out["metrics"][name] = float(line.split()[-1])
    except (httpx.HTTPError, ValueError) as exc:
        out["error"] = f"{exc.__class__.__name__}: {exc}"
    return out


def print_dashboard(fig: dict[str, Any], names: dict[str, str]) -> None:
    print()
    for addr, horizons in fig.get("forecasts", {}).items():
        for h in horizons:
            def f(v: Any, fmt: str) -> str:
                return "-" if v is None else format(v, fmt)

            print(f"{names.get(addr, addr[:10])} demand forecast {int(h['horizon_s'] // 60)} min ahead: "
                  f"{h['n']} of {h['forecasts']} measured, MAE {f(h['mae_w'], '.0f')} W, "
                  f"MAPE {f(h['mape_pct'], '.1f')} %, in the 80 % band {f(h['coverage80'], '.0%')} and the 95 % "
                  f"band {f(h['coverage95'], '.0%')} (of {h['n_interval']} with a band)")
    m = fig.get("metrics", {})
    n = m.get("gridswarm_settlement_latency_seconds_count", 0.0)
    if n:
        mean = m.get("gridswarm_settlement_latency_seconds_sum", 0.0) / n
        print(f"settlement latency (delivery end to settled): mean {mean:.0f} s over {n:.0f} intervals; "
              f"outbox backlog reported by {m.get('gridswarm_agents_reporting_outbox', 0):.0f} agents: "
              f"{m.get('gridswarm_agent_outbox_pending', 0):.0f} records (largest "
              f"{m.get('gridswarm_agent_outbox_pending_max', 0):.0f})")
    if fig.get("error"):
        print(f"dashboard figures incomplete: {fig['error']}")
