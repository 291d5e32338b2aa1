"""Where a declared id is used: the values that name it (`from:`, `to:`, `roles:`,
`requires:`, `due:`, `per:`...), the keys of `simulation:` that do, and the names of `when:`
expressions and of templates' `{{ }}` and `{% %}` (fields and inputs; documents as
`documents.x`).

A text that loaded is read from its document (lsp.index keeps it); a text being typed is
read line by line, each occurrence of the id kept where lsp.context expects that kind.
Places are 0-based (line, start, end) spans in code points.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from engine import source
from lsp import context
from lsp.index import Definition, Index, span_at

Span = tuple[int, int, int]
Segment = tuple[int, int, str]     # a line, the column its text starts at, the text

#: the kind of the uses of an id declared as another kind
_USED_AS = {"input": "field"}
#: `simulation:` mappings whose keys name ids
_SIMULATION_KEYS = {"delays": "state", "staff": "role", "handling": "trigger",
                    "weights": "trigger", "lead_times": "trigger"}
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?")
_TEMPLATE_CODE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}")
_BLOCK_START = re.compile(r"[|>][-+0-9]*\s*(#.*)?")


def uses(index: Index, declared: Definition) -> list[Span]:
    """Every place `declared` is used in the indexed text (its declaration excluded), in
    the order of the text."""
    kind = _USED_AS.get(declared.kind, declared.kind)
    if index.document is not None:
        found = set(_document_uses(index.document, index.lines, kind, declared.id))
    else:
        found = set(_line_uses(index.lines, kind, declared.id))
    return sorted(found - {(declared.line, declared.start, declared.end)})


def _document_uses(document: source.Document, lines: list[str], kind: str, name: str
                   ) -> Iterator[Span]:
    for path, value in _strings(document.data, ()):
        keys = [step for step in path if isinstance(step, str)]
        where = document.at(path)
        if value == name and context.kind_of(keys) == kind:
            yield span_at(lines, where.line, where.column, name)
        elif kind in ("field", "document") and keys[-1:] == ["when"]:
            region = _region(lines, where.line - 1, where.column - 1, value)
            yield from names_in(region, kind, name)
        elif kind == "field" and "template" in keys[-2:]:
            region = _region(lines, where.line - 1, where.column - 1, value)
            yield from names_in(region, kind, name, template=True)
    for path, where in document.keys.items():
        if len(path) == 3 and path[0] == "simulation" and path[2] == name \
                and _SIMULATION_KEYS.get(str(path[1])) == kind:
            yield span_at(lines, where.line, where.column, name)


def _strings(value: Any, path: source.Path) -> Iterator[tuple[source.Path, str]]:
    """Every text value of the document, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, (*path, key))
    elif isinstance(value, list):
        for number, child in enumerate(value):
            yield from _strings(child, (*path, number))


def _line_uses(lines: list[str], kind: str, name: str) -> Iterator[Span]:
    """The uses in a text that does not load: where the id is written where its kind is
    expected, and in one-line `when:` values and `{{ }}`."""
    word = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")
    outline = context.Outline(lines)
    for row, line in enumerate(lines):
        for found in word.finditer(line):
            if context.expected_kind(lines, row, found.start(), outline) == kind:
                yield row, found.start(), found.end()
        if kind in ("field", "document"):
            end = len(line.split(" #")[0])
            expression = context.expression_on_line(line, end)
            if expression is not None:
                yield from names_in([(row, end - len(expression), expression)], kind, name)
        if kind == "field" and "{" in line:
            yield from names_in([(row, 0, line)], kind, name, template=True)


def scalar_region(lines: list[str], row: int, column: int) -> list[Segment]:
    """The text of a value starting at (row, column), 0-based: the rest of its line and the
    lines below indented more than its key (a block scalar, a value on several lines)."""
    if row >= len(lines):
        return []
    first = lines[row]
    key_indent = len(first) - len(first.lstrip(" -"))
    found = [(row, column, first[column:])]
    for below in range(row + 1, len(lines)):
        text = lines[below]
        if text.strip() and len(text) - len(text.lstrip()) <= key_indent:
            break
        found.append((below, 0, text))
    return found


def _region(lines: list[str], row: int, column: int, value: str) -> list[Segment]:
    """The text of the scalar `value` at (row, column): exactly it when it is written on
    its line (plain or quoted), else its whole region."""
    line = lines[row] if row < len(lines) else ""
    for start in (column, column + 1):
        if line.startswith(value, start):
            return [(row, start, value)]
    region = scalar_region(lines, row, column)
    if region and _BLOCK_START.fullmatch(region[0][2]):
        return region[1:]
    return region


def names_in(region: list[Segment], kind: str, name: str, template: bool = False
             ) -> Iterator[Span]:
    """Where an expression (or the code of a template) in `region` reads field `name`, or
    document `name` (`documents.name`, `documents["name"]`) when `kind` is "document"."""
    for row, column, text in region:
        for offset, code in _code(text) if template else [(0, text)]:
            for start in _name_starts(code, kind, name):
                yield row, column + offset + start, column + offset + start + len(name)


def _code(text: str) -> Iterator[tuple[int, str]]:
    """The insides of the `{{ }}` and `{% %}` of a template's line, with their columns."""
    for found in _TEMPLATE_CODE.finditer(text):
        group = 1 if found.group(1) is not None else 2
        yield found.start(group), found.group(group)


def _name_starts(code: str, kind: str, name: str) -> Iterator[int]:
    """Columns in an expression's `code` where it reads `name` (not in a string, not as an
    attribute or a filter)."""
    quoted = re.escape(name)
    if kind == "document":
        pattern = rf"(?<![\w.])documents\s*(?:\.get\(\s*['\"]|\[\s*['\"]|\.\s*)({quoted})(?!\w)"
        yield from (found.start(1) for found in re.finditer(pattern, code))
        return
    bare = _STRING.sub(lambda found: " " * len(found.group()), code)
    for found in re.finditer(rf"(?<![\w.]){quoted}(?!\w)", bare):
        if not re.search(r"[.|]\s*$", bare[:found.start()]):
            yield found.start()
