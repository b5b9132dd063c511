"""Device models stepped by an injected clock (docs/architecture.md §1 and §6): energy stores (battery, UPS,
flywheel), bidirectional inverter, PV from real irradiance (pvlib TMY3, precomputed), synthetic
loads, the grid connection, and the site meter. ``spec`` validates the ``devices:`` config."""
