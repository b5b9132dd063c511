"""The running coordinator applies its retention rule by itself: telemetry older than
``retention.history_s`` goes, recent telemetry and the ledger's rows stay (real Ganache, real
SQLite, the service's own task)."""

from __future__ import annotations

from pathlib import Path

from app.devnet import Ganache
from coordinator.service import create_app
from coordinator.store import Store
from gridswarm.clock import ManualClock
from tests.agent.test_runtime import ServerThread
from tests.conftest import deploy_fresh
from tests.coordinator.conftest import write_settings
from tests.support.waiting import wait_until

NOW = 1_800_000_000.0


def test_the_coordinator_prunes_old_telemetry_by_itself(ganache: Ganache, tmp_path: Path) -> None:
    m = deploy_fresh(ganache)
    settings = write_settings(tmp_path, m, run_market=False, index_poll_s=0.1,
                              retention={"history_s": 86_400.0, "rejections_kept": 100})
    store = Store(settings.db_path)
    with store.transaction() as db:
        db["telemetry"].insert_all(
            [{"sender": "0xA", "record_id": i, "ts": ts, "net_export_w": 0.0, "soc": 0.5, "devices": "{}"}
             for i, ts in enumerate((NOW - 3 * 86_400.0, NOW - 2 * 86_400.0, NOW - 3_600.0))]
        )
    store.close()
    with ServerThread(create_app(settings, clock=ManualClock(NOW)), settings.port):
        store = Store(settings.db_path)
        try:
            wait_until(lambda: len(store.telemetry_history("0xA", 10)) == 1, "old telemetry pruned")
            kept = store.telemetry_history("0xA", 10)
        finally:
            store.close()
    assert [r["record_id"] for r in kept] == [2]  # the two older than a day went, the recent one stays
