"""The pure dispatch-acceptance check: every refusal rule, and acceptance."""

from __future__ import annotations

import pytest

from agent.dispatch_check import dispatch_refusal
from gridswarm.messages import Dispatch, DispatchFill

NOW = 1_800_000_000.0
MINE = {"order_id": "7", "qty_wh": 500}


def dispatch(*, fills=((7, 400),), start=NOW + 60, end=NOW + 960, interval=3):
    return Dispatch(interval=interval, start=start, end=end, export_w=1_000.0,
                    fills=[DispatchFill(order_id=o, side="offer", qty_wh=q, price=100) for o, q in fills])


@pytest.mark.parametrize(("d", "mine", "reason"), [
    (dispatch(), None, "no order of ours in interval 3"),
    (dispatch(fills=((7, 100), (8, 100))), MINE, "dispatch names orders that are not ours"),
    (dispatch(fills=((7, 501),)), MINE, "dispatch fills exceed our order"),
    (dispatch(end=NOW), MINE, "dispatch window is already over"),
    (dispatch(start=NOW - 900, end=NOW - 1), MINE, "dispatch window is already over"),
])
def test_refusals_say_why(d, mine, reason):
    assert dispatch_refusal(d, mine, NOW) == reason


@pytest.mark.parametrize("d", [dispatch(), dispatch(fills=((7, 500),)), dispatch(fills=()),
                               dispatch(start=NOW - 60, end=NOW + 1)])
def test_accepted(d):
    assert dispatch_refusal(d, MINE, NOW) == ""


def test_the_order_id_compares_as_text_either_way():
    assert dispatch_refusal(dispatch(), {"order_id": 7, "qty_wh": 500}, NOW) == ""
