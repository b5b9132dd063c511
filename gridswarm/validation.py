"""Pydantic validation errors as one line per error, naming the field the way a config file
spells it: ``devices[1].capacity_wh: must be > 0, got 0``.

Validators that check more than one field raise :func:`field_error`, so the message still names
the field at fault (``devices[0].soc_min: must be < soc_max (0.4)``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["error_lines", "field_error"]

FIELD_ERROR = "field_error"


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error for ``field`` (a name, ``[i]`` or a dotted path below the value validated)."""
    return PydanticCustomError(FIELD_ERROR, "{message}", {"field": field, "message": message})


def _path(parts: list[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).startswith("["):
            out += str(p)
        elif p != "":
            out += f".{p}" if out else str(p)
    return out


def _got(err: dict[str, Any]) -> str:
    value = err.get("input")
    if isinstance(value, (dict, list)) and len(repr(value)) > 60:
        return ""
    return f", got {value!r}"


def _message(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    bounds = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
              "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {ctx[key]:g}{_got(err)}" if isinstance(ctx.get(key), (int, float)) else err["msg"]
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number{_got(err)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer{_got(err)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{_got(err)}"
    if kind in ("string_type",):
        return f"must be a string{_got(err)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}{_got(err)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}{_got(err)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping{_got(err)}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{_got(err)}"
    if kind in ("too_short", "too_long"):
        return err["msg"].replace("List", "the list").replace("Tuple", "the list")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return str(err["msg"])


def error_lines(exc: ValidationError, *, prefix: str = "", drop: Collection[str] = ()) -> list[str]:
    """One ``field: message`` line per error of ``exc``. ``prefix`` is prepended to every field;
    ``drop`` names union tags to leave out of the field path."""
    lines = []
    for err in exc.errors():
        loc = [prefix, *(p for p in err["loc"] if not (isinstance(p, str) and p in drop))]
        if err["type"] == FIELD_ERROR:
            ctx = err.get("ctx") or {}
            loc.append(ctx.get("field", ""))
            message = str(ctx.get("message", err["msg"]))
        else:
            message = _message(err)
        lines.append(f"{_path(loc) or '(root)'}: {message}")
    return lines
