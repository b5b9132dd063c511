"""The application shell: the ``gridswarm`` command, the demo, deployment, the local node and
the contract compiler. It imports the product (``agent``, ``coordinator``) and the shared
protocol (``gridswarm``); nothing imports it back except benchmarks, scripts and tests
(docs/architecture.md §9)."""
