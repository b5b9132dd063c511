from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from app.devnet import Ganache, free_port
from coordinator.service import create_app
from coordinator.settings import CoordinatorSettings
from gridswarm.clock import ManualClock
from gridswarm.keys import write_ed25519, write_eth_key
from tests.conftest import Market, deploy_fresh
from tests.support.waiting import healthy, wait_until


@dataclass
class RunningCoordinator:
    base: str
    market: Market
    clock: ManualClock
    settings: CoordinatorSettings
    app: object

    @property
    def coordinator(self):  # noqa: ANN201
        return self.app.state.coordinator  # type: ignore[attr-defined]


def write_settings(tmp: Path, m: Market, **extra: object) -> CoordinatorSettings:
    dep_path = m.dep.save(tmp / "deployment.json")
    return CoordinatorSettings.model_validate(
        {
            "rpc_url": m.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
            "deployment": dep_path,
            "operator_key_file": write_eth_key(tmp / "operator.key", m.operator),
            "ed25519_key_file": write_ed25519(tmp / "coordinator.ed25519", m.coordinator_key),
            "db_path": tmp / "coordinator.sqlite",
            "port": free_port(),
            **extra,
        }
    )


@pytest.fixture(scope="module")
def running(ganache: Ganache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCoordinator]:
    tmp_path = tmp_path_factory.mktemp("coordinator")
    m = deploy_fresh(ganache)
    settings = write_settings(tmp_path, m, run_market=False, index_poll_s=0.1)
    clock = ManualClock(1_800_000_000.0)
    app = create_app(settings, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.port}"
    try:
        wait_until(lambda: healthy(base, timeout=1), "the coordinator serving")
    except AssertionError:
        server.should_exit = True
        raise
    try:
        yield RunningCoordinator(base, m, clock, settings, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
