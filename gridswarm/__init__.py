"""GridSwarm: peer-to-peer energy trading on an Ethereum ledger with a device agent runtime.

This package holds what both sides need (the clock, units, signed envelopes, the chain client)
and the ``gridswarm`` command line. ``agent/`` and ``coordinator/`` import from here; this
package's shared modules import neither of them.
"""

__version__ = "0.1.0"
