"""Diagnostics (what is wrong in a procedure file, and where) and the runtime errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .messages import text

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Location:
    """A place in a source file: 1-based line and column."""

    path: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a file: `path:line:col: severity: message [rule]`."""

    location: Location
    severity: Severity
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message} [{self.rule}]"

    def as_json(self) -> dict[str, object]:
        return {
            "path": self.location.path,
            "line": self.location.line,
            "column": self.location.column,
            "severity": self.severity,
            "rule": self.rule,
            "message": self.message,
        }

    @property
    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.path, loc.line, loc.column, self.rule, self.message)


class ProcedureError(Exception):
    """A procedure file was refused; `diagnostics` says every reason."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: d.sort_key)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        shown = "\n".join(str(d) for d in errors[:20])
        super().__init__(f"procedure refused ({len(errors)} error(s)):\n{shown}")


# --- runtime errors -----------------------------------------------------------------------------

Messages = Mapping[str, str]  # language -> text


@dataclass
class Reason:
    """One reason a transition is refused, shown to a person in their language."""

    code: str  # role | ownership | separation | guard | field | document | payment | state
    subject: str  # the field, document, role or trigger concerned
    text: dict[str, str] = field(default_factory=dict)
    #: what an author or agent needs to see and a citizen never does (a guard's expression)
    detail: str = ""

    def message(self, language: str = "fr") -> str:
        return self.text.get(language) or self.text.get("fr") or self.code


class GuichetError(Exception):
    """Base of every runtime error; `message(lang)` gives a text a host can show a citizen."""

    def __init__(self, text: Messages, reasons: Iterable[Reason] = ()) -> None:
        self.text = dict(text)
        self.reasons = list(reasons)
        super().__init__(self.message("en"))

    def message(self, language: str = "fr") -> str:
        head = self.text.get(language) or self.text.get("fr", "")
        if not self.reasons:
            return head
        return head + " " + "; ".join(r.message(language) for r in self.reasons)


class NotAllowed(GuichetError):
    """The actor may not do this: wrong role, not their case, or separation of duties."""


class Blocked(GuichetError):
    """The transition cannot fire yet: every unmet requirement is in `reasons`."""


class InvalidData(GuichetError):
    """Submitted data is invalid; `errors` maps each field path to its messages by language."""

    def __init__(self, text: Messages, errors: Mapping[str, Mapping[str, str]]) -> None:
        self.errors = {k: dict(v) for k, v in errors.items()}
        super().__init__(text)

    def message(self, language: str = "fr") -> str:
        head = self.text.get(language) or self.text.get("fr", "")
        parts = [f"{name}: {msgs.get(language) or msgs.get('fr', '')}"
                 for name, msgs in self.errors.items()]
        return head + " " + "; ".join(parts)


class ConcurrentUpdate(GuichetError):
    """Somebody else changed the case first; reload it and try again."""


class UnknownCase(GuichetError):
    """No case has this reference (or its check character is wrong)."""


class UnknownTrigger(GuichetError):
    """The procedure has no such trigger."""


class UnknownProcedure(GuichetError):
    """No procedure has this id."""


class DatabaseUnavailable(GuichetError):
    """The database cannot be used: it cannot be reached or opened, a connection failed or
    waited too long (e.g. for a lock), or its tables cannot be set up by this database role.

    The message, fit for a citizen, names no server; `problem` says what failed, in the
    database's words (one line), and `url` which database (its password hidden; "" if unknown).
    """

    TEXT: ClassVar[Messages] = text("database_unavailable")

    def __init__(self, problem: str, url: str = "") -> None:
        self.problem = problem
        self.url = url
        super().__init__(self.TEXT)

    def __str__(self) -> str:
        where = f" {self.url}" if self.url else ""
        return f"database{where} unavailable: {self.problem}"


class InvalidDatabaseURL(DatabaseUnavailable):
    """The database URL cannot be used: malformed, or naming a kind of database unknown here."""

    TEXT: ClassVar[Messages] = text("database_url_unusable")

    def __str__(self) -> str:
        return f"not a usable database URL: {self.url!r} ({self.problem})"
