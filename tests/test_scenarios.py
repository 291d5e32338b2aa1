"""Scenario tests (`guichet test`) and the step-by-step simulator (`guichet simulate`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from engine import load_procedure
from engine.analysis.scenarios import Runner, load_scenario, run_suite

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "scenarios"


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def guichet(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_shipped_procedures_pass_with_full_transition_coverage() -> None:
    code, output = guichet("test", "procedures/", "--coverage")
    assert code == 0, output
    summary = output.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, 0 failed", summary)
    for procedure in ("passport", "association", "criminal_record"):
        line = next(x for x in output.splitlines() if x.startswith(f"{procedure}: "))
        assert line.endswith("(100%)"), line
        assert "states" in line and "(100%), transitions" in line
    assert "never fired" not in output and "never entered" not in output


def test_every_outcome_and_the_information_loop_are_exercised() -> None:
    suite = run_suite(["procedures/"])
    for procedure_id, coverage in suite.coverage.items():
        outcomes = {coverage.procedure.states[s].outcome for s in coverage.states}
        assert {"accepted", "rejected", "withdrawn", "expired"} <= outcomes, procedure_id
        fired = {coverage.procedure.transitions[i].trigger for i in coverage.transitions}
        assert {"request_information", "provide_information"} <= fired, procedure_id


def test_a_wrong_expectation_fails_with_expected_and_actual() -> None:
    code, output = guichet("test", str(FIXTURES / "wrong_expectation.yaml"))
    assert code == 1
    assert "wrong_expectation.yaml::" in output and "FAILED" in output
    assert re.search(r"wrong_expectation\.yaml:\d+: step \d+ \(fire start_review\): "
                     r"state: expected 'issued', actual 'under_review'", output)
    assert output.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_unknown_names_in_a_scenario_are_located_like_procedure_errors() -> None:
    code, output = guichet("test", "tests/fixtures/scenarios/unknown_references.yaml")
    assert code == 1
    lines = [x for x in output.splitlines() if "unknown_references.yaml:" in x]
    rules = [re.search(r"\[([a-z-]+)\]$", x).group(1) for x in lines]  # type: ignore[union-attr]
    assert sorted(rules) == ["undefined-field", "undefined-state", "undefined-trigger"]
    assert all(re.match(r"tests/fixtures/scenarios/unknown_references\.yaml:\d+:\d+: error: ",
                        x) for x in lines)


def test_a_refusal_expected_but_not_happening_fails() -> None:
    procedure = load_procedure("procedures/criminal_record.yaml")
    scenario_text = {
        "procedure": "criminal_record",
        "steps": [{"start": {}, "as": "applicant:citizen-1"},
                  {"fire": "withdraw", "as": "applicant:citizen-1",
                   "expect": {"refused": "blocked"}}],
    }
    path = Path("tests/fixtures/scenarios/_generated_refusal.yaml")
    path.write_text(yaml.safe_dump(scenario_text), encoding="utf-8")
    try:
        scenario, diagnostics = load_scenario(path, {procedure.id: procedure})
    finally:
        path.unlink()
    assert diagnostics == [] and scenario is not None
    result = Runner([procedure]).run(scenario)
    assert not result.passed
    assert "expected a refusal (blocked), but the step succeeded" in result.failures[0]


def test_simulate_prints_the_trace_of_a_scenario() -> None:
    scenario = "procedures/tests/criminal_record/togolese_collected_at_court.yaml"
    code, output = guichet("simulate", "criminal_record", "--scenario", scenario)
    assert code == 0, output
    assert re.search(r"^\s+1\. start\s+->\s+draft", output, re.M)
    assert re.search(r"fire submit\s+->\s+submitted", output)
    assert "notification sms" in output
    assert "collected" in output.strip().splitlines()[-1] or "collected" in output


def test_interactive_simulation_driven_through_its_prompts(tmp_path: Path) -> None:
    saved = tmp_path / "session.yaml"
    answers = [
        "applicant:citizen-1",  # open the case as
        *[""] * 40,             # skip every form field
        "submit",               # blocked: reasons are shown
        "pay",
        "wait 31 days",         # the draft is abandoned: expired
    ]
    code, output = guichet("simulate", "criminal_record", "--save", str(saved),
                           input="\n".join(answers) + "\n")
    assert code == 0, output
    assert "blocked:" in output and "reste à payer : " in output
    assert "refused:" in output  # submit with nothing filled in
    assert "case closed: expired (expired)" in output
    steps = yaml.safe_load(saved.read_text(encoding="utf-8"))["steps"]
    assert steps[0] == {"start": {}, "as": "applicant:citizen-1"}
    assert steps[-1] == {"wait": "31 days"}
    replay = run_suite([saved], ["procedures/"])
    assert replay.summary() == "1 passed, 0 failed"
    assert replay.coverage["criminal_record"].states >= {"draft", "expired"}


def test_interactive_simulation_validates_answers_and_leaves_on_eof() -> None:
    # surname, first names, then sex (a choice) answered wrongly, then correctly
    answers = ["applicant:citizen-1", "Amegah", "Kossi", "unknown", "male"]
    code, output = guichet("simulate", "criminal_record", input="\n".join(answers) + "\n")
    assert code == 0
    assert "sex: n'est pas une valeur proposée" in output
    assert output.count("Sexe*") == 2  # asked again after the wrong answer
    assert "left the simulation" in output


def test_simulate_names_unknown_procedures() -> None:
    code, output = guichet("simulate", "no_such_procedure")
    assert code == 2
    assert "unknown procedure 'no_such_procedure'" in output


def test_explore_finds_the_planted_deadlock_and_saves_a_replayable_counterexample(
        tmp_path: Path) -> None:
    code, output = guichet("explore", "tests/fixtures/explore/deadlock.yaml",
                           "--save", str(tmp_path))
    assert code == 1
    assert 'deadlock: state "review"' in output
    assert "counterexample:" in output and "amount=500" in output
    saved = sorted(tmp_path.glob("*.yaml"))
    assert [p.name for p in saved] == ["deadlock-review.yaml"]
    replay = run_suite(saved, ["tests/fixtures/explore/"])
    assert replay.summary() == "1 passed, 0 failed"


def test_explore_finds_a_guard_that_can_never_hold() -> None:
    code, output = guichet("explore", "tests/fixtures/explore/dead_guard.yaml")
    assert code == 1
    assert "dead-guard" in output or "never hold" in output
    assert "age(birth_date) > 200" in output


def test_explore_reports_nothing_on_the_shipped_procedures() -> None:
    for procedure in ("passport", "association", "criminal_record"):
        code, output = guichet("explore", procedure)
        assert code == 0, output
        assert output.strip().endswith("no findings")


def test_load_simulation_reports_and_writes_csv_and_svg(tmp_path: Path) -> None:
    csv_file, svg_file = tmp_path / "backlog.csv", tmp_path / "backlog.svg"
    args = ["simulate", "criminal_record", "--load", "--days", "20", "--arrivals", "50",
            "--seed", "3", "--csv", str(csv_file), "--svg", str(svg_file)]
    code, output = guichet(*args)
    assert code == 0, output
    assert "Load simulation of criminal_record over 20 days (seed 3)" in output
    assert "p50" in output and "p90" in output and "Past the target" in output
    rows = csv_file.read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("day,") and len(rows) == 21
    assert svg_file.read_text(encoding="utf-8").lstrip().startswith(("<svg", "<?xml"))
    again_code, again = guichet(*args)
    assert again_code == 0 and again == output  # seeded: the same run twice


def test_load_simulation_refuses_unknown_names() -> None:
    code, output = guichet("simulate", "criminal_record", "--load", "--handling",
                           "verfy=5 minutes")
    assert code == 2
    assert 'unknown trigger "verfy"' in output


def test_coverage_counts_every_case_a_scenario_starts(tmp_path: Path) -> None:
    scenario = tmp_path / "two_cases.yaml"
    scenario.write_text(yaml.safe_dump({
        "procedure": "criminal_record", "name": "two cases",
        "steps": [
            {"start": {}, "as": "applicant:citizen-1"},
            {"wait": "31 days", "expect": {"state": "expired"}},  # abandon_draft, case 1
            {"start": {}, "as": "applicant:citizen-2"},
            {"fire": "withdraw", "as": "applicant:citizen-2", "expect": {"state": "withdrawn"}},
        ]}), encoding="utf-8")
    suite = run_suite([scenario], ["procedures/"])
    assert suite.summary() == "1 passed, 0 failed"
    covered = suite.coverage["criminal_record"]
    fired = {covered.procedure.transitions[i].trigger for i in covered.transitions}
    assert fired == {"abandon_draft", "withdraw"}
    assert covered.states == {"draft", "expired", "withdrawn"}


REFUSED_SUBMIT = {"procedure": "criminal_record", "name": "refused submit",
                  "steps": [{"start": {}, "as": "applicant:citizen-1"},
                            {"fire": "submit", "as": "applicant:citizen-1",
                             "expect": {"refused": "blocked"}}]}


@pytest.mark.parametrize(("language", "said", "not_said"), [
    ("fr", "reste à payer : 500 FCFA", "still to pay"),
    ("en", "still to pay: 500 XOF", "reste à payer"),
])
def test_simulate_prints_a_scenario_s_refusals_in_the_chosen_language(
        tmp_path: Path, language: str, said: str, not_said: str) -> None:
    scenario = tmp_path / "refused.yaml"
    scenario.write_text(yaml.safe_dump(REFUSED_SUBMIT), encoding="utf-8")
    code, output = guichet("simulate", "criminal_record", "--scenario", str(scenario),
                           "--lang", language)
    assert code == 0, output
    refusal = next(line for line in output.splitlines() if "refused:" in line)
    assert said in refusal and not_said not in refusal


def test_simulate_prints_a_scenario_s_notifications_in_the_chosen_language() -> None:
    scenario = "procedures/tests/criminal_record/togolese_collected_at_court.yaml"
    outputs = {language: guichet("simulate", "criminal_record", "--scenario", scenario,
                                 "--lang", language)[1] for language in ("fr", "en")}
    french = [x for x in outputs["fr"].splitlines() if "notification sms" in x]
    english = [x for x in outputs["en"].splitlines() if "notification sms" in x]
    assert french and len(french) == len(english) and french != english
