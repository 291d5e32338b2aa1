"""Quick fixes for the diagnostics that end in `did you mean "x"?` (an unknown state, role,
field, document, trigger, key, name or choice): the suggestion in place of the wrong word.

The engine's diagnostics carry the suggestion in their message only, so it is read from
there by `suggestion`, the one place that knows the message's shape.
"""

from __future__ import annotations

import json
import re

from lsp import references

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
#: `unknown state "submited"; did you mean "submitted"?`, `"x" is not one of a, b; did you
#: mean "b"?`: the first quoted word of the message is the wrong one
_DID_YOU_MEAN = re.compile(rf'[^"]*{_QUOTED}.*; did you mean {_QUOTED}\?', re.DOTALL)


def suggestion(message: str) -> tuple[str, str] | None:
    """(wrong word, suggested word) of a diagnostic's message, None without a suggestion."""
    found = _DID_YOU_MEAN.match(message)
    if found is None:
        return None
    wrong, right = (_unquote(found.group(number)) for number in (1, 2))
    return (wrong, right) if wrong and wrong != right else None


def _unquote(text: str) -> str:
    try:
        return str(json.loads(f'"{text}"'))
    except ValueError:
        return text


def wrong_spans(lines: list[str], row: int, column: int, wrong: str
                ) -> list[references.Span]:
    """Where to replace `wrong` for a diagnostic at (row, column), 0-based code points: the
    key there, else each time the value starting there (a name, a list, an expression, the
    `{{ }}` of a template) writes it."""
    line = lines[row] if row < len(lines) else ""
    word = rf"(?<![\w-]){re.escape(wrong)}(?![\w-])"
    if re.match(rf"[\"']?{word}[\"']?\s*:(\s|$)", line[column:]):
        start = line.index(wrong, column)
        return [(row, start, start + len(wrong))]
    region = references.scalar_region(lines, row, column)
    if any("{{" in text or "{%" in text for _, _, text in region):
        return list(references.names_in(region, "field", wrong, template=True))
    return [(at, start + found.start(), start + found.end())
            for at, start, text in region for found in re.finditer(word, text)]
