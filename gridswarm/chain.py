"""The chain client both sides use: connecting, sending transactions, decoding custom errors,
deployment records and EIP-712 meter readings.

web3 exceptions are mapped here, at the boundary, so callers never see a web3 type::

    ChainError
    ├── ChainUnavailable     the RPC endpoint does not answer
    └── ContractRevert       a call reverted; ``name`` / ``values`` hold the custom error
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound, Web3Exception

from gridswarm.errors import GridSwarmError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


class ChainError(GridSwarmError, RuntimeError):
    """Root of chain failures."""


class ChainUnavailable(ChainError):
    """The RPC endpoint did not answer."""


class ContractRevert(ChainError):
    """A contract call reverted."""

    def __init__(self, name: str, values: dict[str, Any], raw: str = "") -> None:
        self.name = name
        self.values = values
        self.raw = raw
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        super().__init__(f"{name}({shown})")


def connect(rpc_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Web3:
    """Connect to an EVM JSON-RPC endpoint, failing fast with a message naming the URL."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
    try:
        w3.eth.chain_id  # noqa: B018 - a real round trip
    except (requests.RequestException, OSError, Web3Exception, ValueError) as exc:
        raise ChainUnavailable(f"no Ethereum JSON-RPC node answers at {rpc_url}: {exc.__class__.__name__}") from exc
    return w3


def _abi_type(inp: dict[str, Any]) -> str:
    t = str(inp["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp["components"]) + ")" + t[5:]
    return t


class ErrorDecoder:
    """Maps revert data to custom error names and values using ABIs."""

    def __init__(self, *abis: list[dict[str, Any]]) -> None:
        self._by_selector: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [_abi_type(i) for i in item["inputs"]]
                sig = f"{item['name']}({','.join(types)})"
                self._by_selector[keccak(text=sig)[:4]] = (item["name"], [i["name"] for i in item["inputs"]], types)

    def decode(self, data: str | bytes) -> ContractRevert:
        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
        hit = self._by_selector.get(raw[:4])
        if hit is None:
            return ContractRevert("UnknownRevert", {"data": "0x" + raw.hex()}, "0x" + raw.hex())
        name, names, types = hit
        try:
            values = abi_decode(types, raw[4:])
        except Exception:  # noqa: BLE001 - a malformed payload is still reported by name
            values = ()
        return ContractRevert(name, dict(zip(names, values, strict=False)), "0x" + raw.hex())

    def map(self, exc: Exception) -> ChainError:
        if isinstance(exc, ContractCustomError | ContractLogicError):
            data: Any = exc.data
            if isinstance(data, dict):  # Ganache puts the revert data under "result"
                data = data.get("result") or data.get("data") or ""
            if not isinstance(data, str):
                data = ""
            if isinstance(exc, ContractCustomError) and not data and exc.args:
                data = str(exc.args[0])
            if data.startswith("0x") and len(data) >= 10 and not data.startswith("0x08c379a0"):
                return self.decode(data)
            return ContractRevert("Revert", {"message": str(exc.message or exc)}, data)
        if isinstance(exc, requests.RequestException | OSError):
            return ChainUnavailable(str(exc))
        return ChainError(f"{exc.__class__.__name__}: {exc}")


@dataclass
class Deployment:
    """Where the contracts live and how to talk to them (written to ``deployments/<chain id>.json``)."""

    chain_id: int
    token: str
    market: str
    abis: dict[str, list[dict[str, Any]]]
    block: int = 0
    operator: str = ""
    admin: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Deployment:
        data = json.loads(Path(path).read_text())
        return cls(**data)

    def market_contract(self, w3: Web3) -> Any:
        return w3.eth.contract(address=to_checksum_address(self.market), abi=self.abis["EnergyMarket"])

    def token_contract(self, w3: Web3) -> Any:
        return w3.eth.contract(address=to_checksum_address(self.token), abi=self.abis["GridToken"])

    def decoder(self) -> ErrorDecoder:
        return ErrorDecoder(*self.abis.values())


class TxSender:
    """Sends transactions from one local key; waits for receipts; maps reverts to names.

    A transaction whose receipt did not come in time may still be mined. It is remembered, and
    the next send first waits for it (or finds it dropped) instead of reusing its nonce: a node
    refuses a second transaction with a nonce it is already mining. If the next send is the very
    same call, the earlier transaction's receipt is its answer and nothing is sent twice."""

    def __init__(self, w3: Web3, account: LocalAccount, decoder: ErrorDecoder, receipt_timeout_s: float = 60.0) -> None:
        self.w3 = w3
        self.account = account
        self.decoder = decoder
        self.receipt_timeout_s = receipt_timeout_s
        self._lock = threading.Lock()
        self._inflight: tuple[Any, tuple[str, str] | None] | None = None  # (tx hash, (to, data))
        self._chain_id: int | None = None  # asked once: a node's chain id does not change

    @property
    def address(self) -> str:
        return str(self.account.address)

    def transact(
        self, call: Any, gas: int | None = None, *, precheck: bool = False, precheck_gas: int | None = None
    ) -> Any:
        """Build, sign, send and wait for ``call`` (a contract function call); return the receipt.

        Reverts are found before anything is sent and raised as :class:`ContractRevert`: at gas
        estimation (the node runs the call first) when ``gas`` is not given, or with ``precheck``
        by running the call once (``eth_call``) and sending it with the ``gas`` limit given. The
        second is for callers with a deadline: Ganache traces every step of an estimate, which
        took 0.3-1 s of a busy demo's 2 s between gate and delivery; a plain call is one run.
        ``precheck_gas`` runs that call with this gas limit (the send's, usually), so a call
        that would run out of gas is refused before it is sent and burns nothing.
        """
        if precheck and gas is None:
            raise ValueError("a prechecked transaction needs its gas limit")
        with self._lock:
            try:
                key = _call_key(call)
                receipt = self._settle_inflight(key)
                if receipt is None:
                    if precheck:
                        probe: dict[str, Any] = {"from": self.account.address}
                        if precheck_gas is not None:
                            probe["gas"] = precheck_gas
                        call.call(probe)
                    if self._chain_id is None:
                        self._chain_id = int(self.w3.eth.chain_id)
                    params: dict[str, Any] = {
                        "from": self.account.address,
                        "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
                        "chainId": self._chain_id,
                    }
                    if gas is not None:
                        params["gas"] = gas
                    tx = call.build_transaction(params)
                    signed = self.account.sign_transaction(tx)
                    tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
                    self._inflight = (tx_hash, key)
                    receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout_s)
                    self._inflight = None
            except ChainError:
                raise
            except Exception as exc:  # noqa: BLE001 - every web3/requests failure is mapped here
                raise self.decoder.map(exc) from exc
        if receipt["status"] != 1:
            raise ContractRevert("TransactionFailed", {"tx": receipt["transactionHash"].hex()})
        return receipt

    def _settle_inflight(self, key: tuple[str, str] | None) -> Any:
        """Resolve the transaction an earlier call left unconfirmed. Returns its receipt when it
        was this same call (mined after all: its answer), else None; raises (mapped by the
        caller) while it is still pending, so no conflicting nonce is ever sent."""
        if self._inflight is None:
            return None
        tx_hash, prev_key = self._inflight
        try:
            self.w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            logger.warning("transaction %s was dropped by the node; sending afresh", tx_hash.hex())
            self._inflight = None
            return None
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout_s)
        self._inflight = None
        return receipt if key is not None and prev_key == key else None

    def call(self, call: Any) -> Any:
        try:
            return call.call({"from": self.account.address})
        except Exception as exc:  # noqa: BLE001
            raise self.decoder.map(exc) from exc


def _call_key(call: Any) -> tuple[str, str] | None:
    """What makes two sends the same call: target and calldata (None for a deployment)."""
    try:
        return (str(call.address).lower(), str(call._encode_transaction_data()).lower())
    except AttributeError:
        return None


def chain_time(w3: Web3) -> int:
    """The chain's clock: the latest block's timestamp. It trails the wall clock between blocks,
    so a deadline judged by it is never seen to pass early."""
    return int(w3.eth.get_block("latest")["timestamp"])


def interval_lapsed(w3: Web3, market: Any, interval: int) -> bool:
    """Whether ``interval`` missed the operator's clearing deadline, by the contract's rule
    (docs/contracts.md): still Open or Closed after its ``clearBy``. Every owner may then recover
    its own locks. (The contract has no view for this; it would not fit under EIP-170.)"""
    status, _live, _committed, clear_by, *_ = market.functions.intervalOf(interval).call()
    return int(status) in (1, 2) and chain_time(w3) > int(clear_by)


# ---------------------------------------------------------------- EIP-712 meter readings

METER_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "MeterReading": [
        {"name": "participant", "type": "address"},
        {"name": "interval", "type": "uint64"},
        {"name": "exportedWh", "type": "uint64"},
        {"name": "importedWh", "type": "uint64"},
    ],
}


def meter_typed_data(
    chain_id: int, market: str, participant: str, interval: int, exported_wh: int, imported_wh: int
) -> dict[str, Any]:
    return {
        "types": METER_TYPES,
        "primaryType": "MeterReading",
        "domain": {
            "name": "GridSwarm EnergyMarket",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(market),
        },
        "message": {
            "participant": to_checksum_address(participant),
            "interval": interval,
            "exportedWh": exported_wh,
            "importedWh": imported_wh,
        },
    }


def sign_meter_reading(
    account: LocalAccount, chain_id: int, market: str, interval: int, exported_wh: int, imported_wh: int
) -> str:
    data = meter_typed_data(chain_id, market, account.address, interval, exported_wh, imported_wh)
    signed = account.sign_message(encode_typed_data(full_message=data))
    return "0x" + bytes(signed.signature).hex()


def compact_signature(signature: str | bytes) -> tuple[bytes, bytes]:
    """A 65-byte ``r || s || v`` signature (hex or bytes) as EIP-2098 ``(r, vs)``, the form
    ``EnergyMarket.settle`` takes: ``vs`` is ``s`` with the parity of ``v`` in its top bit."""
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else bytes(signature)
    if len(raw) != 65:
        raise ValueError(f"expected a 65-byte signature, got {len(raw)} bytes")
    v = raw[64] - 27 if raw[64] >= 27 else raw[64]
    vs = int.from_bytes(raw[32:64], "big") | (v << 255)
    return raw[:32], vs.to_bytes(32, "big")


def recover_meter_signer(
    chain_id: int, market: str, participant: str, interval: int, exported_wh: int, imported_wh: int, signature: str
) -> str:
    data = meter_typed_data(chain_id, market, participant, interval, exported_wh, imported_wh)
    return str(Account.recover_message(encode_typed_data(full_message=data), signature=signature))
