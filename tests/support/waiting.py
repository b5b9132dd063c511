"""Waiting in tests: for a condition, never for wall time (docs/architecture.md §7).

A test that needs something to have happened polls for it with :func:`wait_until` (plain code)
or :func:`wait_until_async` (inside an event loop): the wait returns as soon as the condition
holds, so a generous timeout costs nothing on a fast machine and keeps a loaded one reliable. On
timeout it raises ``AssertionError`` naming what was awaited. Chain time is moved with
``Market.advance_chain`` (tests/conftest.py) and a ``ManualClock`` with ``set``/``advance``.

This module is the only test module that sleeps (tests/meta/test_architecture.py checks it).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

T = TypeVar("T")

POLL_S = 0.05  # between two looks at the condition


def _message(what: str | Callable[[], str], timeout: float) -> str:
    return f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}"


def wait_until(
    pred: Callable[[], T],
    what: str | Callable[[], str],
    timeout: float = 60.0,
    *,
    check: Callable[[], None] | None = None,
    poll_s: float = POLL_S,
) -> T:
    """Poll ``pred`` until it returns a true value, and return that value.

    ``what`` names the condition in the timeout's ``AssertionError`` (a callable is asked only
    then, so it can describe the state at the time). ``check``, called before each look, raises
    to stop waiting early (e.g. a process the condition depends on has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout))
        time.sleep(poll_s)


async def wait_until_async(
    pred: Callable[[], T | Awaitable[T]],
    what: str | Callable[[], str],
    timeout: float = 60.0,  # noqa: ASYNC109 - the polling deadline, named as in wait_until
    *,
    check: Callable[[], None] | None = None,
    poll_s: float = POLL_S,
) -> T:
    """:func:`wait_until` inside an event loop: other tasks run between looks, and ``pred`` may
    be a coroutine function (awaited each time)."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = pred()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout))
        await asyncio.sleep(poll_s)


def healthy(base: str, timeout: float = 2.0) -> bool:
    """Whether the coordinator at ``base`` answers ``/healthz`` with 200 (a condition to wait for)."""
    try:
        return httpx.get(base + "/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False
