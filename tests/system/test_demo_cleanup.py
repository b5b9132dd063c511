"""A demo stopped from outside leaves nothing running: on SIGTERM it stops every process it
started, and on SIGKILL (no clean-up possible) its children get the kernel's parent-death
signal and stop by themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _children_of_run(out: Path, demo_pid: int) -> list[int]:
    """Pids of the coordinator, agents and Ganache started for the demo in ``out``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (demo_pid, os.getpid()):
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(out) in cmd:
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_demo_leaves_no_process_behind(sig: signal.Signals, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--intervals", "50", "--agents", "4", "--out", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def demo_running() -> None:
            assert demo.poll() is None, "the demo ended before it started its processes"

        def started() -> list[int] | None:  # Ganache, the coordinator and four agents
            children = _children_of_run(out, demo.pid)
            return children if len(children) >= 6 else None

        children = wait_until(
            started,
            lambda: f"six demo processes (seen {_children_of_run(out, demo.pid)})",
            240,
            check=demo_running,
            poll_s=0.5,
        )
        assert len(children) >= 6, f"only {len(children)} demo processes started"
        demo.send_signal(sig)
        demo.wait(timeout=60)
        wait_until(
            lambda: not any(_alive(p) for p in children),
            lambda: f"no demo process left after {sig.name}: {[p for p in children if _alive(p)]}",
            45,
        )
        left = [p for p in children if _alive(p)]
        assert not left, f"processes left running after {sig.name}: {left}"
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in _children_of_run(out, demo.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
