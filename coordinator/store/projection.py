"""The chain's events projected into the store's tables (docs/architecture.md §2): the only
writer of chain-derived state. Each event is recorded once by (transaction, log index), so a
restart neither misses nor double-counts one; the indexer feeds it decoded events and its block
cursor through :meth:`coordinator.store.Store.apply_chain_events`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class ChainProjection:
    """Event name -> the rows it changes (``_on_<EventName>`` handlers, in one transaction)."""

    def apply(self, db: Any, ev: Any) -> None:
        name = ev["event"]
        args = dict(ev["args"])
        tx = "0x" + bytes(ev["transactionHash"]).hex()
        key = f"{tx}:{ev['logIndex']}"
        if db["events"].count_where("key = ?", [key]):
            return
        db["events"].insert(
            {
                "key": key,
                "block": ev["blockNumber"],
                "log_index": ev["logIndex"],
                "tx": tx,
                "name": name,
                "args": json.dumps({k: _jsonable(v) for k, v in args.items()}),
            }
        )
        handler = getattr(self, f"_on_{name}", None)
        if handler:
            handler(db, args, tx, ev)

    def _on_ParticipantRegistered(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["participants"].upsert(
            {
                "address": a["account"],
                "ed25519_key": "0x" + bytes(a["ed25519Key"]).hex(),
                "zone": a["zone"],
                "registered": 1,
                "block": ev["blockNumber"],
            },
            pk="address",
        )

    def _on_ParticipantKeyRotated(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["participants"].update(a["account"], {"ed25519_key": "0x" + bytes(a["ed25519Key"]).hex()})

    def _on_ParticipantRemoved(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["participants"].update(a["account"], {"registered": 0})

    def _on_IntervalOpened(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["intervals"].upsert({"id": a["interval"], "status": "open", "clear_by": a["clearBy"]}, pk="id", alter=True)

    def _on_IntervalClosed(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["intervals"].upsert({"id": a["interval"], "status": "closed", "n_orders": a["liveOrders"]}, pk="id")

    def _on_OrderPosted(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["orders"].upsert(
            {
                "id": str(a["orderId"]),
                "interval": a["interval"],
                "owner": a["owner"],
                "side": "offer" if a["side"] == 1 else "bid",
                "qty_wh": a["qty"],
                "price": a["price"],
                "zone": a["zone"],
                "locked": a["locked"],
                "status": "open",
                "block": ev["blockNumber"],
                "log_index": ev["logIndex"],
                "tx": tx,
            },
            pk="id",
        )

    def _on_OrderCancelled(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["orders"].update(str(a["orderId"]), {"status": "cancelled"})

    def _on_OrderRecovered(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["orders"].update(str(a["orderId"]), {"status": "recovered"})

    def _on_FillsCommitted(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        for f in a["fills"]:
            oid, qty, price = (f["orderId"], f["qty"], f["price"]) if isinstance(f, Mapping) else tuple(f)
            order = db["orders"].get(str(oid))
            db["fills"].upsert(
                {
                    "order_id": str(oid),
                    "interval": a["interval"],
                    "owner": order["owner"],
                    "side": order["side"],
                    "qty_wh": qty,
                    "price": price,
                    "tx": tx,
                },
                pk="order_id",
            )
            db["orders"].update(str(oid), {"status": "filled" if qty else "unfilled"})

    def _on_IntervalCleared(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["intervals"].upsert(
            {
                "id": a["interval"],
                "status": "cleared",
                "n_fills": a["fills"],
                "volume_wh": a["boughtWh"],
                "buy_value": a["buyValue"],
                "sell_value": a["sellValue"],
                "settle_by": a["settleBy"],
            },
            pk="id",
            alter=True,
        )

    def _on_FillsSettled(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        for oid, delivered, amount, penalty in zip(
            a["orderIds"], a["deliveredWh"], a["amounts"], a["penalties"], strict=True
        ):
            order = db["orders"].get(str(oid))
            db["settlements"].upsert(
                {
                    "order_id": str(oid),
                    "interval": a["interval"],
                    "owner": order["owner"],
                    "delivered_wh": delivered,
                    "amount": amount,
                    "penalty": penalty,
                    "released": order["locked"],
                    "tx": tx,
                },
                pk="order_id",
            )
            db["orders"].update(str(oid), {"status": "settled"})

    def _on_IntervalSettled(self, db: Any, a: dict[str, Any], tx: str, ev: Any) -> None:
        db["intervals"].upsert(
            {
                "id": a["interval"],
                "status": "settled",
                "delivered_wh": a["deliveredWh"],
                "shortfall_wh": a["shortfallWh"],
                "surplus": a["surplus"],
                "settle_tx": tx,
            },
            pk="id",
            alter=True,
        )
