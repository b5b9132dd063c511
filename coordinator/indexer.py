"""Chain events -> SQLite (docs/architecture.md §8).

Each poll reads the market's logs from the block after the cursor to the latest block, and
writes the raw events, their projections (participants, orders, fills, settlements, intervals)
and the new cursor in ONE database transaction. A restart resumes from the cursor, so no
event is missed or counted twice (raw events are also keyed by tx hash and log index).
"""

from __future__ import annotations

import logging

from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3._utils.events import get_event_data

from coordinator.store import Store
from gridswarm.chain import Deployment

logger = logging.getLogger(__name__)

CURSOR = "market"
MAX_RANGE = 5_000


class Indexer:
    def __init__(self, w3: Web3, deployment: Deployment, store: Store) -> None:
        self.w3 = w3
        self.dep = deployment
        self.store = store
        self.address = Web3.to_checksum_address(deployment.market)
        abi = deployment.abis["EnergyMarket"]
        self._events = {event_abi_to_log_topic(e): e for e in abi if e.get("type") == "event"}

    def sync(self, to_block: int | None = None) -> int:
        """Index up to ``to_block`` (default: latest). Returns the number of new events."""
        latest = self.w3.eth.block_number if to_block is None else to_block
        start = self.store.cursor(CURSOR, self.dep.block - 1 if self.dep.block else -1) + 1
        total = 0
        while start <= latest:
            end = min(latest, start + MAX_RANGE - 1)
            logs = self.w3.eth.get_logs({"address": self.address, "fromBlock": start, "toBlock": end})
            decoded = []
            for log in logs:
                abi = self._events.get(bytes(log["topics"][0])) if log["topics"] else None
                if abi is None:
                    continue
                decoded.append(get_event_data(self.w3.codec, abi, log))
            self.store.apply_chain_events(decoded, CURSOR, end)
            total += len(decoded)
            start = end + 1
        return total
