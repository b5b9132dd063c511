"""One load-generator process of ``gridswarm bench ingest`` (bench/ingest.py starts several).

Reads its task as JSON (argv[1]): the coordinator's WebSocket URL, the seed and the indices of
its agents (keys derived as the bench registered them), and the phases (messages/s this process
offers, seconds). It connects one WebSocket per agent and says ``hello``, signs every telemetry
envelope of every phase ahead (real Ed25519 signatures by each agent's own key, sequence numbers
in sending order), prints ``ready``, and waits for a start time (epoch seconds) on stdin. Then it
sends each phase open-loop, spread evenly over its agents and the phase, whatever the replies,
and records each envelope's acknowledgement latency. A ``busy`` reply counts as shed (the
message was not read; an agent's outbox would send it again later). Prints one JSON line of
results per phase.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

import aiohttp

from gridswarm.clock import WallClock
from gridswarm.envelope import Signer
from gridswarm.keys import derive_ed25519, derive_eth_account

DRAIN_S = 4.0  # after the last phase, wait this long for outstanding replies


async def run(task: dict[str, Any]) -> list[dict[str, Any]]:
    clock = WallClock()
    agents = []
    for i in task["agents"]:
        acct, ed = derive_eth_account(task["seed"], "agent", i), derive_ed25519(task["seed"], "agent", i)
        counter = itertools.count(1)
        agents.append((acct.address, Signer(ed, acct.address, clock, counter.__next__, ttl_s=900)))
    phases = task["phases"]
    n = len(agents)
    hellos = [signer.sign("hello", {"address": address, "site": "bench"}).to_json() for address, signer in agents]
    # Pre-sign every phase's messages, round-robin over the agents (each agent's seqs grow in order).
    plans: list[list[tuple[int, int, str]]] = []
    record = itertools.count(1)
    for rate, seconds in phases:
        total = max(1, round(rate * seconds))
        plan = []
        for k in range(total):
            a = k % n
            address, signer = agents[a]
            body = {"ts": time.time(), "net_export_w": 100.0, "soc": 0.5, "devices": {}, "record_id": next(record)}
            env = signer.sign("telemetry", body)
            plan.append((a, env.seq, env.to_json()))
        plans.append(plan)
    sent_at: list[dict[int, float]] = [{} for _ in agents]
    phase_of: list[dict[int, int]] = [{} for _ in agents]
    stats = [{"sent": 0, "acked": 0, "busy": 0, "errors": 0, "lat_us": [], "last_ack": 0.0, "first_send": 0.0, "last_send": 0.0} for _ in phases]
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        sockets = []
        for hello in hellos:
            ws = await session.ws_connect(task["url"], max_msg_size=1 << 20)
            await ws.send_str(hello)
            welcome = json.loads((await ws.receive(timeout=60)).data)
            if welcome.get("kind") != "welcome":
                raise RuntimeError(f"no welcome: {welcome}")
            sockets.append(ws)

        async def receive(a: int) -> None:
            ws = sockets[a]
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                env = json.loads(msg.data)
                kind, body = env.get("kind"), env.get("body") or {}
                if kind not in ("ack", "acks", "error"):
                    continue  # e.g. an `arm`
                # One signed `acks` answers several messages, one `busy` error may list several seqs.
                if kind == "acks":
                    answered = [("ack", b.get("seq")) for b in body.get("acks") or []]
                elif kind == "error":
                    answered = [("error", q) for q in dict.fromkeys([body.get("seq"), *(body.get("seqs") or [])])]
                else:
                    answered = [("ack", body.get("seq"))]
                now = time.time()
                for what, seq in answered:
                    t0 = sent_at[a].pop(seq, None)
                    if t0 is None:
                        continue
                    st = stats[phase_of[a].pop(seq)]
                    if what == "ack":
                        st["acked"] += 1
                        st["lat_us"].append(int((now - t0) * 1e6))
                        st["last_ack"] = max(st["last_ack"], now)
                    elif body.get("reason") == "busy":
                        st["busy"] += 1
                    else:
                        st["errors"] += 1
                        if len(errors) < 10:
                            errors.append(str(body.get("reason")))

        receivers = [asyncio.create_task(receive(a)) for a in range(n)]
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        starts = json.loads(line)["starts"]
        for j, ((rate, seconds), plan) in enumerate(zip(phases, plans, strict=True)):
            start = starts[j]
            await asyncio.sleep(max(0.0, start - time.time()))
            stats[j]["first_send"] = time.time()
            period = seconds / len(plan)
            for k, (a, seq, text) in enumerate(plan):
                due = start + k * period
                delay = due - time.time()
                if delay > 0.002:
                    await asyncio.sleep(delay)
                sent_at[a][seq] = time.time()
                phase_of[a][seq] = j
                await sockets[a].send_str(text)
                stats[j]["sent"] += 1
            stats[j]["last_send"] = time.time()
        deadline = time.time() + DRAIN_S
        while any(sent_at) and time.time() < deadline:
            await asyncio.sleep(0.05)
        for r in receivers:
            r.cancel()
        for ws in sockets:
            await ws.close()
    for st in stats:
        st["unanswered"] = st["sent"] - st["acked"] - st["busy"] - st["errors"]
        st["error_kinds"] = sorted(set(errors))
    return stats


def main() -> None:
    task = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run(task))), flush=True)


if __name__ == "__main__":
    main()
