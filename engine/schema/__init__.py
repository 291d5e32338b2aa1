"""The published JSON Schema of the procedure format, and its errors turned into diagnostics."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
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


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


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

    if kind == "additionalProperties" and isinstance(value, dict):
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
