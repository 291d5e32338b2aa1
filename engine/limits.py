"""Limits on what callers hand the engine, checked before the database sees anything.

Every limit is a number below; every check raises InvalidData naming the field (its message
in French and English), so a refused call writes nothing, never reaches the database as a
driver error, and is never silently truncated. The checks are the same on SQLite and
PostgreSQL: they do not depend on what one database would have let through.

- identifiers (actor ids and roles, payment providers and their references, file names,
  document ids, triggers): at most their column's length, never empty, and free of NUL,
  lone UTF-16 surrogates and control characters;
- amounts: whole numbers from 1 to 2^31-1, the range of the INTEGER columns
  `payments.amount` and `cases.fees_paid` on PostgreSQL;
- data (a case's form, a step's input): JSON values only, nested at most MAX_DEPTH deep,
  MAX_DATA_BYTES in all, no NUL or lone surrogate in any text or key, integers within 64
  bits and finite numbers (forms.py narrows numbers further, to SAFE_INTEGER).

Lone surrogates cannot be encoded in UTF-8: stored, they would make every later read that
prints or encodes the case fail. NUL is refused by PostgreSQL in text and cut by C APIs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidData
from .messages import text

# --- the numbers --------------------------------------------------------------------------------

#: Column lengths of engine/store.py, in characters.
MAX_ACTOR_ID = 128
MAX_ROLE = 64
MAX_PROVIDER = 64
MAX_PROVIDER_REFERENCE = 128
MAX_PAYMENT_METHOD = 64  # an identifier (`payment_methods:`)
MAX_FILENAME = 255
MAX_DOCUMENT_ID = 64
MAX_TRIGGER = 64
MAX_PROCEDURE_ID = 64
MAX_STATE = 64

#: The largest amount (XOF) a payment, or the sum paid on a case, may reach: 2^31-1, the
#: INTEGER columns payments.amount and cases.fees_paid.
MAX_AMOUNT = 2**31 - 1
#: Integers anywhere in data: 64-bit signed (what every JSON reader of the database can hold).
MAX_DATA_INTEGER = 2**63 - 1
#: Integer and number form fields: +-(2^53-1), exact in a double (JavaScript, JSON readers).
SAFE_INTEGER = 2**53 - 1
#: Containers (objects, lists) nested in the data of one call, the data object included.
MAX_DEPTH = 32
#: Size of the data of one call as compact UTF-8 JSON: 1 MiB.
MAX_DATA_BYTES = 1 << 20
#: Maximum length of a text field that declares none: `text` (several lines) ...
DEFAULT_TEXT_MAX_LENGTH = 10_000
#: ... and every other kind of text field (string, email, phone...).
DEFAULT_MAX_LENGTH = 1_000

Messages = dict[str, str]  # language -> text

_TITLE = text("invalid_data")  # as every InvalidData

_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # C0, DEL, C1, surrogates


def default_max_length(field_type: str) -> int:
    """The maximum length of a text field of `field_type` that declares none."""
    return DEFAULT_TEXT_MAX_LENGTH if field_type == "text" else DEFAULT_MAX_LENGTH


# --- errors -------------------------------------------------------------------------------------

class InvalidActor(InvalidData, ValueError):
    """An Actor built with a bad id or role: InvalidData for hosts and the CLI, and a
    ValueError like any bad argument to a constructor."""


def invalid(name: str, message: Mapping[str, str]) -> InvalidData:
    """InvalidData naming one field (or argument) `name`."""
    return InvalidData(_TITLE, {shown(name): dict(message)})


def shown(name: str, limit: int = 64) -> str:
    """`name` fit to print in an error: control characters and surrogates escaped, and
    shortened to `limit` characters."""
    text = repr(name)[1:-1] if _CONTROL.search(name) else name
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- text ---------------------------------------------------------------------------------------

def text_problem(value: str, controls: bool = False) -> Messages | None:
    """What is wrong with the characters of `value`: a NUL, a lone surrogate, or (with
    `controls`) any control character; None when nothing is."""
    found = (_CONTROL if controls else _NUL_OR_SURROGATE).search(value)
    if found is None:
        return None
    code = f"U+{ord(found.group()):04X}"
    if found.group() == "\x00":
        return text("nul_character", code=code)
    if "\ud800" <= found.group() <= "\udfff":
        return text("lone_surrogate", code=code)
    return text("control_character", code=code)


def check_text(name: str, value: object, max_length: int) -> str:
    """An identifier-like text (a reference, a name): a non-empty str of at most
    `max_length` characters without control characters; returns it."""
    if not isinstance(value, str):
        raise invalid(name, text("must_be_text"))
    if not value:
        raise invalid(name, text("required"))
    if len(value) > max_length:
        raise invalid(name, text("too_long", max_length=max_length))
    problem = text_problem(value, controls=True)
    if problem is not None:
        raise invalid(name, problem)
    return value


def check_actor(actor_id: str, roles: Iterable[object]) -> None:
    """An actor's id and roles, as Actor() is given them; raises InvalidActor."""
    try:
        check_text("actor.id", actor_id, MAX_ACTOR_ID)
        given = list(roles)
        if not given:
            raise invalid("actor.roles", text("role_required"))
        for role in given:
            check_text("actor.roles", role, MAX_ROLE)
    except InvalidData as exc:
        raise InvalidActor(exc.text, exc.errors) from None


# --- amounts ------------------------------------------------------------------------------------

def check_amount(name: str, value: object, maximum: int = MAX_AMOUNT) -> int:
    """A whole, positive amount in XOF of at most `maximum`; returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise invalid(name, text("amount_not_positive"))
    if value > maximum:
        raise invalid(name, text("amount_too_large", maximum=maximum))
    return value


def check_owed(name: str, amount: int, due: int, paid: int) -> None:
    """A payment of `amount` on a case that owes `due` in all and has `paid`: never more
    than what is still due (nor, whatever the fees, past MAX_AMOUNT paid in all)."""
    owed = max(0, min(due, MAX_AMOUNT) - paid)
    if amount > owed:
        raise invalid(name, text("more_than_owed", owed=owed))


# --- data ---------------------------------------------------------------------------------------

class _Budget:
    """What is left of MAX_DATA_BYTES while walking the data of one call."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.left = max_bytes

    def spend(self, size: int) -> Messages | None:
        self.left -= size
        if self.left >= 0:
            return None
        return text("data_too_large", max_bytes=self.max_bytes)


def _text_size(value: str, budget: _Budget) -> int:
    """Bytes of `value` as a JSON string (a too-long string is not encoded to measure it)."""
    if len(value) > budget.max_bytes:
        return len(value)
    return len(value.encode("utf-8", "surrogatepass")) + 2


def _scalar_problem(value: object) -> Messages | None:
    """What is wrong with a value that is not a container; None for a good JSON scalar."""
    if isinstance(value, str):
        return text_problem(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not -MAX_DATA_INTEGER - 1 <= value <= MAX_DATA_INTEGER:
            return text("integer_beyond_64_bits")
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return text("number_not_finite")
        return None
    return text("not_json_value")


def _size(value: object, budget: _Budget) -> int:
    """Bytes of a scalar as compact JSON (a good one: see _scalar_problem)."""
    if isinstance(value, str):
        return _text_size(value, budget)
    if value is None or isinstance(value, bool):
        return 5
    return len(repr(value))


def _children(value: object) -> list[tuple[str | int, object]] | Messages | None:
    """The (key, child) pairs of a container; a problem for a bad key; None for a scalar."""
    if isinstance(value, Mapping):
        pairs: list[tuple[str | int, object]] = []
        for key, child in value.items():
            if not isinstance(key, str):
                return text("key_not_text")
            problem = text_problem(key)
            if problem is not None:
                return problem
            pairs.append((key, child))
        return pairs
    if isinstance(value, list | tuple):
        return list(enumerate(value))
    return None


def _item_problem(item: object, budget: _Budget,
                  children: list[tuple[str | int, object]] | Messages | None
                  ) -> Messages | None:
    """What is wrong with one item of the walk (not with what it contains)."""
    if children is None:
        return _scalar_problem(item) or budget.spend(_size(item, budget))
    if isinstance(children, dict):
        return children
    keys = sum(_text_size(k, budget) + 1 for k, _ in children if isinstance(k, str))
    return budget.spend(2 + len(children) + keys)


def _value_problem(value: object, level: int = 2, max_depth: int = MAX_DEPTH,
                  budget: _Budget | None = None) -> tuple[str, Messages] | None:
    """The first problem found in `value`: (its dotted path inside `value`, '' for `value`
    itself; the messages), or None. `level` is the nesting level `value` has if it is a
    container: 2 for a field of a data object (the object is level 1).

    Walks without recursion, so no depth of nesting can exhaust the stack; a value nested
    too deep is reported at `value` itself (path '').
    """
    budget = budget or _Budget(MAX_DATA_BYTES)
    stack: list[tuple[tuple[str | int, ...], object, int]] = [((), value, level)]
    while stack:
        path, item, at = stack.pop()
        children = _children(item)
        if isinstance(children, list) and at > max_depth:
            return "", _too_deep(max_depth)
        problem = _item_problem(item, budget, children)
        if problem is not None:
            return ".".join(shown(str(p)) for p in path), problem
        if isinstance(children, list):
            stack.extend(((*path, k), child, at + 1) for k, child in reversed(children))
    return None


def data_problems(data: Mapping[Any, Any], max_depth: int = MAX_DEPTH,
                  max_bytes: int = MAX_DATA_BYTES) -> dict[Any, tuple[str, Messages]]:
    """Each top-level key of `data` whose field has a problem -> (the dotted path of the
    problem inside the field, '' for the field itself; the messages). Stops at the first
    field past `max_bytes` (a size of the whole data). Name a key in a message with
    field_name(key): it may hold what cannot be printed."""
    budget = _Budget(max_bytes)
    problems: dict[Any, tuple[str, Messages]] = {}
    for key, value in data.items():
        found = _key_problem(key, budget)
        if found is None:
            found = _value_problem(value, 2, max_depth, budget)
        if found is not None:
            problems[key] = found
            if budget.left < 0:
                break
    return problems


def _key_problem(key: object, budget: _Budget) -> tuple[str, Messages] | None:
    """What is wrong with the name of a field of data (its size counts in `budget`)."""
    if not isinstance(key, str):
        return "", text("not_field_name")
    problem = text_problem(key) or budget.spend(_text_size(key, budget) + 1)
    return None if problem is None else ("", problem)


def field_name(key: object) -> str:
    """A top-level key of data, fit to print in an error."""
    return shown(key) if isinstance(key, str) else shown(repr(key))


def check_data(data: object, max_depth: int = MAX_DEPTH,
               max_bytes: int = MAX_DATA_BYTES) -> None:
    """Data a caller gives the engine: a mapping of JSON values nested at most `max_depth`
    deep (the mapping included), at most `max_bytes` as compact UTF-8 JSON, without NUL or
    lone surrogates in any text or key, integers within 64 bits, finite numbers.

    Raises InvalidData naming each top-level field at fault (with where inside it).
    """
    if not isinstance(data, Mapping):
        raise invalid("data", text("data_not_object"))
    problems = data_problems(data, max_depth, max_bytes)
    if problems:
        raise InvalidData(_TITLE, {field_name(key): _located(path, messages)
                                   for key, (path, messages) in problems.items()})


def check_payload(data: Mapping[str, Any]) -> None:
    """check_data with the engine's limits (MAX_DEPTH, MAX_DATA_BYTES, 64-bit integers...).

    The engine calls it first thing on the data a caller gives `start`, `fire` and `update`,
    before the data is validated, evaluated or written: a refused call changes nothing.
    """
    check_data(data, MAX_DEPTH, MAX_DATA_BYTES)


def too_deep(name: str, max_depth: int = MAX_DEPTH) -> InvalidData:
    """The error for data too deep to even be parsed (a JSON reader's RecursionError)."""
    return invalid(name, _too_deep(max_depth))


def _too_deep(max_depth: int) -> Messages:
    return text("nested_too_deep", max_depth=max_depth)


def _located(path: str, messages: Messages) -> Messages:
    if not path:
        return messages
    return text("at_path", message=messages, path=path)
