"""Where the ids of a procedure text are declared: states, roles, fields, documents, fees,
triggers and transitions' input ids, each with its line, columns and label(s). The index
keeps the text's lines and, when it loaded, its document (lsp.references reads them).

A text that loads (engine.source) is read exactly. A text being typed often does not load; it
is then scanned line by line with simple patterns, and labels are borrowed from the last
text that loaded, so completion and go-to-definition keep working while a line is half
written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine import source

KINDS = ("state", "role", "field", "document", "fee", "trigger", "input")
#: kinds an id of another kind may also be (a data field may be a transition's input)
_ALSO = {"field": ("input",)}
#: the list sections whose items declare an id, and the key that declares it
_LISTS = {"fields": ("field", "id"), "documents": ("document", "id"), "fees": ("fee", "id"),
          "transitions": ("trigger", "trigger")}
_MAPPINGS = {"states": "state", "roles": "role"}

_SECTION = re.compile(r"([A-Za-z_][\w-]*)\s*:")
_CHILD_KEY = re.compile(r"(\s+)([\w.-]+)\s*:(\s|$)")
_ITEM_ID = {"id": re.compile(r"(?:^|[\s{,-])id\s*:\s+[\"']?([\w.-]+)"),
            "trigger": re.compile(r"(?:^|[\s{,-])trigger\s*:\s+[\"']?([\w.-]+)")}


@dataclass(frozen=True)
class Definition:
    """One declared id: 0-based line, start and end columns (code points) of the id."""

    kind: str
    id: str
    line: int
    start: int
    end: int
    labels: tuple[tuple[str, str], ...] = ()   # (language, text); "all" for one text

    def describe(self) -> str:
        """`state submitted: Déposée (fr) · Submitted (en)`."""
        words = " · ".join(text if lang == "all" else f"{text} ({lang})"
                           for lang, text in self.labels)
        return f"{self.kind} {self.id}" + (f": {words}" if words else "")


@dataclass
class Index:
    """The declared ids of one text, by kind (first declaration of an id wins)."""

    definitions: dict[str, dict[str, Definition]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})
    loaded: bool = False      # True when the text loaded (exact), False when scanned
    lines: list[str] = field(default_factory=list)
    document: source.Document | None = None      # the loaded text, None when scanned

    def add(self, definition: Definition) -> None:
        self.definitions[definition.kind].setdefault(definition.id, definition)

    def ids(self, kind: str) -> list[Definition]:
        return list(self.definitions.get(kind, {}).values())

    def find(self, name: str, kind: str | None = None) -> Definition | None:
        """The declaration of `name` as `kind`, or as any kind when `kind` is None."""
        kinds = (kind, *_ALSO.get(kind, ())) if kind else KINDS
        for each in kinds:
            found = self.definitions.get(each, {}).get(name)
            if found is not None:
                return found
        return None


def build(text: str, previous: Index | None = None) -> Index:
    """The index of `text`; when it does not load, a scan labelled from `previous`."""
    try:
        document, _ = source.load(text, "<editor>")
    except Exception:  # noqa: BLE001 - the editor's text is anything; never fail here
        document = None
    lines = text.splitlines()
    if document is not None and isinstance(document.data, dict):
        return _from_document(document, lines)
    index = _scan(lines)
    if previous is not None:
        for kind, found in index.definitions.items():
            for name, definition in found.items():
                old = previous.definitions[kind].get(name)
                if old is not None and old.labels:
                    found[name] = Definition(kind, name, definition.line, definition.start,
                                             definition.end, old.labels)
    return index


def labels_of(value: Any) -> tuple[tuple[str, str], ...]:
    """The label(s) of a declaration: a French string, or {fr: …, en: …}, or {all: …}."""
    label = value.get("label") if isinstance(value, dict) else None
    if isinstance(label, str):
        return (("fr", label),)
    if isinstance(label, dict):
        return tuple((str(lang), str(text)) for lang, text in label.items()
                     if isinstance(text, str | int | float))
    return ()


def _from_document(document: source.Document, lines: list[str]) -> Index:
    index = Index(loaded=True, lines=lines, document=document)
    data = document.data
    for section, kind in _MAPPINGS.items():
        entries = data.get(section)
        if isinstance(entries, dict):
            for name, value in entries.items():
                where = document.key_at((section, name))
                index.add(_definition(kind, str(name), where.line, where.column, lines,
                                      labels_of(value)))
    for section, (kind, key) in _LISTS.items():
        for path, item in _items(data.get(section), (section,)):
            name = item.get(key)
            if isinstance(name, str):
                where = document.at((*path, key))
                index.add(_definition(kind, name, where.line, where.column, lines,
                                      labels_of(item)))
    _add_inputs(index, document, lines)
    return index


def _add_inputs(index: Index, document: source.Document, lines: list[str]) -> None:
    """The `input:` ids of the transitions (data an expression or template may read)."""
    transitions = document.data.get("transitions")
    for number, transition in enumerate(transitions if isinstance(transitions, list) else []):
        inputs = transition.get("input") if isinstance(transition, dict) else None
        for path, item in _items(inputs, ("transitions", number, "input")):
            if isinstance(item.get("id"), str):
                where = document.at((*path, "id"))
                index.add(_definition("input", item["id"], where.line, where.column, lines,
                                      labels_of(item)))


def _items(entries: Any, path: source.Path) -> Iterator[tuple[source.Path, dict[str, Any]]]:
    """The mappings of a list section, and of the nested `fields:` of group fields."""
    if not isinstance(entries, list):
        return
    for number, item in enumerate(entries):
        if isinstance(item, dict):
            yield (*path, number), item
            if path[0] == "fields":
                yield from _items(item.get("fields"), (*path, number, "fields"))


def _definition(kind: str, name: str, line: int, column: int, lines: list[str],
                labels: tuple[tuple[str, str], ...]) -> Definition:
    """A Definition from a 1-based location, its columns found on the line itself."""
    return Definition(kind, name, *span_at(lines, line, column, name), labels)


def span_at(lines: list[str], line: int, column: int, name: str) -> tuple[int, int, int]:
    """0-based (line, start, end) of `name` written at or after a 1-based location (past a
    quote, say); the location itself when `name` is not on the line."""
    row = max(line - 1, 0)
    text = lines[row] if row < len(lines) else ""
    start = text.find(name, max(column - 1, 0))
    if start < 0:
        start = max(column - 1, 0)
    return row, start, start + len(name)


def _scan(lines: list[str]) -> Index:
    """Ids of a text that does not load: section by section, with line patterns."""
    index = Index(lines=lines)
    section, child_indent = "", -1
    for row, text in enumerate(lines):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        top = _SECTION.match(text)
        if top:
            section, child_indent = top.group(1), -1
            continue
        if section in _MAPPINGS:
            key = _CHILD_KEY.match(text)
            if key and child_indent in (-1, len(key.group(1))):
                child_indent = len(key.group(1))
                index.add(Definition(_MAPPINGS[section], key.group(2), row, key.start(2),
                                     key.end(2)))
        elif section in _LISTS:
            kind, name = _LISTS[section]
            found = _ITEM_ID[name].search(text.split(" #")[0])
            if found:
                index.add(Definition(kind, found.group(1), row, found.start(1), found.end(1)))
    return index
