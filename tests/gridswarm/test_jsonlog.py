"""Structured logs: one JSON object per line, with the traceback when there is one."""

from __future__ import annotations

import json
import logging

from gridswarm.jsonlog import JsonFormatter


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("coordinator.hub", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_one_json_object_per_line() -> None:
    line = JsonFormatter().format(_record("rejected message from %s: %s", "0xabc", 'quote " and\nnewline'))
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "coordinator.hub"
    assert data["message"] == 'rejected message from 0xabc: quote " and\nnewline'
    assert data["ts"].endswith("+00:00")


def test_traceback_is_kept() -> None:
    data = json.loads(JsonFormatter().format(_record("failed", exc=True)))
    assert "ValueError: boom" in data["exc"]
