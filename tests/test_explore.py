"""`engine.analysis.explore`: planted problems are found, each with its shortest counterexample.

Counterexamples are played by the scenario runner of `guichet test` (a real Engine on an
in-memory database, its clock on the exploration day): the short ones (deciding data only) on
the fixtures, whose fields all decide, and the complete `Finding.scenario()` everywhere, also on
shipped procedures with a problem planted in them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import Procedure, compile_source, lint, load_procedure
from engine.analysis.explore import TODAY, ExploreReport, Finding, explore, relevance
from engine.analysis.scenarios import Result, Runner, load_scenario

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "explore"
PROCEDURES = sorted((ROOT / "procedures").glob("*.yaml"))
START = {"as": "applicant:citizen-1"}
SUBMIT = {"fire": "submit", "as": "applicant:citizen-1"}
CLOCK = f"{TODAY.isoformat()}T09:00:00"

#: The start of the small procedures written in the tests.
HEADER = """
id: inline
version: "1"
title: {fr: Essai, en: Test}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Officer}}
  system: {label: {fr: Système, en: System}}
"""


def fixture(name: str) -> Procedure:
    return load_procedure(FIXTURES / f"{name}.yaml")


@functools.cache
def shipped(path: Path) -> tuple[Procedure, ExploreReport]:
    procedure = load_procedure(path)
    return procedure, explore(procedure)


def compiled(text: str) -> Procedure:
    procedure, diagnostics = compile_source(text, "inline.yaml")
    assert [str(d) for d in diagnostics if d.severity == "error"] == []
    assert procedure is not None
    return procedure


def planted(path: Path, old: str, new: str) -> Procedure:
    source = path.read_text(encoding="utf-8")
    assert source.count(old) == 1
    return compiled(source.replace(old, new))


def summary(report: ExploreReport) -> list[tuple[str, str | None, str | None]]:
    return [(f.kind, f.state, f.trigger) for f in report.findings]


def play_text(procedure: Procedure, text: str, tmp_path: Path) -> Result:
    """Load a scenario file with the strict loader, then play it."""
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    scenario, diagnostics = load_scenario(path, {procedure.id: procedure})
    assert [str(d) for d in diagnostics] == []
    assert scenario is not None
    return Runner([procedure]).run(scenario)


def play(procedure: Procedure, steps: Sequence[Mapping[str, Any]], tmp_path: Path) -> Result:
    scenario = {"procedure": procedure.id, "clock": CLOCK, "steps": list(steps)}
    return play_text(procedure, yaml.safe_dump(scenario, sort_keys=False), tmp_path)


def play_finding(procedure: Procedure, finding: Finding, tmp_path: Path) -> Result:
    """Play the complete scenario of a finding, as `guichet explore` would save it."""
    result = play_text(procedure, finding.scenario_text(procedure.id), tmp_path)
    assert result.failures == []
    return result


def expect(state: str, **more: Any) -> dict[str, Any]:
    return {"expect": {"state": state, **more}}


# --- the fixtures -------------------------------------------------------------------------------

def test_fixtures_pass_validation_so_only_exploration_finds_their_problems() -> None:
    files = sorted(FIXTURES.glob("*.yaml"))
    assert [f.stem for f in files] == ["architect", "clean", "cycle", "dead_guard",
                                       "deadline_order", "deadlock", "hidden_by_input"]
    assert lint(files) == []


def test_deadlock_is_found_with_its_shortest_counterexample(tmp_path: Path) -> None:
    procedure = fixture("deadlock")
    report = explore(procedure)
    assert summary(report) == [("deadlock", "review", None)]
    finding = report.findings[0]
    assert finding.counterexample == ({"start": {"amount": 500}, **START}, SUBMIT)
    assert finding.data == {"amount": 500}
    assert "approve (when: amount > 1000); reject (when: amount < 500)" in finding.message
    assert report.bounds_hit == []
    nothing = {"expect": {"available": []}, "as": "agent:agent-1"}
    result = play(procedure, [*finding.counterexample[:-1], {**SUBMIT, **expect("review")},
                              nothing], tmp_path)
    assert (result.failures, result.fired) == ([], [("submit", "draft", "review")])
    assert finding.scenario("explore_deadlock")["steps"] == [
        {"start": {"amount": 500}, **START}, {**SUBMIT, **expect("review")}, nothing]
    play_finding(procedure, finding, tmp_path)


def test_deadlock_values_are_the_boundaries_of_the_guards() -> None:
    report = explore(fixture("deadlock"))
    assert report.domains == {"amount": [0, 499, 500, 501, 999, 1000, 1001]}
    assert report.combinations == 7
    assert report.states_reached == ["draft", "review", "approved", "rejected"]


def test_dead_guards_are_found_and_their_target_is_unreachable(tmp_path: Path) -> None:
    procedure = fixture("dead_guard")
    report = explore(procedure)
    assert summary(report) == [
        ("unreachable-state", "fast_tracked", None),
        ("dead-guard", "review", "fast_track"),
        ("dead-guard", "review", "express"),
    ]
    unreachable, fast_track, express = report.findings
    assert unreachable.counterexample is None
    start = {"start": {"kind": "person", "birth_date": "1900-01-01"}, **START}
    assert fast_track.counterexample == (start, SUBMIT)
    assert express.counterexample == (start, SUBMIT)
    assert "age(birth_date) > 200" in fast_track.message
    # birth dates for ages 199-201 are before the field's minimum: only valid dates are tried
    assert report.domains["birth_date"] == ["1900-01-01", "2026-06-15"]
    blocked = {"refused": {"error": "blocked", "reasons": ["guard"]}, "state": "review"}
    result = play(procedure, [start, {**SUBMIT, **expect("review")},
                              {"fire": "fast_track", "as": "agent:agent-1", "expect": blocked},
                              {"fire": "express", "as": "agent:agent-1", "expect": blocked}],
                  tmp_path)
    assert result.failures == []
    for finding in (fast_track, express):
        steps = finding.scenario(procedure.id)["steps"]
        assert steps[-1] == {"fire": finding.trigger, "as": "agent:agent-1", "expect": blocked}
        play_finding(procedure, finding, tmp_path)


def test_no_exit_cycle_is_found_with_the_run_to_its_entry(tmp_path: Path) -> None:
    procedure = fixture("cycle")
    report = explore(procedure)
    assert summary(report) == [("no-exit-cycle", "review", None)]
    finding = report.findings[0]
    assert finding.states == ("review", "correction")
    assert finding.counterexample == ({"start": {"category": "special"}, **START}, SUBMIT)
    agent, applicant = "agent:agent-1", "applicant:citizen-1"
    loop = [
        {"expect": {"available": ["send_back"]}, "as": agent},
        {"fire": "send_back", "as": agent, **expect("correction")},
        {"expect": {"available": ["resubmit"]}, "as": applicant},
        {"fire": "resubmit", "as": applicant, **expect("review")},
        {"expect": {"available": ["send_back"]}, "as": agent},
    ]
    result = play(procedure, [*finding.counterexample, *loop], tmp_path)
    assert result.failures == []
    play_finding(procedure, finding, tmp_path)


def test_an_editable_correction_state_gives_the_cycle_a_way_out() -> None:
    procedure = planted(FIXTURES / "cycle.yaml",
                        "correction: {label: {fr: À corriger, en: To correct}}",
                        "correction: {label: {fr: À corriger, en: To correct}, editable: true}")
    assert explore(procedure).findings == []
    assert summary(explore(procedure, edits=False)) == [("no-exit-cycle", "review", None)]


def test_a_draft_that_can_be_edited_is_not_a_deadlock() -> None:
    source = (FIXTURES / "deadlock.yaml").read_text(encoding="utf-8")
    guarded = source.replace("    requires: {fields: all}\n",
                             "    requires: {fields: all}\n    when: amount > 400\n")
    assert summary(explore(compiled(guarded))) == [("deadlock", "review", None)]
    frozen = guarded.replace("initial: true, editable: true", "initial: true")
    report = explore(compiled(frozen))
    assert summary(report) == [("deadlock", "draft", None), ("deadlock", "review", None)]
    assert report.findings[0].counterexample == ({"start": {"amount": 0}, **START},)


DOMAINS = HEADER + """
fields:
  - {id: urgent, type: boolean, label: {fr: U, en: U}}
  - id: tags
    type: multi_choice
    label: {fr: T, en: T}
    required: true
    options:
      - {value: a, label: {fr: A, en: A}}
      - {value: b, label: {fr: B, en: B}}
  - {id: weight, type: number, label: {fr: P, en: W}, required: true, min: 0, max: 5}
  - {id: nationality, type: country, label: {fr: Nat, en: Nat}, required: true}
  - {id: code, type: string, label: {fr: C, en: C}, required: true, min_length: 3}
states:
  draft: {label: {fr: B, en: D}, initial: true, editable: true}
  done: {label: {fr: F, en: D}, final: accepted}
  other: {label: {fr: O, en: O}, final: rejected}
transitions:
  - trigger: submit
    from: draft
    to: done
    roles: [applicant]
    when: urgent and 'a' in tags and weight > 1.5 and weight < 2 and nationality == 'TG'
  - {trigger: refuse, from: draft, to: other, roles: [agent], when: code == 'ABC'}
"""


def test_domains_follow_the_field_types_and_the_comparisons() -> None:
    report = explore(compiled(DOMAINS))
    assert report.domains == {
        "urgent": [True, False, None],  # optional: left blank too
        "tags": [[], ["a"], ["b"], ["a", "b"]],
        "weight": [0, 0.5, 1, 1.5, 1.75, 2, 2.5, 3, 5],  # 1.75: between 1.5 and 2
        "nationality": ["TG", "FR"],
        "code": ["ABC", "xxx"],
    }
    assert report.findings == []


def test_clean_fixture_has_no_findings() -> None:
    report = explore(fixture("clean"))
    assert report.findings == []
    assert report.bounds_hit == []
    assert report.states_reached == report.states
    assert report.lines()[-1] == "no findings"
    assert report.fields == ["kind", "birth_date", "amount", "checked"]
    assert report.domains["birth_date"] == [
        "1900-01-01", "2007-06-15", "2008-06-15", "2009-06-15", "2026-06-15"]


# --- who opens cases: declared, not named (issue 9) ---------------------------------------------

ARCHITECT = "architect:citizen-1"


def test_a_filer_role_not_named_applicant_is_the_applicant_party() -> None:
    procedure = fixture("architect")
    assert "applicant" not in procedure.roles
    report = explore(procedure, trace=True)
    assert report.findings == []
    assert report.bounds_hit == []
    assert report.states_reached == report.states
    assert report.trace is not None
    steps = [s for a in report.trace.attempts for s in a.steps]
    steps += [s for n in report.trace.expanded for s in report.trace.steps_to(n)]
    done: dict[str, set[str]] = {}  # actor -> kinds of step
    for step in steps:
        if "as" in step:
            done.setdefault(str(step["as"]), set()).update(set(step) & {
                "start", "attach", "pay", "fire"})
    # the architect opens the case, attaches, pays and submits; the instructor decides
    assert done == {ARCHITECT: {"start", "attach", "pay", "fire"},
                    "instructor:instructor-1": {"fire"}}


def test_a_role_named_applicant_means_nothing_when_start_names_another() -> None:
    text = (FIXTURES / "architect.yaml").read_text(encoding="utf-8")
    procedure = compiled(text.replace("instructor", "applicant"))
    assert procedure.staff_roles == {"applicant"}
    report = explore(procedure, trace=True)
    assert report.findings == []
    assert report.states_reached == report.states
    assert report.trace is not None
    fired = {(a.trigger, a.steps[-1]["as"]) for a in report.trace.attempts
             if a.outcome == "fired" and "fire" in a.steps[-1]}
    assert ("approve", "applicant:applicant-1") in fired  # staff, acting on any case
    assert ("submit", ARCHITECT) in fired


def test_findings_on_the_architects_permit_replay_as_the_architect(tmp_path: Path) -> None:
    text = (FIXTURES / "architect.yaml").read_text(encoding="utf-8")
    for old, new in [
            ('    deadlines:\n      - {after: "30 days", trigger: lapse}\n', ""),
            ("    from: corrections\n    to: review\n    roles: [architect]\n",
             "    from: corrections\n    to: review\n    roles: [architect]\n"
             "    when: surface > 10000\n"),
            ("from: [draft, review, corrections]", "from: [draft, review]")]:
        assert text.count(old) == 1
        text = text.replace(old, new)
    procedure = compiled(text)
    report = explore(procedure)
    assert summary(report) == [("dead-guard", "corrections", "resubmit"),
                               ("deadlock", "corrections", None)]
    dead_guard, deadlock = report.findings
    assert deadlock.counterexample is not None
    assert deadlock.counterexample[0]["as"] == ARCHITECT
    assert [s.get("fire") for s in deadlock.counterexample] == [
        None, "submit", "request_corrections"]
    for finding in report.findings:
        steps = finding.scenario(procedure.id)["steps"]
        assert steps[0]["as"] == ARCHITECT
        assert not any(str(s.get("as", "")).startswith("applicant:") for s in steps)
        play_finding(procedure, finding, tmp_path)
    assert deadlock.scenario(procedure.id)["steps"][-1] == {
        "expect": {"available": []}, "as": ARCHITECT}
    assert dead_guard.scenario(procedure.id)["steps"][-1]["as"] == ARCHITECT
    assert "start as architect:citizen-1 with" in "\n".join(report.lines())


NOBODY = """
id: inline
version: "1"
title: {fr: Essai, en: Test}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  architect: {label: {fr: Architecte, en: Architect}}
  clerk: {label: {fr: Agent, en: Clerk}}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  done: {label: {fr: Terminée, en: Done}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: done, roles: [architect]}
"""


def test_without_a_start_role_nothing_is_explored_and_the_report_says_why() -> None:
    procedure = compiled(NOBODY)
    assert procedure.start.roles == ()
    report = explore(procedure, trace=True)
    assert summary(report) == [("nobody-starts", "draft", None)]
    finding = report.findings[0]
    assert finding.message.startswith("no one may open a case of this procedure: the engine "
                                      "refuses to open any case, so nothing was explored; ")
    assert "`start: {roles: [...]}`" in finding.message
    assert finding.counterexample is None
    assert (report.states_reached, report.nodes, report.combinations) == ([], 0, 0)
    assert report.trace is not None and report.trace.attempts == []
    assert report.lines()[1:] == ["", f"nobody-starts: {finding.message}"]
    with pytest.raises(ValueError, match="no counterexample"):
        finding.scenario(procedure.id)


def test_without_start_a_role_named_applicant_still_opens_cases() -> None:
    """The compatibility rule: the engine lets the role "applicant" open cases."""
    procedure = compiled(NOBODY.replace("architect", "applicant"))
    assert procedure.start.implied
    report = explore(procedure)
    assert (report.findings, report.states_reached) == ([], ["draft", "done"])


# --- the shipped procedures ---------------------------------------------------------------------

@pytest.mark.parametrize("path", PROCEDURES, ids=lambda p: p.stem)
def test_shipped_procedures_have_no_findings(path: Path) -> None:
    _, report = shipped(path)
    assert [f.message for f in report.findings] == []
    assert report.bounds_hit == []
    assert report.states_reached == report.states


def test_passport_renewal_window_is_explored_at_its_boundary() -> None:
    procedure, report = shipped(ROOT / "procedures" / "passport.yaml")
    assert relevance(procedure).fields[:3] == ("passport_type", "request_type",
                                               "old_passport_expiry")
    assert {"2026-09-15", "2026-09-16"} <= set(report.domains["old_passport_expiry"])
    assert "surname" not in report.domains  # no guard depends on it


def test_a_deadlock_planted_in_the_passport_replays_as_a_complete_scenario(
        tmp_path: Path) -> None:
    procedure = planted(ROOT / "procedures" / "passport.yaml",
                        "    from: in_production\n    to: ready_for_collection\n"
                        "    roles: [agent]\n",
                        "    from: in_production\n    to: ready_for_collection\n"
                        "    roles: [agent]\n    when: passport_type == 'ordinary'\n")
    report = explore(procedure)
    assert summary(report) == [("deadlock", "in_production", None)]
    finding = report.findings[0]
    fires = [s.get("fire") for s in finding.counterexample or ()]
    assert fires == [None, "submit", "refer_to_sgg", "sgg_approve", "schedule_enrolment",
                     "record_enrolment", "approve"]
    assert finding.counterexample is not None
    assert finding.counterexample[0]["start"] == {"passport_type": "service",
                                                  "request_type": "first"}
    result = play_finding(procedure, finding, tmp_path)
    assert result.fired[-1] == ("approve", "enrolled", "in_production")
    steps = finding.scenario(procedure.id)["steps"]
    assert {"pay": 30000, "as": "applicant:citizen-1"} in steps
    assert {"attach": "photos", "as": "applicant:citizen-1", "file": {"count": 2}} in steps


def test_a_dead_guard_planted_in_the_criminal_record_replays_as_a_complete_scenario(
        tmp_path: Path) -> None:
    procedure = planted(ROOT / "procedures" / "criminal_record.yaml",
                        "when: collection_mode == 'post'\n    input:",
                        "when: collection_mode == 'post' and collection_mode == 'in_person'\n"
                        "    input:")
    report = explore(procedure)
    assert summary(report) == [("unreachable-state", "posted", None),
                               ("dead-guard", "signed", "dispatch"),
                               ("deadlock", "signed", None)]
    dead_guard, deadlock = report.findings[1:]
    assert dead_guard.data["collection_mode"] == "in_person"  # the first run to reach "signed"
    assert deadlock.data == {"nationality": "TG", "collection_mode": "post"}
    for finding in (dead_guard, deadlock):
        result = play_finding(procedure, finding, tmp_path)
        assert result.fired[-1] == ("sign", "awaiting_signature", "signed")


# --- documents, fees, deadlines and separation --------------------------------------------------

TIMEOUT = HEADER + """
fields:
  - {id: amount, type: integer, label: {fr: Montant, en: Amount}, required: true, min: 0}
states:
  draft: {label: {fr: B, en: D}, initial: true, editable: true}
  review: {label: {fr: R, en: R}}
  checked: {label: {fr: V, en: C}}
  countersigned:
    label: {fr: C, en: C}
    deadlines:
      - {after: "10 days", trigger: lapse}
      - {after: "5 days", trigger: hurry}
  lapsed: {label: {fr: L, en: L}}
  done: {label: {fr: F, en: D}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: review, roles: [applicant]}
  - {trigger: check, from: review, to: checked, roles: [agent]}
  - trigger: countersign
    from: checked
    to: countersigned
    roles: [agent]
    separation: {not_actor_of: [check]}
  - {trigger: close, from: countersigned, to: done, roles: [agent], when: amount > 10}
  - {trigger: hurry, from: countersigned, to: done, roles: [system], when: amount > 5}
  - {trigger: lapse, from: countersigned, to: lapsed, roles: [system]}
  - {trigger: archive, from: lapsed, to: done, roles: [system]}
"""


def test_deadlines_are_waited_for_and_separation_gets_a_second_actor(tmp_path: Path) -> None:
    procedure = compiled(TIMEOUT)
    report = explore(procedure)
    # "archive" is for the system only and no deadline of "lapsed" fires it; with an amount
    # above 5, the earlier "hurry" deadline fires first and "lapse" never happens
    assert summary(report) == [("deadlock", "lapsed", None)]
    finding = report.findings[0]
    assert "archive (system only, and no deadline of this state)" in finding.message
    assert finding.counterexample == (
        {"start": {"amount": 0}, **START}, SUBMIT,
        {"fire": "check", "as": "agent:agent-1"},
        {"fire": "countersign", "as": "agent:agent-2"},
        {"wait": "10 days"},
    )
    assert report.domains["amount"] == [0, 4, 5, 6, 9, 10, 11]
    result = play_finding(procedure, finding, tmp_path)
    assert result.fired[-1] == ("lapse", "countersigned", "lapsed")


def test_an_earlier_deadline_that_fires_keeps_the_later_one_from_firing() -> None:
    procedure = compiled(TIMEOUT.replace("when: amount > 5", "when: amount >= 0"))
    report = explore(procedure)
    assert summary(report) == [("unreachable-state", "lapsed", None)]
    assert report.of_kind("deadlock") == []


SHADOWED = HEADER + """
fields:
  - {id: amount, type: integer, label: {fr: Montant, en: Amount}, required: true, min: 0}
states:
  draft: {label: {fr: B, en: D}, initial: true, editable: true}
  review: {label: {fr: R, en: R}}
  accepted: {label: {fr: A, en: A}, final: accepted}
  special: {label: {fr: S, en: S}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: review, roles: [applicant]}
  - {trigger: decide, from: review, to: accepted, roles: [agent], when: amount >= 0}
  - {trigger: decide, from: review, to: special, roles: [agent], when: amount > 10}
"""


def test_the_first_transition_whose_guard_holds_is_the_one_that_fires() -> None:
    report = explore(compiled(SHADOWED))
    # the second "decide" holds for amounts above 10, but the first one always wins
    assert summary(report) == [("unreachable-state", "special", None)]


FEES = HEADER + """
fields:
  - {id: urgent, type: boolean, label: {fr: Urgent, en: Urgent}, required: true}
documents:
  - {id: proof, label: {fr: Justificatif, en: Proof}, when: urgent}
fees:
  - {id: fee, label: {fr: Frais, en: Fee}, amount: 1000, due: submit}
  - {id: urgency_fee, label: {fr: Urgence, en: Urgency}, amount: 500, when: urgent, due: finish}
states:
  draft: {label: {fr: B, en: D}, initial: true, editable: true}
  review: {label: {fr: R, en: R}}
  done: {label: {fr: F, en: D}, final: accepted}
  reminded: {label: {fr: Rel, en: Rem}, final: expired}
transitions:
  - {trigger: submit, from: draft, to: review, roles: [applicant]}
  - {trigger: remind, from: review, to: reminded, roles: [agent], when: fees_paid < fees_due}
  - trigger: finish
    from: review
    to: done
    roles: [agent]
    when: fees_paid >= fees_due and (not urgent or documents.proof >= 1)
"""


def test_documents_and_fees_are_tried_satisfied_and_not() -> None:
    procedure = compiled(FEES)
    assert relevance(procedure).documents and relevance(procedure).fees
    report = explore(procedure)
    # "remind" holds only while unpaid, "finish" only when paid: neither guard is dead, and the
    # unpaid runs that cannot finish are not deadlocks (paying is up to the applicant)
    assert report.findings == []
    assert report.states_reached == report.states


def test_a_guard_on_documents_deadlocks_even_when_everything_is_supplied(
        tmp_path: Path) -> None:
    procedure = compiled(FEES.replace("documents.proof >= 1", "documents.proof >= 2"))
    report = explore(procedure)
    assert summary(report) == [("deadlock", "review", None)]
    finding = report.findings[0]
    assert finding.data == {"urgent": True}
    assert "every document attached, fees paid" in finding.note
    result = play_finding(procedure, finding, tmp_path)
    assert result.fired == [("submit", "draft", "review")]
    steps = finding.scenario(procedure.id)["steps"]
    assert steps[1:3] == [{"attach": "proof", "as": "applicant:citizen-1"},
                          {"pay": 1500, "as": "applicant:citizen-1"}]


# --- bounds, reports and scenarios --------------------------------------------------------------

def test_a_tiny_node_bound_is_reported() -> None:
    report = explore(fixture("deadlock"), max_nodes=3)
    assert report.nodes == 3
    assert report.bounds_hit == ["nodes: stopped at 3 explored nodes (max_nodes)"]
    assert summary(report) == [("unreachable-state", "review", None),
                               ("unreachable-state", "approved", None),
                               ("unreachable-state", "rejected", None)]
    assert report.findings[0].message == ('state "review" is never reached within the bounds, '
                                          "with any data")
    assert "bound hit: nodes: stopped at 3 explored nodes (max_nodes)" in report.lines()


def test_a_depth_bound_is_reported_and_unexplored_states_are_not_deadlocks() -> None:
    report = explore(fixture("deadlock"), max_depth=1)
    assert report.bounds_hit == [
        "depth: runs longer than 1 steps were not followed (max_depth)"]
    assert summary(report) == [("unreachable-state", "approved", None),
                               ("unreachable-state", "rejected", None)]


def test_too_many_combinations_are_sampled_deterministically() -> None:
    procedure = fixture("clean")
    report = explore(procedure, max_combinations=4)
    assert report.bounds_hit[0] == ("combinations: 50 combinations of the relevant fields, "
                                    "4 explored (max_combinations=4)")
    assert report.combinations == 4
    again = explore(procedure, max_combinations=4)
    assert (again.nodes, again.findings) == (report.nodes, report.findings)


def test_scenarios_are_complete_and_safe_to_write(tmp_path: Path) -> None:
    report = explore(fixture("dead_guard"))
    unreachable, fast_track, _ = report.findings
    scenario = fast_track.scenario("explore_dead_guard")
    assert list(scenario) == ["procedure", "name", "clock", "steps"]
    assert scenario["name"] == 'dead guard: "fast_track" never fires from "review"'
    assert scenario["clock"] == CLOCK
    assert "&id" not in yaml.safe_dump(scenario)  # no anchors: steps share no objects
    text = fast_track.scenario_text("explore_dead_guard")
    assert text.startswith("# dead-guard: the guard of \"fast_track\"")
    assert yaml.safe_load(text) == scenario
    assert "exploration assumes the required fields" in fast_track.note
    assert fast_track.slug == "dead-guard-fast_track"
    with pytest.raises(ValueError, match="no counterexample"):
        unreachable.scenario("explore_dead_guard")
    assert unreachable.slug == "unreachable-state-fast_tracked"


def test_report_lines_list_each_finding_with_its_steps() -> None:
    report = explore(fixture("deadlock"))
    lines = report.lines()
    assert lines[0] == ("explore explore_deadlock: 4/4 state(s) reached, 17 node(s), 7 starting "
                        "data combination(s); relevant fields: amount; today = 2026-06-15")
    assert lines[1:] == [
        "",
        'deadlock: state "review" is not final, yet nothing can leave it with amount=500: '
        "approve (when: amount > 1000); reject (when: amount < 500) do not hold",
        "  counterexample:",
        "    1. start as applicant:citizen-1 with amount=500",
        "    2. fire submit as applicant:citizen-1",
        f"  note: {report.findings[0].note}",
    ]


# --- the day explored: `--today` ----------------------------------------------------------------

BORN_SINCE_2000 = HEADER + """
start: {roles: [applicant]}
fields:
  - {id: birth_date, type: date, required: true, min: "2000-01-01", max: today,
     label: {fr: Naissance, en: Birth}}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  review: {label: {fr: Examen, en: Review}}
  senior: {label: {fr: Senior, en: Senior}}
  done: {label: {fr: Fait, en: Done}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: review, roles: [applicant], requires: {fields: all}}
  - {trigger: senior_track, from: review, to: senior, roles: [agent],
     when: "age(birth_date) >= 30"}
  - {trigger: approve, from: [review, senior], to: done, roles: [agent]}
"""


def explore_cli(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from cli import main

    path = tmp_path / "inline.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["explore", str(path), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_explore_decides_on_the_day_given_with_today(tmp_path: Path) -> None:
    # born in 2000 or later: nobody is 30 before 2030, so the guard only holds from then on
    code, output = explore_cli(tmp_path, BORN_SINCE_2000, "--today", "2026-06-15")
    assert code == 1
    assert "today = 2026-06-15" in output.splitlines()[0]
    assert 'dead-guard: the guard of "senior_track" (review -> senior) never holds' in output
    assert 'unreachable-state: state "senior"' in output
    code, output = explore_cli(tmp_path, BORN_SINCE_2000, "--today", "2031-06-15")
    assert code == 0, output
    assert output.splitlines() == [output.splitlines()[0], "no findings"]
    assert "today = 2031-06-15" in output.splitlines()[0]


def test_explore_json_names_the_day_and_the_findings(tmp_path: Path) -> None:
    code, output = explore_cli(tmp_path, BORN_SINCE_2000, "--today", "2026-06-15", "--json")
    assert code == 1
    report = json.loads(output)
    assert report["today"] == "2026-06-15"
    assert [(f["kind"], f["state"], f["trigger"]) for f in report["findings"]] == [
        ("unreachable-state", "senior", None), ("dead-guard", "review", "senior_track")]
    assert report["findings"][1]["counterexample"][0]["as"] == "applicant:citizen-1"
    code, output = explore_cli(tmp_path, BORN_SINCE_2000, "--today", "2031-06-15", "--json")
    assert code == 0 and json.loads(output)["findings"] == []
    assert json.loads(output)["today"] == "2031-06-15"


def test_explore_runs_on_the_real_date_by_default(tmp_path: Path) -> None:
    from engine.clock import utc_now

    before = utc_now().date()
    code, output = explore_cli(tmp_path, BORN_SINCE_2000, "--json")
    after = utc_now().date()
    assert json.loads(output)["today"] in {before.isoformat(), after.isoformat()}
    code, output = explore_cli(tmp_path, BORN_SINCE_2000, "--today", "15/06/2026")
    assert code == 2 and "Invalid value for '--today'" in output


# --- guards reading step inputs -----------------------------------------------------------------

def quote_procedure(inputs: str, close: str, escalate: str) -> Procedure:
    """A visit, then a staff step entering a quote (`inputs`), then guarded ways out."""
    return compiled(HEADER + f"""
start: {{roles: [applicant]}}
fields:
  - {{id: surname, type: string, required: true, label: {{fr: Nom, en: Surname}}}}
states:
  draft: {{label: {{fr: Brouillon, en: Draft}}, initial: true}}
  visited: {{label: {{fr: Visité, en: Visited}}}}
  quoted: {{label: {{fr: Devis, en: Quoted}}}}
  committee: {{label: {{fr: Commission, en: Committee}}}}
  done: {{label: {{fr: Fait, en: Done}}, final: accepted}}
transitions:
  - {{trigger: submit, from: draft, to: visited, roles: [applicant], requires: {{fields: all}}}}
  - trigger: enter_quote
    from: visited
    to: quoted
    roles: [agent]
    input: {inputs}
  - {{trigger: close, from: quoted, to: done, roles: [agent], when: "{close}"}}
  - {{trigger: escalate, from: quoted, to: committee, roles: [agent], when: "{escalate}"}}
  - {{trigger: approve, from: committee, to: done, roles: [agent]}}
""")


AMOUNT = "{id: quote_amount, type: integer, required: true, label: {fr: Montant, en: Amount}}"
PERMIT = ('{id: permit_number, type: string, required: true, pattern: "^PC-[0-9]{4}$", '
          "label: {fr: Permis, en: Permit}}")


def test_a_guard_on_a_staff_input_is_seen_holding_and_not(tmp_path: Path) -> None:
    procedure = quote_procedure(f"[{AMOUNT}]", "quote_amount <= 100000",
                                "quote_amount > 100000")
    report = explore(procedure)
    assert report.findings == []
    assert report.domains["quote_amount"] == [0, 99999, 100000, 100001]


def test_a_required_input_with_a_pattern_gets_a_value_that_matches_it(tmp_path: Path) -> None:
    procedure = quote_procedure(f"[{AMOUNT}, {PERMIT}]", "quote_amount <= 100000",
                                "quote_amount > 100000")
    report = explore(procedure, trace=True)
    assert summary(report) == []
    assert report.trace is not None
    fired = [a for a in report.trace.attempts if a.trigger == "enter_quote"
             and a.outcome == "fired"]
    assert fired and all(re.fullmatch(r"PC-[0-9]{4}", a.steps[-1]["data"]["permit_number"])
                         for a in fired)


def test_a_guard_comparing_a_patterned_input_with_a_constant_is_seen_both_ways() -> None:
    procedure = quote_procedure(f"[{PERMIT}]", "permit_number == 'PC-0001'",
                                "permit_number != 'PC-0001'")
    report = explore(procedure)
    assert summary(report) == []
    assert "PC-0001" in report.domains["permit_number"]
    assert len(report.domains["permit_number"]) == 2


def test_a_guard_comparing_two_inputs_is_seen_holding_and_not() -> None:
    budget = "{id: budget, type: integer, required: true, min: 1000, label: {fr: B, en: B}}"
    procedure = quote_procedure(f"[{AMOUNT}, {budget}]", "quote_amount <= budget",
                                "quote_amount > budget")
    report = explore(procedure)
    assert summary(report) == []


def test_a_guard_comparing_an_input_with_a_form_field_is_seen_holding_and_not() -> None:
    text = HEADER + """
start: {roles: [applicant]}
fields:
  - {id: declared_cost, type: number, required: true, min: 0, label: {fr: Coût, en: Cost}}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  visited: {label: {fr: Visité, en: Visited}}
  audit: {label: {fr: Audit, en: Audit}}
  done: {label: {fr: Fait, en: Done}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: visited, roles: [applicant], requires: {fields: all}}
  - trigger: assess
    from: visited
    to: audit
    roles: [agent]
    when: "assessed_cost > declared_cost * 1.5"
    input: [{id: assessed_cost, type: number, required: true, label: {fr: Évalué, en: Assessed}}]
  - trigger: assess
    from: visited
    to: done
    roles: [agent]
    when: "assessed_cost <= declared_cost * 1.5"
    input: [{id: assessed_cost, type: number, required: true, label: {fr: Évalué, en: Assessed}}]
  - {trigger: close, from: audit, to: done, roles: [agent]}
"""
    report = explore(compiled(text))
    assert summary(report) == []
