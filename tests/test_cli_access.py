"""`guichet case start --on-behalf`, `case claim` and `case members` (issue 9)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from test_cli_case import ROOT

from cli import main

CRIMINAL_RECORD = str(ROOT / "procedures" / "criminal_record.yaml")
DATA = {"surname": "Kpodar", "first_names": "Yawa", "sex": "female",
        "birth_date": "1988-09-03", "born_in_togo": True, "birth_place": "Sokodé",
        "nationality": "TG", "phone": "91 23 45 67", "collection_mode": "in_person",
        "processing_centre": "lome", "identity_document_kind": "identity_document"}


def guichet(tmp_path: Path, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, ["case", "--db", f"sqlite:///{tmp_path / 'c.db'}",
                                       "--procedures", CRIMINAL_RECORD, *args])
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def test_a_clerk_opens_at_the_counter_and_the_citizen_claims(tmp_path: Path) -> None:
    opened = guichet(tmp_path, "start", "criminal_record", "--as", "clerk:clerk-2",
                     "--data", json.dumps(DATA), "--on-behalf").stdout
    reference = opened.splitlines()[0].removeprefix("reference: ")
    found = re.search(r"claim code: (\S+)", opened)
    assert found is not None
    refused = guichet(tmp_path, "claim", reference, "AAAA-BBBB-CCCC", "--as",
                      "applicant:citizen-7", "--lang", "en", code=1)
    assert "this code does not match the receipt" in refused.stderr
    claimed = guichet(tmp_path, "claim", reference, found.group(1), "--as",
                      "applicant:citizen-7", "--json").stdout
    assert json.loads(claimed)["applicant_id"] == "citizen-7"
    history = guichet(tmp_path, "history", reference, "--as", "applicant:citizen-7",
                      "--json").stdout
    assert [(h["trigger"], h["actor_id"], h["for_party"]) for h in json.loads(history)] == [
        ("@start", "clerk-2", "applicant"), ("@claim", "citizen-7", None)]


def test_organisations_are_refused_where_the_procedure_does_not_allow_them(
        tmp_path: Path) -> None:
    refused = guichet(tmp_path, "start", "criminal_record", "--as", "applicant:citizen-1",
                      "--data", json.dumps(DATA), "--organisation", "ngo-1", "--lang", "en",
                      code=1)
    assert "not open to organisations" in refused.stderr
    members = guichet(tmp_path, "members", "CJN-2026-000001-1", "x", "--as",
                      "applicant:citizen-1", code=1)
    assert members.stderr.startswith("error:")
