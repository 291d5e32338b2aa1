"""One mistake, one error (issue 12, point 3).

Each file of tests/corpus_typos is a valid procedure with exactly one author mistake, said in
its first three lines:

    # Mistake: what the author got wrong.
    # Expect: <rule> on line <n> [saying: <part of the message>]
    # Fix: "<text with the mistake>" -> "<text without it>"

`guichet validate` gives exactly one diagnostic for it, the expected error, and the file with
the fix applied gives none (so the file holds that one mistake and nothing else).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine import compile_source
from engine.errors import Diagnostic

TYPOS = Path(__file__).resolve().parent / "corpus_typos"
FILES = sorted(TYPOS.glob("*.yaml"))
_HEADER = re.compile(
    r"# Mistake: (?P<mistake>.+)\n"
    r"# Expect: (?P<rule>[a-z-]+) on line (?P<line>[0-9]+)(?: saying: (?P<saying>.+))?\n"
    r"# Fix: (?P<wrong>\"(?:[^\"\\]|\\.)*\") -> (?P<right>\"(?:[^\"\\]|\\.)*\")\n")


def _header(path: Path) -> re.Match[str]:
    found = _HEADER.match(path.read_text(encoding="utf-8"))
    assert found is not None, f"{path.name} does not start with Mistake, Expect and Fix lines"
    return found


def _check(text: str, name: str = "p.yaml") -> list[Diagnostic]:
    return compile_source(text, name)[1]


def test_there_are_typo_files() -> None:
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_one_mistake_gives_one_error(path: Path) -> None:
    header = _header(path)
    found = _check(path.read_text(encoding="utf-8"), path.name)
    assert [(d.severity, d.rule, d.location.line) for d in found] == [
        ("error", header["rule"], int(header["line"]))], [str(d) for d in found]
    if header["saying"]:
        assert header["saying"] in found[0].message


def _fixed(path: Path) -> str:
    """The procedure of `path` with its mistake fixed (and without the three header lines)."""
    header = _header(path)
    body = path.read_text(encoding="utf-8")[header.end():]
    wrong, right = json.loads(header["wrong"]), json.loads(header["right"])
    assert body.count(wrong) == 1
    return body.replace(wrong, right)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_the_fix_leaves_a_clean_procedure(path: Path) -> None:
    assert [str(d) for d in _check(_fixed(path), path.name)] == []


# --- beyond the corpus ------------------------------------------------------------------------

def _valid() -> str:
    """A typo file with its mistake fixed: a valid procedure."""
    return _fixed(TYPOS / "state-in-to.yaml")


def test_a_notification_without_to_goes_to_the_applicant_party() -> None:
    """No role is named "applicant" here: the default recipient is the case's applicant
    party, which every procedure has, so leaving out `to:` is no mistake."""
    text = _valid().replace("to: citizen, ", "")
    procedure, found = compile_source(text, "p.yaml")
    assert [str(d) for d in found] == []
    assert procedure is not None
    assert procedure.states["issued"].notify[0].to == "applicant"


def test_a_misspelled_applicant_party_is_suggested() -> None:
    found = _check(_valid().replace("to: citizen, ", "to: aplicant, "))
    assert [d.message for d in found] == [
        'unknown role or party "aplicant"; did you mean "applicant"?']


def test_a_forgotten_to_is_one_error() -> None:
    found = _check(_valid().replace("{trigger: check, from: submitted, to: checked,",
                                    "{trigger: check, from: submitted,"))
    assert [d.message for d in found] == ['missing key "to" in transitions.1']


def test_a_text_cut_by_two_commas_is_one_error() -> None:
    found = _check(_valid().replace("en: At the counter}", "en: At the counter, in Lomé, Togo}"))
    assert [d.message for d in found] == [
        'unknown key "in Lomé": a text containing a comma must be quoted: '
        'en: "At the counter, in Lomé, Togo"']


def test_a_text_with_quotes_is_shown_in_single_quotes() -> None:
    found = _check(_valid().replace('{fr: Au guichet, en:', '{fr: Au "guichet", à Lomé, en:'))
    assert [d.message for d in found] == [
        'unknown key "à Lomé": a text containing a comma must be quoted: '
        "fr: 'Au \"guichet\", à Lomé'"]


def test_a_key_read_as_meant_is_still_checked() -> None:
    """The misspelled key is read as "final", and its value is then checked: two mistakes,
    two errors."""
    found = _check(_valid().replace("final: accepted", "fianl: acepted"))
    assert [d.rule for d in found] == ["unknown-key", "invalid-value"]
    assert found[0].message == 'unknown key "fianl"; did you mean "final"?'
    assert found[1].message.startswith('"acepted" is not one of accepted, rejected')


def test_a_key_is_not_read_as_one_its_mapping_has() -> None:
    found = _check(_valid().replace("final: accepted", "final: accepted\n    fianl: accepted"))
    assert [d.message for d in found] == ['unknown key "fianl"; did you mean "final"?']


def test_other_mistakes_are_still_reported() -> None:
    """A misspelled state hides what follows from it, not a second mistake elsewhere."""
    text = _valid().replace("to: checked,", "to: cheked,")
    text = text.replace("roles: [mayor]}", "roles: [mayr]}")
    assert [d.rule for d in _check(text)] == ["undefined-state", "undefined-role"]


def test_a_text_cut_by_a_comma_is_said_so() -> None:
    found = _check(_valid().replace("{fr: Au guichet, en:", "{fr: Au guichet, à Lomé, en:"))
    assert [d.message for d in found] == [
        'unknown key "à Lomé": a text containing a comma must be quoted: '
        'fr: "Au guichet, à Lomé"']


def test_an_anchored_mapping_cut_by_a_comma_is_said_so() -> None:
    found = _check(_valid().replace("label: {fr: Au guichet, en:",
                                    "label: &counter {fr: Au guichet, à Lomé, en:"))
    assert [d.message for d in found] == [
        'unknown key "à Lomé": a text containing a comma must be quoted: '
        'fr: "Au guichet, à Lomé"']


@pytest.mark.parametrize("title", [
    "&title\n  fr: Certificat de résidence\n  ordinaire:\n  en: Residence certificate",
    "!!map\n  fr: Certificat de résidence\n  ordinaire:\n  en: Residence certificate",
    "\n  fr: Certificat de résidence\n  ordinaire:\n  en: Residence certificate",
])
def test_a_key_of_a_block_mapping_is_no_piece_of_text(title: str) -> None:
    """Each key of a mapping written on its own lines is written with its `:`: no comma cut
    a text there, even when an anchor or a tag starts the mapping before its first key."""
    found = _check(_valid().replace(
        "{fr: Certificat de résidence, en: Residence certificate}", title))
    assert 'unknown key "ordinaire"' in [d.message for d in found]
    assert not any("comma" in d.message for d in found)


@pytest.mark.parametrize("key", ['"x": ', "'x': ", "x: "])
def test_a_key_written_with_a_colon_is_no_piece_of_text(key: str) -> None:
    found = _check(_valid().replace("{fr: Au guichet, en: At the counter}",
                                    "{fr: Au guichet, à Lomé, en: At the counter, " + key + "}"))
    assert [d.message for d in found] == [
        'unknown key "à Lomé": a text containing a comma must be quoted: '
        'fr: "Au guichet, à Lomé"',
        'unknown key "x"']


def test_the_texts_of_a_mapping_are_read_once_for_all_its_pieces(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """9,000 pieces of one text: one reading of its mapping (one per piece took seconds)."""
    from engine import hints
    reads: list[object] = []
    cut_texts = hints._cut_texts

    def counted(*args: object) -> dict[str, list[str]]:
        reads.append(args[1])
        return cut_texts(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hints, "_cut_texts", counted)
    pieces = ", ".join(f"k{n}" for n in range(9000))
    found = _check(_valid().replace("{fr: Au guichet, en:", "{fr: Au guichet, " + pieces + ", en:"))
    assert len(found) == 1 and found[0].message.startswith(
        'unknown key "k0": a text containing a comma must be quoted: fr: "Au guichet, k0, k1,')
    assert len(reads) == len(set(reads)) == 1
