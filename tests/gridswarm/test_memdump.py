"""``kill -USR2``: where memory grew since the last dump (gridswarm/memdump.py)."""

from __future__ import annotations

import logging
import os
import signal
import tracemalloc

import pytest

from gridswarm import memdump


def test_usr2_logs_the_lines_whose_memory_grew(caplog: pytest.LogCaptureFixture) -> None:
    previous = signal.getsignal(signal.SIGUSR2)
    tracemalloc.start()
    try:
        dumper = memdump.install()
        with caplog.at_level(logging.WARNING, logger="gridswarm.memdump"):
            os.kill(os.getpid(), signal.SIGUSR2)  # handled before the next bytecode runs
            hoard = [bytearray(1000) for _ in range(2000)]  # ~2 MB from this line
            lines = dumper.dump()
        assert len(hoard) == 2000
        assert any("test_memdump.py" in ln and "KiB" in ln and "+" in ln for ln in lines[:3]), lines
        assert sum("memory dump" in r.getMessage() for r in caplog.records) == 2
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR2, previous)


def test_without_tracemalloc_the_dump_says_how_to_turn_it_on() -> None:
    assert not tracemalloc.is_tracing()
    assert "PYTHONTRACEMALLOC=1" in memdump.MemoryDump().dump()[0]
