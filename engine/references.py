"""Case reference numbers: `PAS-2026-000123-K`, with an ISO 7064 MOD 37,36 check character.

The check character catches every single mistyped character and every swap of two adjacent
ones, so a mistyped tracking number is refused instead of matching somebody else's case.
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SHAPE = re.compile(r"([A-Z]{2,5})-([0-9]{4})-([0-9]{6,})-([0-9A-Z])")


def check_character(body: str) -> str:
    """ISO 7064 MOD 37,36 (hybrid) check character of an alphanumeric string."""
    modulus, product = 36, 36
    for char in body:
        total = (product + ALPHABET.index(char)) % modulus or modulus
        product = (total * 2) % (modulus + 1)
    return ALPHABET[(1 - product) % modulus]


def make(prefix: str, year: int, sequence: int) -> str:
    """The reference of case number `sequence` of `prefix` in `year`."""
    body = f"{prefix}-{year:04d}-{sequence:06d}"
    return f"{body}-{check_character(body.replace('-', ''))}"


def normalise(reference: str) -> str | None:
    """The canonical form of a typed reference, or None when its shape or check is wrong."""
    typed = reference.strip().upper()
    match = _SHAPE.fullmatch(typed)
    if match is None:
        return None
    prefix, year, number, check = match.groups()
    if check_character(prefix + year + number) != check:
        return None
    return typed
