"""The procedure library: the shipped procedures (procedures/) and the examples
(examples/procedures/) are clean and every state and transition is proven by a scenario.

tests/test_scenarios.py::test_shipped_procedures_pass_with_full_transition_coverage checks the
report `guichet test procedures/ --coverage` prints, and tests/test_corpus.py checks that each
shipped file compiles without errors; here both folders are checked as data, whatever
procedures they hold: every scenario passes, coverage is 100% of the states and of the
transitions of every procedure (follow-up cases included), and `lint` (which also checks the
follow-ups between the files of a folder) reports nothing, not even a warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MakeEngine

from engine import Actor, InvalidData, lint, load_procedure
from engine.analysis.scenarios import Suite, run_suite

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = {"procedures": ROOT / "procedures", "examples": ROOT / "examples" / "procedures"}
_SUITES: dict[str, Suite] = {}


def suite(folder: str) -> Suite:
    """The folder's scenarios, played once per session (each folder is self-contained)."""
    if folder not in _SUITES:
        _SUITES[folder] = run_suite([LIBRARY[folder]])
    return _SUITES[folder]


@pytest.mark.parametrize("folder", LIBRARY)
def test_every_scenario_passes(folder: str) -> None:
    played = suite(folder)
    assert [str(d) for d in played.diagnostics] == []
    assert [f for r in played.results for f in r.failures] == []
    assert played.results and played.failed == 0


@pytest.mark.parametrize("folder", LIBRARY)
def test_every_state_and_transition_is_covered(folder: str) -> None:
    played = suite(folder)
    on_disk = {load_procedure(p).id for p in LIBRARY[folder].glob("*.yaml")}
    assert set(played.coverage) == on_disk
    missed = {procedure_id: coverage.missed_states() + coverage.missed_transitions()
              for procedure_id, coverage in played.coverage.items()}
    assert missed == {procedure_id: [] for procedure_id in on_disk}
    assert all(c.percent() == (100.0, 100.0) for c in played.coverage.values())


@pytest.mark.parametrize("folder", LIBRARY)
def test_lint_finds_nothing(folder: str) -> None:
    assert [str(d) for d in lint([LIBRARY[folder]])] == []


def test_the_examples_show_what_the_shipped_procedures_do_not() -> None:
    examples = {load_procedure(p).id: load_procedure(p)
                for p in LIBRARY["examples"].glob("*.yaml")}
    assert set(examples) == {"residence_permit", "building_permit", "building_conformity"}
    assert examples["residence_permit"].validity is not None
    permit = examples["building_permit"]
    assert [t.trigger for t in permit.transitions if t.opens is not None] == ["grant"]
    assert permit.states["granted"].follow_ups and permit.states["revoked"].outcome == "revoked"
    followed = suite("examples").results
    assert any(r.followed.get("building_conformity") for r in followed)


def test_the_water_connection_refuses_a_payment_method_it_does_not_list(
        make_engine: MakeEngine, sqlite_url: str) -> None:
    # A scenario cannot show it: naming an unlisted method is refused when the file is loaded.
    engine = make_engine(sqlite_url, [LIBRARY["procedures"] / "water_connection.yaml"])
    citizen = Actor("citizen-1", ["applicant"])
    reference = engine.start("water_connection", citizen, {"surname": "Agbeko"}).reference
    with pytest.raises(InvalidData) as refused:
        engine.pay(reference, 5000, "visa", "CB-1", citizen, method="card")
    assert list(refused.value.errors) == ["method"]
    assert "flooz" in refused.value.errors["method"]["en"]
    assert engine.case(reference, citizen).fees_paid == 0
