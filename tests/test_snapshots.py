"""A stored definition (the snapshot its cases are pinned to) keeps compiling when the format
becomes stricter in a way that does not change how it runs (engine.compiler.SNAPSHOT_TOLERATED),
while a new file with the same content is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import compile_source
from engine.compiler import SNAPSHOT_TOLERATED, compile_definition
from engine.errors import ProcedureError

PASSPORT = Path(__file__).resolve().parent.parent / "procedures" / "passport.yaml"


def _definition() -> dict[str, Any]:
    procedure, _ = compile_source(PASSPORT.read_bytes(), str(PASSPORT))
    assert procedure is not None
    return copy.deepcopy(procedure.definition)


def _with_date_pattern(definition: dict[str, Any]) -> dict[str, Any]:
    """A text key on a date field: accepted before issue 12, refused by the schema since."""
    date = next(f for f in definition["fields"] if f["type"] == "date")
    date["pattern"] = "^[0-9-]+$"
    return definition


def test_a_stored_definition_stricter_rules_refuse_still_compiles() -> None:
    definition = _with_date_pattern(_definition())
    procedure = compile_definition(definition)
    assert procedure.id == "passport"
    assert "field-constraint" in SNAPSHOT_TOLERATED


def test_the_same_content_in_a_file_is_refused() -> None:
    text = yaml.safe_dump(_with_date_pattern(_definition()), allow_unicode=True)
    procedure, diagnostics = compile_source(text, "passport.yaml")
    assert procedure is None
    assert [d.rule for d in diagnostics if d.severity == "error"] == ["field-constraint"]


def test_other_errors_still_refuse_a_stored_definition() -> None:
    definition = _definition()
    definition["transitions"][0]["to"] = "nowhere"
    with pytest.raises(ProcedureError):
        compile_definition(definition)
