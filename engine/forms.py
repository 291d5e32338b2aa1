"""Form data: a JSON Schema generated from field definitions, plus the checks it cannot express.

`Form` is compiled once per procedure version (and once per transition input). It validates a
citizen's data, honours `when:` (hidden fields are dropped and never required), normalises
phone numbers to E.164, and phrases every error per field in French and English. Every value
is bounded (engine/limits.py): text fields without a declared `max_length` get a default one,
numbers stay within +-(2^53-1), and no text holds NUL or a lone surrogate.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from . import limits
from .countries import COUNTRY_CODES
from .messages import Texts, text
from .model import Field

PHONE_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
PHONE_TOGO_NATIONAL = re.compile(r"[0-9]{8}")  # Togolese numbers: 8 digits after +228
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
NIN = r"^[0-9]{10}$"  # assumption: Togo's NIN (e-ID Togo) as 10 digits
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

Errors = dict[str, dict[str, str]]  # field path -> language -> message


def _schema_of(f: Field) -> dict[str, Any]:
    t = f.type
    if t in ("integer", "number"):
        return _number_schema(f)
    if t == "boolean":
        return {"type": "boolean"}
    if t == "multi_choice":
        return {"type": "array", "items": {"enum": list(f.option_values)}, "uniqueItems": True}
    if t == "group":
        rows: dict[str, Any] = {"type": "array", "items": _object_schema(f.fields)}
        if f.min_rows is not None:
            rows["minItems"] = f.min_rows
        if f.max_rows is not None:
            rows["maxItems"] = f.max_rows
        return rows
    return _string_schema(f)


_STRING_FORMATS: dict[str, dict[str, Any]] = {
    "country": {"enum": sorted(COUNTRY_CODES)},
    "email": {"pattern": EMAIL},
    "nin": {"pattern": NIN},
    "date": {"pattern": DATE},
}


def _number_schema(f: Field) -> dict[str, Any]:
    """An integer or number field: its declared bounds, within +-SAFE_INTEGER whatever they
    say (exact in a double, so every JSON reader of the record gets the same value)."""
    low: float = -limits.SAFE_INTEGER
    high: float = limits.SAFE_INTEGER
    if isinstance(f.minimum, int | float) and not isinstance(f.minimum, bool):
        low = max(low, f.minimum)
    if isinstance(f.maximum, int | float) and not isinstance(f.maximum, bool):
        high = min(high, f.maximum)
    return {"type": f.type, "minimum": low, "maximum": high}


def _string_schema(f: Field) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string", **_STRING_FORMATS.get(f.type, {})}
    if f.type == "choice":
        s["enum"] = list(f.option_values)
    if f.min_length is not None:
        s["minLength"] = f.min_length
    # a field that declares no maximum still has one (a 50 MB message is never stored)
    s["maxLength"] = (f.max_length if f.max_length is not None
                      else max(limits.default_max_length(f.type), f.min_length or 0))
    if f.pattern:
        s["pattern"] = f.pattern
    return s


def _object_schema(fields: Iterable[Field]) -> dict[str, Any]:
    fields = list(fields)
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.id: _schema_of(f) for f in fields},
        "required": [f.id for f in fields if f.required and f.when is None],
    }


def _message(error: ValidationError, f: Field | None) -> dict[str, str]:
    kind = error.validator
    limit: Any = error.validator_value  # a number, or a JSON type's name
    if kind == "pattern" and f is not None and f.pattern_message is not None:
        return {"fr": f.pattern_message.get("fr"), "en": f.pattern_message.get("en")}
    table: dict[str, Callable[[], Texts]] = {
        "type": lambda: text("wrong_type", type=_TYPE_NAMES.get(str(limit), limit)),
        "enum": lambda: text("not_an_option"),
        "minimum": lambda: text("at_least", minimum=limit),
        "maximum": lambda: text("at_most", maximum=limit),
        "minLength": lambda: text("too_short", min_length=limit),
        "maxLength": lambda: text("too_long", max_length=limit),
        "pattern": lambda: text("wrong_format"),
        "minItems": lambda: text("too_few_rows", min_rows=limit),
        "maxItems": lambda: text("too_many_rows", max_rows=limit),
        "uniqueItems": lambda: text("duplicate"),
        "required": lambda: text("required"),
        "additionalProperties": lambda: text("not_a_form_field"),
    }
    return table.get(str(kind), lambda: text("invalid"))()


_TYPE_NAMES = {"integer": text("type_integer"), "number": text("type_number"),
               "string": text("type_string"), "boolean": text("type_boolean"),
               "array": text("type_array"), "object": text("type_object")}


@dataclass(frozen=True)
class Form:
    """Validator of one set of fields (the application form, or a transition's input)."""

    fields: tuple[Field, ...]
    validator: Draft202012Validator

    @classmethod
    def of(cls, fields: Iterable[Field]) -> Form:
        fields = tuple(fields)
        schema = _object_schema(fields)
        schema["required"] = []  # required-ness depends on `when:` and on the step
        return cls(fields, Draft202012Validator(schema))

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.id == name), None)

    def validate(self, data: Mapping[str, Any], today: dt.date) -> tuple[dict[str, Any], Errors]:
        """Check `data` (types and constraints of the values given); return it normalised.

        Values too deep, too large, or holding NUL or lone surrogates are refused first
        (see engine/limits.py) and not validated further.
        """
        faults = limits.data_problems(data)
        errors = _limit_errors(faults)
        data = {k: v for k, v in data.items() if k not in faults}
        for error in self.validator.iter_errors(dict(data)):
            path = list(error.absolute_path)
            if error.validator == "additionalProperties":
                for extra in sorted(set(error.instance) - set(error.schema["properties"])):
                    errors[".".join(map(str, [*path, extra]))] = _message(error, None)
                continue
            if error.validator == "required":
                for missing in error.validator_value:
                    if missing not in error.instance:
                        errors[".".join(map(str, [*path, missing]))] = _message(error, None)
                continue
            target = self._field_at(path)
            errors.setdefault(".".join(map(str, path)), _message(error, target))
        clean = dict(data)
        for f in self.fields:
            if f.id in clean and f.id not in errors:
                clean[f.id] = _normalise(f, clean[f.id], f.id, today, errors)
        return clean, errors

    def _field_at(self, path: list[Any]) -> Field | None:
        fields, found = self.fields, None
        for part in path:
            if isinstance(part, str):
                found = next((f for f in fields if f.id == part), None)
                fields = found.fields if found else ()
        return found

    def missing(self, data: Mapping[str, Any], visible: Callable[[Field], bool],
                names: Iterable[str] | None = None) -> list[Field]:
        """Required, visible fields without a value (among `names`, or all)."""
        wanted = None if names is None else set(names)
        return [
            f for f in self.fields
            if (wanted is None and f.required or wanted is not None and f.id in wanted)
            and visible(f) and _empty(data.get(f.id))
        ]


def _limit_errors(faults: Mapping[Any, tuple[str, dict[str, str]]]) -> Errors:
    """limits.data_problems as validation errors: by the path of each fault (e.g.
    founding_members.0.surname), as validation errors name fields."""
    errors: Errors = {}
    for key, (inside, messages) in faults.items():
        name = limits.field_name(key)
        errors[f"{name}.{inside}" if inside else name] = messages
    return errors


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _normalise(f: Field, value: Any, path: str, today: dt.date, errors: Errors) -> Any:
    if f.type == "phone" and isinstance(value, str):
        compact = re.sub(r"[\s.-]", "", value)
        if PHONE_TOGO_NATIONAL.fullmatch(compact):
            return "+228" + compact
        if PHONE_E164.fullmatch(compact):
            return compact
        errors[path] = text("bad_phone")
    elif f.type == "date" and isinstance(value, str):
        problem = _date_problem(f, value, today)
        if problem:
            errors[path] = problem
    elif f.type == "group" and isinstance(value, list):
        for i, row in enumerate(value):
            for sub in f.fields:
                if isinstance(row, dict) and sub.id in row:
                    row[sub.id] = _normalise(sub, row[sub.id], f"{path}.{i}.{sub.id}", today,
                                             errors)
    return value


def _date_problem(f: Field, value: str, today: dt.date) -> dict[str, str] | None:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return text("bad_date")
    low, high = _bound(f.minimum, today), _bound(f.maximum, today)
    if low and day < low:
        return text("date_too_early", date=low.isoformat())
    if high and day > high:
        return text("date_too_late", date=high.isoformat())
    years = today.year - day.year - ((today.month, today.day) < (day.month, day.day))
    if f.min_age is not None and years < f.min_age:
        return text("too_young", min_age=f.min_age)
    if f.max_age is not None and years > f.max_age:
        return text("too_old", max_age=f.max_age)
    return None


def _bound(value: Any, today: dt.date) -> dt.date | None:
    if value == "today":
        return today
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None
