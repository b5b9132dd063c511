"""Deploy the token and the market, and register participants.

Used by ``gridswarm deploy``, by ``scripts/deploy.py`` (brownie) and by the demo. Keys are
never stored in the repository: the demo derives throw-away keys from its seed and writes them
to its output folder; a real deployment passes key files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from nacl.signing import SigningKey
from web3 import Web3

from app.compile import compile_contracts, link_bytecode
from gridswarm.chain import Deployment, ErrorDecoder, TxSender
from gridswarm.keys import derive_ed25519, derive_eth_account

logger = logging.getLogger(__name__)

TOKEN_UNIT = 10**6  # 6 decimals
DEFAULT_COLLATERAL_RATE = 20  # base units per offered Wh = 0.02 token per kWh
DEFAULT_IMBALANCE_BUY = 20  # what a seller pays per Wh it sold and did not export (<= collateral rate)
DEFAULT_IMBALANCE_SELL = 0  # what a buyer is paid per Wh it bought and did not use (<= imbalance buy)
DEFAULT_CLEAR_TIMEOUT_S = 3600
DEFAULT_SETTLE_TIMEOUT_S = 3600
DEFAULT_CHANGE_DELAY_S = 86_400  # parameter, link, operator and admin changes wait this long
LIBRARIES = ("MarketSettlement", "MarketClearing")  # the market's external libraries


@dataclass
class ParticipantSpec:
    account: LocalAccount
    ed25519: SigningKey
    zone: int = 0
    tokens: int = 0  # base units minted to the participant's wallet
    deposit: int = 0  # base units moved into the market's internal balance


def fund_eth(w3: Web3, to: str, wei: int, funder: LocalAccount | None = None) -> None:
    """Give ``to`` gas money, from ``funder`` or the node's first unlocked account."""
    if funder is None:
        accounts = w3.eth.accounts
        if not accounts:
            raise RuntimeError("the node has no unlocked account to fund keys from; pass a funder key")
        tx_hash = w3.eth.send_transaction({"from": accounts[0], "to": to_checksum_address(to), "value": wei})
    else:
        tx = {
            "from": funder.address,
            "to": to_checksum_address(to),
            "value": wei,
            "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
            "chainId": w3.eth.chain_id,
            "gas": 21_000,
            "maxFeePerGas": w3.eth.gas_price * 2,
            "maxPriorityFeePerGas": w3.eth.max_priority_fee,
        }
        tx_hash = w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
    w3.eth.wait_for_transaction_receipt(tx_hash)


def _deploy_contract(
    sender: TxSender, w3: Web3, artifact: dict[str, Any], *args: Any, libraries: dict[str, str] | None = None
) -> str:
    code = link_bytecode(artifact, libraries or {})
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=code)
    receipt = sender.transact(factory.constructor(*args))
    return str(receipt["contractAddress"])


def deploy_market(
    w3: Web3,
    admin: LocalAccount,
    operator: LocalAccount,
    coordinator_key: SigningKey,
    collateral_rate: int = DEFAULT_COLLATERAL_RATE,
    clear_timeout_s: int = DEFAULT_CLEAR_TIMEOUT_S,
    settle_timeout_s: int = DEFAULT_SETTLE_TIMEOUT_S,
    fee_recipient: str | None = None,
    links: list[tuple[int, int, int, int]] | None = None,
    imbalance_buy: int = DEFAULT_IMBALANCE_BUY,
    imbalance_sell: int = DEFAULT_IMBALANCE_SELL,
    change_delay_s: int = DEFAULT_CHANGE_DELAY_S,
) -> Deployment:
    """Deploy GridToken, the market's libraries and EnergyMarket; publish the coordinator's
    Ed25519 key on chain. ``links`` are the registered zone links ``(from_zone, to_zone, fee,
    limit_wh)`` (none: one market); the fee recipient defaults to the admin."""
    artifacts = compile_contracts()
    abis = {name: art["abi"] for name, art in artifacts.items() if name in ("GridToken", "EnergyMarket")}
    sender = TxSender(w3, admin, ErrorDecoder(*abis.values()))
    token = _deploy_contract(sender, w3, artifacts["GridToken"], admin.address)
    libraries = {name: _deploy_contract(sender, w3, artifacts[name]) for name in LIBRARIES}
    params = (
        collateral_rate,
        imbalance_buy,
        imbalance_sell,
        clear_timeout_s,
        settle_timeout_s,
        to_checksum_address(fee_recipient or admin.address),
        operator.address,
    )
    market = _deploy_contract(
        sender,
        w3,
        artifacts["EnergyMarket"],
        token,
        admin.address,
        params,
        list(links or []),
        change_delay_s,
        libraries=libraries,
    )
    dep = Deployment(
        chain_id=w3.eth.chain_id,
        token=token,
        market=market,
        abis=abis,
        block=w3.eth.block_number,
        operator=operator.address,
        admin=admin.address,
    )
    m = dep.market_contract(w3)
    sender.transact(m.functions.setCoordinatorKey(bytes(coordinator_key.verify_key)))
    logger.info("deployed GridToken at %s and EnergyMarket at %s on chain %s", token, market, dep.chain_id)
    return dep


def register_participants(
    w3: Web3, dep: Deployment, admin: LocalAccount, participants: list[ParticipantSpec], gas_eth: float = 10.0
) -> None:
    """Register, fund with gas, mint tokens, and deposit into the market for each participant."""
    decoder = dep.decoder()
    admin_tx = TxSender(w3, admin, decoder)
    market = dep.market_contract(w3)
    token = dep.token_contract(w3)
    for p in participants:
        fund_eth(w3, p.account.address, int(gas_eth * 10**18))
        admin_tx.transact(market.functions.registerParticipant(p.account.address, bytes(p.ed25519.verify_key), p.zone))
        if p.tokens:
            admin_tx.transact(token.functions.mint(p.account.address, p.tokens))
        own = TxSender(w3, p.account, decoder)
        # The agent keeps an allowance so an order can top up its internal balance by itself.
        own.transact(token.functions.approve(dep.market, 2**256 - 1))
        if p.deposit:
            own.transact(market.functions.deposit(p.deposit))
    logger.info("registered %d participants", len(participants))


def deploy_seeded_market(
    w3: Web3, seed: int, *, eth_each: int = 100 * 10**18, **market_kw: Any
) -> tuple[LocalAccount, LocalAccount, SigningKey, Deployment]:
    """Token + market whose admin, operator and coordinator keys derive from ``seed`` (throw-away
    chains only: demos, tests, benchmarks); admin and operator get ``eth_each`` wei for gas.
    ``market_kw`` go to :func:`deploy_market`. Returns (admin, operator, coordinator key, deployment)."""
    admin, operator = derive_eth_account(seed, "admin"), derive_eth_account(seed, "operator")
    for acct in (admin, operator):
        fund_eth(w3, acct.address, eth_each)
    key = derive_ed25519(seed, "coordinator")
    return admin, operator, key, deploy_market(w3, admin, operator, key, **market_kw)
