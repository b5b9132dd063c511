"""Market clearing engine: a pure library (no I/O, no chain, no clock).

Mechanisms (``mechanism=``):

``"uniform"`` (default)
    Uniform-price double auction (pay-as-clear). Allocation maximises welfare -- the sum of
    accepted bids' limit value minus accepted offers' limit cost (minus grid fees) -- with
    bought == sold. Everyone in a zone trades at one price: the midpoint (rounded down) of the
    interval of prices at which every accepted order is willing and no rejected order would
    trade (see ``docs/clearing.md``).
``"pay-as-bid"``
    Discriminatory: the same welfare-maximising allocation, but each order settles at its own
    limit price -- a bid pays its bid, an offer receives its ask. The spread goes to the operator.

Tie-breaking (deterministic, independent of input order): better price first; at equal price,
earlier ``seq`` (time of posting) first, then the lower order id.

Without a ``network`` the market is one copper plate (zones are ignored) and clears in linear
time. With a :class:`Network` the engine clears zones jointly with grid fees and transfer limits
(an LP over aggregated price levels, checked exactly in integers).

Units follow the contract: quantities in whole Wh, prices in settlement-token base units per
Wh, all integers; no step rounds a Wh or a token unit away.

Errors: see :mod:`coordinator.market._errors` (``ClearingError`` is the root).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ._book import I64, MAX_ORDER_ID, MAX_PRICE, MAX_QTY_WH, Book, exact_dot, validate
from ._copper import clear_copper
from ._errors import ClearingError, MechanismError, NetworkError, OrderError, SolverError
from ._network import Link, Network, clear_network

__all__ = [
    "MAX_PRICE",
    "MAX_QTY_WH",
    "MECHANISMS",
    "Book",
    "BookResult",
    "ClearingError",
    "ClearingResult",
    "Fill",
    "Link",
    "MechanismError",
    "Network",
    "NetworkError",
    "Order",
    "OrderError",
    "SolverError",
    "book_from_orders",
    "clear",
    "clear_book",
]

MECHANISMS = ("uniform", "pay-as-bid")
Side = Literal["bid", "offer"]


@dataclass(frozen=True, slots=True)
class Order:
    """One limit order. ``price`` in token base units per Wh, ``qty_wh`` in whole Wh.

    ``seq`` is the posting order (earlier = smaller) used for tie-breaking.
    Validated by :func:`clear`, not here.
    """

    id: int
    side: Side
    qty_wh: int
    price: int
    zone: str = "default"
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Fill:
    """What one order trades: ``qty_wh`` at ``price`` per Wh.

    One-sided: for a bid, what its owner pays per Wh (grid fees included); for an offer, what
    its owner receives per Wh.
    """

    order_id: int
    qty_wh: int
    price: int


@dataclass(frozen=True, eq=False)
class BookResult:
    """Result of :func:`clear_book`; per-order arrays are aligned with the input book."""

    mechanism: str
    filled_qty: I64
    price: int | None
    zone_prices: dict[str, int]
    volume_wh: int
    welfare: int
    flows: dict[tuple[str, str], int]
    fee_revenue: int
    buyers_pay: int
    sellers_receive: int
    _book: Book = field(repr=False)
    _order_price: I64 | None = field(repr=False)  # per-order price when not one uniform price

    def fill_prices(self) -> I64:
        """Per-order fill price (0 where the order does not trade)."""
        if self._order_price is not None:
            return np.where(self.filled_qty > 0, self._order_price, 0)
        return np.where(self.filled_qty > 0, self.price or 0, 0)

    def fills(self) -> list[Fill]:
        """One :class:`Fill` per trading order, sorted by order id."""
        idx = np.flatnonzero(self.filled_qty > 0)
        idx = idx[np.argsort(self._book.ids[idx], kind="stable")]
        ids = self._book.ids[idx].tolist()
        qty = self.filled_qty[idx].tolist()
        prices = self.fill_prices()[idx].tolist()
        return [Fill(i, q, p) for i, q, p in zip(ids, qty, prices, strict=True)]


@dataclass(frozen=True)
class ClearingResult:
    """Outcome of one clearing, in exact integers.

    ``fills``: one per trading order, sorted by order id (see :class:`Fill`).
    ``price``: the uniform price when every trading order has the same one (``uniform`` with
    one price everywhere), else ``None`` (pay-as-bid, split zones, nothing traded).
    ``zone_prices``: uniform price per zone where something traded (empty for pay-as-bid).
    ``volume_wh``: Wh bought == Wh sold. ``welfare``: accepted bid value - accepted offer cost -
    grid fees. ``flows``: Wh carried per (from_zone, to_zone) link, positive entries only.
    ``fee_revenue``: sum of flow * fee. ``buyers_pay`` / ``sellers_receive``: totals of the
    fills; their difference (>= fee_revenue) goes to the grid operator.
    """

    mechanism: str
    fills: list[Fill]
    price: int | None
    zone_prices: dict[str, int]
    volume_wh: int
    welfare: int
    flows: dict[tuple[str, str], int]
    fee_revenue: int
    buyers_pay: int
    sellers_receive: int

    @property
    def operator_revenue(self) -> int:
        """What the grid operator keeps: grid fees plus congestion rent (or, pay-as-bid, spread)."""
        return self.buyers_pay - self.sellers_receive

    @property
    def congestion_rent(self) -> int:
        return self.operator_revenue - self.fee_revenue

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (integers stay integers)."""
        return {
            "mechanism": self.mechanism,
            "price": self.price,
            "zone_prices": dict(self.zone_prices),
            "volume_wh": self.volume_wh,
            "welfare": self.welfare,
            "buyers_pay": self.buyers_pay,
            "sellers_receive": self.sellers_receive,
            "fee_revenue": self.fee_revenue,
            "congestion_rent": self.congestion_rent,
            "flows": [{"from": a, "to": b, "wh": wh} for (a, b), wh in self.flows.items()],
            "fills": [{"order_id": f.order_id, "qty_wh": f.qty_wh, "price": f.price} for f in self.fills],
        }


def clear(
    orders: Sequence[Order], mechanism: str = "uniform", network: Network | None = None
) -> ClearingResult:
    """Clear ``orders`` with ``mechanism`` (``"uniform"`` or ``"pay-as-bid"``).

    Without ``network`` all orders meet in one market; with it, each order's ``zone`` must be
    one of ``network.zones``. Raises :class:`OrderError` naming the first bad order, and never
    returns a partial result.
    """
    book = book_from_orders(orders)
    r = clear_book(book, mechanism, network)
    return ClearingResult(
        mechanism=r.mechanism,
        fills=r.fills(),
        price=r.price,
        zone_prices=r.zone_prices,
        volume_wh=r.volume_wh,
        welfare=r.welfare,
        flows=r.flows,
        fee_revenue=r.fee_revenue,
        buyers_pay=r.buyers_pay,
        sellers_receive=r.sellers_receive,
    )


def book_from_orders(orders: Sequence[Order]) -> Book:
    """Validate ``Order`` objects and turn them into a :class:`Book`."""
    n = len(orders)
    ids = np.empty(n, dtype=np.int64)
    is_bid = np.empty(n, dtype=bool)
    qty = np.empty(n, dtype=np.int64)
    price = np.empty(n, dtype=np.int64)
    seq = np.empty(n, dtype=np.int64)
    zone = np.empty(n, dtype=np.intp)
    zone_ids: dict[str, int] = {}
    for i, o in enumerate(orders):
        if not isinstance(o, Order):
            raise OrderError(
                f"expected an Order, got {type(o).__name__}", order_id=None, index=i, field="order"
            )
        oid = o.id if _is_int(o.id) else None
        if oid is None or not 0 <= oid <= MAX_ORDER_ID:
            raise OrderError(
                f"id must be an integer in 0..2**63-1, got {o.id!r}", order_id=oid, index=i, field="id"
            )
        if o.side not in ("bid", "offer"):
            raise OrderError(
                f"side must be 'bid' or 'offer', got {o.side!r}", order_id=oid, index=i, field="side"
            )
        if not _is_int(o.qty_wh) or not 1 <= o.qty_wh <= MAX_QTY_WH:
            raise OrderError(
                f"must be a whole number of Wh in 1..{MAX_QTY_WH}, got {o.qty_wh!r}",
                order_id=oid,
                index=i,
                field="qty_wh",
            )
        if not _is_int(o.price) or not 0 <= o.price <= MAX_PRICE:
            raise OrderError(
                f"must be an integer in 0..{MAX_PRICE} per Wh, got {o.price!r}",
                order_id=oid,
                index=i,
                field="price",
            )
        if not _is_int(o.seq) or not 0 <= o.seq <= MAX_ORDER_ID:
            raise OrderError(
                f"must be an integer in 0..2**63-1, got {o.seq!r}", order_id=oid, index=i, field="seq"
            )
        if not isinstance(o.zone, str) or not o.zone:
            raise OrderError(
                f"must be a non-empty string, got {o.zone!r}", order_id=oid, index=i, field="zone"
            )
        ids[i], is_bid[i], qty[i], price[i], seq[i] = oid, o.side == "bid", o.qty_wh, o.price, o.seq
        zone[i] = zone_ids.setdefault(o.zone, len(zone_ids))
    names = tuple(zone_ids) or ("default",)
    return Book.from_arrays(ids, is_bid, qty, price, seq, zone, names)


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def clear_book(book: Book, mechanism: str = "uniform", network: Network | None = None) -> BookResult:
    """Bulk entry point: clear a :class:`Book` (build it with :meth:`Book.from_arrays`).

    A book built any other way is validated here first. The arrays must not change afterwards.
    """
    if mechanism not in MECHANISMS:
        raise MechanismError(f"unknown mechanism {mechanism!r}; expected one of {', '.join(MECHANISMS)}")
    if network is not None and not isinstance(network, Network):
        raise NetworkError(f"network must be a Network, got {type(network).__name__}")
    if book._price_range is None and len(book):
        validate(book)
    order_price: I64 | None = None
    price: int | None = None
    flows: dict[tuple[str, str], int] = {}
    fee_revenue = 0
    prices: dict[str, int] = {}
    if network is None:
        c = clear_copper(book)
        filled, volume, bid_value, offer_cost = c.filled, c.volume, c.bid_value, c.offer_cost
        if c.price is not None:
            if book.zone is None:
                prices = {book.zone_names[0]: c.price}
            else:
                traded = np.unique(book.zone[filled > 0]).tolist()
                prices = {book.zone_names[z]: c.price for z in traded}
        price = c.price
        buyers_pay = sellers_receive = volume * (price or 0)
    else:
        nw = clear_network(book, network)
        filled, levels, acc = nw.filled, nw.levels, nw.level_acc
        flows = {
            (lk.from_zone, lk.to_zone): f for lk, f in zip(network.links, nw.flows, strict=True) if f > 0
        }
        fee_revenue = sum(lk.fee * f for lk, f in zip(network.links, nw.flows, strict=True))
        bid = levels.is_bid
        bid_value = exact_dot(acc[bid], levels.price[bid])
        offer_cost = exact_dot(acc[~bid], levels.price[~bid])
        volume = int(acc[bid].sum())
        if nw.zone_prices is not None:
            traded_zones = sorted(set(levels.zone[acc > 0].tolist()))
            prices = {network.zones[z]: nw.zone_prices[z] for z in traded_zones}
            if len(set(prices.values())) == 1:
                price = next(iter(prices.values()))
        zp = np.asarray(nw.zone_prices or [0] * len(network.zones), dtype=np.int64)
        order_price = zp[nw.order_zone]
        buyers_pay = exact_dot(filled[book.is_bid], order_price[book.is_bid])
        sellers_receive = exact_dot(filled[~book.is_bid], order_price[~book.is_bid])
    welfare = bid_value - offer_cost - fee_revenue
    if mechanism == "pay-as-bid":
        buyers_pay, sellers_receive = bid_value, offer_cost
        order_price, price, prices = book.price, None, {}
    return BookResult(
        mechanism=mechanism,
        filled_qty=filled,
        price=price,
        zone_prices=prices,
        volume_wh=volume,
        welfare=welfare,
        flows=flows,
        fee_revenue=fee_revenue,
        buyers_pay=buyers_pay,
        sellers_receive=sellers_receive,
        _book=book,
        _order_price=order_price,
    )
