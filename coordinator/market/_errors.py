"""Exceptions raised by the clearing engine.

Every error the engine raises derives from one root::

    ClearingError
     ├── OrderError(ClearingError, ValueError)      an order is malformed or out of range
     ├── NetworkError(ClearingError, ValueError)    the zone/link description is malformed
     ├── MechanismError(ClearingError, ValueError)  an unknown mechanism name
     └── SolverError(ClearingError, RuntimeError)   the solver failed or its answer failed the
                                                    engine's exact optimality check (a bug,
                                                    never a partial result)
"""

from __future__ import annotations

from gridswarm.errors import GridSwarmError


class ClearingError(GridSwarmError):
    """Root of every error raised by :mod:`coordinator.market.clearing`."""


class OrderError(ClearingError, ValueError):
    """An order is invalid. Names the order (id and position in the input) and the field."""

    def __init__(self, message: str, *, order_id: int | None, index: int, field: str) -> None:
        who = f"order {order_id}" if order_id is not None else "order"
        super().__init__(f"{who} (index {index}): {field}: {message}")
        self.order_id = order_id
        self.index = index
        self.field = field
        self.reason = message


class NetworkError(ClearingError, ValueError):
    """The network (zones, links, fees, transfer limits) is invalid."""


class MechanismError(ClearingError, ValueError):
    """The requested clearing mechanism does not exist."""


class SolverError(ClearingError, RuntimeError):
    """The LP solver failed, or its answer did not pass the exact integer checks."""
