"""Texts that match a field's `pattern:`, for exploration to supply valid values.

`matching_texts(pattern)` walks the pattern as Python's own regular-expression parser reads
it and writes a few different texts it describes: each character class gives its first, then
its last character (a digit class "0" then "9"), each alternative is taken in turn, and each
repetition is written its least number of times (at least once), or `stretch` times more.
Lookarounds are ignored: the caller checks every text with the field's validation anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from re import _parser  # type: ignore[attr-defined]  # the parser re.compile uses (3.11+)
from typing import Any

#: Characters tried for classes and wildcards, after those a class names itself.
_POOL = "aA0zZ9_-. x"
_CATEGORIES = {
    "CATEGORY_DIGIT": str.isdigit, "CATEGORY_WORD": lambda c: c.isalnum() or c == "_",
    "CATEGORY_SPACE": str.isspace,
}
_MAX_TEXT = 1000


class _Unsupported(Exception):
    """A construct the sampler does not write (the caller falls back to its samples)."""


def matching_texts(pattern: str, variants: int = 2, stretch: int = 0) -> list[str]:
    """Up to `variants` distinct texts `pattern` matches (fewer if it allows fewer, none if
    the pattern cannot be read); `stretch` repeats open-ended repetitions that many more
    times (to reach a minimum length)."""
    try:
        parsed = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return []
    found: dict[str, None] = {}
    for variant in range(variants):
        out: list[str] = []
        try:
            _write(parsed, variant, stretch, out, {})
        except (_Unsupported, RecursionError):
            continue
        text = "".join(out)
        if len(text) <= _MAX_TEXT and re.search(pattern, text):
            found.setdefault(text)
    return list(found)


def _write(items: Any, variant: int, stretch: int, out: list[str], groups: dict[int, str]
           ) -> None:
    for op, value in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(value))
        elif name in ("NOT_LITERAL", "ANY", "IN"):
            out.append(_character(name, value, variant))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = value
            count = min(max(low, 1) + (stretch if high > low else 0), high)
            for _ in range(count):
                _write(sub, variant, stretch, out, groups)
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            start = len(out)
            group, sub = (value[0], value[-1]) if name == "SUBPATTERN" else (None, value)
            _write(sub, variant, stretch, out, groups)
            if group is not None:
                groups[group] = "".join(out[start:])
        elif name == "BRANCH":
            branches = value[1]
            _write(branches[variant % len(branches)], variant, stretch, out, groups)
        elif name == "GROUPREF":
            out.append(groups.get(value, ""))
        elif name not in ("AT", "ASSERT", "ASSERT_NOT"):
            raise _Unsupported(name)
        if len(out) > _MAX_TEXT:
            raise _Unsupported("too long")


def _character(name: str, value: Any, variant: int) -> str:
    """A character of a class (`IN`), of anything but a literal, or of `.`."""
    if name == "ANY":
        return "x"
    if name == "NOT_LITERAL":
        return "a" if chr(value) != "a" else "b"
    own: list[str] = [chr(v) for op, v in value if str(op) == "LITERAL"]
    own += [chr(bound) for op, v in value if str(op) == "RANGE" for bound in v]
    members: list[str] = [c for c in dict.fromkeys([*own, *_POOL]) if _member(c, value)]
    if not members:
        raise _Unsupported("empty class")
    ends = [members[0], members[-1]] if len(own) > 1 else members
    return ends[variant % len(ends)]


def _member(c: str, items: Sequence[tuple[Any, Any]]) -> bool:
    negate = any(str(op) == "NEGATE" for op, _ in items)
    hit = any(_one(c, str(op), value) for op, value in items)
    return hit != negate


def _one(c: str, op: str, value: Any) -> bool:
    if op == "LITERAL":
        return c == chr(value)
    if op == "RANGE":
        return bool(value[0] <= ord(c) <= value[1])
    if op == "CATEGORY":
        category = str(value)
        negated = category.startswith("CATEGORY_NOT_")
        test = _CATEGORIES.get(category.replace("NOT_", ""))
        return test is not None and test(c) != negated
    return False


def texts_for(pattern: str, min_length: int | None) -> Iterator[str]:
    """Texts matching `pattern`, the shortest first, then stretched to `min_length`."""
    yield from matching_texts(pattern)
    if min_length:
        yield from matching_texts(pattern, stretch=min_length)
