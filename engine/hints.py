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
    """`found` with the unknown-key errors of the pieces of texts cut by a comma (keys written
    without `:` after a text, in a `{...}` mapping) replaced by one error per mapping, at the
    first piece, showing the texts quoted. Each mapping is read once, however many pieces."""
    found = list(found)
    if not any(d.rule == "unknown-key" for d in found):
        return found
    where = {location: path for path, location in document.keys.items()}
    cut: dict[Path, dict[str, list[str]]] = {}     # each mapping's cut texts, found once
    pieces: dict[Path, set[str]] = {}
    kept: list[Diagnostic] = []
    hinted: set[Path] = set()
    for diagnostic in found:
        path = where.get(diagnostic.location) if diagnostic.rule == "unknown-key" else None
        if path is None:
            kept.append(diagnostic)
            continue
        parent = path[:-1]
        if parent not in cut:
            cut[parent] = _cut_texts(document, parent)
            pieces[parent] = {p for cut_off in cut[parent].values() for p in cut_off}
        if path[-1] not in pieces[parent]:
            kept.append(diagnostic)
        elif parent not in hinted:
            hinted.add(parent)
            first = next(iter(cut[parent].values()))[0]
            kept.append(Diagnostic(document.key_at((*parent, first)), "error",
                                   diagnostic.rule, _message(document, parent, cut[parent])))
    return kept


def _cut_texts(document: Document, path: Path) -> dict[str, list[str]]:
    """The texts of the `{...}` mapping at `path` cut by a comma: each text's key with the
    pieces that follow it (keys written without `:`); {} for a mapping written otherwise."""
    mapping = _value(document.data, path)
    if not isinstance(mapping, dict):
        return {}
    cuts: dict[str, list[str]] = {}
    text_key = None
    for key, value in mapping.items():
        if text_key is not None and _is_piece(document, (*path, key), value):
            cuts.setdefault(text_key, []).append(key)
        else:
            text_key = key if isinstance(value, str) else None
    return cuts


def _is_piece(document: Document, path: Path, value: Any) -> bool:
    """Whether the key at `path` is a piece of text: a plain key with no `:` after it
    (`ordinaire` in `{fr: Demande, ordinaire, en: ...}`), which only a `{...}` mapping
    allows. Its empty value is then placed where the key's text ends; `ordinaire:`, a quoted
    `"ordinaire":` (both written as keys) and every key of a block mapping (always followed by
    `:`) have it further."""
    if value is not None:
        return False
    key, empty = document.keys.get(path), document.values.get(path)
    return key is not None and empty is not None and empty.line == key.line \
        and empty.column == key.column + len(str(path[-1]))


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
