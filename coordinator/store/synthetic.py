"""A synthetic settled history in the store's own tables, for the analytics read model
(:mod:`coordinator.store.analytics`): what ``gridswarm bench analytics`` times and
tests/coordinator/test_analytics.py checks figures against. It writes the tables directly, so it
lives beside the schema it writes and changes with it.
"""

from __future__ import annotations

import json

from coordinator.store import Store

INTERVAL_S = 900.0
START_TS = 1_767_225_600.0  # 2026-01-01 00:00 UTC
ZONES = {0: "feeder-a", 1: "feeder-b"}


def site_address(i: int) -> str:
    return "0x" + f"{i + 1:040x}"


def populate(
    store: Store, days: int, sites: int, start_ts: float = START_TS, first_id: int = 1_000_000
) -> dict[str, int]:
    """Write ``days`` × 96 settled intervals for ``sites`` sites; returns the row counts.

    Sites alternate between two zones; even sites sell, odd sites buy. Prices and quantities
    vary with the interval and the site so that sums and curves are not trivial. Rows go in a
    day at a time.
    """
    n_intervals = days * 96
    conn = store.db.conn
    for col in ("fee_revenue", "buyers_pay", "sellers_receive"):  # as the market loop adds them
        if col not in store.db.table("intervals").columns_dict:
            store.db.table("intervals").add_column(col, int)
    with store.transaction():
        conn.executemany(
            "insert into participants (address, ed25519_key, zone, registered, block) values (?, ?, ?, 1, ?)",
            [(site_address(i), "00" * 32, i % 2, i) for i in range(sites)],
        )
    store.participants_version += 1
    owners = [site_address(i) for i in range(sites)]
    for day in range(days):
        orders, fills, settles, tel, intervals = [], [], [], [], []
        for k in range(day * 96, (day + 1) * 96):
            iv = first_id + k
            start = start_ts + k * INTERVAL_S
            price = 100 + (k * 7) % 90
            sold = bought = 0
            for i in range(sites):
                side = "offer" if i % 2 == 0 else "bid"
                qty = 200 + (k * 13 + i * 31) % 1800
                limit = price - 10 - (i % 7) if side == "offer" else price + 10 + (i % 11)
                oid = str(iv * 10_000 + i)
                owner = owners[i]
                delivered = qty - (i % 5 == 0) * (k % 3)
                orders.append(
                    (
                        oid,
                        iv,
                        owner,
                        side,
                        qty,
                        limit,
                        i % 2,
                        qty * limit if side == "bid" else 0,
                        "settled",
                        k,
                        i,
                        "0x",
                        0,
                    )
                )
                fills.append((oid, iv, owner, side, qty, price, "0x"))
                settles.append((oid, iv, owner, delivered, delivered * price, (qty - delivered) * price, 0, "0x"))
                tel.append((owner, k + 1, start, float(qty if side == "offer" else -qty), 0.2 + (k % 70) / 100, "{}"))
                if side == "offer":
                    sold += qty
                else:
                    bought += qty
            volume = min(sold, bought)
            intervals.append(
                (
                    iv,
                    start,
                    start + INTERVAL_S,
                    price,
                    volume,
                    sites,
                    sites,
                    float(volume * 40),
                    json.dumps({"feeder-a": price, "feeder-b": price + 3}),
                    json.dumps({"feeder-a->feeder-b": 1000}),
                    volume,
                    5000,
                    volume * price + 5000,
                    volume * price,
                    100_000 + sites * 30_000,
                    90_000 + sites * 25_000,
                    0.05,
                )
            )
        with store.transaction():
            conn.executemany("insert into orders values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", orders)
            conn.executemany("insert into fills values (?, ?, ?, ?, ?, ?, ?)", fills)
            conn.executemany("insert into settlements values (?, ?, ?, ?, ?, ?, ?, ?)", settles)
            conn.executemany(
                "insert into telemetry (sender, record_id, ts, net_export_w, soc, devices) values (?, ?, ?, ?, ?, ?)",
                tel,
            )
            conn.executemany(
                """insert into intervals (id, status, delivery_start, delivery_end, clearing_price, volume_wh,
                     n_orders, n_fills, welfare, mechanism, zone_prices, flows, delivered_wh, fee_revenue,
                     buyers_pay, sellers_receive, gas_commit, gas_settle, clear_seconds)
                   values (?, 'settled', ?, ?, ?, ?, ?, ?, ?, 'uniform', ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                intervals,
            )
    return {"intervals": n_intervals, "orders": n_intervals * sites, "telemetry": n_intervals * sites}
