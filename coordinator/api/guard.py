"""Checks on untrusted input before anything else reads it: size while the body is read,
JSON that is too deep, lone surrogates, integers SQLite cannot hold. Each failure is a
:class:`BadInput` with an HTTP status and a reason the sender can act on; nothing is changed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from gridswarm.envelope import MAX_ENVELOPE_BYTES
from gridswarm.errors import GridSwarmError

MAX_DEPTH = 16  # an envelope nests four deep; anything near this is not one
MAX_SQL_INT = 2**63 - 1  # SQLite integers are signed 64-bit


class BadInput(GridSwarmError):
    """A request the API refuses before it reaches a route: ``status`` (400, 413, 422) and a short ``reason``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


async def read_limited(chunks: AsyncIterator[bytes], declared: str | None, limit: int = MAX_ENVELOPE_BYTES) -> bytes:
    """The body, read chunk by chunk and refused (413) as soon as it passes ``limit``; a
    declared ``Content-Length`` over the limit is refused before anything is read."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadInput(400, "bad_length", "Content-Length is not a number") from None
        if size > limit:
            raise BadInput(413, "too_large", f"body of {size} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BadInput(413, "too_large", f"body is over the limit of {limit} bytes")
    return bytes(body)


def parse_json(raw: str | bytes) -> Any:
    """Parse ``raw`` and check every value: depth, strings encodable as UTF-8, integers that fit
    the store. Raises :class:`BadInput` (400) naming the problem."""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise BadInput(413, "too_large", f"message of {len(raw)} bytes is over the limit of {MAX_ENVELOPE_BYTES}")
    try:
        text = raw  # bytes are read as json.loads reads them (UTF-8, -16 or -32):
        if isinstance(text, bytes | bytearray):
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        data = _DECODER.decode(text)
    except BadInput:
        raise
    except RecursionError:
        raise BadInput(400, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(400, "malformed", f"not JSON: {_printable(str(exc))}") from None
    if _may_need_check(raw):
        check_value(data)
    return data


def _bounded_int(text: str) -> int:
    """Integers are bounded as they are parsed (a hook json.loads calls per integer)."""
    value = int(text)
    if not -MAX_SQL_INT - 1 <= value <= MAX_SQL_INT:
        raise BadInput(400, "out_of_range", "integer outside the signed 64-bit range")
    return value


_DECODER = json.JSONDecoder(parse_int=_bounded_int)  # one for all (json.loads builds one per call with a hook)


def _may_need_check(raw: str | bytes) -> bool:
    """False when ``raw`` cannot hold what :func:`check_value` still looks for once integers
    are bounded while parsing: no ``\\u`` escape (a decoded text frame or a UTF-8 body cannot
    hold a raw lone surrogate, only an escaped one) and fewer brackets than ``MAX_DEPTH`` (so it
    cannot nest that deep). The walk over every value is then skipped (most messages)."""
    if isinstance(raw, bytes):
        # (a NUL means UTF-16 or UTF-32 JSON, which json.loads also reads: always walked)
        return b"\\u" in raw or b"\0" in raw or raw.count(b"{") + raw.count(b"[") >= MAX_DEPTH
    return "\\u" in raw or raw.count("{") + raw.count("[") >= MAX_DEPTH


def check_value(data: Any) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInput(400, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, bool) or value is None or isinstance(value, float):
            continue
        elif isinstance(value, int):
            if not -MAX_SQL_INT - 1 <= value <= MAX_SQL_INT:
                raise BadInput(400, "out_of_range", "integer outside the signed 64-bit range")
        elif isinstance(value, dict):
            for k, v in value.items():
                _check_text(k)
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(400, "bad_text", "string holds a lone UTF-16 surrogate (not valid Unicode)") from None


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:300]
