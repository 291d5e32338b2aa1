"""Golden diagnostics of `guichet validate`, and the command's contract.

Every `tests/corpus/NAME.yaml` is a small broken procedure; `NAME.out` is exactly what
`guichet validate tests/corpus/NAME.yaml` prints on stdout, run from the repository root.

After an intended change of messages, refresh the goldens and review the diff:

    GUICHET_REGEN=1 pytest tests/test_corpus.py

The cases in KNOWN_BUGS are not regenerated: their `.out` was written by hand and holds the
*intended* output; they are strict xfails until the validator is fixed (then remove the entry).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli import main
from engine import Procedure, compile_source, lint, load_procedure
from engine.model import Duration, DurationLimit
from engine.rules import RULES
from engine.source import MAX_BYTES

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
PROCEDURES = sorted((ROOT / "procedures").glob("*.yaml"))
REGEN = os.environ.get("GUICHET_REGEN") == "1"

#: Validator bugs found while building the corpus: the .out holds what should be printed.
KNOWN_BUGS: dict[str, str] = {}

#: Rules of the loader and the schema mapping (RULES holds the semantic ones).
SOURCE_RULES = {
    "file-empty", "file-binary", "file-encoding", "not-a-mapping", "yaml-syntax", "yaml-depth",
    "yaml-alias-limit", "yaml-tag", "yaml-merge-key", "yaml-ambiguous", "duplicate-key",
    "yaml-key", "yaml-number",
}
SCHEMA_RULES = {"unknown-key", "missing-key", "type", "invalid-value"}
#: Rules the compiler reports while building the model (expressions, templates, bounds).
COMPILER_RULES = {"expression-syntax", "template-syntax", "expression-limit", "value-limit"}


def _case(path: Path) -> object:
    marks = []
    if path.stem in KNOWN_BUGS:
        marks.append(pytest.mark.xfail(reason=KNOWN_BUGS[path.stem], strict=True))
    return pytest.param(path, id=path.stem, marks=marks)


CASES = [_case(p) for p in sorted(CORPUS.glob("*.yaml"))]


def validate(*args: str) -> Result:
    return CliRunner().invoke(main, ["validate", *args])


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.mark.parametrize("case", CASES)
def test_golden(case: Path, at_root: Path) -> None:
    relative = case.relative_to(at_root).as_posix()
    result = validate(relative)
    golden = case.with_suffix(".out")
    if REGEN and case.stem not in KNOWN_BUGS:
        golden.write_text(result.stdout, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == expected
    has_error = any(": error: " in line for line in expected.splitlines())
    assert result.exit_code == (1 if has_error else 0)


def test_every_golden_has_its_yaml() -> None:
    orphans = [p.name for p in CORPUS.glob("*.out") if not p.with_suffix(".yaml").exists()]
    assert orphans == []


def test_corpus_covers_every_rule() -> None:
    shown: set[str] = set()
    for golden in CORPUS.glob("*.out"):
        if golden.stem not in KNOWN_BUGS:
            shown |= set(re.findall(r"\[([a-z0-9-]+)\]$", golden.read_text(), re.MULTILINE))
    missing = (set(RULES) | SOURCE_RULES | SCHEMA_RULES | COMPILER_RULES) - shown
    assert missing == set()


def _counts(golden: str) -> tuple[int, int]:
    lines = golden.splitlines()
    return sum(": error: " in x for x in lines), sum(": warning: " in x for x in lines)


def test_summary_goes_to_stderr(at_root: Path) -> None:
    golden = (CORPUS / "all-at-once.out").read_text()
    errors, warnings = _counts(golden)
    assert errors > 1
    assert warnings > 1
    result = validate("tests/corpus/all-at-once.yaml")
    assert result.exit_code == 1
    assert result.stderr == f"1 file(s) checked: {errors} error(s), {warnings} warning(s)\n"
    assert result.stdout == golden


def test_several_files_in_one_run(at_root: Path) -> None:
    names = ["unused-field", "undefined-state"]
    result = validate(*(f"tests/corpus/{name}.yaml" for name in names))
    expected = "".join((CORPUS / f"{name}.out").read_text() for name in names)
    errors, warnings = _counts(expected)
    assert result.stdout == expected
    assert result.exit_code == 1
    assert result.stderr == f"2 file(s) checked: {errors} error(s), {warnings} warning(s)\n"


# --- generated cases ------------------------------------------------------------------------------

SKELETON = """\
id: demo
version: "1"
title: {fr: Démo, en: Demo}
authority: {ministry: Ministère}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Agent, en: Clerk}}
start: {roles: [applicant]}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  submitted: {label: {fr: Soumise, en: Submitted}}
  done: {label: {fr: Terminée, en: Done}, final: accepted}
transitions:
  - trigger: submit
    from: draft
    to: submitted
    roles: [applicant]
  - trigger: accept
    from: submitted
    to: done
    roles: [clerk]
"""


def _skeleton() -> bytes:
    """A valid procedure without any diagnostic (what every corpus file starts from)."""
    return SKELETON.encode()


def test_skeleton_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "clean.yaml"
    path.write_bytes(_skeleton())
    result = validate(str(path))
    assert (result.exit_code, result.stdout) == (0, "")


def test_file_over_one_mebibyte(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    raw = _skeleton() + b"# padding\n" * (MAX_BYTES // 10)
    raw += b"#" * (MAX_BYTES + 1 - len(raw)) + b"\n"
    path.write_bytes(raw)
    size = len(raw)
    assert size > MAX_BYTES
    result = validate(str(path))
    assert result.stdout == (f"{path}:1:1: error: file is {size} bytes; the limit is "
                             f"{MAX_BYTES} bytes [file-size]\n")
    assert result.exit_code == 1


def test_file_of_exactly_one_mebibyte_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    raw = _skeleton() + b"#"
    raw += b"-" * (MAX_BYTES - 1 - len(raw)) + b"\n"
    path.write_bytes(raw)
    assert len(raw) == MAX_BYTES
    result = validate(str(path))
    assert (result.exit_code, result.stdout) == (0, "")


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    missing = tmp_path / "gone.yaml"
    diagnostics = lint([missing])
    assert [str(d) for d in diagnostics] == [
        f"{missing}:1:1: error: cannot read file: no such file or directory [file-unreadable]"
    ]


# --- the command line -----------------------------------------------------------------------------

def test_json_format(at_root: Path) -> None:
    text = validate("tests/corpus/all-at-once.yaml")
    result = validate("--format", "json", "tests/corpus/all-at-once.yaml")
    assert result.exit_code == 1
    items = json.loads(result.stdout)
    assert isinstance(items, list)
    assert len(items) == len(text.stdout.splitlines()) > 1
    for item in items:
        assert set(item) == {"path", "line", "column", "severity", "rule", "message"}
        assert isinstance(item["line"], int)
        assert isinstance(item["column"], int)
        assert item["path"] == "tests/corpus/all-at-once.yaml"
        assert item["severity"] in ("error", "warning")
    rebuilt = [
        f"{i['path']}:{i['line']}:{i['column']}: {i['severity']}: {i['message']} [{i['rule']}]"
        for i in items
    ]
    assert rebuilt == text.stdout.splitlines()


def test_json_format_without_problems(tmp_path: Path) -> None:
    path = tmp_path / "clean.yaml"
    path.write_bytes(_skeleton())
    result = validate("--format", "json", str(path))
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_json_format_warnings_only_exit_zero(at_root: Path) -> None:
    result = validate("--format", "json", "tests/corpus/unused-field.yaml")
    assert result.exit_code == 0
    assert [i["rule"] for i in json.loads(result.stdout)] == ["who-may-start", "unused-field"]


def test_missing_path_is_a_usage_error(at_root: Path) -> None:
    result = validate("tests/corpus/no-such-file.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "does not exist" in result.stderr


def test_unknown_option_is_a_usage_error(at_root: Path) -> None:
    result = validate("--frobnicate", "tests/corpus/unused-field.yaml")
    assert result.exit_code == 2
    assert "No such option" in result.stderr


def test_unknown_format_is_a_usage_error(at_root: Path) -> None:
    result = validate("--format", "xml", "tests/corpus/unused-field.yaml")
    assert result.exit_code == 2


# --- the shipped procedures -----------------------------------------------------------------------

def test_there_are_shipped_procedures() -> None:
    assert PROCEDURES


@pytest.mark.parametrize("path", PROCEDURES, ids=[p.stem for p in PROCEDURES])
def test_shipped_procedure_validates(path: Path) -> None:
    errors = [str(d) for d in lint([path]) if d.severity == "error"]
    assert errors == []
    procedure = load_procedure(path)
    assert isinstance(procedure, Procedure)
    assert re.fullmatch(r"[0-9a-f]{64}", procedure.hash)


@pytest.mark.parametrize("path", PROCEDURES, ids=[p.stem for p in PROCEDURES])
def test_hash_follows_the_content(path: Path, tmp_path: Path) -> None:
    original = load_procedure(path)
    copy = tmp_path / "elsewhere" / path.name
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    assert load_procedure(copy).hash == original.hash

    text = path.read_text(encoding="utf-8")
    changed_text, count = re.subn(r"^version: .*$", 'version: "changed-for-the-test"', text,
                                  flags=re.MULTILINE)
    assert count == 1
    changed = tmp_path / "changed.yaml"
    changed.write_text(changed_text, encoding="utf-8")
    assert load_procedure(changed).hash != original.hash


def test_hash_ignores_comments_and_layout(tmp_path: Path) -> None:
    raw = _skeleton()
    first, _ = compile_source(raw, "a.yaml")
    second, _ = compile_source(b"# a comment\n" + raw.replace(b": ", b":   "), "b.yaml")
    assert first is not None
    assert second is not None
    assert first.hash == second.hash


# --- bounds: patterns that backtrack, durations ---------------------------------------------------

def _with_field(pattern: str) -> bytes:
    field = ("fields:\n  - {id: code, type: string, label: {fr: Code, en: Code}, "
             f"pattern: {json.dumps(pattern)}}}\n")
    return (SKELETON.replace("states:\n", field + "states:\n")
            .replace("roles: [applicant]\n", "roles: [applicant]\n    requires: {fields: all}\n",
                     1)).encode()


SAFE_PATTERNS = [
    r"^[0-9]{10}$", r"^\+?[0-9 ]{8,15}$", r"^[A-Z0-9]+$", r"^[A-Z0-9][A-Z0-9&.-]*$",
    r"^[A-Za-z' -]+$", r"^(\d{2}[ .-]?){4}$", r"^\w+(\.\w+)*@[a-z]+\.[a-z]{2,}$",
    r"^(\d{1,3}\.){3}\d{1,3}$", r"^([a-z]+-)*[a-z]+$", r"^(ab|a)+$", r"^(?:[A-Z]{2}|[0-9]{3})+$",
    r"^(\s*,\s*\w+)*$", r"^[^@\s]+@[^@\s]+$",
]
BACKTRACKING_PATTERNS = [
    r"^(a+)+$", r"^(a*)*$", r"^(\d+\.?)+$", r"^([a-z]+ ?)*$", r"^(\w+\s?)*$", r"^(a|aa)*b$",
    r"^(a?a)+$", r"^((ab)+)+$", r"^(.*a){12}$", r"^(\w+|\d+)+$", r"^([^@]+)+@", r"(?i)^(a|bB?)+$",
]


@pytest.mark.parametrize("pattern", SAFE_PATTERNS)
def test_ordinary_patterns_pass(pattern: str) -> None:
    assert [str(d) for d in compile_source(_with_field(pattern), "p.yaml")[1]] == []


@pytest.mark.parametrize("pattern", BACKTRACKING_PATTERNS)
def test_patterns_that_backtrack_are_refused(pattern: str) -> None:
    procedure, diagnostics = compile_source(_with_field(pattern), "p.yaml")
    assert procedure is None
    assert [(d.rule, d.location.line) for d in diagnostics] == [("pattern-backtracking", 10)]


def test_deeply_nested_pattern_is_a_diagnostic() -> None:
    pattern = "(" * 480 + "a" + ")" * 480  # re.compile raised RecursionError
    diagnostics = compile_source(_with_field(pattern), "p.yaml")[1]  # never an exception
    assert {d.rule for d in diagnostics} <= {"field-constraint"}


@pytest.mark.parametrize("text", ["100 years", "1200 months", "5217 weeks", "36525 days",
                                  "26089 business days", "876600 hours", "52596000 minutes"])
def test_longest_durations_can_be_added_to_any_date_of_this_century(text: str) -> None:
    duration = Duration.parse(text)
    for year in (1900, 2026, 2099):
        assert duration.add_to(dt.datetime(year, 12, 31, 23, 59)).year <= year + 101


@pytest.mark.parametrize("text", ["101 years", "1300 months", "36526 days", "99999999999 days",
                                  "9" * 5000 + " days"])
def test_longer_durations_are_refused(text: str) -> None:
    with pytest.raises(DurationLimit):
        Duration.parse(text)


def test_deadline_of_a_hundred_years_is_accepted() -> None:
    raw = SKELETON.replace(
        "  draft: {label: {fr: Brouillon, en: Draft}, initial: true}\n",
        "  draft:\n    label: {fr: Brouillon, en: Draft}\n    initial: true\n"
        "    deadlines: [{after: 100 years, trigger: drop}]\n",
    ) + "  - {trigger: drop, from: draft, to: done, roles: [system]}\n"
    raw = raw.replace("  clerk: {", "  system: {label: {fr: Système, en: System}}\n  clerk: {")
    procedure, diagnostics = compile_source(raw, "p.yaml")
    assert [str(d) for d in diagnostics] == []
    assert procedure is not None
