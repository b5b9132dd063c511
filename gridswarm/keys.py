"""Key files and demo keys.

A key file holds one hex string: an Ethereum private key (32 bytes) or an Ed25519 seed
(32 bytes). Files are written with mode 0600. Demo keys are derived from the demo's seed and
are for throw-away chains only.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from nacl.signing import SigningKey

from gridswarm.errors import UserError


class KeyFileError(UserError, ValueError):
    """A key file is missing or does not hold a 32-byte hex key."""


def _read_32(path: Path) -> bytes:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise KeyFileError(f"key file {path} does not hold a hex key") from exc
    if len(raw) != 32:
        raise KeyFileError(f"key file {path} holds {len(raw)} bytes, expected 32")
    return raw


def load_eth_key(path: Path) -> LocalAccount:
    return Account.from_key(_read_32(path))


def load_ed25519(path: Path) -> SigningKey:
    return SigningKey(_read_32(path))


def write_key(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("0x" + raw.hex() + "\n")
    return path


def write_eth_key(path: Path, account: LocalAccount) -> Path:
    return write_key(path, bytes(account.key))


def write_ed25519(path: Path, key: SigningKey) -> Path:
    return write_key(path, bytes(key))


def derive_eth_account(seed: int, role: str, index: int = 0) -> LocalAccount:
    """A deterministic throw-away key for demos and tests (never for real funds)."""
    return Account.from_key(keccak(text=f"gridswarm-demo/{seed}/{role}/{index}"))


def derive_ed25519(seed: int, role: str, index: int = 0) -> SigningKey:
    return SigningKey(keccak(text=f"gridswarm-demo-ed25519/{seed}/{role}/{index}"))


def new_operator_key() -> tuple[str, str]:
    """A fresh dashboard operator key and the SHA-256 hex the coordinator stores instead of it."""
    key = secrets.token_urlsafe(32)
    return key, hash_operator_key(key)


def hash_operator_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
