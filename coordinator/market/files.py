"""Order books and zone networks from CSV files: the formats ``gridswarm clear`` reads and the
market loop's ``network_file`` (one parser, used by both; errors name ``FILE:LINE:COLUMN``).

BOOK.csv: a header row, then one order per row. Columns (any order): ``id,side,qty_wh,price``
and optionally ``zone`` (default ``default``) and ``seq`` (posting order; default: row order).
ZONES.csv: header ``from_zone,to_zone,fee,limit_wh``; one directed link per row; empty ``fee``
means 0, empty ``limit_wh`` means unlimited; a row with an empty ``to_zone`` only declares the
zone ``from_zone``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from coordinator.market.clearing import Link, Network, NetworkError, Order
from gridswarm.errors import UserError

BOOK_COLUMNS = ("id", "side", "qty_wh", "price", "zone", "seq")
BOOK_REQUIRED = ("id", "side", "qty_wh", "price")
ZONE_COLUMNS = ("from_zone", "to_zone", "fee", "limit_wh")
_INT = re.compile(r"^[+-]?\d+$")


class InputError(UserError):
    """A problem at a place in an input file (1-based line and column)."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")


@dataclass
class _Table:
    path: str
    header: dict[str, int]  # column name -> 0-based position
    rows: list[tuple[int, list[str]]]  # (line number, cells)

    def column(self, name: str) -> int:
        return self.header.get(name, 0) + 1


def _read_table(path: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> _Table:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, 1, 1, f"not UTF-8 text ({exc.reason})") from exc
    header: dict[str, int] | None = None
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(text.splitlines())
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in cells]
            if header is None:
                header = {}
                for i, name in enumerate(cells):
                    if name not in allowed:
                        raise InputError(
                            path, line, i + 1, f"unknown column {name!r} (expected {', '.join(allowed)})"
                        )
                    if name in header:
                        raise InputError(path, line, i + 1, f"column {name!r} given twice")
                    header[name] = i
                for name in required:
                    if name not in header:
                        raise InputError(path, line, len(cells) + 1, f"missing column {name!r}")
                continue
            if len(cells) != len(header):
                raise InputError(
                    path,
                    line,
                    min(len(cells), len(header)) + 1,
                    f"expected {len(header)} fields, got {len(cells)}",
                )
            rows.append((line, cells))
    except csv.Error as exc:
        raise InputError(path, reader.line_num, 1, f"CSV syntax: {exc}") from exc
    if header is None:
        raise InputError(path, 1, 1, f"empty file: expected a header row ({','.join(required)})")
    return _Table(path, header, rows)


def _int_cell(t: _Table, line: int, cells: list[str], name: str) -> int:
    v = cells[t.header[name]]
    if not _INT.match(v):
        raise InputError(t.path, line, t.column(name), f"{name}: expected an integer, got {v!r}")
    return int(v)


def read_book(path: str) -> tuple[list[Order], _Table]:
    t = _read_table(path, BOOK_COLUMNS, BOOK_REQUIRED)
    orders = []
    for pos, (line, cells) in enumerate(t.rows):
        side = cells[t.header["side"]]
        if side not in ("bid", "offer"):
            raise InputError(path, line, t.column("side"), f"side: expected 'bid' or 'offer', got {side!r}")
        zone = cells[t.header["zone"]] if "zone" in t.header else "default"
        if not zone:
            raise InputError(path, line, t.column("zone"), "zone: empty")
        orders.append(
            Order(
                id=_int_cell(t, line, cells, "id"),
                side=side,  # type: ignore[arg-type]
                qty_wh=_int_cell(t, line, cells, "qty_wh"),
                price=_int_cell(t, line, cells, "price"),
                zone=zone,
                seq=_int_cell(t, line, cells, "seq") if "seq" in t.header else pos,
            )
        )
    return orders, t


def read_zones(path: str) -> Network:
    t = _read_table(path, ZONE_COLUMNS, ("from_zone", "to_zone"))
    zones: list[str] = []
    links: list[Link] = []
    seen: dict[tuple[str, str], int] = {}
    for line, cells in t.rows:

        def cell(name: str, cells: list[str] = cells) -> str:
            return cells[t.header[name]] if name in t.header else ""

        src, dst = cell("from_zone"), cell("to_zone")
        if not src:
            raise InputError(path, line, t.column("from_zone"), "from_zone: empty")
        zones.append(src)
        if not dst:
            for name in ("fee", "limit_wh"):
                if cell(name):
                    raise InputError(
                        path,
                        line,
                        t.column(name),
                        f"{name}: a zone declaration (empty to_zone) has no {name}",
                    )
            continue
        zones.append(dst)
        fee = _int_cell(t, line, cells, "fee") if cell("fee") else 0
        limit = _int_cell(t, line, cells, "limit_wh") if cell("limit_wh") else None
        if (src, dst) in seen:
            raise InputError(
                path,
                line,
                t.column("to_zone"),
                f"link {src} -> {dst} already given on line {seen[(src, dst)]}",
            )
        seen[(src, dst)] = line
        link = Link(src, dst, fee, limit)
        try:
            Network((src,) if src == dst else (src, dst), (link,))
        except NetworkError as exc:
            msg = str(exc)
            col = "fee" if "fee" in msg else "limit_wh" if "limit_wh" in msg else "to_zone"
            raise InputError(path, line, t.column(col), msg) from exc
        links.append(link)
    return Network(tuple(dict.fromkeys(zones)), tuple(links))
