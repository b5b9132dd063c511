"""The coordinator's market loop over a test market (tests/conftest.py), for the tests that drive
:class:`~coordinator.market.loop.MarketLoop` directly: built from its parts as
``coordinator/service.py`` builds it, over a SQLite store a test may reopen to play a restart."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

from eth_account.signers.local import LocalAccount

from coordinator.hub import Hub
from coordinator.indexer import Indexer
from coordinator.market.loop import MarketLoop
from coordinator.settings import MarketSettings
from coordinator.store import Store
from gridswarm.chain import TxSender, sign_meter_reading
from gridswarm.clock import Clock
from gridswarm.envelope import Signer
from tests.conftest import Market


def build_loop(m: Market, cfg: MarketSettings, clock: Clock, db: Path, *, receipt_timeout_s: float = 60.0) -> MarketLoop:
    """A fresh coordinator (new store connection, new indexer, synced) over the database ``db``;
    ``cfg`` is what :class:`MarketLoop` takes."""
    store = Store(db)
    signer = Signer(m.coordinator_key, "coordinator", clock, itertools.count(1).__next__)
    hub = Hub(store, clock, signer, m.dep.chain_id, m.dep.market)
    indexer = Indexer(m.w3, m.dep, store)
    indexer.sync()
    operator = TxSender(m.w3, m.operator, m.dep.decoder(), receipt_timeout_s=receipt_timeout_s)
    return MarketLoop(cfg, clock, store, hub, indexer, operator, m.dep)


def store_readings(loop: MarketLoop, m: Market, k: int, readings: Mapping[LocalAccount, tuple[int, int]]) -> None:
    """Each participant signs its own meter reading of ``k`` (exported Wh, imported Wh), as the
    agents do; the coordinator holds them for settlement."""
    with loop.store.transaction() as db:
        for who, (exported, imported) in readings.items():
            sig = sign_meter_reading(who, m.dep.chain_id, m.dep.market, k, exported, imported)
            db["readings"].upsert(
                {"interval": k, "participant": who.address, "exported_wh": exported, "imported_wh": imported,
                 "signature": sig},
                pk=("interval", "participant"),
            )  # fmt: skip
