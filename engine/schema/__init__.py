"""The published JSON Schema of the procedure format, and its errors turned into diagnostics."""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from ..errors import Diagnostic
from ..source import Document

SCHEMA_FILE = "procedure.schema.json"

_PATTERNS = {
    "^[a-z][a-z0-9_]*$": "an identifier (lower-case letters, digits and _, starting with a letter)",
    "^[A-Z]{2,5}$": "2 to 5 capital letters, e.g. PAS",
    "^(today|[0-9]{4}-[0-9]{2}-[0-9]{2})$": 'a date like "2000-01-31", or "today"',
    "^[1-9][0-9]* (KB|MB)$": 'a size like "500 KB" or "5 MB"',
}
_DURATION_HINT = 'a duration like "30 days", "72 hours", "10 business days" or "5 years"'
_TYPES = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "array": "a list", "object": "a mapping", "null": "nothing",
}


def schema_text() -> str:
    """The JSON Schema as shipped (what `guichet schema` prints)."""
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


class _Memory:
    """The (definition, value) pairs found valid, as texts, bounded in count and in size: a
    value whose JSON is longer than `longest` is not kept, and the memory is emptied when it
    would hold more than `entries` texts or `chars` characters."""

    def __init__(self, entries: int = 8192, chars: int = 8_000_000, longest: int = 20_000
                 ) -> None:
        self.entries, self.chars, self.longest = entries, chars, longest
        self.kept: set[str] = set()
        self.size = 0
        self.lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self.kept

    def add(self, key: str) -> None:
        if len(key) > self.longest:
            return
        with self.lock:
            if len(self.kept) >= self.entries or self.size + len(key) > self.chars:
                self.clear()
            self.kept.add(key)
            self.size += len(key)

    def clear(self) -> None:
        self.kept = set()
        self.size = 0


_valid = _Memory()
_plain_ref = Draft202012Validator.VALIDATORS["$ref"]


def _remembered_ref(validator: Any, ref: str, instance: Any, subschema: Any
                    ) -> Iterator[ValidationError]:
    """`$ref`, remembering the mappings and lists found valid against a definition.

    A state, transition or field unchanged since the last check (the language server re-checks
    on every keystroke; a directory repeats texts) is not walked again. Only valid results are
    kept, so every error is still found and located by jsonschema itself.
    """
    if not isinstance(instance, dict | list):
        yield from _plain_ref(validator, ref, instance, subschema)
        return
    key = ref + "\0" + json.dumps(instance, sort_keys=True, ensure_ascii=False)
    if key in _valid:
        return
    errors = list(_plain_ref(validator, ref, instance, subschema))
    if not errors:
        _valid.add(key)
    yield from errors


def forget() -> None:
    """Forget the values remembered as valid (for measuring a first check)."""
    _valid.clear()


@cache
def _validator() -> Draft202012Validator:
    """The validator of the shipped schema (its own validity against the JSON Schema meta-schema
    is a test, tests/test_schema_shipped.py, not a cost paid by every process)."""
    remembering = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"$ref": _remembered_ref})
    validator: Draft202012Validator = remembering(schema())
    return validator


def check(document: Document) -> list[Diagnostic]:
    """Every schema violation of `document`, located and phrased for an author."""
    found: list[Diagnostic] = []
    for error in _validator().iter_errors(document.data):
        found.extend(_diagnose(document, error))
    return found


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + '..."'


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _where(path: tuple[Any, ...]) -> str:
    return " in " + ".".join(str(p) for p in path) if path else " at the top level"


def _diagnose(document: Document, error: ValidationError) -> Iterator[Diagnostic]:
    path = tuple(error.absolute_path)
    kind: Any = error.validator
    value: Any = error.instance
    limit: Any = error.validator_value
    subschema: Any = error.schema

    def diag(message: str, rule: str, at: tuple[Any, ...] = path, key: bool = False) -> Diagnostic:
        where = document.key_at(at) if key else document.at(at)
        return Diagnostic(where, "error", rule, message)

    if subschema is False:  # a key the field's type does not take (`field`'s if/then on type)
        yield from _diagnose_inapplicable(document, path, value)
    elif _diagnose_under_inapplicable(document, path):
        return  # the value of a key its field does not take: that key's error is enough
    elif kind == "required" and "then" in error.relative_schema_path:
        yield from _diagnose_needed(document, path, value, limit)
    elif kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(subschema.get("properties", {}))
        for key in value:
            if key not in allowed:
                yield diag(f'unknown key "{key}"{_suggest(key, allowed)}', "unknown-key",
                           (*path, key), key=True)
    elif kind == "required":
        missing = [k for k in limit if k not in value]
        for key in missing:
            yield diag(f'missing key "{key}"{_where(path)}', "missing-key")
    elif "propertyNames" in error.relative_schema_path:
        yield diag(f'"{value}" is not {_PATTERNS["^[a-z][a-z0-9_]*$"]}', "invalid-value",
                   (*path, value), key=True)
    elif kind in ("anyOf", "oneOf"):
        yield from _diagnose_alternatives(document, error, path)
    else:
        yield diag(_message(error), "type" if kind == "type" else "invalid-value")


@cache
def _diagnose_field_keys() -> dict[str, list[str]]:
    """For each field type, the keys the schema refuses for it: the `false` properties of
    the `then` of `field`'s if/then/else chain on `type`."""
    refused: dict[str, list[str]] = {}
    branch: Any = schema()["$defs"]["field"]
    while isinstance(branch, dict) and "if" in branch:
        condition = branch["if"]["properties"]["type"]
        keys = [k for k, v in branch["then"].get("properties", {}).items() if v is False]
        for field_type in condition.get("enum", [condition.get("const")]):
            refused[field_type] = keys
        branch = branch.get("else")
    return refused


def _diagnose_inapplicable(document: Document, path: tuple[Any, ...], value: Any
                           ) -> Iterator[Diagnostic]:
    """A key the field at `path` has but its type does not take, found by its value
    (jsonschema leaves a `false` property out of the error's path; keys holding the very
    same value object are reported by each of their errors, and compile_document keeps one)."""
    field: Any = document.data
    for part in path:
        field = field[part]
    refused = _diagnose_field_keys()
    field_type = field.get("type") if isinstance(field, dict) else None
    if not isinstance(field_type, str) or field_type not in refused:
        return  # a missing or unknown type: its own error says so
    present = [k for k in refused[field_type] if k in field]
    article = "an" if field_type[0] in "aeiou" else "a"
    for key in [k for k in present if field[k] is value] or present:
        takers = [t for t, keys in refused.items() if key not in keys]
        types = ", ".join(takers[:-1]) + " and " + takers[-1] if len(takers) > 1 else takers[0]
        message = (f'key "{key}" does not apply to {article} {field_type} field; it is for '
                   f"{types} fields")
        if key in ("min", "max") and "min_length" not in refused[field_type]:
            message += "; for the length of a text, use min_length or max_length"
        at = document.key_at((*path, key))
        yield Diagnostic(at, "error", "field-constraint", message)


def _diagnose_under_inapplicable(document: Document, path: tuple[Any, ...]) -> bool:
    """Whether `path` is in the value of a key its field's type does not take."""
    refused = _diagnose_field_keys()
    node: Any = document.data
    for part in path:
        if isinstance(node, dict) and part in refused.get(str(node.get("type")), ()):
            return True
        node = node[part]
    return False


def _diagnose_needed(document: Document, path: tuple[Any, ...], field: Any, keys: Any
                     ) -> Iterator[Diagnostic]:
    """A key the field's type needs (a choice's options, a group's fields)."""
    named = f' "{field["id"]}"' if isinstance(field.get("id"), str) else ""
    for key in keys:
        if key not in field:
            yield Diagnostic(document.at(path), "error", "field-constraint",
                             f'{field.get("type")} field{named} needs {key}')


def _diagnose_alternatives(
    document: Document, error: ValidationError, path: tuple[Any, ...]
) -> Iterator[Diagnostic]:
    """Report against the alternative whose shape fits the value, else say what fits."""
    branches: dict[Any, list[ValidationError]] = {}
    for inner in error.context or []:
        branches.setdefault(inner.relative_schema_path[0], []).append(inner)
    fitting = [e for errors in branches.values() if not any(_wrong_shape(e) for e in errors)
               for e in errors]
    if fitting:
        yield from _diagnose(document, best_match(fitting))
        return
    alternatives: Any = error.validator_value
    shapes = " or ".join(_shape(a) for a in alternatives)
    value: Any = error.instance
    yield Diagnostic(document.at(path), "error", "type", f"expected {shapes}, found {_show(value)}")


def _wrong_shape(error: ValidationError) -> bool:
    """A type error about the value itself (not one of its parts)."""
    return error.validator == "type" and not error.relative_path


def _shape(alternative: dict[str, Any]) -> str:
    if "const" in alternative:
        return f'"{alternative["const"]}"'
    if alternative.get("$ref", "").endswith("/identifier"):
        return "a name"
    if alternative.get("type") == "array":
        return "a list of names" if "identifier" in str(alternative.get("items")) else "a list"
    if alternative.get("type") == "object":
        every = set(alternative.get("properties", {})) == {"all"}  # a text's {all: ...}
        return "a mapping with all" if every else "a mapping with fr and en"
    return _TYPES.get(str(alternative.get("type")), "a value")


def _message(error: ValidationError) -> str:
    kind: Any = error.validator
    value: Any = error.instance
    limit: Any = error.validator_value
    if kind == "type":
        types = [limit] if isinstance(limit, str) else list(limit)
        return f"expected {' or '.join(_TYPES[t] for t in types)}, found {_show(value)}"
    if kind == "enum":
        choices = [str(c) for c in limit]
        hint = _suggest(str(value), choices)
        return f"{_show(value)} is not one of {', '.join(choices)}{hint}"
    if kind == "pattern":
        wanted = _PATTERNS.get(limit, _DURATION_HINT if "business" in limit else f"/{limit}/")
        return f"{_show(value)} is not {wanted}"
    if kind == "const":
        return f'expected "{limit}", found {_show(value)}'
    if kind in ("minItems", "minProperties"):
        return f"needs at least {limit} item(s)"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"{_show(value)} is longer than {limit} characters"
    if kind == "minimum":
        return f"{_show(value)} is less than {limit}"
    return str(error.message)  # pragma: no cover - every validator the schema uses is handled above
