"""The analytics benchmark's queries (bench/analytics.py) run on a small synthetic store."""

from __future__ import annotations

from bench.analytics import queries
from coordinator.store import Store
from coordinator.store.analytics import Analytics
from coordinator.store.synthetic import ZONES, populate

DAYS, SITES, FIRST = 2, 6, 1_000_000


def test_benchmark_queries_run_on_a_small_store() -> None:
    store = Store(":memory:")
    analytics = Analytics(store, ZONES)
    populate(store, DAYS, SITES, first_id=FIRST)
    for name, fn in queries(analytics, DAYS, SITES, first_id=FIRST).items():
        assert fn() is not None, name
