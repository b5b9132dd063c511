"""Independent checks for the clearing tests: a raw-order LP (HiGHS via SciPy) and the rules.

Nothing here imports the engine's private modules: the oracle LP has one variable per *order*
(not per aggregated level) and is solved by ``scipy.optimize.linprog``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from coordinator.market.clearing import ClearingResult, Network, Order


def lp_welfare(orders: Sequence[Order], network: Network | None) -> float:
    """Optimal welfare of the raw-order LP: max sum(b x) - sum(a y) - sum(fee f)."""
    if not orders:
        return 0.0
    zones = list(network.zones) if network else ["*"]
    zi = {z: i for i, z in enumerate(zones)}
    links = list(network.links) if network else []
    n, e = len(orders), len(links)
    rows, cols, vals, cost, upper = [], [], [], [], []
    for j, o in enumerate(orders):
        rows.append(zi[o.zone] if network else 0)
        cols.append(j)
        vals.append(-1.0 if o.side == "bid" else 1.0)
        cost.append(-o.price if o.side == "bid" else o.price)
        upper.append(o.qty_wh)
    for j, lk in enumerate(links):
        rows += [zi[lk.from_zone], zi[lk.to_zone]]
        cols += [n + j, n + j]
        vals += [-1.0, 1.0]
        cost.append(lk.fee)
        upper.append(None if lk.limit_wh is None else lk.limit_wh)
    a_eq = coo_matrix((vals, (rows, cols)), shape=(len(zones), n + e))
    res = linprog(
        c=np.asarray(cost, dtype=float),
        A_eq=a_eq,
        b_eq=np.zeros(len(zones)),
        bounds=[(0, u) for u in upper],
        method="highs",
    )
    assert res.status == 0, res.message
    return float(-res.fun)


def check_result(orders: Sequence[Order], network: Network | None, r: ClearingResult) -> None:
    """Assert every rule a result must obey (feasibility, contract rules, price rule, ties)."""
    by_id = {o.id: o for o in orders}
    fills = {f.order_id: f for f in r.fills}
    assert len(fills) == len(r.fills), "one fill per order"
    assert [f.order_id for f in r.fills] == sorted(fills), "fills sorted by order id"
    bought = sold = pay = receive = value = cost = 0
    zone_net: dict[str, int] = defaultdict(int)
    for f in r.fills:
        o = by_id[f.order_id]
        assert type(f.qty_wh) is int and type(f.price) is int
        assert 0 < f.qty_wh <= o.qty_wh
        if o.side == "bid":
            assert f.price <= o.price, (o, f)
            bought += f.qty_wh
            pay += f.qty_wh * f.price
            value += f.qty_wh * o.price
            zone_net[o.zone] -= f.qty_wh
        else:
            assert f.price >= o.price, (o, f)
            sold += f.qty_wh
            receive += f.qty_wh * f.price
            cost += f.qty_wh * o.price
            zone_net[o.zone] += f.qty_wh
    assert bought == sold == r.volume_wh
    assert pay >= receive, "contract: buyers pay at least what sellers receive"
    assert (pay, receive) == (r.buyers_pay, r.sellers_receive)
    fee_revenue = 0
    if network is None:
        assert r.flows == {} and r.fee_revenue == 0
    else:
        links = {(lk.from_zone, lk.to_zone): lk for lk in network.links}
        for (a, b), wh in r.flows.items():
            lk = links[(a, b)]
            assert wh > 0
            assert lk.limit_wh is None or wh <= lk.limit_wh, "transfer limit exceeded"
            fee_revenue += wh * lk.fee
            zone_net[a] -= wh
            zone_net[b] += wh
        assert all(v == 0 for v in zone_net.values()), f"zones do not balance: {dict(zone_net)}"
    assert r.fee_revenue == fee_revenue
    assert r.welfare == value - cost - fee_revenue
    assert pay - receive >= fee_revenue
    _check_priority(orders, fills, network is not None)
    if r.mechanism == "pay-as-bid":
        assert all(f.price == by_id[f.order_id].price for f in r.fills)
        assert r.price is None and r.zone_prices == {}
    else:
        _check_uniform_prices(orders, fills, network, r)


def _check_priority(orders: Sequence[Order], fills: dict[int, object], zoned: bool) -> None:
    """A better-ranked order of the same side (and zone) is full whenever a worse one trades."""
    groups: dict[tuple[str, str], list[Order]] = defaultdict(list)
    for o in orders:
        groups[(o.side, o.zone if zoned else "*")].append(o)
    for (side, _), group in groups.items():
        sign = -1 if side == "bid" else 1
        ranked = sorted(group, key=lambda o: (sign * o.price, o.seq, o.id))
        seen_unfilled = False
        for o in ranked:
            q = fills[o.id].qty_wh if o.id in fills else 0  # type: ignore[attr-defined]
            if seen_unfilled:
                assert q == 0, f"order {o.id} trades while a better-ranked {side} is not full"
            if q < o.qty_wh:
                seen_unfilled = True


def _check_uniform_prices(
    orders: Sequence[Order], fills: dict[int, object], network: Network | None, r: ClearingResult
) -> None:
    key = (lambda o: o.zone) if network else (lambda o: "*")
    zone_price: dict[str, int] = {}
    for o in orders:
        if o.id in fills:
            p = fills[o.id].price  # type: ignore[attr-defined]
            zone_price.setdefault(key(o), p)
            assert zone_price[key(o)] == p, "one price per zone"
    if network is None:
        assert r.price == (next(iter(zone_price.values())) if zone_price else None)
        assert set(r.zone_prices.values()) <= ({r.price} if r.price is not None else set())
    else:
        assert r.zone_prices == zone_price
    # equilibrium: nobody left out would trade at the zone price
    for o in orders:
        z = key(o)
        if z not in zone_price:
            continue
        q = fills[o.id].qty_wh if o.id in fills else 0  # type: ignore[attr-defined]
        if q < o.qty_wh:
            if o.side == "bid":
                assert o.price <= zone_price[z], f"bid {o.id} unfilled below its limit"
            else:
                assert o.price >= zone_price[z], f"offer {o.id} unfilled above its limit"
    if network is None and zone_price:
        # the documented rule: midpoint (rounded down) of the interval of clearing prices
        lo, hi = 0, 2**24 - 1
        for o in orders:
            q = fills[o.id].qty_wh if o.id in fills else 0  # type: ignore[attr-defined]
            if o.side == "bid":
                if q > 0:
                    hi = min(hi, o.price)
                if q < o.qty_wh:
                    lo = max(lo, o.price)
            else:
                if q > 0:
                    lo = max(lo, o.price)
                if q < o.qty_wh:
                    hi = min(hi, o.price)
        assert lo <= hi
        assert r.price == (lo + hi) // 2
    if network is not None:
        for a, b in r.flows:
            lk = next(lk for lk in network.links if (lk.from_zone, lk.to_zone) == (a, b))
            if a in zone_price and b in zone_price:
                assert zone_price[b] - zone_price[a] >= lk.fee, "importing zone pays at least the fee"


def assert_optimal(orders: Sequence[Order], network: Network | None, r: ClearingResult) -> None:
    best = lp_welfare(orders, network)
    assert abs(r.welfare - best) <= 1e-9 * max(1.0, abs(best)), (r.welfare, best)
