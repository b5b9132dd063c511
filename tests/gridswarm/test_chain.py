"""The chain client's pure parts, without a node: custom-error decoding, error mapping and the
EIP-2098 signature form."""

from __future__ import annotations

import pytest
import requests
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak

from gridswarm.chain import ChainError, ChainUnavailable, ContractRevert, ErrorDecoder, compact_signature

ABI = [
    {"type": "error", "name": "MarketIntervalNotOpen", "inputs": [{"name": "interval", "type": "uint64"}]},
    {
        "type": "error",
        "name": "MarketFillExceedsOrder",
        "inputs": [
            {"name": "orderId", "type": "uint256"},
            {"name": "fill", "type": "uint256"},
            {"name": "remaining", "type": "uint256"},
        ],
    },
    {"type": "function", "name": "ignored", "inputs": [], "outputs": []},
]


def _revert(sig: str, types: list[str], values: list[int]) -> str:
    return "0x" + (keccak(text=sig)[:4] + abi_encode(types, values)).hex()


def test_decodes_a_custom_error_with_its_named_values():
    err = ErrorDecoder(ABI).decode(_revert("MarketFillExceedsOrder(uint256,uint256,uint256)", ["uint256"] * 3, [9, 5, 2]))
    assert isinstance(err, ContractRevert)
    assert err.name == "MarketFillExceedsOrder"
    assert err.values == {"orderId": 9, "fill": 5, "remaining": 2}
    assert str(err) == "MarketFillExceedsOrder(orderId=9, fill=5, remaining=2)"


def test_decodes_bytes_as_well_as_hex():
    data = _revert("MarketIntervalNotOpen(uint64)", ["uint64"], [42])
    assert ErrorDecoder(ABI).decode(bytes.fromhex(data[2:])).values == {"interval": 42}


def test_unknown_selector_is_reported_with_its_raw_data():
    err = ErrorDecoder(ABI).decode("0xdeadbeef")
    assert err.name == "UnknownRevert"
    assert err.values == {"data": "0xdeadbeef"}


def test_truncated_payload_still_names_the_error():
    data = _revert("MarketIntervalNotOpen(uint64)", ["uint64"], [42])[:20]
    err = ErrorDecoder(ABI).decode(data)
    assert err.name == "MarketIntervalNotOpen"
    assert err.values == {}


def test_transport_failures_map_to_chain_unavailable():
    decoder = ErrorDecoder(ABI)
    assert isinstance(decoder.map(requests.ConnectionError("refused")), ChainUnavailable)
    assert isinstance(decoder.map(ConnectionRefusedError("refused")), ChainUnavailable)
    other = decoder.map(KeyError("x"))
    assert isinstance(other, ChainError) and not isinstance(other, ChainUnavailable | ContractRevert)


def test_compact_signature_keeps_r_and_folds_v_into_s():
    account = Account.create()
    sig = bytes(account.unsafe_sign_hash(keccak(text="m")).signature)
    r, vs = compact_signature("0x" + sig.hex())
    assert r == sig[:32]
    parity = sig[64] - 27
    assert int.from_bytes(vs, "big") >> 255 == parity
    assert int.from_bytes(vs, "big") & ((1 << 255) - 1) == int.from_bytes(sig[32:64], "big")


def test_compact_signature_refuses_a_wrong_length():
    with pytest.raises(ValueError, match="expected a 65-byte signature, got 64 bytes"):
        compact_signature(b"\x00" * 64)
