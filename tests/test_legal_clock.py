"""The legal clock (issue 13, point 3): a deadline with `pause_in` stops while the case is in
one of those states and, back in its state, resumes with the time it had left; anywhere else
the stopped clock is dropped and the next entry starts the full time again. Through the
Engine on each database, and through a shipped procedure's scenario."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import PROCEDURES, FakeClock, MakeEngine
from test_migration import create_old_schema

from engine import Engine, compile_source
from engine.analysis.scenarios import Runner, load_scenario
from engine.values import SYSTEM, Actor

CLOCKED = """\
id: clocked
version: "1"
reference_prefix: CLK
title: {fr: Démarche à délai, en: Procedure with a deadline}
authority: {ministry: {fr: Ministère, en: Ministry}}
calendar: TG
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Agent}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
fields:
  - {id: name, type: string, label: {fr: Nom, en: Name}, required: true}
states:
  review:
    label: {fr: Instruction, en: Review}
    initial: true
    deadlines:
      - {after: "10 business days", trigger: deem_accepted, pause_in: [info_requested],
         remind_before: "2 days"}
  info_requested: {label: {fr: Compléments, en: Information requested}}
  other: {label: {fr: Autre, en: Other}}
  accepted: {label: {fr: Acceptée, en: Accepted}, final: accepted}
  rejected: {label: {fr: Rejetée, en: Rejected}, final: rejected}
transitions:
  - {trigger: deem_accepted, from: review, to: accepted, roles: [system],
     requires: {fields: [name]}}
  - {trigger: ask, from: review, to: info_requested, roles: [agent]}
  - {trigger: answer, from: info_requested, to: review, roles: [applicant]}
  - {trigger: detour, from: info_requested, to: other, roles: [agent]}
  - {trigger: back, from: other, to: review, roles: [agent]}
  - {trigger: reject, from: [review, info_requested, other], to: rejected, roles: [agent]}
"""
APPLICANT = Actor("citizen-1", ["applicant"])
AGENT = Actor("agent-1", ["agent"])
DAY = dt.timedelta(days=1)


def at(month: int, day: int) -> dt.datetime:
    return dt.datetime(2026, month, day, 9, 0)


@pytest.fixture
def clocked(tmp_path: Path) -> Path:
    path = tmp_path / "clocked.yaml"
    path.write_text(CLOCKED, encoding="utf-8")
    return path


def deadline_due(engine: Engine, reference: str) -> list[dt.datetime]:
    return [t["due_at"] for t in engine.timers(reference) if t["kind"] == "deadline"]


def open_case(make_engine: MakeEngine, url: str, clocked: Path, clock: FakeClock
              ) -> tuple[Engine, str]:
    clock.now = at(3, 2)  # Monday 2 March 2026
    engine = make_engine(url, procedures=[clocked])
    reference = engine.start("clocked", APPLICANT, {"name": "Kossi"}).reference
    assert deadline_due(engine, reference) == [at(3, 16)]  # 10 business days
    return engine, reference


def test_the_clock_stops_and_resumes_with_the_time_left(
        make_engine: MakeEngine, database_url: str, clocked: Path, clock: FakeClock) -> None:
    engine, reference = open_case(make_engine, database_url, clocked, clock)
    clock.now = at(3, 5)  # Thursday: 3 business days used, 7 left
    engine.fire(reference, "ask", AGENT)
    assert engine.timers(reference) == []  # nothing runs while the applicant answers
    clock.now = at(3, 25)  # 20 days later (Eid al-Fitr, 20 March, fell meanwhile)
    assert engine.tick() == []
    engine.fire(reference, "answer", APPLICANT)
    # 7 business days from Wednesday 25 March: Friday 3 April (restarted: 9 April, Easter
    # Monday skipped)
    assert deadline_due(engine, reference) == [at(4, 3)]
    reminders = [t["due_at"] for t in engine.timers(reference) if t["kind"] == "reminder"]
    assert reminders == [at(4, 1)]
    clock.now = at(4, 3) - dt.timedelta(minutes=1)
    assert [r for _, _, r in engine.tick() if r == "fired"] == []
    clock.now = at(4, 3)
    assert [(t, r) for _, t, r in engine.tick()] == [("deem_accepted", "fired")]
    assert engine.case(reference, SYSTEM).outcome == "accepted"


def test_pauses_add_up(make_engine: MakeEngine, database_url: str, clocked: Path,
                       clock: FakeClock) -> None:
    engine, reference = open_case(make_engine, database_url, clocked, clock)
    for used, answered in ((at(3, 3), at(3, 10)), (at(3, 11), at(3, 30))):
        clock.now = used
        engine.fire(reference, "ask", AGENT)
        clock.now = answered
        engine.fire(reference, "answer", APPLICANT)
    # 1 business day used (2-3 March), then 1 more (10-11 March): 8 left from Monday 30 March,
    # Easter Monday (6 April) skipped: Friday 10 April
    assert deadline_due(engine, reference) == [at(4, 10)]


def test_a_stay_elsewhere_drops_the_stopped_clock(
        make_engine: MakeEngine, database_url: str, clocked: Path, clock: FakeClock) -> None:
    engine, reference = open_case(make_engine, database_url, clocked, clock)
    clock.now = at(3, 5)
    engine.fire(reference, "ask", AGENT)
    engine.fire(reference, "detour", AGENT)  # `other` is not in pause_in
    engine.fire(reference, "back", AGENT)
    # the full 10 business days again from Thursday 5 March: Thursday 19 March
    assert deadline_due(engine, reference) == [at(3, 19)]


def test_a_case_closed_while_paused_keeps_no_timer(
        make_engine: MakeEngine, database_url: str, clocked: Path, clock: FakeClock) -> None:
    engine, reference = open_case(make_engine, database_url, clocked, clock)
    engine.fire(reference, "ask", AGENT)
    engine.fire(reference, "reject", AGENT)
    case_id = engine._row(reference)["id"]
    assert engine._store.clock_timers(case_id) == []


def test_an_old_database_gets_the_remaining_column(
        make_engine: MakeEngine, database_url: str, clocked: Path, clock: FakeClock) -> None:
    create_old_schema(database_url)  # timers without `remaining` (issue 9)
    test_the_clock_stops_and_resumes_with_the_time_left(make_engine, database_url, clocked,
                                                         clock)


# --- the shipped association: the same clock in its scenario ----------------------------------

SCENARIO = (PROCEDURES / "tests" / "association"
            / "review_clock_paused_while_information_is_requested.yaml")


def play(association_yaml: str) -> list[str]:
    """The failures of the pause scenario on this text of association.yaml."""
    procedure, diagnostics = compile_source(association_yaml.encode(), "association.yaml")
    assert procedure is not None, [str(d) for d in diagnostics]
    scenario, problems = load_scenario(SCENARIO, {"association": procedure})
    assert scenario is not None, [str(d) for d in problems]
    return Runner([procedure]).run(scenario).failures


def test_the_association_scenario_sees_the_clock_pause() -> None:
    shipped = (PROCEDURES / "association.yaml").read_text(encoding="utf-8")
    assert play(shipped) == []
    restarting = shipped.replace("        pause_in: [info_requested]\n", "")
    assert restarting != shipped
    assert any("under_review" in failure for failure in play(restarting))
    weekends_only = shipped.replace("calendar: TG\n", "")
    assert any("awaiting_deposit" in failure for failure in play(weekends_only))
