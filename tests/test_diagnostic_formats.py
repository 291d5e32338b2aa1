"""`guichet validate --format sarif|github`: SARIF 2.1.0 for code scanning, workflow commands
for GitHub Actions annotations (engine/diagnostic_formats.py).

The SARIF output is validated against the official SARIF 2.1.0 JSON Schema, vendored in
tests/fixtures/sarif-2.1.0.schema.json (from github.com/oasis-tcs/sarif-spec, file
Schemata/sarif-schema-2.1.0.json of commit ffa72eb4, the approved errata; the tests never
download it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from cli import main
from engine.diagnostic_formats import (
    RULE_DESCRIPTIONS,
    display_path,
    escape_data,
    escape_property,
    sarif_log,
    to_github,
    to_sarif,
)
from engine.errors import Diagnostic, Location
from engine.rules import RULES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "sarif-2.1.0.schema.json"
BROKEN = "tests/corpus/all-at-once.yaml"


@pytest.fixture(scope="module")
def sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def _assert_valid(validator: jsonschema.Draft4Validator, log: Any) -> None:
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.absolute_path))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


def validate(*args: str) -> Result:
    return CliRunner().invoke(main, ["validate", *args])


TRICKY = "unknown state \"a,b\": 100% wrong:\r\nsee line 2, col 3"


def _diagnostics(root: Path) -> list[Diagnostic]:
    return [
        Diagnostic(Location("procedures/x.yaml", 41, 11), "error", "undefined-state",
                   'unknown state "submited"; did you mean "submitted"?'),
        Diagnostic(Location(str(root / "sub dir" / "é,:%.yaml"), 3, 7), "warning",
                   "unused-field", TRICKY),
        Diagnostic(Location("/elsewhere/p.yaml", 1, 1), "error", "a-future-rule", "new"),
    ]


# --- SARIF -------------------------------------------------------------------------------------

def test_sarif_log_is_valid_and_complete(tmp_path: Path,
                                         sarif_validator: jsonschema.Draft4Validator) -> None:
    log = sarif_log(_diagnostics(tmp_path), tool_version="1.2.3", root=tmp_path)
    _assert_valid(sarif_validator, log)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]  # type: ignore[index]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("guichet", "1.2.3")
    rules = driver["rules"]
    assert [r["id"] for r in rules][:len(RULE_DESCRIPTIONS)] == list(RULE_DESCRIPTIONS)
    by_id = {r["id"]: r for r in rules}
    assert by_id["undefined-state"]["name"] == "UndefinedState"
    assert by_id["undefined-state"]["shortDescription"]["text"] == (
        "A reference to a state that is not declared.")
    assert by_id["unused-field"]["defaultConfiguration"] == {"level": "warning"}
    assert by_id["a-future-rule"]["shortDescription"]["text"] == "a-future-rule"
    first, second, third = run["results"]
    assert first == {
        "ruleId": "undefined-state",
        "ruleIndex": list(by_id).index("undefined-state"),
        "level": "error",
        "message": {"text": 'unknown state "submited"; did you mean "submitted"?'},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": "procedures/x.yaml", "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": 41, "startColumn": 11},
        }}],
    }
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    # under the root: relative, percent-encoded; the message is kept as it is
    assert second["level"] == "warning"
    assert second["message"]["text"] == TRICKY
    assert second["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "sub%20dir/%C3%A9%2C%3A%25.yaml", "uriBaseId": "%SRCROOT%"}
    # elsewhere: an absolute file URI
    assert third["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "file:///elsewhere/p.yaml"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_sarif_without_diagnostics_is_valid(sarif_validator: jsonschema.Draft4Validator) -> None:
    log = json.loads(to_sarif([]))
    _assert_valid(sarif_validator, log)
    assert log["runs"][0]["results"] == []


def test_validate_sarif_matches_json(at_root: Path,
                                     sarif_validator: jsonschema.Draft4Validator) -> None:
    result = validate("--format", "sarif", BROKEN)
    assert result.exit_code == 1
    log = json.loads(result.stdout)
    _assert_valid(sarif_validator, log)
    expected = json.loads(validate("--format", "json", BROKEN).stdout)
    assert len(expected) > 5
    results = log["runs"][0]["results"]
    found = [{
        "path": r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "line": r["locations"][0]["physicalLocation"]["region"]["startLine"],
        "column": r["locations"][0]["physicalLocation"]["region"]["startColumn"],
        "severity": r["level"],
        "rule": r["ruleId"],
        "message": r["message"]["text"],
    } for r in results]
    assert found == expected
    assert log["runs"][0]["tool"]["driver"]["version"]


def test_validate_sarif_absolute_path_is_relative_to_the_working_directory(
        at_root: Path) -> None:
    result = validate("--format", "sarif", str(ROOT / BROKEN))
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in json.loads(result.stdout)["runs"][0]["results"]}
    assert uris == {BROKEN}


def test_validate_sarif_shipped_procedures_pass(
        at_root: Path, sarif_validator: jsonschema.Draft4Validator) -> None:
    result = validate("--format", "sarif")
    assert result.exit_code == 0, result.output
    log = json.loads(result.stdout)
    _assert_valid(sarif_validator, log)
    assert all(r["level"] == "warning" for r in log["runs"][0]["results"])


def test_every_rule_has_a_description() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Diagnostics and rules", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([a-z0-9-]+)`", row)}
    assert "undefined-state" in documented
    assert documented - set(RULE_DESCRIPTIONS) == set()
    assert set(RULES) - set(RULE_DESCRIPTIONS) == set()
    assert all(text.endswith(".") and "\n" not in text for text in RULE_DESCRIPTIONS.values())


# --- GitHub workflow commands ------------------------------------------------------------------

def test_escaping_as_github_documents() -> None:
    assert escape_data("100% a,b: c\r\nd") == "100%25 a,b: c%0D%0Ad"
    assert escape_property("100% a,b: c\r\nd") == "100%25 a%2Cb%3A c%0D%0Ad"
    # % first: an escape is never escaped twice
    assert escape_data("%0A") == "%250A"


def test_github_commands(tmp_path: Path) -> None:
    text = to_github(_diagnostics(tmp_path), root=tmp_path)
    assert text.splitlines() == [
        "::error file=procedures/x.yaml,line=41,col=11,title=undefined-state::"
        'unknown state "submited"; did you mean "submitted"?',
        "::warning file=sub dir/é%2C%3A%25.yaml,line=3,col=7,title=unused-field::"
        'unknown state "a,b": 100%25 wrong:%0D%0Asee line 2, col 3',
        "::error file=/elsewhere/p.yaml,line=1,col=1,title=a-future-rule::new",
    ]
    assert text.endswith("\n")
    assert to_github([]) == ""


COMMAND = re.compile(r"^::(error|warning) file=([^,:]+),line=(\d+),col=(\d+),"
                     r"title=([a-z0-9-]+)::([^\r\n]*)$")


def test_validate_github(at_root: Path) -> None:
    result = validate("--format", "github", BROKEN)
    assert result.exit_code == 1
    expected = json.loads(validate("--format", "json", BROKEN).stdout)
    found = []
    for line in result.stdout.splitlines():
        match = COMMAND.match(line)
        assert match, line
        severity, path, row, column, rule, message = match.groups()
        found.append({"path": path, "line": int(row), "column": int(column),
                      "severity": severity, "rule": rule,
                      "message": message.replace("%0A", "\n").replace("%0D", "\r")
                      .replace("%25", "%")})
    assert found == expected
    assert "error(s)" in result.stderr  # the summary stays off the commands


def test_validate_github_clean_is_silent(at_root: Path) -> None:
    result = validate("--format", "github", "procedures/passport.yaml")
    assert result.exit_code == 0
    assert all(line.startswith("::warning ") for line in result.stdout.splitlines())


def test_display_path(tmp_path: Path) -> None:
    assert display_path("a/b.yaml", tmp_path) == "a/b.yaml"
    assert display_path(str(tmp_path / "a" / "b.yaml"), tmp_path) == "a/b.yaml"
    assert display_path("/x/y.yaml", tmp_path) == "/x/y.yaml"
