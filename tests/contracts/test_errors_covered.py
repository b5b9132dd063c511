"""Every custom error of the market is reached by a test that names it."""

from __future__ import annotations

import re
from pathlib import Path

from brownie import EnergyMarket


def test_every_custom_error_is_named_by_a_test():
    # the market's own errors (IEnergyMarket's, all named Market...)
    abi_errors = {item["name"] for item in EnergyMarket.abi if item["type"] == "error"}
    errors = {name for name in abi_errors if name.startswith("Market")}
    assert len(errors) >= 30
    here = Path(__file__).parent
    named = set()
    for path in here.glob("test_*.py"):
        named |= set(re.findall(r'"(Market\w+)"', path.read_text()))
    # Unreachable in a test: 2^27 orders from one account, 2^48 Wh committed in one interval.
    unreachable = {"MarketNonceExhausted", "MarketTotalsOverflow"}
    missing = sorted(errors - named - unreachable)
    assert not missing, f"custom errors no test reaches by name: {missing}"
