"""Chain events reach SQLite exactly once and are served by the read-only API."""

from __future__ import annotations

import httpx

from coordinator.indexer import Indexer
from coordinator.store import Store
from gridswarm.chain import compact_signature, sign_meter_reading
from tests.coordinator.conftest import RunningCoordinator


def _trade_one_interval(rc: RunningCoordinator, k: int) -> dict[str, object]:
    m = rc.market
    op = m.sender(m.operator)
    market = m.market
    seller, buyer = m.participants[0], m.participants[1]
    op.transact(market.functions.openInterval(k))
    r1 = m.sender(seller.account).transact(market.functions.postOrder(k, 1, 500, 100))
    r2 = m.sender(buyer.account).transact(market.functions.postOrder(k, 0, 400, 150))
    offer, offer_lock = (market.events.OrderPosted().process_receipt(r1)[0]["args"][key] for key in ("orderId", "locked"))
    bid, bid_lock = (market.events.OrderPosted().process_receipt(r2)[0]["args"][key] for key in ("orderId", "locked"))
    op.transact(market.functions.closeInterval(k))
    # One price, 100: the offer (limit 100) is marginal and fills in part, the bid in full.
    op.transact(market.functions.commitPrices(k, [(0, 100)], []))
    fills = [(offer, 400, 100), (bid, 400, 100)]
    op.transact(market.functions.commitFills(k, fills, True))
    sig = sign_meter_reading(seller.account, m.dep.chain_id, m.dep.market, k, 380, 0)
    bsig = sign_meter_reading(buyer.account, m.dep.chain_id, m.dep.market, k, 0, 400)
    readings = sorted(
        [
            ((seller.account.address, k, 380, 0), *compact_signature(sig)),
            ((buyer.account.address, k, 0, 400), *compact_signature(bsig)),
        ],
        key=lambda r: int(r[0][0], 16),
    )
    settlement = [(offer, 400, 100, offer_lock), (bid, 400, 100, bid_lock)]
    receipt = op.transact(market.functions.settle(k, 0, settlement, readings))
    return {"offer": offer, "bid": bid, "settle_tx": "0x" + bytes(receipt["transactionHash"]).hex()}


def test_interval_indexed_and_served(running: RunningCoordinator) -> None:
    ids = _trade_one_interval(running, 41)
    running.coordinator.indexer.sync()
    iv = httpx.get(running.base + "/api/v1/intervals/41", timeout=10).json()
    assert iv["status"] == "settled"
    assert iv["volume_wh"] == 400
    assert iv["delivered_wh"] == 380
    assert iv["shortfall_wh"] == 20
    assert iv["settle_tx"] == ids["settle_tx"]
    assert {o["side"] for o in iv["orders"]} == {"bid", "offer"}
    trades = httpx.get(running.base + "/api/v1/trades", params={"interval": 41}, timeout=10).json()
    by_side = {t["side"]: t for t in trades["data"]}
    assert by_side["offer"]["delivered_wh"] == 380
    assert by_side["offer"]["amount"] == 400 * 100  # trades are financial: the fill at the price
    assert by_side["offer"]["penalty"] == 20 * 20  # the 20 Wh not exported, at the imbalance buy price
    assert by_side["bid"]["amount"] == 400 * 100
    listing = httpx.get(running.base + "/api/v1/intervals", timeout=10).json()
    assert 41 in [i["id"] for i in listing["data"]]
    people = httpx.get(running.base + "/api/v1/participants", timeout=10).json()
    sold = {p["address"]: p["sold_wh"] for p in people["data"]}
    assert sold[running.market.participants[0].account.address] >= 380
    assert httpx.get(running.base + "/api/v1/intervals/999999", timeout=10).status_code == 404


def _chain_log_count(rc: RunningCoordinator, to_block: int) -> int:
    w3 = rc.coordinator.w3
    logs = w3.eth.get_logs({"address": rc.market.dep.market, "fromBlock": rc.market.dep.block, "toBlock": to_block})
    return len(logs)


def test_restarted_indexer_neither_misses_nor_double_counts(running: RunningCoordinator) -> None:
    store: Store = running.coordinator.store
    _trade_one_interval(running, 42)
    # a new indexer over the same database (a restart) catches up from the cursor; the
    # service's own indexer polls concurrently, which must not double-count either
    fresh = Indexer(running.coordinator.w3, running.coordinator.deployment, store)
    fresh.sync()
    head = store.cursor("market", -1)
    assert store.one("select count(*) as n from events where block <= ?", [head])["n"] == _chain_log_count(running, head)
    fills = store.query("select * from fills where interval = 42 order by order_id")
    assert [f["qty_wh"] for f in fills] == [400, 400]
    # rewinding the cursor (a crash before the cursor write) and syncing again changes nothing
    events = store.one("select count(*) as n from events")["n"]
    store.db["cursor"].upsert({"name": "market", "block": running.market.dep.block}, pk="name")
    fresh.sync()
    assert store.one("select count(*) as n from events")["n"] == events
    assert store.query("select * from fills where interval = 42 order by order_id") == fills


def test_healthz(running: RunningCoordinator) -> None:
    h = httpx.get(running.base + "/healthz", timeout=10).json()
    assert h["status"] == "ok"
    assert h["chain_id"] == running.market.dep.chain_id
    assert h["indexed_block"] <= h["block"]
