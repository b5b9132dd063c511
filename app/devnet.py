"""Start a local chain node on a free port: Ganache (the default chain, docs/architecture.md §2)
or Anvil.

Ganache 7.9.2 knows hardforks up to shanghai (README, "The two commands"), so both nodes run
shanghai and the contracts are compiled for it. Accounts are deterministic; the first one funds
the keys the deployment generates. With ``db_path`` the chain is kept on disk (Ganache's
``--database.dbPath``), so a node restarted on the same folder resumes where it stopped.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any, Self

from app.compile import ROOT
from gridswarm.errors import GridSwarmError

logger = logging.getLogger(__name__)

GANACHE = ROOT / "node_modules" / "ganache" / "dist" / "node" / "cli.js"
ANVIL = ROOT / "node_modules" / ".bin" / "anvil"
DEFAULT_CHAIN_ID = 1337
PR_SET_PDEATHSIG = 1  # prctl(2)


class DevnetError(GridSwarmError, RuntimeError):
    """The local node could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # looked up once, here: a child between fork and exec only calls it


def die_with_parent() -> None:
    """Run in a child between fork and exec: the kernel sends it SIGTERM when the process that
    started it dies, even by SIGKILL, so a killed demo leaves no node or agent behind (Linux;
    elsewhere a no-op)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalNode:
    """A local chain node started by our code on a free port; use as a context manager or call
    :meth:`stop`. Subclasses give the command line (:meth:`command`)."""

    name = "node"

    def __init__(
        self,
        port: int | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        accounts: int = 10,
        block_gas_limit: int = 30_000_000,
        log_path: Path | None = None,
        db_path: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.chain_id = chain_id
        self.accounts = accounts
        self.block_gas_limit = block_gas_limit
        self.log_path = log_path
        self.db_path = db_path
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout_s: float = 60.0) -> Self:
        cmd = self.command()
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if self.die_with_parent else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DevnetError(f"{self.name} exited with code {self.proc.returncode} before listening on {self.url}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    logger.info("%s listening on %s (chain id %s)", self.name, self.url, self.chain_id)
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DevnetError(f"{self.name} did not listen on {self.url} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Ganache(LocalNode):
    """Ganache (the default chain): shanghai, instamine, deterministic funded accounts; with
    ``db_path`` its chain is kept on disk."""

    name = "Ganache"

    def command(self) -> list[str]:
        node = shutil.which("node")
        if node is None or not GANACHE.exists():
            raise DevnetError("Ganache is not installed: run `make setup` (npm ci) first")
        cmd = [
            node,
            str(GANACHE),
            "--server.host=127.0.0.1",
            f"--server.port={self.port}",
            "--chain.hardfork=shanghai",
            f"--chain.chainId={self.chain_id}",
            "--wallet.deterministic=true",
            f"--wallet.totalAccounts={self.accounts}",
            "--wallet.defaultBalance=100000",
            f"--miner.blockGasLimit={self.block_gas_limit}",
            "--miner.instamine=eager",
            "--logging.quiet=true",
        ]
        if self.db_path is not None:
            Path(self.db_path).mkdir(parents=True, exist_ok=True)
            cmd.append(f"--database.dbPath={Path(self.db_path).resolve()}")
        return cmd


class Anvil(LocalNode):
    """Anvil (Foundry, npm ``@foundry-rs/anvil-linux-amd64``): shanghai, automine,
    deterministic funded accounts, like :class:`Ganache`; the chain stays in memory."""

    name = "anvil"

    def command(self) -> list[str]:
        binary = str(ANVIL) if ANVIL.exists() else shutil.which("anvil")
        if binary is None:
            raise DevnetError("anvil is not installed: run `make setup` (npm ci, package.json) first")
        return [
            binary, "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(self.chain_id),
            "--hardfork", "shanghai", "--gas-limit", str(self.block_gas_limit), "--accounts", str(self.accounts),
            "--balance", "100000", "--no-request-size-limit",
        ]  # fmt: skip
