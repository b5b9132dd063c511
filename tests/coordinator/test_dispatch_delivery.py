"""Dispatch goes to every owner of a fill at once, is sent again to an agent that reconnects
while its delivery is under way, and never once that delivery is over (the real market loop
against Ganache on a manual clock; links are recording stand-ins for the agents' sockets)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from coordinator.market.lifecycle import Times
from gridswarm.clock import ManualClock
from tests.conftest import Market
from tests.coordinator.test_lifecycle_resume import GATE, I, Rig, _stop, _until


def test_dispatch_is_resent_on_reconnect_only_until_delivery_ends(tmp_path: Path, market: Market) -> None:
    k = 2_100_000
    times = Times(k, I, GATE)
    clock = ManualClock(times.opens)
    rig = Rig(market, tmp_path / "coordinator.sqlite", clock)
    seller, buyer = market.participants[0].account.address, market.participants[1].account.address
    sent: list[tuple[str, dict[str, Any]]] = []

    def link(address: str) -> Any:
        async def send(text: str) -> None:
            sent.append((address, json.loads(text)))

        return send

    def dispatches(address: str) -> list[dict[str, Any]]:
        return [env["body"] for a, env in sent if a == address and env["kind"] == "dispatch"]

    async def scenario() -> None:
        loop = rig.loop()
        loop.hub.links.update({seller: link(seller), buyer: link(buyer)})
        loop._plan(k)
        task = asyncio.create_task(loop.run_interval(k))
        await _until(lambda: rig.status(k) == 1, "interval opened")
        rig.post(k)
        clock.set(times.gate)
        await _until(lambda: bool((loop.store.lifecycle(k) or {}).get("dispatched")), "dispatch sent")
        await _stop(task)
        # both owners got theirs, signed with increasing coordinator seqs
        assert [d["interval"] for d in dispatches(seller)] == [k]
        assert [d["interval"] for d in dispatches(buyer)] == [k]
        assert dispatches(seller)[0]["export_w"] > 0 > dispatches(buyer)[0]["export_w"]
        seqs = [env["seq"] for _, env in sent]
        assert seqs == sorted(seqs)

        # the seller's agent reconnects during its delivery: it is told again
        sent.clear()
        clock.set(times.start + 10)
        await loop.obligations(seller)
        assert [d["interval"] for d in dispatches(seller)] == [k]

        # ... and after the delivery ended: nothing is sent again
        sent.clear()
        for t in (times.end, times.end + 3600):
            clock.set(t)
            await loop.obligations(seller)
            await loop.obligations(buyer)
        assert sent == []
        assert (loop.store.lifecycle(k) or {}).get("stage") == "cleared"  # the case the rule is for

    asyncio.run(scenario())
