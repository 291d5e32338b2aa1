"""engine/loadsim.py: the seeded load simulation (reproducibility, conservation, queues, deadlines,
statistics, CSV and SVG output)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine import Procedure, compile_source, load_procedure
from engine.analysis.loadsim import (
    DAY,
    LoadParameters,
    LoadReport,
    routes,
    simulate_load,
    sufficient_staff,
)
from engine.model import Simulation
from engine.workflow import Workflow

PROCEDURES = Path(__file__).resolve().parent.parent / "procedures"
ARCHITECT = Path(__file__).resolve().parent / "fixtures" / "explore" / "architect.yaml"
SVG = "{http://www.w3.org/2000/svg}"

MINI = """\
id: mini
version: "1"
title: {fr: Mini, en: Mini}
authority:
  ministry: {fr: Ministère, en: Ministry}
processing_time: "2 days"
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Agent}}
  system: {label: {fr: Système, en: System}}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  waiting:
    label: {fr: En attente, en: Waiting}
    deadlines:
      - {after: "DEADLINE", trigger: expire}
  submitted:
    label: {fr: Soumise, en: Submitted}
    deadlines:
      - {after: "STAFF_DEADLINE", trigger: expire_submitted}
  done: {label: {fr: Faite, en: Done}, final: accepted}
  expired: {label: {fr: Expirée, en: Expired}, final: expired}
transitions:
  - {trigger: submit, from: draft, to: waiting, roles: [applicant]}
  - {trigger: confirm, from: waiting, to: submitted, roles: [applicant]}
  - {trigger: expire, from: waiting, to: expired, roles: [system]}
  - {trigger: decide, from: submitted, to: done, roles: [agent]}
  - {trigger: expire_submitted, from: submitted, to: expired, roles: [system]}
simulation:
  arrivals_per_day: 40
  staff: {agent: 2}
  handling: {decide: "10 minutes"}
  delays: {draft: "1 hour", waiting: "DELAY"}
"""


def mini(tmp_path: Path, deadline: str = "30 days", delay: str = "1 hour",
         staff_deadline: str = "60 days") -> Procedure:
    text = (MINI.replace("STAFF_DEADLINE", staff_deadline).replace("DEADLINE", deadline)
            .replace("DELAY", delay))
    (tmp_path / "x.yaml").write_text(text, encoding="utf-8")
    procedure, diagnostics = compile_source(text, "x.yaml")
    assert procedure is not None, diagnostics
    return procedure


@pytest.fixture(scope="module")
def criminal_record() -> Procedure:
    """The shipped criminal record procedure without its `simulation:` figures (defaults)."""
    shipped = load_procedure(PROCEDURES / "criminal_record.yaml")
    return dataclasses.replace(shipped, simulation=Simulation())


def test_the_shipped_simulation_figures_are_used() -> None:
    shipped = load_procedure(PROCEDURES / "criminal_record.yaml")
    params = LoadParameters.from_procedure(shipped)
    assert params.arrivals_per_day == 640
    assert params.staff == {"clerk": 64, "magistrate": 6}
    assert params.handling["verify"] == 600
    assert params.weights["dispatch"] == 0.15
    assert not any(name.startswith(("staff", "handling", "arrivals")) for name in params.defaults)


@pytest.fixture(scope="module")
def small_run(criminal_record: Procedure) -> LoadReport:
    params = LoadParameters.from_procedure(criminal_record, days=30, arrivals_per_day=60,
                                           seed=7, delays={"ready_for_collection": "2 days"})
    return simulate_load(criminal_record, params)


# --- reproducibility and conservation ------------------------------------------------------------

def test_same_seed_gives_the_same_report(criminal_record: Procedure,
                                         small_run: LoadReport) -> None:
    again = simulate_load(criminal_record, small_run.parameters)
    assert again == small_run
    assert again.to_csv() == small_run.to_csv()
    assert again.to_svg() == small_run.to_svg()


def test_another_seed_gives_another_report(criminal_record: Procedure,
                                           small_run: LoadReport) -> None:
    other = simulate_load(criminal_record, dataclasses.replace(small_run.parameters, seed=8))
    assert other.arrived != small_run.arrived or other.backlog != small_run.backlog
    assert other.p50 != small_run.p50


def test_every_case_is_finished_or_in_the_backlog(small_run: LoadReport) -> None:
    r = small_run
    assert r.arrived > 1000  # 60 a day for 30 days, give or take
    assert r.finished + r.in_progress == r.arrived
    assert sum(r.outcomes.values()) == r.finished == sum(r.final_states.values())
    assert sum(r.arrivals_daily) == r.arrived
    assert sum(r.finished_daily) == r.finished
    assert r.throughput_per_day == r.finished / 30
    assert r.outcomes["accepted"] == r.final_states["collected"] + r.final_states["posted"]


def test_percentiles_are_ordered(small_run: LoadReport) -> None:
    r = small_run
    assert r.p50 is not None and r.p90 is not None
    assert r.admin_p50 is not None and r.admin_p90 is not None
    assert 0 < r.p50 <= r.p90
    assert 0 < r.admin_p50 <= r.admin_p90
    assert r.admin_p90 <= r.p90  # waiting for the applicant is taken out, never added
    assert r.past_target_share is not None and r.admin_past_target_share is not None
    assert 0 <= r.admin_past_target_share <= r.past_target_share <= 1
    assert r.decided == r.outcomes["accepted"] + r.outcomes["rejected"]


def test_share_past_the_target_processing_time(tmp_path: Path) -> None:
    procedure = mini(tmp_path, delay="3 days")  # processing_time: 2 days
    params = LoadParameters.from_procedure(procedure, days=120, staff={"agent": 10}, seed=11)
    r = simulate_load(procedure, params)
    assert r.target == "2 days"
    # P(3-day wait > 2 days) = 0.51, more with the nights and weekends before the agent acts
    assert 0.55 < r.past_target_share < 0.75
    assert r.admin_past_target_share is not None
    assert 0.01 < r.admin_past_target_share < 0.2  # waits from Friday afternoon to Monday


# --- queues, working hours, deadlines ------------------------------------------------------------

def test_without_staff_the_backlog_grows_with_arrivals(tmp_path: Path) -> None:
    procedure = mini(tmp_path)
    params = LoadParameters.from_procedure(procedure, days=28, staff={"agent": 0}, seed=3)
    r = simulate_load(procedure, params)
    submitted = [counts["submitted"] for _, counts in r.backlog]
    arrived = [sum(r.arrivals_daily[:day]) for day in range(1, 29)]
    assert r.outcomes["accepted"] == 0
    assert r.utilisation == {"agent": 0.0}
    assert submitted[13] / submitted[6] == pytest.approx(2, rel=0.15)
    assert submitted[27] / submitted[13] == pytest.approx(2, rel=0.1)
    for day in (7, 14, 28):  # all but the few cases still in draft or waiting
        assert arrived[day - 1] - 10 <= submitted[day - 1] <= arrived[day - 1]


def test_staff_only_work_on_working_days(tmp_path: Path) -> None:
    procedure = mini(tmp_path)
    r = simulate_load(procedure, LoadParameters.from_procedure(procedure, days=28, seed=4))
    weekend = [r.finished_daily[day] for day in range(28) if day % 7 >= 5]  # day 0 is a Monday
    weekdays = [r.finished_daily[day] for day in range(28) if day % 7 < 5]
    assert weekend == [0] * 8
    assert min(weekdays[1:]) > 0
    assert 0 < r.utilisation["agent"] < 1


def test_a_deadline_shorter_than_the_applicant_delay_forces_expiry(tmp_path: Path) -> None:
    procedure = mini(tmp_path, deadline="1 day", delay="10 days")
    r = simulate_load(procedure, LoadParameters.from_procedure(procedure, days=40, seed=5))
    assert r.forced == {"expired": r.outcomes["expired"]}
    assert r.deadlines_fired == {"expire": r.outcomes["expired"], "expire_submitted": 0}
    assert r.outcomes["expired"] > 0.85 * r.finished  # P(delay > 1 day) = e^-0.1 = 0.905
    assert r.outcomes["accepted"] > 0


def test_a_long_deadline_forces_nothing(tmp_path: Path) -> None:
    procedure = mini(tmp_path, deadline="30 days", delay="1 hour")
    r = simulate_load(procedure, LoadParameters.from_procedure(procedure, days=45, seed=5))
    assert r.forced == {}
    assert r.deadlines_fired == {"expire": 0, "expire_submitted": 0}
    assert r.outcomes["expired"] == 0


def test_a_deadline_does_not_take_a_case_out_of_a_staff_members_hands(tmp_path: Path) -> None:
    procedure = mini(tmp_path, staff_deadline="1 day")
    params = LoadParameters.from_procedure(procedure, days=30, staff={"agent": 3},
                                           handling={"decide": "4 hours"}, seed=6)
    r = simulate_load(procedure, params)
    assert r.deadlines_fired["expire_submitted"] == r.outcomes["expired"] > 100
    assert r.outcomes["accepted"] > 100
    assert sum(r.finished_daily) == r.finished == r.arrived - r.in_progress


TWO_DEADLINES = """\
id: two_deadlines
version: "1"
title: {fr: Deux délais, en: Two deadlines}
authority:
  ministry: {fr: Ministère, en: Ministry}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  system: {label: {fr: Système, en: System}}
states:
  waiting:
    label: {fr: En attente, en: Waiting}
    initial: true
    deadlines:
      - {after: "5 business days", trigger: lapse}
      - {after: "6 days", trigger: expire}
  done: {label: {fr: Faite, en: Done}, final: accepted}
  lapsed: {label: {fr: Caduque, en: Lapsed}, final: cancelled}
  expired: {label: {fr: Expirée, en: Expired}, final: expired}
transitions:
  - {trigger: confirm, from: waiting, to: done, roles: [applicant]}
  - {trigger: lapse, from: waiting, to: lapsed, roles: [system]}
  - {trigger: expire, from: waiting, to: expired, roles: [system]}
simulation:
  delays: {waiting: "100 years"}
"""


def test_deadlines_fall_where_the_workflow_says() -> None:
    """5 business days come before 6 days only for a stay entered at the weekend (on a
    Saturday both fall on Friday: the first declared fires); Workflow.timings decides."""
    procedure, diagnostics = compile_source(TWO_DEADLINES, "two.yaml")
    assert procedure is not None, diagnostics
    monday = dt.datetime(2024, 1, 1)
    first = [Workflow(procedure).timings("waiting", monday + dt.timedelta(days=d))[0]
             for d in range(7)]
    assert [t.deadline.trigger for t in first] == ["expire"] * 5 + ["lapse"] * 2
    r = simulate_load(procedure, LoadParameters.from_procedure(
        procedure, days=140, arrivals_per_day=50, seed=12))
    fired = r.deadlines_fired
    assert r.forced == {"cancelled": fired["lapse"], "expired": fired["expire"]}
    assert fired["lapse"] + fired["expire"] > 0.99 * r.finished > 6500
    assert fired["lapse"] / r.finished == pytest.approx(2 / 7, abs=0.02)


def test_waiting_for_the_applicant_is_not_administration_time(
        criminal_record: Procedure) -> None:
    params = LoadParameters.from_procedure(
        criminal_record, days=60, arrivals_per_day=20, seed=10, weights={"dispatch": 0},
        delays={"draft": "1 hour", "info_requested": "1 day", "ready_for_collection": "15 days"})
    r = simulate_load(criminal_record, params)
    assert r.p50 is not None and r.admin_p90 is not None
    assert r.p50 > 7 * DAY  # most cases are collected, after 15 days on average
    assert r.admin_p90 < 4 * DAY


def test_finished_cases_stay_finished(criminal_record: Procedure) -> None:
    # hand_over is a clerk's: the 90-day deadline is armed for every case ready for collection
    params = LoadParameters.from_procedure(criminal_record, days=120, arrivals_per_day=8,
                                           delays={"ready_for_collection": "1 day"}, seed=9)
    r = simulate_load(criminal_record, params)
    assert r.final_states["collected"] > 300
    assert r.deadlines_fired["expire_uncollected"] == 0
    assert r.final_states["expired"] == r.forced.get("expired", 0) < 5


# --- who acts: declared, not named (issue 9) ------------------------------------------------------

def test_the_steps_of_a_start_role_not_named_applicant_are_applicant_delays() -> None:
    procedure = load_procedure(ARCHITECT)  # `start: {roles: [architect]}`, no "applicant"
    table = routes(procedure, {})
    assert {(s.trigger, s.actor, s.party) for s in table["draft"]} == {
        ("submit", "architect", True), ("withdraw", "architect", True)}
    assert {(s.trigger, s.actor, s.party) for s in table["review"]} == {
        ("request_corrections", "instructor", False), ("approve", "instructor", False),
        ("refuse", "instructor", False), ("withdraw", "architect", True)}
    params = LoadParameters.from_procedure(procedure, days=60, arrivals_per_day=20, seed=3,
                                           delays={"draft": "3 days", "corrections": "5 days"})
    assert params.staff == sufficient_staff(procedure, params) == {"instructor": 2}
    assert set(params.handling) == {"request_corrections", "approve", "refuse"}
    assert params.defaults == ("handling.request_corrections", "handling.approve",
                               "handling.refuse", "delays.review", "staff.instructor")
    r = simulate_load(procedure, params)
    assert set(r.utilisation) == {"instructor"}
    assert r.p50 is not None and r.admin_p50 is not None
    assert r.p50 > 2 * DAY  # the architect takes 3 days on average to submit...
    assert r.admin_p50 < DAY  # ...which is not the administration's time


def test_a_role_named_applicant_that_start_does_not_name_is_staff() -> None:
    text = ARCHITECT.read_text(encoding="utf-8").replace("instructor", "applicant")
    procedure, diagnostics = compile_source(text, "architect.yaml")
    assert procedure is not None, diagnostics
    params = LoadParameters.from_procedure(procedure, days=10)
    assert set(params.staff) == {"applicant"}  # a queue of people, not a delay
    assert "staff.applicant" in params.defaults
    assert set(params.handling) == {"request_corrections", "approve", "refuse"}
    assert {"delays.draft", "delays.corrections"} <= set(params.defaults)


# --- parameters and routing ----------------------------------------------------------------------

def test_command_line_overrides_win_over_the_procedure(tmp_path: Path) -> None:
    procedure = mini(tmp_path)
    params = LoadParameters.from_procedure(
        procedure, staff={"agent": 5}, handling={"decide": "20 minutes"},
        delays={"waiting": 7200}, arrivals_per_day=12.5, days=3)
    assert params.staff == {"agent": 5}
    assert params.handling == {"decide": 1200.0}
    assert params.delays == {"draft": 3600.0, "waiting": 7200.0}
    assert params.arrivals_per_day == 12.5
    assert params.days == 3
    assert params.defaults == ()


def test_defaults_are_filled_and_named(criminal_record: Procedure) -> None:
    params = LoadParameters.from_procedure(criminal_record)
    assert params.arrivals_per_day == 100
    assert params.days == 365
    assert params.handling["verify"] == 15 * 60
    assert params.delays["draft"] == DAY
    assert "ready_for_collection" not in params.delays  # the clerk hands over at once
    assert params.staff == sufficient_staff(criminal_record, params)
    assert {"arrivals_per_day", "staff.clerk", "handling.verify", "delays.draft"} <= set(
        params.defaults)


def test_default_staff_keeps_utilisation_under_80_percent(criminal_record: Procedure) -> None:
    params = LoadParameters.from_procedure(criminal_record, days=56, arrivals_per_day=200,
                                           seed=2)
    r = simulate_load(criminal_record, params)
    assert set(r.utilisation) == {"clerk", "magistrate"}
    assert all(0.5 < u < 0.85 for u in r.utilisation.values()), r.utilisation
    assert r.in_progress < 5 * 200  # no runaway queue


def test_unknown_names_and_bad_values_are_refused(criminal_record: Procedure) -> None:
    with pytest.raises(ValueError) as trigger:
        LoadParameters.from_procedure(criminal_record, handling={"verfy": "5 minutes"})
    with pytest.raises(ValueError) as duration:
        LoadParameters.from_procedure(criminal_record, handling={"verify": "5 mins"})
    with pytest.raises(ValueError) as days:
        LoadParameters(days=0, staff={"clerk": -1})
    assert 'unknown trigger "verfy"' in str(trigger.value)
    assert 'invalid duration "5 mins"' in str(duration.value)
    assert str(days.value) == "days must be at least 1; staff.clerk must not be negative"


def test_default_weights_favour_the_main_path(criminal_record: Procedure) -> None:
    table = {state: {(s.trigger, s.target): s.probability for s in steps}
             for state, steps in routes(criminal_record, {}).items()}
    under = table["under_verification"]
    assert under[("verify", "awaiting_signature")] == pytest.approx(1 / 1.14)
    assert under[("request_information", "info_requested")] == pytest.approx(0.1 / 1.14)
    assert under[("reject", "rejected")] == pytest.approx(0.02 / 1.14)
    assert table["info_requested"] == {("provide_information", "under_verification"):
                                       pytest.approx(1 / 1.02),
                                       ("withdraw", "withdrawn"): pytest.approx(0.02 / 1.02)}
    assert table["signed"] == {("make_available", "ready_for_collection"): 0.5,
                               ("dispatch", "posted"): 0.5}
    assert "expire_uncollected" not in {t for t, _ in table["ready_for_collection"]}
    declared = routes(criminal_record, {"withdraw": 0, "request_information": 1})
    assert [(s.trigger, s.probability) for s in declared["info_requested"]] == [
        ("provide_information", 1.0), ("withdraw", 0.0)]
    assert sum(s.probability for s in declared["under_verification"]) == pytest.approx(1)


def test_guarded_alternatives_share_their_trigger_weight() -> None:
    association = load_procedure(PROCEDURES / "association.yaml")
    steps = routes(association, {"sign_receipt": 4, "reject": 1, "withdraw": 0})["deposited"]
    assert [(s.trigger, s.target, s.weight) for s in steps] == [
        ("sign_receipt", "registered", 2.0), ("sign_receipt", "authorisation_review", 2.0),
        ("reject", "rejected", 1.0), ("withdraw", "withdrawn", 0.0)]
    assert [s.probability for s in steps] == [0.4, 0.4, 0.2, 0.0]


# --- progress, CSV, SVG, text --------------------------------------------------------------------

def test_progress_is_reported_at_most_about_100_times(tmp_path: Path) -> None:
    procedure = mini(tmp_path)
    seen: list[float] = []
    params = LoadParameters.from_procedure(procedure, days=250, arrivals_per_day=2)
    simulate_load(procedure, params, progress=seen.append)
    assert 90 <= len(seen) <= 101
    assert seen == sorted(seen)
    assert seen[-1] == 1.0


def test_csv_has_a_header_and_one_row_a_day(small_run: LoadReport) -> None:
    rows = list(csv.reader(io.StringIO(small_run.to_csv())))
    assert rows[0] == ["day", *small_run.states, "total", "arrived", "finished"]
    assert small_run.states == ("draft", "submitted", "under_verification", "info_requested",
                                "awaiting_signature", "signed", "ready_for_collection")
    assert len(rows) == 1 + 30
    assert [row[0] for row in rows[1:]] == [str(day) for day in range(1, 31)]
    last = [int(v) for v in rows[-1][1:]]
    assert sum(last[:7]) == last[7] == small_run.in_progress


def test_svg_is_xml_with_one_line_per_state(small_run: LoadReport) -> None:
    root = ET.fromstring(small_run.to_svg())
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == len(small_run.states)
    assert [line.findtext(f"{SVG}title") for line in lines] == list(small_run.states)
    assert all(len(line.get("points", "").split()) == 31 for line in lines)  # day 0 to day 30
    legend = {t.text for t in root.iter(f"{SVG}text")}
    assert set(small_run.states) <= legend
    assert {"day", "cases in the state (end of day)"} <= legend


def test_svg_escapes_names(small_run: LoadReport) -> None:
    rename = {"draft": 'a<b & "c"'}
    report = dataclasses.replace(
        small_run, procedure_id="p&q",
        states=tuple(rename.get(s, s) for s in small_run.states),
        backlog=tuple((day, {rename.get(s, s): n for s, n in counts.items()})
                      for day, counts in small_run.backlog))
    root = ET.fromstring(report.to_svg())
    assert root.findall(f"{SVG}polyline")[0].findtext(f"{SVG}title") == 'a<b & "c"'
    assert "p&q" in (root.findtext(f"{SVG}title") or "")


def test_summary_names_the_key_figures(small_run: LoadReport) -> None:
    text = "\n".join(small_run.summary_lines())
    assert text.startswith("Load simulation of criminal_record over 30 days (seed 7)")
    assert f"{small_run.arrived:,} arrived" in text
    assert "Past the target processing time (72 hours)" in text
    assert "p50" in text and "p90" in text
    assert "Staff utilisation: clerk" in text
    assert "Defaults used: arrivals_per_day" not in text  # given on the command line
    assert "staff (clerk, magistrate)" in text


# --- lead times ----------------------------------------------------------------------------------

def test_a_lead_time_lengthens_cases_but_not_the_staff_s_work(tmp_path: Path) -> None:
    plain = mini(tmp_path)
    text = MINI.replace("STAFF_DEADLINE", "60 days").replace("DEADLINE", "30 days").replace(
        "DELAY", "1 hour") + '  lead_times: {decide: "15 days"}\n'
    waiting, diagnostics = compile_source(text, "x.yaml")
    assert waiting is not None, diagnostics
    assert waiting.simulation.lead_times["decide"].approximate() == dt.timedelta(days=15)
    runs = {}
    for name, procedure in (("plain", plain), ("lead", waiting)):
        params = LoadParameters.from_procedure(procedure, days=150, staff={"agent": 2}, seed=5)
        runs[name] = simulate_load(procedure, params)
    plain_run, lead_run = runs["plain"], runs["lead"]
    assert lead_run.parameters.lead_times == {"decide": 15 * DAY}
    for attribute in ("p50", "p90", "admin_p50"):  # the lead time is not the applicant's
        grown = getattr(lead_run, attribute) - getattr(plain_run, attribute)
        assert 14 * DAY < grown < 16 * DAY, attribute
    # the same work per case, none of it in the first 15 days (nothing is ready before)
    assert lead_run.utilisation["agent"] == pytest.approx(
        plain_run.utilisation["agent"] * (150 - 15) / 150, rel=0.05)
    assert 15 * 40 * 0.8 < lead_run.backlog_end["submitted"] - plain_run.backlog_end["submitted"]


def test_no_staff_step_starts_before_its_lead_time(tmp_path: Path) -> None:
    procedure = mini(tmp_path)
    params = LoadParameters.from_procedure(procedure, days=40, staff={"agent": 5}, seed=2,
                                           lead_times={"decide": "20 days"})
    r = simulate_load(procedure, params)
    first_decided = next(day for day, n in enumerate(r.finished_daily) if n)
    assert first_decided >= 20
    assert r.p50 is not None and r.p50 >= 20 * DAY


def test_a_lead_time_for_an_unknown_trigger_is_refused(criminal_record: Procedure) -> None:
    with pytest.raises(ValueError, match='unknown trigger "verfy"'):
        LoadParameters.from_procedure(criminal_record, lead_times={"verfy": "3 days"})
    with pytest.raises(ValueError, match="lead_times.verify must not be negative"):
        LoadParameters(lead_times={"verify": -1.0})
