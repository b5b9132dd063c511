"""GridSwarm: peer-to-peer energy trading on an Ethereum ledger with a device agent runtime.

This package is the shared protocol: what both sides need (the clock, units, signed envelopes,
message schemas, the chain client, keys, errors). ``agent/`` and ``coordinator/`` import from
here; it imports neither of them, nor the application shell in ``app/`` (the ``gridswarm``
command, the demo, deployment, the local node and the compiler).
"""

__version__ = "0.1.0"
