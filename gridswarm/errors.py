"""The project's one exception root, shared by the agent, the coordinator and the shell::

    GridSwarmError
    ├── UserError              something the user can fix: a config field, a file, a URL they named
    │   ├── ConfigError            agent.config (a site file)
    │   ├── SettingsError          coordinator.settings (a coordinator file)
    │   ├── StartupError           coordinator.preflight (the chain or market it names is wrong)
    │   ├── KeyFileError           gridswarm.keys
    │   ├── DeviceConfigError      agent.devices.spec
    │   └── InputError             coordinator.market.files (a book or zones CSV)
    ├── ChainError             gridswarm.chain (ChainUnavailable, ContractRevert)
    ├── EnvelopeError          gridswarm.envelope (a message refused, with its reason)
    ├── DriverError            agent.drivers.base (a device did not answer or refused)
    ├── ForecastError          agent.forecast.errors
    ├── ClearingError          coordinator.market (an order book or network the engine refuses)
    ├── PlanError              coordinator.market.commit_plan (a result that cannot be committed)
    ├── BadInput               coordinator.api.guard (a request refused before any route: status, reason)
    ├── AnalyticsError         coordinator.store.analytics (a query that cannot be answered as asked)
    ├── Refused                agent.remote_config (a remote setting the site will not apply)
    └── DemoError, DevnetError, CompileError   the shell's own steps

Each leaf also inherits the standard class it resembles (``ConfigError`` is a ``ValueError``,
``ChainError`` a ``RuntimeError``, ...). The CLI maps the root once: one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GridSwarmError(Exception):
    """Root of every error the project raises on purpose."""


class UserError(GridSwarmError):
    """An error the user can fix by changing what they gave (config, files, command line)."""
