"""Property tests: random books, every rule checked, welfare equal to an independent LP."""

from __future__ import annotations

from clearing_oracle import assert_optimal, check_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.market.clearing import Link, Network, Order, clear

ZONES = ("a", "b", "c")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def books(draw: st.DrawFn, zones: tuple[str, ...] = ("default",), max_orders: int = 24) -> list[Order]:
    n = draw(st.integers(0, max_orders))
    ids = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    wide = draw(st.booleans())
    price = st.integers(0, 2**24 - 1) if wide else st.integers(1, 12)  # narrow: many ties
    qty = st.integers(1, 2**32 - 1) if draw(st.booleans()) else st.integers(1, 40)
    return [
        Order(
            id=i,
            side=draw(st.sampled_from(["bid", "offer"])),
            qty_wh=draw(qty),
            price=draw(price),
            zone=draw(st.sampled_from(zones)),
            seq=draw(st.integers(0, 4)),
        )
        for i in ids
    ]


@st.composite
def networks(draw: st.DrawFn) -> Network:
    links = []
    for a in ZONES:
        for b in ZONES:
            if a != b and draw(st.booleans()):
                limit = draw(st.one_of(st.none(), st.integers(0, 60)))
                links.append(Link(a, b, draw(st.integers(0, 4)), limit))
    return Network(ZONES, tuple(links))


@SETTINGS
@given(books(), st.sampled_from(["uniform", "pay-as-bid"]))
def test_copper_plate_rules_and_optimum(orders: list[Order], mechanism: str) -> None:
    r = clear(orders, mechanism)
    check_result(orders, None, r)
    assert_optimal(orders, None, r)


@SETTINGS
@given(books(ZONES), networks(), st.sampled_from(["uniform", "pay-as-bid"]))
def test_network_rules_and_optimum(orders: list[Order], network: Network, mechanism: str) -> None:
    r = clear(orders, mechanism, network)
    check_result(orders, network, r)
    assert_optimal(orders, network, r)


@settings(max_examples=100, deadline=None)
@given(books(ZONES), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(orders: list[Order], rnd: object) -> None:
    shuffled = list(orders)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert clear(shuffled) == clear(orders)


@settings(max_examples=100, deadline=None)
@given(books(ZONES))
def test_single_zone_network_matches_copper_plate_welfare(orders: list[Order]) -> None:
    one_zone = [Order(o.id, o.side, o.qty_wh, o.price, "a", o.seq) for o in orders]
    net = clear(one_zone, network=Network(("a",)))
    plain = clear(one_zone)
    assert net.welfare == plain.welfare
    check_result(one_zone, Network(("a",)), net)


@settings(max_examples=100, deadline=None)
@given(books(ZONES))
def test_pay_as_bid_allocates_like_uniform(orders: list[Order]) -> None:
    u, p = clear(orders, "uniform"), clear(orders, "pay-as-bid")
    assert [(f.order_id, f.qty_wh) for f in u.fills] == [(f.order_id, f.qty_wh) for f in p.fills]
    assert u.welfare == p.welfare and u.volume_wh == p.volume_wh
