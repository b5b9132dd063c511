"""The agent's own SQLite store, on its own: outbox dedup and states, counters, orders and
durable state survive reopening the file."""

from __future__ import annotations

from pathlib import Path

from agent.store import AgentStore


def test_counters_and_state_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "agent.sqlite"
    s = AgentStore(path)
    assert [s.next_counter("seq") for _ in range(3)] == [1, 2, 3]
    assert s.next_counter("other") == 1
    s.put_state("dispatch:7", {"net_w": -250})
    s.put_state("dispatch:8", {"net_w": 100})
    s.put_state("soc", 0.4)
    s.close()

    s = AgentStore(path)
    assert s.next_counter("seq") == 4
    assert s.get_state("soc") == 0.4
    assert s.states_with_prefix("dispatch:") == {"dispatch:7": {"net_w": -250}, "dispatch:8": {"net_w": 100}}
    s.delete_state("dispatch:7")
    assert set(s.states_with_prefix("dispatch:")) == {"dispatch:8"}
    assert s.get_state("missing") is None
    s.close()


def test_outbox_dedup_ack_and_reject(tmp_path: Path) -> None:
    s = AgentStore(tmp_path / "agent.sqlite")
    assert s.enqueue("meter", {"interval": 1}, "meter:1", now=10.0)
    assert not s.enqueue("meter", {"interval": 1, "changed": True}, "meter:1", now=11.0)  # same key: kept once
    assert s.enqueue("telemetry", {"soc": 0.5}, "telemetry:1", now=12.0)
    assert s.pending_count() == 2
    (first, kind, body), (second, _, _) = s.pending()
    assert (kind, body) == ("meter", {"interval": 1})
    s.ack(first)
    s.reject(second)
    assert s.pending_count() == 0
    assert s.outbox_counts() == {"meter": {"acked": 1}, "telemetry": {"rejected": 1}}
    s.close()


def test_orders_are_recorded_and_closed(tmp_path: Path) -> None:
    s = AgentStore(tmp_path / "agent.sqlite")
    s.record_order(5, 2**200 + 1, "bid", 400, 120, "0xabc", 100.0, 200.0)
    s.record_order(6, 2**200 + 2, "offer", 300, 90, "0xdef", 200.0, 300.0)
    got = s.order_for(5)
    assert got is not None
    assert got["order_id"] == str(2**200 + 1)  # 256-bit ids kept exactly, as text
    assert (got["side"], got["qty_wh"], got["price"]) == ("bid", 400, 120)
    s.close_order(5)
    assert [o["interval"] for o in s.open_orders()] == [6]
    assert [o["interval"] for o in s.orders()] == [5, 6]
    assert s.order_for(99) is None
    s.close()


def test_commands_are_logged_in_order(tmp_path: Path) -> None:
    s = AgentStore(tmp_path / "agent.sqlite")
    s.log_command(1.0, "dispatch", 3, 7, True, "")
    s.log_command(2.0, "dispatch", 4, 8, False, "above the device's rating")
    rows = s.commands()
    assert [r["accepted"] for r in rows] == [1, 0]
    assert rows[1]["reason"] == "above the device's rating"
    s.close()
