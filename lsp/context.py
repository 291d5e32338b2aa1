"""Which kind of id a position expects, read from the lines around it (never parsed: the
text being typed is often not valid YAML).

The keys leading to the position (`transitions` > `requires` > `fields`) are found by
indentation, block lists (`from:` then `- draft`) and flow collections
(`{trigger: abandon, from: draft, to: ex`) included; `expected_kind` maps them to a kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"([A-Za-z_][\w-]*)\s*:(?=\s|$)")
#: what may follow the key being completed: a scalar, or a flow list being written
_VALUE_SO_FAR = re.compile(r"\s*(\[\s*)?([\w.-]+\s*,\s*)*[\w.-]*")
_BLOCK_ITEM = re.compile(r"(\s*)-\s+[\w.-]*")
_KEY_LINE = re.compile(r"(\s*(?:-\s+)*)\{?\s*([A-Za-z_][\w-]*)\s*:(\s|$)")
_WORD = re.compile(r"[\w.-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
#: (parent, key) of the values naming a data field besides lists: durations read from data,
#: a fee's amount read from a field
_FIELD_KEYS = {("after", "field"), ("validity", "field"), ("amount", "from")}
#: a `when:` key, whose value is an expression
_WHEN = re.compile(r"(?:^|[\s{,])when\s*:(?:\s|$)")


def word_at(line: str, column: int) -> tuple[str, int, int] | None:
    """The id-like word under `column` of `line` (with its start and end), if any."""
    for found in _WORD.finditer(line):
        if found.start() <= column <= found.end():
            return found.group(), found.start(), found.end()
    return None


def identifier_at(line: str, column: int) -> tuple[str, int, int] | None:
    """The identifier under `column` (`photo` in `documents.photo`), with its columns."""
    for found in _IDENTIFIER.finditer(line):
        if found.start() <= column <= found.end():
            return found.group(), found.start(), found.end()
    return None


def expected_kind(lines: list[str], row: int, column: int, outline: Outline | None = None
                  ) -> str | None:
    """"state", "role", "field", "document", "trigger" or None at (row, column), 0-based.
    `outline`: `Outline(lines)`, for many positions of one text."""
    path = key_path(lines, row, column, outline)
    return kind_of(path) if path else None


def kind_of(path: list[str]) -> str | None:
    """The kind of id the value of the last key of `path` holds."""
    if path == ["read"]:
        return "role"
    if len(path) < 2:
        return None
    section, key, parents = path[0], path[-1], set(path[1:-1])
    if parents & {"notify", "reminder"}:
        return "role" if key == "to" else None
    if key in ("roles", "on_behalf", "visible_to"):
        return "role"
    return _state_or_trigger(section, key) or _data_kind(section, path[-2], key, parents)


def _state_or_trigger(section: str, key: str) -> str | None:
    if section == "transitions" and key in ("from", "to"):
        return "state"
    if key in ("trigger", "not_actor_of") and section in ("transitions", "states"):
        return "trigger"
    return "trigger" if (section, key) == ("fees", "due") else None


def _data_kind(section: str, parent: str, key: str, parents: set[str]) -> str | None:
    """"field" or "document" where the form's data is named (`per:`, `carry:`, `requires:`...)."""
    if key == "documents" and "requires" in parents:
        return "document"
    if key == "fields" and parents & {"requires", "editable"}:
        return "field"
    if parent == "carry" or (section, key) == ("fees", "per") or (parent, key) in _FIELD_KEYS:
        return "field"
    return "field" if section == "parties" and key in ("name", "phone", "email") else None


def key_path(lines: list[str], row: int, column: int, outline: Outline | None = None
             ) -> list[str]:
    """The keys from the top level down to the one whose value is at (row, column).
    `outline`: `Outline(lines)`, read once for many positions (else the lines above are)."""
    if row >= len(lines):
        return []
    ancestors = outline.ancestors if outline is not None else \
        lambda above, indent: _ancestors(lines, above, indent)
    prefix = lines[row][:column]
    if re.search(r"(^|\s)#", prefix):
        return []
    inline = _inline_keys(prefix)
    if inline:
        return ancestors(row, _indent(lines[row])) + inline
    item = _BLOCK_ITEM.fullmatch(prefix)
    if item is None:
        return []
    parent = _list_parent(lines, row, len(item.group(1)))
    if parent is None:
        return []
    parent_row, parent_key, indent = parent
    return ancestors(parent_row, indent) + [parent_key]


def _inline_keys(prefix: str) -> list[str]:
    """`requires: {fields: [a, b` -> ["requires", "fields"]; [] when no value is being typed."""
    keys = list(_KEY.finditer(prefix))
    if not keys or not _VALUE_SO_FAR.fullmatch(prefix[keys[-1].end():]):
        return []
    opened = [k.group(1) for k in keys[:-1] if prefix[k.end():].lstrip().startswith("{")]
    return opened + [keys[-1].group(1)]


def _indent(line: str) -> int:
    """Column of a line's first key (after list dashes and a flow brace), or of its text."""
    found = _KEY_LINE.match(line)
    if found:
        return found.start(2)
    return len(line) - len(line.lstrip(" -"))


def _list_parent(lines: list[str], row: int, dash: int) -> tuple[int, str, int] | None:
    """The `key:` (with nothing after it) that a block list item at column `dash` is in."""
    for above in range(row - 1, -1, -1):
        line = lines[above]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _KEY_LINE.match(line)
        if found and found.start(2) <= dash:
            rest = line[found.end():].split("#")[0].strip()
            return (above, found.group(2), found.start(2)) if not rest else None
        if len(line) - len(line.lstrip()) < dash:
            return None
    return None


def _ancestors(lines: list[str], row: int, indent: int) -> list[str]:
    """The keys above `row` whose indentation is less than `indent`, outermost first."""
    keys: list[str] = []
    for above in range(row - 1, -1, -1):
        if indent == 0:
            break
        line = lines[above]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _KEY_LINE.match(line)
        if found and found.start(2) < indent:
            keys.append(found.group(2))
            indent = found.start(2)
    return keys[::-1]


@dataclass(frozen=True)
class _Open:
    """A key line opening a block: its key, the key's column, the block it is in."""

    key: str
    column: int
    parent: _Open | None


class Outline:
    """The key lines of a text, read once, so that the keys above many positions cost no
    more than the text: `ancestors(row, indent)` is `_ancestors(lines, row, indent)`.

    Before each line is kept the chain of the key lines above it that no later key line at
    their column or to their left has closed (each one's column less than the one after it);
    the keys above a position are taken from that chain, at most one per column."""

    def __init__(self, lines: list[str]) -> None:
        self._before: list[_Open | None] = []
        top: _Open | None = None
        for line in lines:
            self._before.append(top)
            found = _KEY_LINE.match(line) if line.strip() else None
            if found is None:
                continue
            while top is not None and top.column >= found.start(2):
                top = top.parent
            top = _Open(found.group(2), found.start(2), top)
        self._before.append(top)    # after the last line

    def ancestors(self, row: int, indent: int) -> list[str]:
        """The keys above `row` whose indentation is less than `indent`, outermost first."""
        keys: list[str] = []
        above = self._before[min(row, len(self._before) - 1)]
        while above is not None and indent > 0:
            if above.column < indent:
                keys.append(above.key)
                indent = above.column
            above = above.parent
        return keys[::-1]


def expression_before(lines: list[str], row: int, column: int) -> str | None:
    """The `when:` expression from its start to (row, column) 0-based, or None when the
    position is not in one (nor in a comment). A value on several lines is joined.

    Reads lines up to the key the position is under, at most: a position at column 0 is
    under none (`expression_on_line` reads its line only)."""
    if row >= len(lines):
        return None
    prefix = lines[row][:column]
    if re.search(r"(^|\s)#", prefix):
        return None
    found = expression_on_line(lines[row], column)
    if found is not None:
        return found
    indent = _indent(lines[row]) if lines[row].strip() else column
    for above in range(row - 1, -1, -1) if indent > 0 else ():
        line = lines[above]
        if line.strip() and _indent(line) < indent:
            key = list(_WHEN.finditer(line))
            return "\n".join([line[key[-1].end():], *lines[above + 1:row], prefix]) \
                if key else None
    return None


def expression_on_line(line: str, column: int) -> str | None:
    """The `when:` expression written on `line` from its start to `column`, or None when
    the line has no `when:` before `column` (or the position is in a comment)."""
    prefix = line[:column]
    if re.search(r"(^|\s)#", prefix):
        return None
    found = list(_WHEN.finditer(prefix))
    return prefix[found[-1].end():] if found else None
