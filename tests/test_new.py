"""`guichet new PROCEDURE_ID`: a procedure and scenarios that validate cleanly and pass at 100%
transition coverage; bad ids and existing files are refused without writing anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import engine
from cli import main
from engine import load_procedure
from engine.new_procedure import schema_reference

ROOT = Path(__file__).resolve().parent.parent


def guichet(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_new_then_validate_then_test(here: Path) -> None:
    result = guichet("new", "birth_certificate")
    assert result.exit_code == 0, result.output
    procedure = here / "procedures" / "birth_certificate.yaml"
    scenarios = here / "procedures" / "tests" / "birth_certificate"
    assert procedure.is_file()
    assert (scenarios / "happy_path.yaml").is_file()
    assert "procedures/birth_certificate.yaml" in result.output

    checked = guichet("validate")
    assert checked.exit_code == 0
    assert checked.stdout == ""
    assert "1 file(s) checked: 0 error(s), 0 warning(s)" in checked.stderr

    tested = guichet("test", "procedures", "--coverage")
    assert tested.exit_code == 0, tested.output
    assert "birth_certificate: states 4/4 (100%), transitions 3/3 (100%)" in tested.stdout
    assert "transition never fired" not in tested.stdout
    assert tested.stdout.rstrip().endswith(" passed, 0 failed")


def test_the_procedure_has_what_an_author_starts_from(here: Path) -> None:
    assert guichet("new", "permit").exit_code == 0
    text = (here / "procedures" / "permit.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == (
        "# yaml-language-server: $schema=" + schema_reference(here / "procedures"))
    procedure = load_procedure(here / "procedures" / "permit.yaml")
    assert procedure.id == "permit"
    assert len(procedure.roles) == 2
    assert tuple(procedure.start.roles) == ("applicant",)
    assert len(procedure.fields) == len(procedure.documents) == len(procedure.fees) == 1
    assert {s.id: s.outcome for s in procedure.states.values()} == {
        "draft": None, "submitted": None, "accepted": "accepted", "rejected": "rejected"}
    assert procedure.title.fr and procedure.title.en


def test_the_modeline_reaches_the_schema(here: Path) -> None:
    assert guichet("new", "permit", "--directory", "a/b").exit_code == 0
    first = (here / "a" / "b" / "permit.yaml").read_text(encoding="utf-8").splitlines()[0]
    reference = first.split("$schema=", 1)[1]
    schema = (here / "a" / "b" / reference).resolve()
    assert schema == (Path(engine.__file__).parent / "schema" / "procedure.schema.json").resolve()


def test_in_the_repository_the_modeline_is_the_shipped_one() -> None:
    assert schema_reference(ROOT / "procedures") == "../engine/schema/procedure.schema.json"


def test_another_directory(here: Path) -> None:
    result = guichet("new", "licence", "--directory", "services")
    assert result.exit_code == 0, result.output
    assert (here / "services" / "tests" / "licence" / "happy_path.yaml").is_file()
    tested = guichet("test", "services", "--coverage")
    assert tested.exit_code == 0, tested.output
    assert "transitions 3/3 (100%)" in tested.stdout


@pytest.mark.parametrize("bad", ["Passport", "1permit", "_x", "birth-certificate", "a b",
                                 "../evil", "été", "x\n"])
def test_refuses_an_id_that_is_not_an_identifier(here: Path, bad: str) -> None:
    result = guichet("new", bad)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid procedure id" in result.stderr
    assert list(here.iterdir()) == []


def test_never_overwrites(here: Path) -> None:
    assert guichet("new", "permit").exit_code == 0
    procedure = here / "procedures" / "permit.yaml"
    procedure.write_text("# mine\n", encoding="utf-8")
    again = guichet("new", "permit")
    assert again.exit_code == 1
    assert len(again.stderr.strip().splitlines()) == 1
    assert "already exists" in again.stderr
    assert procedure.read_text(encoding="utf-8") == "# mine\n"


def test_an_existing_scenario_is_not_overwritten_either(here: Path) -> None:
    scenario = here / "procedures" / "tests" / "permit" / "happy_path.yaml"
    scenario.parent.mkdir(parents=True)
    scenario.write_text("# mine\n", encoding="utf-8")
    result = guichet("new", "permit")
    assert result.exit_code == 1
    assert "happy_path.yaml already exists" in result.stderr
    assert scenario.read_text(encoding="utf-8") == "# mine\n"
    assert not (here / "procedures" / "permit.yaml").exists()  # nothing written
