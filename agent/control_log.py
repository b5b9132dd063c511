"""Says, once per device, whether the site will control it and, if not, why.

The site calls :meth:`ControlLog.at_start` after connecting its drivers and :meth:`after_read`
for each device it reads. A device that answered at start is reported then; one that did not is
reported as unreachable at start and again, with its control report, at its first good read. A
writable device that cannot be controlled (a figure missing, no control model) is a warning;
read-only devices and grid meters are logged at info. Nothing configured as controllable is
left uncontrolled without a log line saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from agent.drivers.base import DeviceKind, Driver

logger = logging.getLogger(__name__)

__all__ = ["ControlLog"]


class ControlLog:
    def __init__(self) -> None:
        self.reported: set[str] = set()
        self.uncontrolled: dict[str, str] = {}  # device id -> why the site does not control it

    def at_start(self, drivers: Iterable[Driver]) -> None:
        for d in drivers:
            if d.device_id in self.reported:
                continue
            if d.health.ok:
                self._report(d)
            else:
                why = f"not reachable at start ({d.health.last_error})"
                self.uncontrolled[d.device_id] = why
                logger.warning("device %s will not be controlled until it answers: %s", d.device_id, why)

    def after_read(self, d: Driver) -> None:
        if d.device_id not in self.reported:
            self._report(d)

    def _report(self, d: Driver) -> None:
        self.reported.add(d.device_id)
        rep = d.control_report()
        if rep.controlled:
            self.uncontrolled.pop(d.device_id, None)
            logger.info("device %s controlled: %s", d.device_id, "; ".join(rep.controls))
            return
        reasons = [*rep.cannot, *(f"{k} missing: {v}" for k, v in rep.missing.items())]
        why = "; ".join(reasons) or "no control path"
        self.uncontrolled[d.device_id] = why
        level = logging.WARNING if d.writable and d.kind is not DeviceKind.GRID else logging.INFO
        logger.log(level, "device %s will not be controlled: %s", d.device_id, why)

    def controlled(self, d: Driver) -> bool:
        return d.device_id in self.reported and d.device_id not in self.uncontrolled
