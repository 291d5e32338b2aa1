"""The compiler's diagnostics as LSP diagnostics: the same checks as `guichet validate`,
each ranged over the token it points at (a key, a scalar, a quoted text), else to the end
of its line. Columns here are code points; the server converts them for the client."""

from __future__ import annotations

import re

from lsprotocol import types

from engine import compile_source
from engine.errors import Diagnostic

SOURCE = "guichet"
_SEVERITY = {"error": types.DiagnosticSeverity.Error,
             "warning": types.DiagnosticSeverity.Warning}
_TOKEN = re.compile(r"\"(?:[^\"\\]|\\.)*\"?|'(?:[^']|'')*'?|[^\s,\[\]{}#:]+(?::[^\s,\[\]{}#:]+)*")


def check(text: str, path: str, lines: list[str]) -> list[types.Diagnostic]:
    """Every diagnostic of `guichet validate` for `text` (split into `lines` as the editor
    splits it); never raises."""
    try:
        _, found = compile_source(text, path)
    except Exception as exc:  # noqa: BLE001 - a checker bug must not stop the server
        return [types.Diagnostic(range=token_range(lines, 1, 1), message=f"internal error: {exc!r}",
                                 severity=types.DiagnosticSeverity.Error, source=SOURCE,
                                 code="internal-error")]
    return [to_lsp(each, lines) for each in found]


def to_lsp(diagnostic: Diagnostic, lines: list[str]) -> types.Diagnostic:
    where = diagnostic.location
    return types.Diagnostic(
        range=token_range(lines, where.line, where.column),
        message=diagnostic.message,
        severity=_SEVERITY.get(diagnostic.severity, types.DiagnosticSeverity.Information),
        source=SOURCE,
        code=diagnostic.rule,
    )


def token_range(lines: list[str], line: int, column: int) -> types.Range:
    """The 0-based range of the token at a 1-based line and column."""
    if not lines:
        return types.Range(start=types.Position(0, 0), end=types.Position(0, 0))
    row = min(max(line - 1, 0), len(lines) - 1)
    text = lines[row]
    start = min(max(column - 1, 0), len(text))
    found = _TOKEN.match(text, start)
    end = found.end() if found and found.end() > start else len(text)
    if end == start and start > 0:     # past the end of the line: mark its last character
        start -= 1
    return types.Range(start=types.Position(row, start), end=types.Position(row, end))
