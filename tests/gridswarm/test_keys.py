"""Key files: round trip, permissions, and every way a key file can be wrong."""

from __future__ import annotations

import stat

import pytest

from gridswarm.keys import (
    KeyFileError,
    derive_ed25519,
    derive_eth_account,
    load_ed25519,
    load_eth_key,
    write_ed25519,
    write_eth_key,
)


def test_eth_key_round_trip_with_owner_only_permissions(tmp_path):
    account = derive_eth_account(7, "seller", 1)
    path = write_eth_key(tmp_path / "k" / "eth.key", account)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_eth_key(path).address == account.address


def test_ed25519_round_trip(tmp_path):
    key = derive_ed25519(7, "seller", 1)
    path = write_ed25519(tmp_path / "ed.key", key)
    assert bytes(load_ed25519(path).verify_key) == bytes(key.verify_key)


def test_derived_keys_are_deterministic_and_distinct():
    assert derive_eth_account(1, "a").address == derive_eth_account(1, "a").address
    assert derive_eth_account(1, "a").address != derive_eth_account(2, "a").address
    assert derive_eth_account(1, "a", 0).address != derive_eth_account(1, "a", 1).address
    assert bytes(derive_ed25519(1, "a")) != bytes(derive_ed25519(1, "b"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not hex at all", "does not hold a hex key"),
        ("0x" + "ab" * 31, "holds 31 bytes, expected 32"),
        ("ab" * 33, "holds 33 bytes, expected 32"),
        ("", "holds 0 bytes, expected 32"),
    ],
)
def test_bad_key_files_are_named_with_the_reason(tmp_path, content, message):
    path = tmp_path / "bad.key"
    path.write_text(content)
    for load in (load_eth_key, load_ed25519):
        with pytest.raises(KeyFileError, match=message):
            load(path)


def test_missing_key_file_is_named(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read key file .*missing.key"):
        load_eth_key(tmp_path / "missing.key")
