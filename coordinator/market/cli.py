"""``gridswarm clear BOOK.csv [--mechanism uniform|pay-as-bid] [--zones ZONES.csv]``.

BOOK.csv: a header row, then one order per row. Columns (any order): ``id,side,qty_wh,price``
and optionally ``zone`` (default ``default``) and ``seq`` (posting order; default: row order).
ZONES.csv: header ``from_zone,to_zone,fee,limit_wh``; one directed link per row; empty ``fee``
means 0, empty ``limit_wh`` means unlimited; a row with an empty ``to_zone`` only declares the
zone ``from_zone``. Without ``--zones`` all orders meet in one market.

Prints the result as JSON on stdout. A malformed file gets ``FILE:LINE:COLUMN: message`` on
stderr. Exit codes: 0 cleared, 1 invalid book or zones file, 2 a file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys

from coordinator.market.clearing import MECHANISMS, OrderError, clear
from coordinator.market.files import InputError, read_book, read_zones


def configure_clear(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("book", metavar="BOOK", help="order book CSV: id,side,qty_wh,price[,zone][,seq]")
    parser.add_argument("--mechanism", choices=MECHANISMS, default="uniform", help="default: %(default)s")
    parser.add_argument(
        "--zones",
        metavar="ZONES.csv",
        default=None,
        help="network CSV: from_zone,to_zone,fee,limit_wh (default: one market)",
    )


def run_clear(args: argparse.Namespace) -> int:
    try:
        network = read_zones(args.zones) if args.zones else None
        orders, table = read_book(args.book)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        result = clear(orders, args.mechanism, network)
    except OrderError as exc:
        line = table.rows[exc.index][0]
        col = table.column(exc.field) if exc.field in table.header else 1
        where = f"{args.book}:{line}:{col}"
        if exc.field == "zone" and "zone" not in table.header:
            where = f"{args.book}:{line}:1"
        print(f"error: {where}: {exc}", file=sys.stderr)
        return 1
    out = {"orders": len(orders), **result.to_dict()}
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gridswarm clear", description=__doc__.splitlines()[0] if __doc__ else None
    )
    configure_clear(parser)
    return run_clear(parser.parse_args(argv))
