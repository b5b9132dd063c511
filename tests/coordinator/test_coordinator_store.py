"""The coordinator's typed store API on its own, over real SQLite: what the routes and the
market lifecycle read, without a chain."""

from __future__ import annotations

from pathlib import Path

from coordinator.store import Store


def _seed(store: Store) -> None:
    with store.transaction() as db:
        db["participants"].insert_all(
            [
                {"address": "0xA", "ed25519_key": "0x01", "zone": 0, "registered": 1, "block": 1},
                {"address": "0xB", "ed25519_key": "0x02", "zone": 0, "registered": 1, "block": 2},
                {"address": "0xC", "ed25519_key": "0x03", "zone": 1, "registered": 0, "block": 3},
            ]
        )
        db["intervals"].insert_all(
            [{"id": 1, "status": "settled"}, {"id": 2, "status": "cleared"}, {"id": 3, "status": "open"}]
        )
        orders = [
            ("11", 2, "0xA", "offer", 500, "filled", 10, 0),
            ("12", 2, "0xB", "bid", 500, "filled", 10, 1),
            ("13", 2, "0xC", "bid", 100, "unfilled", 11, 0),
            ("14", 2, "0xC", "bid", 100, "cancelled", 11, 1),
            ("21", 1, "0xA", "offer", 200, "settled", 5, 0),
            ("22", 1, "0xB", "bid", 200, "settled", 5, 1),
        ]
        db["orders"].insert_all(
            [
                {
                    "id": i,
                    "interval": k,
                    "owner": o,
                    "side": s,
                    "qty_wh": q,
                    "price": 100,
                    "zone": 0,
                    "locked": q * 100,
                    "status": st,
                    "block": b,
                    "log_index": li,
                    "tx": "0x",
                    "gas": 0,
                }
                for i, k, o, s, q, st, b, li in orders
            ]
        )
        db["fills"].insert_all(
            [
                {
                    "order_id": "11",
                    "interval": 2,
                    "owner": "0xA",
                    "side": "offer",
                    "qty_wh": 400,
                    "price": 90,
                    "tx": "0xc",
                },
                {
                    "order_id": "12",
                    "interval": 2,
                    "owner": "0xB",
                    "side": "bid",
                    "qty_wh": 400,
                    "price": 90,
                    "tx": "0xc",
                },
                {"order_id": "13", "interval": 2, "owner": "0xC", "side": "bid", "qty_wh": 0, "price": 90, "tx": "0xc"},
                {
                    "order_id": "21",
                    "interval": 1,
                    "owner": "0xA",
                    "side": "offer",
                    "qty_wh": 200,
                    "price": 80,
                    "tx": "0xd",
                },
                {
                    "order_id": "22",
                    "interval": 1,
                    "owner": "0xB",
                    "side": "bid",
                    "qty_wh": 200,
                    "price": 80,
                    "tx": "0xd",
                },
            ]
        )
        db["settlements"].insert_all(
            [
                {
                    "order_id": "21",
                    "interval": 1,
                    "owner": "0xA",
                    "delivered_wh": 180,
                    "amount": 1,
                    "penalty": 0,
                    "released": 0,
                    "tx": "0xe",
                },
                {
                    "order_id": "22",
                    "interval": 1,
                    "owner": "0xB",
                    "delivered_wh": 190,
                    "amount": 1,
                    "penalty": 0,
                    "released": 0,
                    "tx": "0xe",
                },
            ]
        )


def test_interval_and_trade_reads(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    _seed(store)
    assert store.count_intervals() == 3
    assert store.count_intervals("settled") == 1
    assert [r["id"] for r in store.interval_rows(None, limit=2, offset=1)] == [2, 3]
    assert store.interval_row(9) is None
    assert [o["id"] for o in store.interval_orders(2)] == ["11", "12", "13", "14"]  # chain order

    trades = store.trade_rows(None, None, 100, 0)
    assert [t["order_id"] for t in trades] == ["21", "22", "11", "12"]  # zero fills are not trades
    assert trades[0]["delivered_wh"] == 180 and trades[2]["delivered_wh"] is None  # settled / not yet
    assert [t["order_id"] for t in store.trade_rows(2, "0xB", 100, 0)] == ["12"]
    assert store.trade_rows(None, None, 1, 3)[0]["order_id"] == "12"
    store.close()


def test_participants_with_energy_sold_and_bought(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    _seed(store)
    rows = {r["address"]: r for r in store.participant_rows(10, 0)}
    assert (rows["0xA"]["sold_wh"], rows["0xA"]["bought_wh"]) == (180, 0)
    assert (rows["0xB"]["sold_wh"], rows["0xB"]["bought_wh"]) == (0, 190)
    assert store.count_participants() == 3
    assert store.participant_key("0xA") == "0x01"
    assert store.participant_key("0xC") is None  # removed participants have no key
    store.close()


def test_lifecycle_reads(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    _seed(store)
    assert store.traders(2) == {"0xA", "0xB"}  # 0xC's zero fill does not make it a trader
    assert [r["id"] for r in store.live_orders(2)] == ["11", "12", "13"]  # cancelled is not live
    assert store.order_locks(2)[11]["locked"] == 50_000
    assert store.committed_fills(2) == [(11, 400, 90), (12, 400, 90), (13, 0, 90)]
    dispatch = store.fill_dispatch(2)
    assert dispatch["0xA"]["net_wh"] == 400 and dispatch["0xB"]["net_wh"] == -400
    assert store.chain_unsettled() == [2, 3]
    store.close()


def test_own_sequence_keeps_growing_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    store = Store(path)
    assert [store.next_own_seq("coordinator") for _ in range(3)] == [1, 2, 3]
    store.close()
    store = Store(path)
    assert store.next_own_seq("coordinator") == 4
    assert store.last_seqs() == {"coordinator": 4}
    store.close()


def test_the_retention_rule_bounds_what_agents_send(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    _seed(store)
    with store.transaction() as db:
        db["telemetry"].insert_all(
            [{"sender": "0xA", "record_id": i, "ts": float(i), "net_export_w": 0.0, "soc": 0.5, "devices": "{}"}
             for i in range(10)]
        )
        db["rejections"].insert_all(
            [{"sender": "0xZ", "reason": "bad_signature", "message": "x", "ts": 100.0 + i} for i in range(300)]
        )
    gone = store.prune_messages(before=5.0, rejections_kept=120)
    assert gone == {"telemetry": 5, "forecasts": 0, "rejections": 180}
    assert [r["record_id"] for r in store.telemetry_history("0xA", 100)] == [9, 8, 7, 6, 5]
    kept = store.query("select min(ts) as lo, count(*) as n from rejections")[0]
    assert (kept["n"], kept["lo"]) == (120, 280.0)  # the newest are kept
    assert store.count_intervals() == 3 and len(store.trade_rows(None, None, 100, 0)) == 4  # the ledger stays
    assert store.prune_messages(before=5.0, rejections_kept=120) == {"telemetry": 0, "forecasts": 0, "rejections": 0}
    store.close()
