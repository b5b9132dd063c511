"""Tests for coordinator/market/cli.py (``gridswarm clear``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from coordinator.market.cli import configure_clear, run_clear


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    configure_clear(parser)
    code = run_clear(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BOOK = "id,side,qty_wh,price,zone\n1,bid,10,100,b\n2,bid,5,90,a\n3,offer,8,80,a\n4,offer,10,95,b\n"
ZONES = "from_zone,to_zone,fee,limit_wh\na,b,3,4\nb,a,3,\n"


def test_clear_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, write(tmp_path, "b.csv", BOOK))
    assert (code, err) == (0, "")
    r = json.loads(out)
    assert (r["price"], r["volume_wh"], r["welfare"]) == (95, 10, 170)
    assert r["fills"] == [
        {"order_id": 1, "qty_wh": 10, "price": 95},
        {"order_id": 3, "qty_wh": 8, "price": 95},
        {"order_id": 4, "qty_wh": 2, "price": 95},
    ]


def test_clear_with_zones_and_pay_as_bid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book, zones = write(tmp_path, "b.csv", BOOK), write(tmp_path, "z.csv", ZONES)
    code, out, _ = run(capsys, book, "--zones", zones)
    r = json.loads(out)
    assert code == 0 and r["zone_prices"] == {"a": 90, "b": 95}
    assert r["flows"] == [{"from": "a", "to": "b", "wh": 4}] and r["fee_revenue"] == 12
    code, out, _ = run(capsys, book, "--zones", zones, "--mechanism", "pay-as-bid")
    assert code == 0 and json.loads(out)["buyers_pay"] == 10 * 100 + 4 * 90


def test_columns_in_any_order_with_seq(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = write(tmp_path, "b.csv", "price,qty_wh,side,id,seq\n5,4,bid,1,9\n5,4,bid,2,1\n5,4,offer,3,0\n")
    code, out, _ = run(capsys, book)
    assert code == 0
    assert [f["order_id"] for f in json.loads(out)["fills"]] == [2, 3]  # seq 1 before seq 9


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("id,side,qty_wh,price\n1,bid,10,100\n2,bid,x,90\n", ":3:3:", "qty_wh: expected an integer, got 'x'"),
        ("id,side,qty_wh,price\n1,buy,10,100\n", ":2:2:", "side: expected 'bid' or 'offer'"),
        ("id,side,qty_wh,price\n1,bid,10\n", ":2:4:", "expected 4 fields, got 3"),
        ("id,side,qty,price\n", ":1:3:", "unknown column 'qty'"),
        ("id,side,price\n", ":1:4:", "missing column 'qty_wh'"),
        ("", ":1:1:", "empty file"),
        ("id,side,qty_wh,price\n1,bid,10,100\n\n7,offer,0,90\n", ":4:3:", "order 7 (index 1): qty_wh"),
        ("id,side,qty_wh,price\n1,bid,10,100\n1,offer,1,90\n", ":3:1:", "duplicate order id"),
        ("price,id,side,qty_wh\n16777216,1,bid,10\n", ":2:1:", "price: must be an integer in 0..16777215"),
    ],
)
def test_bad_book_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str, message: str
) -> None:
    path = write(tmp_path, "b.csv", text)
    code, out, err = run(capsys, path)
    assert code == 1 and out == ""
    assert f"{path}{where}" in err and message in err


def test_unknown_zone_names_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = write(tmp_path, "b.csv", "id,side,qty_wh,price,zone\n1,bid,1,1,a\n2,bid,1,1,x\n")
    code, _, err = run(capsys, book, "--zones", write(tmp_path, "z.csv", ZONES))
    assert code == 1 and f"{book}:3:5:" in err and "unknown zone 'x'" in err


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("from_zone,to_zone,fee,limit_wh\na,b,-1,\n", ":2:3:", "fee must be"),
        ("from_zone,to_zone,fee,limit_wh\na,b,1,lots\n", ":2:4:", "limit_wh: expected an integer"),
        ("from_zone,to_zone,fee,limit_wh\na,a,1,\n", ":2:2:", "two different zones"),
        ("from_zone,to_zone,fee,limit_wh\na,b,1,\na,b,2,\n", ":3:2:", "already given on line 2"),
        ("from_zone,to_zone,fee,limit_wh\nc,,5,\n", ":2:3:", "zone declaration"),
    ],
)
def test_bad_zones_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str, message: str
) -> None:
    zones = write(tmp_path, "z.csv", text)
    code, _, err = run(capsys, write(tmp_path, "b.csv", BOOK), "--zones", zones)
    assert code == 1 and f"{zones}{where}" in err and message in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.csv"))
    assert code == 2 and "cannot read" in err
