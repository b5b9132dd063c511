"""The ``gridswarm`` command line.

Subcommands (``gridswarm SUBCOMMAND --help`` for each one's options):

  demo         the whole system: chain, contracts, coordinator, agents, trading and settlement
  devnet       start a local Ganache chain and keep it running
  deploy       compile and deploy the token and market, register demo participants
  coordinator  run the coordinator service (market loop, indexer, API) from a config file
  agent        run one site's agent from its config file (or --check its devices)
  clear        clear an order book from a CSV file and print the result
  forecast     forecast a meter series from a CSV file
  bench        run a benchmark (clearing, e2e, forecast, agent, gas, analytics, ingest) and write bench/results/
  scenario     a fleet scenario (frequency-event, unit-faults, borrowing) on a real chain and coordinator
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridswarm.errors import GridSwarmError

EXIT_ERROR = 2


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(message: str) -> int:
    print(f"gridswarm: error: {message}", file=sys.stderr)
    return EXIT_ERROR


# ---------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import DemoOptions, run_demo

    logging.getLogger().setLevel(logging.WARNING)
    report = run_demo(
        DemoOptions(
            rpc_url=args.rpc_url,
            intervals=args.intervals,
            agents=args.agents,
            seed=args.seed,
            out=Path(args.out),
            speed=args.speed,
            serve=args.serve,
        )
    )
    ok = report["conservation"]["conserved"] and all(r["status"] == "settled" for r in report["intervals"])
    if not ok:
        return _fail("not every interval settled or value was not conserved; see report.json")
    return 0


def cmd_scenario(args: argparse.Namespace) -> int:
    from bench.scenarios import run_scenario

    logging.getLogger().setLevel(logging.WARNING)
    processes = not args.in_process and args.name != "unit-faults"
    result = run_scenario(args.name, sites=args.sites, speed=args.speed, processes=processes,
                          balance=not args.no_balancing, out=Path(args.out))
    def brief(d: Any) -> Any:
        return {k: brief(v) for k, v in d.items() if k not in ("machine", "series")} if isinstance(d, dict) else d

    print(json.dumps(brief(result), indent=2))
    return 0


# ---------------------------------------------------------------- devnet / deploy


def cmd_devnet(args: argparse.Namespace) -> int:
    from app.devnet import Ganache

    db = None if args.in_memory else Path(args.db)
    g = Ganache(port=args.port, chain_id=args.chain_id, accounts=args.accounts, db_path=db).start()
    kept = f"chain kept in {db}" if db else "chain in memory only"
    print(f"Ganache (shanghai) listening on {g.url}, chain id {g.chain_id}, {kept}; Ctrl-C stops it", flush=True)
    try:
        while g.proc and g.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        g.stop()
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from app.deploy import TOKEN_UNIT, ParticipantSpec, deploy_market, fund_eth, register_participants
    from gridswarm.chain import connect
    from gridswarm.keys import (
        derive_ed25519,
        derive_eth_account,
        load_ed25519,
        load_eth_key,
        write_ed25519,
        write_eth_key,
    )

    w3 = connect(args.rpc_url)
    keys_dir = Path(args.keys_dir)
    if args.admin_key_file:
        admin, operator = load_eth_key(Path(args.admin_key_file)), load_eth_key(Path(args.operator_key_file))
        coord = load_ed25519(Path(args.coordinator_key_file))
    else:
        admin, operator = derive_eth_account(args.seed, "admin"), derive_eth_account(args.seed, "operator")
        coord = derive_ed25519(args.seed, "coordinator")
        for acct in (admin, operator):
            fund_eth(w3, acct.address, 100 * 10**18)
        write_eth_key(keys_dir / "admin.key", admin)
        write_eth_key(keys_dir / "operator.key", operator)
        write_ed25519(keys_dir / "coordinator.ed25519", coord)
    dep = deploy_market(w3, admin, operator, coord)
    specs = []
    for i in range(args.participants):
        acct, ed = derive_eth_account(args.seed, "agent", i), derive_ed25519(args.seed, "agent", i)
        write_eth_key(keys_dir / f"site{i}.key", acct)
        write_ed25519(keys_dir / f"site{i}.ed25519", ed)
        specs.append(ParticipantSpec(acct, ed, tokens=1_000 * TOKEN_UNIT, deposit=100 * TOKEN_UNIT))
    register_participants(w3, dep, admin, specs)
    path = dep.save(Path(args.out) / f"{dep.chain_id}.json")
    print(json.dumps({"chain_id": dep.chain_id, "token": dep.token, "market": dep.market, "deployment": str(path)}))
    return 0


# ---------------------------------------------------------------- services


def cmd_coordinator(args: argparse.Namespace) -> int:
    from coordinator.preflight import check
    from coordinator.service import serve
    from coordinator.settings import CoordinatorSettings

    settings = CoordinatorSettings.load(Path(args.config) if args.config else None, port=args.port)
    check(settings)
    serve(settings)
    return 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.config import AgentConfig, DeviceSectionConfig

    if args.check:  # only the device section matters to a probe
        return asyncio.run(_agent_check(DeviceSectionConfig.load(Path(args.config))))
    cfg = AgentConfig.load(Path(args.config))
    from agent.runtime import run_agent

    try:
        asyncio.run(run_agent(cfg))
    except OSError as exc:  # e.g. the store's folder cannot be written
        return _fail(str(exc))
    return 0


async def _agent_check(cfg: Any) -> int:
    """Probe every device once: read only, never write (not even a revert on the way out).

    stdout: one JSON object per device; stderr: the same for people. Exit 1 when a device does
    not answer or a device configured writable cannot be controlled."""
    from agent.drivers.check import check_report_text
    from agent.site import Site

    site = Site.from_section(cfg, cfg.clock.build())
    try:
        results = await site.check()
    finally:
        for driver in site.drivers.values():  # close without reverting: a probe changes nothing
            await driver.close()
    ok = True
    for r in results:
        d = dict(r)
        print(json.dumps(d, default=str), flush=True)
        print(check_report_text(r), file=sys.stderr, flush=True)
        ok = ok and bool(d["ok"]) and (bool(d["controls"]) or not d["writable"] or d["kind"] == "grid")
    return 0 if ok else 1


# ---------------------------------------------------------------- tools delegated to their packages


def _delegate(module: str, configure: str, run: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]:
    def conf(p: argparse.ArgumentParser) -> None:
        try:
            getattr(importlib.import_module(module), configure)(p)
        except ImportError as exc:  # the package is an optional extra or not built yet
            p.set_defaults(_unavailable=f"{module} is not available: {exc}")

    def go(args: argparse.Namespace) -> int:
        if getattr(args, "_unavailable", None):
            return _fail(args._unavailable)
        return int(getattr(importlib.import_module(module), run)(args))

    return conf, go


TOOLS = {
    "clear": ("coordinator.market.cli", "configure_clear", "run_clear", "clear an order book CSV and print JSON"),
    "forecast": ("agent.forecast.cli", "configure_forecast", "run_forecast", "forecast a meter series CSV"),
}
BENCHES = {
    "clearing": ("bench.clearing", "configure_bench", "run_bench", "clearing speed vs sort and pymarket"),
    "forecast": ("bench.forecast", "configure_bench", "run_bench", "forecast accuracy on real data"),
    "agent": ("bench.agent_footprint", "configure_bench", "run_bench", "agent footprint at a 10 ms tick"),
    "gas": ("bench.gas", "configure_bench", "run_bench", "contract gas per operation on Ganache"),
    "e2e": ("bench.clearing_e2e", "configure_bench", "run_bench", "clearing end to end on Ganache"),
    "analytics": ("bench.analytics", "configure_bench", "run_bench", "analytics queries over a year"),
    "ingest": ("bench.ingest", "configure_bench", "run_bench", "signed messages/s one coordinator takes"),
    "load": ("bench.load", "configure_bench", "run_bench", "1,000 sites trading on chain, Ganache vs Anvil"),
    "soak": ("bench.soak", "configure_bench", "run_bench", "days of running on a compressed clock, with faults"),
}


CORE = frozenset({"demo", "devnet", "deploy", "coordinator", "agent"})


def build_parser(*, delegated: bool = True) -> argparse.ArgumentParser:
    """The parser; ``delegated=False`` leaves out the tools and benchmarks, whose modules pull in
    heavy packages (scipy: ~80 MB) that a long-running agent process must not carry."""
    parser = argparse.ArgumentParser(
        prog="gridswarm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("demo", help="run the whole system end to end and write report.json")
    p.add_argument("--rpc-url", help="use this running node instead of starting Ganache")
    p.add_argument("--intervals", type=int, default=8, help="delivery intervals to run (default 8)")
    p.add_argument("--agents", type=int, default=4, help="agent processes, half selling, half buying (default 4)")
    p.add_argument("--seed", type=int, default=1, help="seed for keys, sites and prices (default 1)")
    p.add_argument("--out", default="demo-out", help="output folder for report.json, logs and keys")
    p.add_argument("--speed", type=float, default=150.0, help="simulated seconds per wall second (default 150)")
    p.add_argument("--serve", action="store_true", help="keep everything up afterwards and print the dashboard's URL")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("scenario", help="a fleet scenario on a real chain and coordinator (docs/fleet.md)")
    p.add_argument("name", choices=("frequency-event", "unit-faults", "borrowing"))
    p.add_argument("--in-process", action="store_true",
                   help="run the agents in this process (default: one gridswarm agent process per site; "
                        "unit-faults always runs them here, it injects faults into their drivers)")
    p.add_argument("--no-balancing", action="store_true",
                   help="borrowing: lenders in a fixed order instead of highest SoC first")
    p.add_argument("--sites", type=int, default=20, help="agent sites (default 20)")
    p.add_argument("--speed", type=float, default=2.0, help="simulated seconds per wall second (default 2)")
    p.add_argument("--out", default="bench/results", help="folder for scenarios.json and the plot")
    p.set_defaults(func=cmd_scenario)

    p = sub.add_parser("devnet", help="start a local Ganache chain (shanghai) on a port")
    p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p.add_argument("--chain-id", type=int, default=1337)
    p.add_argument("--accounts", type=int, default=10)
    p.add_argument("--db", default="devnet-chain", help="folder the chain is kept in (a restart resumes it)")
    p.add_argument("--in-memory", action="store_true", help="keep the chain in memory only (lost on exit)")
    p.set_defaults(func=cmd_devnet)

    p = sub.add_parser("deploy", help="deploy GridToken and EnergyMarket and register participants")
    p.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain")
    p.add_argument("--out", default="deployments", help="folder for <chain id>.json (addresses and ABIs)")
    p.add_argument("--keys-dir", default="keys", help="where demo keys are written (mode 0600)")
    p.add_argument("--seed", type=int, default=1, help="seed of demo keys when no key files are given")
    p.add_argument("--participants", type=int, default=4, help="demo participants to register")
    p.add_argument("--admin-key-file")
    p.add_argument("--operator-key-file")
    p.add_argument("--coordinator-key-file")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("coordinator", help="run the coordinator service (FastAPI under uvicorn)")
    p.add_argument("--config", help="YAML settings file (GRIDSWARM_* env vars override)")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_coordinator)

    p = sub.add_parser("agent", help="run one site's agent")
    p.add_argument("--config", required=True, help="the site's YAML config")
    p.add_argument("--check", action="store_true", help="probe every configured device and exit")
    p.set_defaults(func=cmd_agent)

    if not delegated:
        return parser
    for name, (module, conf, run, help_) in TOOLS.items():
        p = sub.add_parser(name, help=help_)
        c, g = _delegate(module, conf, run)
        c(p)
        p.set_defaults(func=g)

    bench = sub.add_parser("bench", help="run a benchmark and write its figures to bench/results/")
    bsub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, (module, conf, run, help_) in BENCHES.items():
        p = bsub.add_parser(name, help=help_)
        c, g = _delegate(module, conf, run)
        c(p)
        p.set_defaults(func=g)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    parser = build_parser(delegated=not words or words[0] not in CORE)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except GridSwarmError as exc:  # every error raised on purpose: one line, exit code 2
        return _fail(_one_line(str(exc)))


if __name__ == "__main__":
    sys.exit(main())
