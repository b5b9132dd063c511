"""The virtual battery: who lends, in which order, and what is refused."""

import asyncio
from types import SimpleNamespace

import pytest

from coordinator.services import FleetService, FleetSettings
from coordinator.services.vbattery import Lender, Request, lendable_w, plan
from coordinator.store import Store
from gridswarm.clock import ManualClock
from gridswarm.envelope import MalformedEnvelope
from gridswarm.messages import draw_between_wh, validate_body

T0 = 1_800_000_000.0


def dev(max_w, power_w, soc=0.8, cap=10_000.0, reserve=0.2):
    return {"kind": "battery", "power_w": power_w, "max_discharge_w": max_w, "soc": soc, "capacity_wh": cap,
            "usable_wh": max(0.0, (soc - reserve) * cap), "reserve_soc": reserve}


def test_seed_example_b_lends_a_100_w():
    # A needs 200 W with a 100 W battery: it discharges 100 W and asks for the other 100 W.
    # B needs 50 W with a 150 W battery: 100 W to spare.
    a = {"bat": dev(100.0, 100.0)}
    b = {"bat": dev(150.0, 50.0)}
    pa, ha, ca = lendable_w(a, {"bat"}, 900.0)
    pb, hb, cb = lendable_w(b, {"bat"}, 900.0)
    assert pa == 0.0 and pb == 100.0
    p = plan([Request("A", 1, 100.0, T0, T0 + 900, "essential")], [Lender("A", ha, ca, pa), Lender("B", hb, cb, pb)])
    assert [(g.lender, g.request.address, g.power_w, g.energy_wh) for g in p.grants] == [("B", "A", 100.0, 25)]
    assert p.unserved == {}


def test_highest_soc_above_reserve_lends_first_and_soc_stays_balanced():
    lenders = [Lender("low", 0.2, 10_000, 3_000), Lender("high", 0.6, 10_000, 3_000)]
    p = plan([Request("X", 1, 1_000.0, T0, T0 + 3600, "flexible")], lenders)
    assert [g.lender for g in p.grants] == ["high"]
    # a bigger draw: "high" gives until it is level with "low", then both share
    p = plan([Request("X", 1, 5_000.0, T0, T0 + 3600, "flexible")],
             [Lender("low", 0.2, 10_000, 3_000), Lender("high", 0.3, 10_000, 3_000)])
    by = {}
    for g in p.grants:
        by[g.lender] = by.get(g.lender, 0.0) + g.power_w
    assert by["high"] == pytest.approx(3_000) and by["low"] == pytest.approx(2_000)


def test_priority_classes_decide_a_shortage():
    reqs = [Request("F", 1, 800.0, T0, T0 + 900, "flexible", 1), Request("C", 2, 800.0, T0, T0 + 900, "critical", 2),
            Request("E", 3, 800.0, T0, T0 + 900, "essential", 3)]
    p = plan(reqs, [Lender("L", 0.5, 10_000, 1_200)])
    served = {g.request.address: g.power_w for g in p.grants}
    assert served == {"C": 800.0, "E": 400.0}
    assert p.unserved == {("E", 3): pytest.approx(400.0), ("F", 1): 800.0}


A, B = "0x" + "aa" * 20, "0x" + "bb" * 20


class FakeHub:
    def __init__(self):
        self.links = {A: None, B: None}
        self.sent = []
        self.seq = 0

    def sign(self, kind, body):
        self.seq += 1
        return SimpleNamespace(kind=kind, seq=self.seq, body=body)

    async def send_envelope(self, address, env):
        if address not in self.links:
            return False
        self.sent.append((address, env.kind, env.body))
        return True

    async def send(self, address, kind, body):
        return address in self.links and await self.send_envelope(address, self.sign(kind, body))


def tel(ts, devices, rid=1):
    return validate_body("telemetry", {"ts": ts, "net_export_w": 0.0, "record_id": rid, "devices": devices})


def borrow(power, start=T0 + 60, end=T0 + 960, rid=1, priority="critical"):
    return validate_body("borrow", {"request_id": rid, "power_w": power, "start": start, "end": end,
                                    "priority": priority})


def test_service_refuses_above_fleet_capacity_and_grants_both_sides(tmp_path):
    clock = ManualClock(T0)
    hub = FakeHub()
    fl = FleetService(FleetSettings(borrow_price=170, required_w=0.0), Store(tmp_path / "c.sqlite"), clock, hub)
    fl.on_telemetry(A, tel(T0, {"bat": dev(100.0, 100.0)}))
    fl.on_telemetry(B, tel(T0, {"bat": dev(150.0, 50.0)}))
    ok, reason = fl.on_borrow(A, borrow(500.0))
    assert not ok and "at most 100 W" in reason and not fl.pending_borrows
    assert fl.snapshot()["events"][-1]["kind"] == "borrow_refused"
    ok, reason = fl.on_borrow(A, borrow(100.0))
    assert ok
    assert asyncio.run(fl.serve_borrowing()) == 1
    lends = {(a, b["role"]): b for a, k, b in hub.sent if k == "lend"}
    assert lends[(B, "lender")]["counterparty"] == A and lends[(A, "borrower")]["counterparty"] == B
    for body in lends.values():
        parsed = validate_body("lend", body)
        assert parsed.energy_wh == 25 and parsed.price == 170
    # B's capacity is now lent over that window: a second request is queued but gets nothing
    assert fl.on_borrow(A, borrow(50.0, rid=2))[0]
    assert asyncio.run(fl.serve_borrowing()) == 0
    assert fl.borrow_requests[-1]["unserved_w"] == pytest.approx(50.0)


@pytest.mark.parametrize("body, field", [({"power_w": -1.0}, "power_w"), ({"end": T0}, "body"),
                                         ({"priority": "vip"}, "priority"), ({"end": T0 + 10 * 86_400}, "body")])
def test_bad_borrow_requests_are_refused_naming_the_field(body, field):
    from gridswarm.envelope import MalformedEnvelope

    raw = {"request_id": 1, "power_w": 100.0, "start": T0, "end": T0 + 900, "priority": "essential", **body}
    with pytest.raises(MalformedEnvelope, match=field):
        validate_body("borrow", raw)


def test_fixed_order_lending_ignores_soc():
    """The non-levelling choice the borrowing scenario measures against: lenders in address
    order, each as far as it goes, whatever their SoC."""
    req = [Request("0xb0", 1, 1500.0, 0.0, 3600.0, "essential")]
    lenders = [Lender("0xa2", 0.6, 10_000.0, 3000.0), Lender("0xa1", 0.1, 10_000.0, 1000.0)]
    p = plan(req, lenders, balance=False)
    assert {g.lender: g.power_w for g in p.grants} == {"0xa1": 1000.0, "0xa2": 500.0}
    p = plan(req, lenders)  # levelling: the fuller lender first
    assert p.grants[0].lender == "0xa2"


def test_levelling_many_equal_lenders_gives_one_grant_each():
    """Fourteen lenders at the same level share a draw in one grant each (not a flood of small
    ones), in proportion to their capacity, and the grants add up to the request."""
    lenders = [Lender(f"0xa{i:02d}", 0.4, 10_000.0 if i % 2 else 5_000.0, 3_000.0) for i in range(14)]
    p = plan([Request("0xb0", 1, 2_100.0, 0.0, 3 * 3600.0, "critical")], lenders)
    assert len(p.grants) == 14 and not p.unserved
    assert sum(g.power_w for g in p.grants) == pytest.approx(2_100.0)
    by = {g.lender: g.power_w for g in p.grants}
    assert by["0xa01"] == pytest.approx(2 * by["0xa00"])


def test_a_lender_is_not_promised_twice_nor_past_its_own_draw(tmp_path):
    """Energy a lender has promised for an earlier window, and what its own site draws from its
    storage until the window ends, come out of what it can lend later."""
    clock = ManualClock(T0)
    fl = FleetService(FleetSettings(required_w=0.0), Store(tmp_path / "c.sqlite"), clock, FakeHub())
    h = 3600.0
    fl.on_telemetry(B, tel(T0, {"bat": dev(5_000.0, 0.0, soc=0.5, cap=10_000.0)}))  # 3,000 Wh above reserve
    first = fl.lenders(T0 + h, T0 + 2 * h)
    assert first[0].lendable_w == pytest.approx(3_000.0)
    fl.grants.append({"lender": B, "borrower": A, "power_w": 2_000.0, "energy_wh": 2_000, "start": T0 + h,
                      "end": T0 + 2 * h})
    later = fl.lenders(T0 + 2 * h, T0 + 3 * h)  # no overlap: only the energy limits it
    assert later[0].lendable_w == pytest.approx(1_000.0)
    # its own site now draws 250 W from the battery: 3 h of it until that window ends
    fl.on_telemetry(B, tel(T0 + 1, {"bat": dev(5_000.0, 250.0, soc=0.5, cap=10_000.0)}, rid=2))
    assert fl.lenders(T0 + 2 * h, T0 + 3 * h)[0].lendable_w == pytest.approx(1_000.0 - 750.0, abs=1.0)


def test_held_back_share_keeps_capacity_for_higher_classes_across_time(tmp_path):
    """Grants are firm once made, so a flexible request arriving first must not take the power a
    critical request arriving later needs: the last 20 % stays for the classes above."""
    clock = ManualClock(T0)
    hub = FakeHub()
    fl = FleetService(FleetSettings(required_w=0.0), Store(tmp_path / "c.sqlite"), clock, hub)
    fl.on_telemetry(A, tel(T0, {"bat": dev(1_000.0, 0.0)}))
    fl.on_telemetry(B, tel(T0, {"bat": dev(1_000.0, 0.0)}))
    ok, reason = fl.on_borrow(A, borrow(900.0, priority="flexible"))
    assert not ok and "at most 800 W" in reason and "200 W held back for requests above flexible" in reason
    assert fl.snapshot()["events"][-1]["kind"] == "borrow_refused"
    assert fl.on_borrow(A, borrow(800.0, rid=2, priority="flexible"))[0]
    assert asyncio.run(fl.serve_borrowing()) == 1
    # what is left: nothing for a flexible request, what its 10 % leaves for an essential one
    assert fl.on_borrow(A, borrow(50.0, rid=3, priority="flexible"))[0]
    assert fl.on_borrow(A, borrow(150.0, rid=4, priority="essential"))[0]
    assert asyncio.run(fl.serve_borrowing()) == 1
    assert sorted(round(g["power_w"]) for g in fl.grants) == [100, 800]
    unserved = {e["request_id"]: round(e["unserved_w"]) for e in fl.borrow_requests if e["outcome"] == "planned"}
    assert unserved[3] == 50 and unserved[4] == 50
    # and the 100 W held back for critical requests is there when one comes
    assert fl.on_borrow(A, borrow(200.0, rid=5, priority="critical"))[0]
    assert asyncio.run(fl.serve_borrowing()) == 1
    assert sorted(round(g["power_w"]) for g in fl.grants) == [100, 100, 800]


def test_plan_holds_back_within_one_batch_too():
    reqs = [Request("F", 1, 1_000.0, T0, T0 + 900, "flexible", 1)]
    p = plan(reqs, [Lender("L", 0.5, 10_000, 1_000)], held_back={"flexible": 0.25})
    assert [round(g.power_w) for g in p.grants] == [750]
    assert p.unserved == {("F", 1): pytest.approx(250.0)}


@pytest.mark.parametrize("held", [{"flexible": 1.0}, {"essential": 0.3, "flexible": 0.1}, {"critical": -0.1}])
def test_held_back_shares_are_checked(held):
    with pytest.raises(ValueError, match="borrow_held_back"):
        FleetSettings(borrow_held_back=held)


def test_a_site_asking_to_borrow_does_not_lend_in_the_same_plan():
    reqs = [Request("A", 1, 500.0, T0, T0 + 900, "critical", 1), Request("B", 2, 500.0, T0, T0 + 900, "critical", 2)]
    p = plan(reqs, [Lender("A", 0.5, 10_000, 1_000), Lender("B", 0.5, 10_000, 1_000), Lender("L", 0.5, 10_000, 600)])
    assert {g.lender for g in p.grants} == {"L"}
    assert sum(g.power_w for g in p.grants) == pytest.approx(600.0)


def test_a_lender_first_covers_its_own_import_and_a_borrower_does_not_lend(tmp_path):
    """Lending is measured by the lender's export: a site importing 400 W for its own load can
    lend only what its storage has beyond that; a site borrowing over the window lends nothing."""
    clock = ManualClock(T0)
    fl = FleetService(FleetSettings(required_w=0.0), Store(tmp_path / "c.sqlite"), clock, FakeHub())
    importing = validate_body("telemetry", {"ts": T0, "net_export_w": -400.0, "record_id": 1,
                                            "devices": {"bat": dev(1_000.0, 0.0)}})
    fl.on_telemetry(B, importing)
    assert [round(ln.lendable_w) for ln in fl.lenders(T0 + 60, T0 + 960)] == [600]
    fl.on_telemetry(A, tel(T0, {"bat": dev(1_000.0, 0.0)}))
    fl.grants.append({"request_id": 9, "borrower": B, "lender": A, "power_w": 100.0, "energy_wh": 25,
                      "start": T0 + 60, "end": T0 + 960, "price": 150, "priority": "critical", "ts": T0})
    assert [ln.address for ln in fl.lenders(T0 + 60, T0 + 960)] == [A]


def test_a_lender_keeps_what_it_says_its_site_will_draw(tmp_path):
    """A lender reports its own draw hour by hour ahead (its forecast's upper bound, or its loads'
    rating): what it draws until the window ends comes out of what it can lend, even when it
    drew nothing from its storage when it reported."""
    clock = ManualClock(T0)
    fl = FleetService(FleetSettings(required_w=0.0), Store(tmp_path / "c.sqlite"), clock, FakeHub())
    h = 3600.0
    quiet = {"bat": dev(5_000.0, 0.0, soc=0.5, cap=10_000.0)}  # 3,000 Wh above reserve, idle now
    fl.on_telemetry(B, tel(T0, quiet))
    assert fl.lenders(T0 + h, T0 + 2 * h)[0].lendable_w == pytest.approx(3_000.0)
    # the evening comes: 200, 400 and 800 Wh in the next three hours, then 1,000 Wh an hour
    body = {"ts": T0 + 1, "net_export_w": 0.0, "record_id": 2, "devices": quiet,
            "draw_ahead_wh": [200.0, 400.0, 800.0, 1_000.0]}
    fl.on_telemetry(B, validate_body("telemetry", body))
    # until the window [T0 + h, T0 + 2h) ends it draws ~600 Wh: 2,400 Wh left to lend over an hour
    assert fl.lenders(T0 + h, T0 + 2 * h)[0].lendable_w == pytest.approx(2_400.0, abs=2.0)
    # a window six hours out: 200 + 400 + 800 + 1,000 + 1,000 (past the list at its highest hour)
    # + 1,000 -> 4,400 Wh > 3,000 Wh: it lends nothing there
    assert fl.lenders(T0 + 5 * h, T0 + 6 * h) == []


@pytest.mark.parametrize("draw, why", [
    ([float("nan")], "draw_ahead_wh.0"),
    ([-5.0], "draw_ahead_wh.0"),
    ([100.0] * 49, "draw_ahead_wh"),
    ([], "draw_ahead_wh"),
])
def test_impossible_draw_ahead_is_refused(draw, why):
    body = {"ts": T0, "net_export_w": 0.0, "record_id": 1, "devices": {}, "draw_ahead_wh": draw}
    with pytest.raises(MalformedEnvelope, match=why.replace(".", r"\.")):
        validate_body("telemetry", body)


def test_draw_between_counts_before_within_and_past_the_hours():
    hours = [100.0, 300.0]
    assert draw_between_wh(hours, T0, T0, T0 + 3600) == pytest.approx(100.0)
    assert draw_between_wh(hours, T0, T0 + 1800, T0 + 5400) == pytest.approx(50.0 + 150.0)
    assert draw_between_wh(hours, T0, T0 - 3600, T0) == pytest.approx(100.0)  # before: the first hour's rate
    assert draw_between_wh(hours, T0, T0 + 7200, T0 + 10800) == pytest.approx(300.0)  # past: the highest hour
    assert draw_between_wh(hours, T0, T0 + 10, T0 + 10) == 0.0 and draw_between_wh([], T0, T0, T0 + 60) == 0.0


def test_a_grant_its_lender_refuses_is_withdrawn_and_planned_again_elsewhere(tmp_path):
    """The lender's own check is final: a refused grant stops counting, the borrower is told to
    drop it (so it does not bid for energy nobody offers), the lender is not asked again over that
    window, and the borrower's request is served by another lender."""
    C = "0x" + "cc" * 20
    clock = ManualClock(T0)
    hub = FakeHub()
    hub.links[C] = None
    fl = FleetService(FleetSettings(required_w=0.0, lender_choice="fixed_order", borrow_held_back={}),
                      Store(tmp_path / "c.sqlite"), clock, hub)
    fl.on_telemetry(B, tel(T0, {"bat": dev(1_000.0, 0.0, soc=0.9)}))
    fl.on_telemetry(C, tel(T0, {"bat": dev(1_000.0, 0.0, soc=0.5)}))
    assert fl.on_borrow(A, borrow(400.0))[0]
    assert asyncio.run(fl.serve_borrowing()) == 1
    (grant,) = fl.grants
    lender = grant["lender"]
    other = C if lender == B else B
    fl.on_lend_answer(lender, 1, False, "lending refused: 380 Wh asked, 200 Wh above the owner's reserve")
    assert list(fl.grants) == []
    assert fl.snapshot()["borrowing"]["refused_grants"][0]["lender"] == lender
    assert fl.snapshot()["events"][-1]["kind"] == "lend_refused"
    hub.sent.clear()
    assert asyncio.run(fl.serve_borrowing()) == 1
    revoke = [(a, b) for a, k, b in hub.sent if b.get("revoke")]
    assert revoke == [(A, {**revoke[0][1], "role": "borrower", "counterparty": lender, "request_id": 1})]
    assert [(g["lender"], g["borrower"], round(g["power_w"])) for g in fl.grants] == [(other, A, 400)]
    assert [ln.address for ln in fl.lenders(grant["start"], grant["end"])] == [other]
    # a borrower not connected is told on a later round, until the window starts
    fl.grants.clear()
    fl.on_telemetry(C if other == B else B, tel(T0, {"bat": dev(1_000.0, 0.0, soc=0.9)}, rid=3))
    assert fl.on_borrow(A, borrow(300.0, rid=2))[0]
    asyncio.run(fl.serve_borrowing())
    g2 = fl.grants[-1]
    fl.on_lend_answer(g2["lender"], hub.seq - 1, False, "lending refused")
    hub.links.pop(A)
    hub.sent.clear()
    asyncio.run(fl.serve_borrowing())
    assert not [b for a, k, b in hub.sent if b.get("revoke")] and len(fl._revoke) == 1
    hub.links[A] = None
    asyncio.run(fl.serve_borrowing())
    assert [b["request_id"] for a, k, b in hub.sent if b.get("revoke")] == [2] and len(fl._revoke) == 0
    fl.grants.append(grant)
    # an answer that accepts, or names no grant we sent, changes nothing
    fl.on_lend_answer(other, 999, False, "unknown")
    assert len(fl.grants) == 1
