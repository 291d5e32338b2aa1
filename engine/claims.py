"""Claim codes: how a person a case was opened for at the counter makes it theirs later.

The agent's receipt shows the case reference and a code of 12 characters from an alphabet
without look-alikes (about 60 bits); the engine keeps only a salted SHA-256 of it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
LENGTH = 12


def new_code() -> str:
    """A fresh code, shown in groups of four: `ABCD-EFGH-JKLM`."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, LENGTH, 4))


def seal(code: str) -> dict[str, str]:
    """What the engine stores of a code: a salt and the salted hash."""
    salt = secrets.token_hex(16)
    return {"salt": salt, "sha256": _digest(salt, code)}


def matches(code: str, sealed: Mapping[str, Any]) -> bool:
    """Whether `code` (dashes, spaces and case ignored) is the sealed one."""
    salt, expected = str(sealed.get("salt", "")), str(sealed.get("sha256", ""))
    return bool(salt) and hmac.compare_digest(_digest(salt, code), expected)


def _digest(salt: str, code: str) -> str:
    normal = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(f"{salt}:{normal}".encode()).hexdigest()
