"""SunSpec register maps, built from pysunspec2's JSON model definitions (data, not code).

A model's layout is the ordered list of its top-level points (name, offset from the model's ID
register, size in registers, type, scale-factor point) followed by its fixed nested groups;
``length`` is the model's ``L`` (registers after ID and L). Only models whose nested groups
have a fixed count are laid out (enough for 1, 101-103, 111-113, 120-124, 701-704).

Value encoding (SunSpec Information Model): integers big-endian, ``acc32``/``uint32`` two
registers, ``float32`` IEEE two registers, strings two characters per register; "not
implemented" markers: int16 0x8000, uint16/enum16/bitfield16 0xFFFF, sunssf 0x8000,
acc32/uint32 0xFFFFFFFF (acc32: 0), int32 0x80000000, float32 NaN.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["NOT_IMPLEMENTED", "ModelLayout", "Point", "decode", "encode", "layout", "min_length", "pad_model"]

SUNS = (0x5375, 0x6E53)  # "SunS"
END_ID = 0xFFFF

NOT_IMPLEMENTED = {
    "int16": 0x8000,
    "uint16": 0xFFFF,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "count": 0xFFFF,
    "sunssf": 0x8000,
    "int32": 0x80000000,
    "uint32": 0xFFFFFFFF,
    "enum32": 0xFFFFFFFF,
    "bitfield32": 0xFFFFFFFF,
    "acc32": 0,
    "uint64": 0xFFFFFFFFFFFFFFFF,
    "acc64": 0,
}


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    offset: int  # registers from the model's ID register
    size: int
    type: str
    sf: str | int | None
    access: str  # "R" or "RW"


@dataclass(frozen=True, slots=True)
class ModelLayout:
    model_id: int
    name: str
    length: int  # the model's L
    points: dict[str, Point]


def _models_dir() -> Path:
    import sunspec2  # model definitions ship with pysunspec2

    return Path(sunspec2.__file__).with_name("models") / "json"


def _group_size(group: dict[str, Any]) -> int:
    size = sum(int(p.get("size", 1)) for p in group.get("points", []))
    for sub in group.get("groups", []):
        count = sub.get("count", 1)
        if not isinstance(count, int):
            raise ValueError(f"group {sub.get('name')} has a variable count; not supported")
        size += count * _group_size(sub)
    return size


@cache
def layout(model_id: int) -> ModelLayout:
    """The register layout of SunSpec model ``model_id`` (from pysunspec2's definitions)."""
    path = _models_dir() / f"model_{model_id}.json"
    if not path.exists():
        raise KeyError(f"no SunSpec model definition for {model_id}")
    group = json.loads(path.read_text())["group"]
    points: dict[str, Point] = {}
    off = 0
    for p in group["points"]:
        size = int(p.get("size", 1))
        points[p["name"]] = Point(p["name"], off, size, p["type"], p.get("sf"), p.get("access", "R"))
        off += size
    total = _group_size(group)
    return ModelLayout(model_id, group["name"], total - 2, points)


def min_length(model_id: int) -> int:
    """The shortest ``L`` a device may report for the model: everything up to its last top-level
    point that is not padding. Trailing ``Pad`` registers are optional (a common model 1 of
    length 65 has no ``Pad``; pysunspec2 reads it the same way); nested groups are not read."""
    lay = layout(model_id)
    end = max((pt.offset + pt.size for pt in lay.points.values() if pt.type != "pad"), default=2)
    return end - 2


def _filler(pt: Point) -> list[int]:
    if pt.type == "float32":
        return encode(math.nan, pt)
    marker = NOT_IMPLEMENTED.get(pt.type)
    if marker is None or pt.type in ("acc32", "acc64"):
        return [0] * pt.size
    return [(marker >> (16 * (pt.size - 1 - i))) & 0xFFFF for i in range(pt.size)]


def pad_model(model_id: int, regs: list[int]) -> list[int]:
    """``regs`` (a model as read: ID, L and ``L`` registers) extended to the full layout; points the
    device did not lay out read as "not implemented"."""
    lay = layout(model_id)
    full = lay.length + 2
    if len(regs) >= full:
        return list(regs[:full])
    out = list(regs) + [0] * (full - len(regs))
    for pt in lay.points.values():
        if pt.offset + pt.size > len(regs):
            out[pt.offset:pt.offset + pt.size] = _filler(pt)
    return out


def decode(regs: list[int], pt: Point) -> int | float | str | None:
    """Raw value of ``pt`` from the model's registers (``regs[0]`` is the ID register);
    None when the device marks it "not implemented"."""
    raw = regs[pt.offset:pt.offset + pt.size]
    t = pt.type
    if t == "string":
        b = b"".join(struct.pack(">H", r) for r in raw)
        return b.split(b"\0", 1)[0].decode("latin-1").strip()
    if t == "float32":
        v = struct.unpack(">f", struct.pack(">HH", *raw))[0]
        return None if math.isnan(v) else v
    if t == "pad":
        return None
    value = 0
    for r in raw:
        value = (value << 16) | (r & 0xFFFF)
    if t in NOT_IMPLEMENTED and value == NOT_IMPLEMENTED[t] and t not in ("acc32", "acc64"):
        return None
    bits = 16 * pt.size
    if t in ("int16", "int32", "int64", "sunssf") and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def encode(value: int | float | str, pt: Point) -> list[int]:
    """Registers for ``value`` written to ``pt`` (range-checked; raises ValueError)."""
    t = pt.type
    if t == "string":
        b = str(value).encode("latin-1")[: 2 * pt.size].ljust(2 * pt.size, b"\0")
        return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]
    if t == "float32":
        return list(struct.unpack(">HH", struct.pack(">f", float(value))))
    v = int(value)
    bits = 16 * pt.size
    if t in ("int16", "int32", "int64", "sunssf"):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if not lo <= v <= hi:
            raise ValueError(f"{pt.name}: {v} does not fit {t}")
        v &= (1 << bits) - 1
    elif not 0 <= v < 1 << bits:
        raise ValueError(f"{pt.name}: {v} does not fit {t}")
    return [(v >> (16 * (pt.size - 1 - i))) & 0xFFFF for i in range(pt.size)]


def model_regs(model_id: int, values: dict[str, int | float | str | None]) -> list[int]:
    """A whole model's registers (ID, L, points, nested groups zeroed) from point values; points
    missing or None are written as "not implemented"."""
    lay = layout(model_id)
    regs = [0] * (lay.length + 2)
    regs[0], regs[1] = model_id, lay.length
    for name, pt in lay.points.items():
        if name in ("ID", "L"):
            continue
        v = values.get(name)
        if v is None:
            if pt.type in NOT_IMPLEMENTED and pt.type not in ("acc32", "acc64"):
                filler = NOT_IMPLEMENTED[pt.type]
                regs[pt.offset:pt.offset + pt.size] = [(filler >> (16 * (pt.size - 1 - i))) & 0xFFFF
                                                       for i in range(pt.size)]
            elif pt.type == "float32":
                regs[pt.offset:pt.offset + pt.size] = encode(math.nan, pt)
            continue
        regs[pt.offset:pt.offset + pt.size] = encode(v, pt)
    return regs
