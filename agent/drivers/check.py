"""The human-readable report of ``gridswarm agent --check`` for one device (a ProbeResult)."""

from __future__ import annotations

from agent.drivers.base import ProbeResult

__all__ = ["check_report_text"]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def check_report_text(result: ProbeResult) -> str:
    """Several lines: status, what was found, values with units, control, missing figures."""
    d = result.as_dict()
    head = f"{d['device_id']} ({d['kind']}, {d['driver']}): {'ok' if d['ok'] else 'FAILED'}"
    lines = [head, f"  found:    {d['detail']}"]
    if d["error"]:
        lines.append(f"  error:    {d['error']}")
    if d["models"]:
        lines.append(f"  models:   {', '.join(str(m) for m in d['models'])}")
    if d["values"]:
        vals = ", ".join(f"{k} = {_fmt(v['value'])}" + (" (0..1)" if v["unit"] == "0..1" else f" {v['unit']}")
                         for k, v in d["values"].items())
        lines.append(f"  values:   {vals}")
    for c in d["controls"]:
        lines.append(f"  controls: {c}")
    if not d["controls"]:
        lines.append("  controls: nothing")
    for c in d["cannot"]:
        lines.append(f"  cannot:   {c}")
    for name, why in d["missing"].items():
        lines.append(f"  missing:  {name}: {why}")
    return "\n".join(lines)
