"""One error per mistake: what the checks of a file leave out because another error says it.

A mistake often makes several checks fail: a misspelled `fianl:` is an unknown key, and then
the state looks like a dead end; a misspelled `form:` is an unknown key, a missing `from:`,
and then unreachable states. Like a compiler, `guichet validate` reports the root cause and
not its consequences, in two ways (names not declared are the rules' part: rules.check):

- `as_meant`: a misspelled key (unknown, close to one key its mapping lacks) is read as that
  key, so the rest of the checks see the file as its author meant it; the unknown key is the
  one error reported.
- `one_per_value`: a value refused by a check is not also reported by a later one (the loader,
  then the schema, then the compiler, then the rules): `yes` is a YAML 1.1 surprise, not also
  "not true or false"; `roles: clerk and mayor` is not a list, not also an unknown role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from .errors import Diagnostic, Location
from .source import Document, Path

#: An unknown key with its "did you mean" (engine/schema `_diagnose` writes it).
_MISSPELLED = re.compile(r'unknown key "(?P<key>[^"]*)"; did you mean "(?P<meant>[^"]*)"\?')


def as_meant(document: Document, found: Iterable[Diagnostic]
             ) -> tuple[Document, list[Diagnostic]]:
    """`document` with its misspelled keys read as the keys they are close to, and the
    unknown-key diagnostics of those keys (`document` itself and [] when there are none).

    A key is read as its "did you mean" only when its mapping lacks that key."""
    matches = [(d, m) for d in found
               if d.rule == "unknown-key" and (m := _MISSPELLED.fullmatch(d.message))]
    where = {location: path for path, location in document.keys.items()} if matches else {}
    renames: dict[Path, str] = {}
    misspelled = []
    for diagnostic, match in matches:
        path = where.get(diagnostic.location)
        if path is None or path[-1] != match["key"]:
            continue
        mapping = _value(document.data, path[:-1])
        taken = set(mapping) | {renames[p] for p in renames if p[:-1] == path[:-1]}
        if match["meant"] not in taken:
            renames[path] = match["meant"]
            misspelled.append(diagnostic)
    if not renames:
        return document, []
    return _renamed(document, renames), misspelled


def _value(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def _renamed(document: Document, renames: dict[Path, str]) -> Document:
    """`document` with the keys at the paths of `renames` renamed (values and locations kept,
    keys kept in their order)."""
    def rename(path: Path) -> Path:
        return tuple(renames.get(path[:i + 1], part) for i, part in enumerate(path))

    def rebuild(value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {renames.get((*path, k), k): rebuild(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [rebuild(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return replace(document, data=rebuild(document.data, ()),
                   values={rename(p): loc for p, loc in document.values.items()},
                   keys={rename(p): loc for p, loc in document.keys.items()})


def one_per_value(document: Document, stages: Sequence[Iterable[Diagnostic]]
                  ) -> list[Diagnostic]:
    """The diagnostics of `stages` (in the order the checks run), without those at a scalar
    value that an earlier stage already reported an error at."""
    kept: list[Diagnostic] = []
    refused: set[Location] = set()
    scalars: set[Location] | None = None
    for stage in stages:
        found = list(stage)
        for diagnostic in found:
            if diagnostic.location in refused:
                scalars = _scalar_locations(document) if scalars is None else scalars
                if diagnostic.location in scalars:
                    continue
            kept.append(diagnostic)
        refused |= {d.location for d in found if d.severity == "error"}
    return kept


def _scalar_locations(document: Document) -> set[Location]:
    """Where the scalar values (not mappings nor lists) of `document` are."""
    found = set()
    for path, location in document.values.items():
        try:
            value = _value(document.data, path)
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(value, dict | list):
            found.add(location)
    return found
