"""Hints for a mistake YAML makes easy: a comma in a text written inside `{...}`.

In a flow mapping a comma separates entries, so `{fr: Demande de passeport, ordinaire, en:
Passport}` is read as fr: "Demande de passeport", a key "ordinaire" without a value, and en.
The schema reports the unknown key "ordinaire"; `quote_commas` turns the errors of the pieces
of the texts cut in one mapping into one error saying how to quote them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import Diagnostic
from .source import Document, Path


def quote_commas(document: Document, found: Iterable[Diagnostic]) -> list[Diagnostic]:
    """`found` with the unknown-key errors of the pieces of texts cut by a comma (keys without
    a value after a text, in a `{...}` mapping) replaced by one error per mapping, at the
    first piece, showing the texts quoted."""
    found = list(found)
    if not any(d.rule == "unknown-key" for d in found):
        return found
    where = {location: path for path, location in document.keys.items()}
    kept: list[Diagnostic] = []
    hinted: set[Path] = set()
    for diagnostic in found:
        path = where.get(diagnostic.location) if diagnostic.rule == "unknown-key" else None
        cuts = _cut_texts(document, path[:-1]) if path is not None else {}
        if path is None or path[-1] not in {p for pieces in cuts.values() for p in pieces}:
            kept.append(diagnostic)
        elif path[:-1] not in hinted:
            hinted.add(path[:-1])
            first = next(iter(cuts.values()))[0]
            kept.append(Diagnostic(document.key_at((*path[:-1], first)), "error",
                                   diagnostic.rule, _message(document, path[:-1], cuts)))
    return kept


def _cut_texts(document: Document, path: Path) -> dict[str, list[str]]:
    """The texts of the `{...}` mapping at `path` cut by a comma: each text's key with the
    keys without a value that follow it (the pieces); {} for a mapping written otherwise."""
    mapping = _value(document.data, path)
    if not isinstance(mapping, dict) or not mapping or not _is_flow(document, path, mapping):
        return {}
    cuts: dict[str, list[str]] = {}
    text_key = None
    for key, value in mapping.items():
        if value is None and text_key is not None:
            cuts.setdefault(text_key, []).append(key)
        else:
            text_key = key if isinstance(value, str) else None
    return cuts


def _is_flow(document: Document, path: Path, mapping: dict[str, Any]) -> bool:
    """Whether the mapping at `path` is written `{...}`: it starts before its first key."""
    first = document.keys.get((*path, next(iter(mapping))))
    return first is not None and document.at(path) != first


def _message(document: Document, path: Path, cuts: dict[str, list[str]]) -> str:
    """The error for the cut texts of the mapping at `path`, with each text quoted."""
    shown = []
    for key, pieces in cuts.items():
        text = ", ".join([_value(document.data, (*path, key)), *pieces])
        quoted = f'"{text}"' if '"' not in text else "'" + text.replace("'", "''") + "'"
        shown.append(f"{key}: {quoted}")
    first = next(iter(cuts.values()))[0]
    return (f'unknown key "{first}": a text containing a comma must be quoted: '
            + ", ".join(shown))


def _value(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data
