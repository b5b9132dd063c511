"""GridSwarm's benchmarks, out of the product packages: each module measures the real thing
and writes its figures to ``bench/results/`` (``gridswarm bench NAME``, ``gridswarm scenario
NAME`` or the matching ``scripts/bench_*.py``). Nothing in ``agent/``, ``coordinator/`` or
``gridswarm/`` imports this package except the CLI's lazy dispatch to it."""
