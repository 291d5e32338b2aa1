"""Case reference numbers: `PAS-2026-000123-K`, with one check character.

The check is a pure weighted sum modulo the prime 37 (the ISO 7064 MOD 37-2 construction):
each character's value (0-9, A-Z = 0..35) is weighted by a power of 2, and the check value
makes the total 1 modulo 37. Because 37 is prime and neighbouring weights differ, it catches
every single mistyped character and every swap of two adjacent ones, so a mistyped tracking
number is refused instead of matching somebody else's case. The one check value (36) that
has no letter or digit is never issued: such sequence numbers are skipped (1 in 37).
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MODULUS = 37
_SHAPE = re.compile(r"([A-Z]{2,5})-([0-9]{4})-([0-9]{6,})-([0-9A-Z])")


def check_value(body: str) -> int:
    """The check value (0..36) of an alphanumeric string."""
    total = 0
    for char in body:
        total = (total + ALPHABET.index(char)) * 2 % _MODULUS
    return (1 - total) % _MODULUS


def check_character(body: str) -> str | None:
    """The check character of `body`, or None when its value (36) has no character."""
    value = check_value(body)
    return ALPHABET[value] if value < len(ALPHABET) else None


def make(prefix: str, year: int, sequence: int) -> str | None:
    """The reference of case number `sequence` of `prefix` in `year` (None: skip it)."""
    body = f"{prefix}-{year:04d}-{sequence:06d}"
    check = check_character(body.replace("-", ""))
    return None if check is None else f"{body}-{check}"


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
