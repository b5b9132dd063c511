"""Tests for bench/clearing.py: it runs and writes well-formed JSON (no timing asserts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.clearing import configure_bench, make_book, make_network, markdown_table, run_bench
from coordinator.market.clearing import clear_book


def test_books_are_seeded_and_valid() -> None:
    a, b = make_book(500, 3), make_book(500, 3)
    assert (a.price == b.price).all() and (a.qty_wh == b.qty_wh).all()
    assert not (make_book(500, 4).price == a.price).all()
    z = make_book(500, 3, zones=3)
    r = clear_book(z, "uniform", make_network(500))
    assert r.volume_wh > 0


def test_bench_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    configure_bench(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(["--sizes", "200,400", "--repeat", "1", "--out", str(out), "--markdown"])
    args.pymarket_python = None
    assert run_bench(args) == 0
    data = json.loads(out.read_text())
    assert [r["orders"] for r in data["rows"]] == [200, 400]
    for row in data["rows"]:
        assert row["highs_raw_lp_welfare_matches"] and row["highs_raw_lp_network_welfare_matches"]
        assert row["uniform_s"] > 0 and row["uniform_orders_per_s"] > 0
    assert "| 400 |" in capsys.readouterr().out
    assert "| 200 |" in markdown_table(data)


def test_bench_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    configure_bench(parser)
    assert run_bench(parser.parse_args(["--sizes", "ten"])) == 2
