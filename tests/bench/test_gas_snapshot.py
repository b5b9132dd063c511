"""Gas is reviewed like code: the committed snapshot (bench/gas-snapshot.json) changes only on
purpose. This re-measures the operations and the 1, 2, 10 and 100-fill intervals on a Ganache of
its own (the numbers are deterministic) and fails on drift beyond the snapshot's tolerance.

After an intended gas change:  .venv/bin/gridswarm bench gas --update-snapshot
(or python scripts/bench_gas.py --update-snapshot) and commit the new snapshot with the change.
"""

from __future__ import annotations

import json

from bench.gas import SNAPSHOT, TARGET_PER_FILL_AT_100, TARGET_POST_ORDER, compare, measure, snapshot_of

SIZES = [1, 2, 10, 100]


def test_gas_matches_the_committed_snapshot():
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: run gridswarm bench gas --update-snapshot"
    doc = measure(SIZES)
    snapshot = json.loads(SNAPSHOT.read_text())
    current = snapshot_of(doc)
    missing = sorted(set(current) - set(snapshot["gas"]))
    assert not missing, f"the snapshot has no entry for {missing}: run gridswarm bench gas --update-snapshot"
    drift = compare(current, snapshot["gas"], snapshot["tolerance"])
    assert not drift, (
        "gas drifted from bench/gas-snapshot.json:\n  "
        + "\n  ".join(drift)
        + "\nIf the change is intended, run `gridswarm bench gas --update-snapshot` and commit the snapshot."
    )
    # the targets, as measured here: posting, and commit + settle per fill at 100 fills
    # with both sides' readings (about 21.96k against 22k, see docs/contracts.md).
    ops = doc["operations"]
    assert max(ops["post_bid"], ops["post_offer"], ops["post_bid_first"], ops["post_offer_first"]) <= TARGET_POST_ORDER
    at_100 = next(r for r in doc["intervals"] if r["fills"] == 100)
    assert TARGET_PER_FILL_AT_100 == 22_000
    assert at_100["commit_plus_settle_per_fill"] <= TARGET_PER_FILL_AT_100
