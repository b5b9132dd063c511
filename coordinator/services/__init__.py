"""Fleet grid services in the coordinator: fleet state from telemetry, health exclusions, the
frequency service sized and armed each interval, modes (``docs/fleet.md``)."""

from coordinator.services.config import FleetSettings
from coordinator.services.fleet import FleetService

__all__ = ["FleetService", "FleetSettings"]
