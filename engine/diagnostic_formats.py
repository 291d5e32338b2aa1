"""Diagnostics for CI: SARIF 2.1.0 (code scanning) and GitHub Actions workflow commands.

Pure functions from a list of Diagnostic to text; `guichet validate --format sarif|github`
prints them. Paths are made relative to a root (the working directory by default) when they
are under it, as code scanning and annotations expect paths from the repository root.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from .errors import Diagnostic, Severity

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SOURCE_ROOT = "%SRCROOT%"

#: Every rule `guichet validate` reports, with the README's one-line description
#: ("Diagnostics and rules"). A rule missing here is still reported, described by its id.
RULE_DESCRIPTIONS: dict[str, str] = {
    "file-empty": "A file that is empty, not a procedure.",
    "file-binary": "A binary file, not a procedure.",
    "file-encoding": "A file that is not UTF-8 text.",
    "file-size": "A file over 1 MiB.",
    "file-unreadable": "A file that cannot be read.",
    "not-a-mapping": "A YAML document that is not a mapping of keys.",
    "file-kind": "A path that is not a regular file (a directory, a device, a FIFO), "
                 "refused before reading.",
    "yaml-number": "An integer of more than 100 digits, or a number too large for a float.",
    "yaml-syntax": "YAML that cannot be parsed.",
    "yaml-depth": "YAML nested deeper than 40 levels.",
    "yaml-alias-limit": "Too many YAML aliases, or aliases expanding past 20,000 values.",
    "yaml-tag": "A YAML tag (!!str, !custom…): write the value itself.",
    "yaml-merge-key": "A YAML merge key (<<), which is not supported.",
    "yaml-key": "A mapping key that is not a plain string.",
    "yaml-ambiguous": "A YAML 1.1 value whose meaning is surprising (no, on, 010, 1:20): "
                      "quote it.",
    "duplicate-key": "The same key twice in one mapping.",
    "unknown-key": "A key the JSON Schema of the procedure format does not allow there.",
    "missing-key": "A key the JSON Schema of the procedure format requires.",
    "type": "A value of the wrong type for the JSON Schema.",
    "invalid-value": "A value the JSON Schema refuses (pattern, range, choices).",
    "duplicate-id": "Two fields, documents, fees or inputs with one id.",
    "initial-state": "No initial state, several, or a final one.",
    "undefined-state": "A reference to a state that is not declared.",
    "undefined-role": "A reference to a role that is not declared.",
    "undefined-field": "A reference to a field that is not declared.",
    "undefined-document": "A reference to a document that is not declared.",
    "undefined-trigger": "A reference to a trigger that is not declared (or a deadline "
                         "trigger that does not leave its state or is not allowed to system).",
    "who-may-start": "start: naming the reserved system role, or no one who may open a case.",
    "unreachable-state": "A state no path reaches from the initial state.",
    "no-final-reachable": "A state from which no final state can be reached.",
    "dead-end-state": "A non-final state with no way out.",
    "final-state-exit": "A transition leaving a final state.",
    "ambiguous-trigger": "One trigger twice from one state with guards that can both hold.",
    "expression-syntax": "An expression that does not parse.",
    "undeclared-name": "An expression naming something that is neither a field nor a built-in.",
    "type-mismatch": "A comparison with a value of the wrong type, or a choice value that is "
                     "not an option.",
    "template-syntax": "A notification or document template that does not compile.",
    "expression-limit": "An expression or template computing a constant over the limits.",
    "value-limit": "A duration over 100 years or a document size over 100 MB.",
    "unknown-calendar": "calendar: naming a country whose public holidays are not known.",
    "reporting-dimension": "reporting: naming a missing field, one that is not a choice or "
                           "country field, or one twice.",
    "waiting-state": "waiting: on a final state, where a case waits for nobody.",
    "field-constraint": "A key that does not fit the field type, a choice without options, a "
                        "group without fields, or a bad pattern.",
    "pattern-backtracking": "A field pattern that can take exponential time.",
    "fee-field": "A fee's per or amount from naming a missing or non-numeric field or input.",
    "duration-field": "A validity or deadline read from a field that is missing, not an "
                      "integer, or not required.",
    "follow-up": "A follow-up naming a procedure not among those read, or carrying a field "
                 "the follow-up lacks or of another type.",
    "form-expression": "A when: the form cannot follow as the citizen types (the server "
                       "decides).",
    "sms-length": "An SMS notification that does not fit in one SMS.",
    "missing-translation": "A text or template without its French or English version.",
    "unused-field": "A field never required by a transition nor used anywhere.",
    "unused-document": "A document never required by a transition nor used anywhere.",
}

#: Rules that only ever warn (their SARIF defaultConfiguration level).
WARNING_RULES = frozenset({
    "ambiguous-trigger", "form-expression", "sms-length", "missing-translation", "unused-field",
    "unused-document",
})


def display_path(path: str, root: str | os.PathLike[str] | None = None) -> str:
    """`path` relative to `root` (default: the working directory) with `/` separators when it
    is under it; otherwise the path as given, absolute if it was."""
    base = Path(root) if root is not None else Path.cwd()
    given = Path(path)
    if given.is_absolute():
        try:
            given = given.relative_to(base.resolve())
        except ValueError:
            try:
                given = given.relative_to(base.absolute())
            except ValueError:
                return given.as_posix()
    return PurePosixPath(*given.parts).as_posix() if given.parts else "."


def _uri(path: str) -> tuple[str, bool]:
    """A SARIF artifact URI for a display path, and whether it is relative (to %SRCROOT%)."""
    if Path(path).is_absolute():
        return Path(path).as_uri(), False
    return quote(path, safe="/-._~"), True


def _rule_name(rule: str) -> str:
    return "".join(part.capitalize() for part in rule.split("-"))


def _level(severity: Severity) -> str:
    return "error" if severity == "error" else "warning"


def sarif_log(diagnostics: Sequence[Diagnostic], *, tool_version: str | None = None,
              root: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """The SARIF 2.1.0 log (one run of the tool "guichet") of `diagnostics`."""
    names = list(RULE_DESCRIPTIONS)
    names += sorted({d.rule for d in diagnostics} - set(RULE_DESCRIPTIONS))
    index = {name: i for i, name in enumerate(names)}
    rules = [{
        "id": name,
        "name": _rule_name(name),
        "shortDescription": {"text": RULE_DESCRIPTIONS.get(name, name)},
        "defaultConfiguration": {"level": "warning" if name in WARNING_RULES else "error"},
    } for name in names]
    driver: dict[str, object] = {"name": "guichet"}
    if tool_version:
        driver["version"] = tool_version
    driver["rules"] = rules
    results = []
    for diagnostic in diagnostics:
        uri, relative = _uri(display_path(diagnostic.location.path, root))
        artifact: dict[str, str] = {"uri": uri}
        if relative:
            artifact["uriBaseId"] = SOURCE_ROOT
        results.append({
            "ruleId": diagnostic.rule,
            "ruleIndex": index[diagnostic.rule],
            "level": _level(diagnostic.severity),
            "message": {"text": diagnostic.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": artifact,
                "region": {"startLine": max(1, diagnostic.location.line),
                           "startColumn": max(1, diagnostic.location.column)},
            }}],
        })
    base = Path(root) if root is not None else Path.cwd()
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": driver},
            "originalUriBaseIds": {SOURCE_ROOT: {"uri": base.resolve().as_uri() + "/"}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def to_sarif(diagnostics: Sequence[Diagnostic], *, tool_version: str | None = None,
             root: str | os.PathLike[str] | None = None) -> str:
    """`sarif_log` as JSON text (UTF-8, indented, ending with a newline)."""
    log = sarif_log(diagnostics, tool_version=tool_version, root=root)
    return json.dumps(log, ensure_ascii=False, indent=2) + "\n"


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (%, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: escape_data, and `:` and `,` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(diagnostics: Sequence[Diagnostic], *,
              root: str | os.PathLike[str] | None = None) -> str:
    """One GitHub Actions workflow command per diagnostic, each ending with a newline:
    `::error file=PATH,line=L,col=C,title=RULE::message` (`::warning` for warnings)."""
    lines = []
    for diagnostic in diagnostics:
        location = diagnostic.location
        properties = ",".join(f"{key}={escape_property(value)}" for key, value in (
            ("file", display_path(location.path, root)),
            ("line", str(max(1, location.line))),
            ("col", str(max(1, location.column))),
            ("title", diagnostic.rule),
        ))
        lines.append(f"::{_level(diagnostic.severity)} {properties}::"
                     f"{escape_data(diagnostic.message)}\n")
    return "".join(lines)
