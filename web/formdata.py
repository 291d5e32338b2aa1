"""HTML form posts -> typed data for the engine.

A browser sends every value as text; the engine validates typed data (integers, booleans,
dates as ISO text, lists for multiple choices, lists of rows for groups). `typed` converts the
posted values of the fields a form shows, by each field's declared type, and leaves whatever
does not convert as it was sent, so that the engine's validation phrases the error (never this
module). Empty values are left out: an empty optional field is simply unset.

Group rows are posted as `group.0.sub` (the engine's own error paths) or `group[0][sub]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.model import Field

#: What a checkbox or a yes/no choice posts for "true" (anything else is false).
TRUE = frozenset({"true", "on", "yes", "oui", "1"})
FALSE = frozenset({"false", "off", "no", "non", "0"})
_ROW = re.compile(r"^(?P<group>[^.\[\]]+)(?:\.(?P<i>\d{1,4})\.|\[(?P<j>\d{1,4})\]\[)"
                  r"(?P<sub>[^.\[\]]+)\]?$")
MAX_ROWS = 1000  # rows read from a post (the engine bounds what it accepts much lower)

Posted = Mapping[str, Sequence[str]]  # name -> every text value posted under it


def typed(fields: Iterable[Field], posted: Posted) -> dict[str, Any]:
    """The values of `fields` in `posted`, converted by type (see the module docstring)."""
    data: dict[str, Any] = {}
    rows = _rows(posted)
    for f in fields:
        if f.type == "group":
            if f.id not in rows:
                continue
            value: Any = _group(f, rows[f.id])
        elif f.type == "multi_choice":
            value = [v for v in posted.get(f.id, ()) if v != ""]
            if not value and f.id not in posted:
                continue
        else:
            value = _scalar(f, posted.get(f.id, ()))
        if value is not None:
            data[f.id] = value
    return data


def _scalar(f: Field, values: Sequence[str]) -> Any:
    if f.type == "boolean":  # an unticked box posts nothing: false
        chosen = [v.strip().lower() for v in values if v.strip()]
        if not chosen:
            return False
        if chosen[-1] in TRUE:
            return True
        return False if chosen[-1] in FALSE else chosen[-1]
    text = next((v for v in reversed(values) if v.strip() != ""), "")
    if text == "":
        return None
    if f.type == "integer":
        try:
            return int(text.strip())
        except ValueError:
            return text
    if f.type == "number":
        try:
            return int(text.strip())
        except ValueError:
            pass
        try:
            return float(text.strip().replace(",", "."))
        except ValueError:
            return text
    return text.strip() if f.type in ("date", "country", "nin", "email", "phone") else text


def _rows(posted: Posted) -> dict[str, dict[int, dict[str, Sequence[str]]]]:
    """group -> row index -> sub-field -> values, from `group.0.sub` / `group[0][sub]`."""
    found: dict[str, dict[int, dict[str, Sequence[str]]]] = {}
    for name, values in posted.items():
        match = _ROW.match(name)
        if match is None:
            continue
        index = int(match["i"] if match["i"] is not None else match["j"])
        if index < MAX_ROWS:
            found.setdefault(match["group"], {}).setdefault(index, {})[match["sub"]] = values
    return found


def _group(f: Field, rows: Mapping[int, Mapping[str, Sequence[str]]]) -> list[dict[str, Any]]:
    result = []
    for index in sorted(rows):
        row = typed(f.fields, rows[index])
        if any(v not in (None, "", [], False) for v in row.values()):  # an empty row: none
            result.append(row)
    return result
