"""Reminders (issue 10, point 9): a deadline with `remind_before` and no `reminder:` sends the
catalogue's default reminder; reminder templates may use `due_date`; a transition looping back
to the same state restarts that state's deadlines and reminders."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from helpers import APPLICANT, MakeEngine

from engine import Engine, compile_source
from engine.analysis.scenarios import run_suite
from engine.clock import FakeClock
from engine.effects import default_reminder
from engine.messages import text
from engine.outbox import Event

DAY = dt.timedelta(days=1)

#: A state label that looks like a template: printed as it is, never run.
LABEL_FR = "En attente {{ 7 * 7 }}"

PROCEDURE = f"""\
id: waiting
version: "1"
reference_prefix: WAI
title: {{fr: Essai, en: Trial}}
authority: {{ministry: {{fr: Ministère, en: Ministry}}}}
roles:
  applicant: {{label: {{fr: Demandeur, en: Applicant}}}}
  system: {{label: {{fr: Système, en: System}}}}
start: {{roles: [applicant]}}
states:
  waiting:
    label: {{fr: "{LABEL_FR}", en: Waiting}}
    initial: true
    deadlines:
      - {{after: 10 days, trigger: expire, remind_before: 2 days}}
  expired: {{label: {{fr: Expirée, en: Expired}}, final: expired}}
  done: {{label: {{fr: Terminée, en: Done}}, final: accepted}}
transitions:
  - {{trigger: nudge, from: waiting, to: waiting, roles: [applicant]}}
  - {{trigger: finish, from: waiting, to: done, roles: [applicant]}}
  - {{trigger: expire, from: waiting, to: expired, roles: [system]}}
"""


@pytest.fixture
def waiting(make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> Engine:
    source = tmp_path / "waiting.yaml"
    source.write_text(PROCEDURE, encoding="utf-8")
    return make_engine(sqlite_url, procedures=source)


def _reminders(engine: Engine) -> list[Event]:
    sent: list[Event] = []
    engine.on("reminder", sent.append)
    return sent


def test_a_deadline_without_reminder_sends_the_default_one(waiting: Engine,
                                                           clock: FakeClock) -> None:
    started = clock()
    reference = waiting.start("waiting", APPLICANT, {}).reference
    sent = _reminders(waiting)
    clock.advance(8 * DAY)
    assert waiting.tick() == [(reference, "expire", "reminded")]
    [event] = sent
    [note] = event.payload["notifications"]
    due = (started + 10 * DAY).date().isoformat()
    assert (note["channel"], note["to"]) == ("portal", "applicant")
    assert note["text"] == {
        "fr": f"Rappel : votre dossier {reference} est à l'étape « {LABEL_FR} ». "
              f"L'échéance est fixée au {due}.",
        "en": f'Reminder: your case {reference} is at the step "Waiting". '
              f"The deadline is {due}."}
    assert note["subject"] == text("reminder_subject")


def test_a_scenario_expects_the_default_reminder(tmp_path: Path) -> None:
    procedure = tmp_path / "waiting.yaml"
    procedure.write_text(PROCEDURE, encoding="utf-8")
    scenario = tmp_path / "reminded.yaml"
    reminded = {"channel": "portal", "to": "applicant",
                "contains": "« En attente {{ 7 * 7 }} ». L'échéance est fixée au 2026-01-15."}
    scenario.write_text(yaml.safe_dump({
        "procedure": "waiting", "name": "reminded by default",
        "steps": [{"start": {}, "as": "applicant:citizen-1"},  # 2026-01-05
                  {"wait": "8 days", "expect": {"state": "waiting",
                                                "notifications": [reminded]}}]},
        allow_unicode=True), encoding="utf-8")
    suite = run_suite([scenario], [procedure])
    assert suite.summary() == "1 passed, 0 failed"


def test_the_default_reminder_is_compiled_once_from_the_catalogue() -> None:
    first, second = default_reminder(("a",)), default_reminder(("b",))
    assert first.template is second.template
    assert set(first.template) == {"fr", "en"}
    assert first.template["fr"].names == {"reference", "state_label", "due_date"}


def test_a_deadline_without_remind_before_has_no_reminder() -> None:
    procedure, diagnostics = compile_source(
        PROCEDURE.replace(", remind_before: 2 days", ""), "waiting.yaml")
    assert procedure is not None, diagnostics
    assert procedure.states["waiting"].deadlines[0].reminder is None


def test_a_procedure_relying_on_the_default_reminder_validates_clean() -> None:
    procedure, diagnostics = compile_source(PROCEDURE, "waiting.yaml")
    assert procedure is not None and diagnostics == []
    reminder = procedure.states["waiting"].deadlines[0].reminder
    assert reminder is not None and reminder.path == ("states", "waiting", "deadlines", 0,
                                                      "reminder")


AUTHORED = """
      - after: 20 days
        trigger: expire
        remind_before: 5 days
        reminder:
          channel: sms
          template: {fr: "Avant le {{ due_date }} ({{ state_label }})",
                     en: "By {{ due_date }} ({{ state_label }})"}
"""


def test_an_authored_reminder_may_use_due_date_and_state_label(make_engine: MakeEngine,
                                                               sqlite_url: str, tmp_path: Path,
                                                               clock: FakeClock) -> None:
    source = tmp_path / "waiting.yaml"
    source.write_text(PROCEDURE.replace(
        "      - {after: 10 days, trigger: expire, remind_before: 2 days}\n", AUTHORED[1:]),
        encoding="utf-8")
    engine = make_engine(sqlite_url, procedures=source)
    due = (clock() + 20 * DAY).date().isoformat()
    engine.start("waiting", APPLICANT, {})
    sent = _reminders(engine)
    clock.advance(15 * DAY)
    engine.tick()
    [note] = sent[0].payload["notifications"]
    assert note["channel"] == "sms"
    assert note["text"] == {"fr": f"Avant le {due} ({LABEL_FR})", "en": f"By {due} (Waiting)"}


def test_due_date_is_only_known_to_reminders() -> None:
    notified = PROCEDURE.replace(
        "  - {trigger: finish, from: waiting, to: done, roles: [applicant]}",
        "  - {trigger: finish, from: waiting, to: done, roles: [applicant],\n"
        "     notify: [{channel: sms,\n"
        "       template: {fr: 'le {{ due_date }}', en: 'on {{ state_label }}'}}]}")
    procedure, diagnostics = compile_source(notified, "waiting.yaml")
    assert procedure is None
    # on line 22, the French template
    assert [(d.rule, d.location.line) for d in diagnostics] == [("undeclared-name", 22)]
    assert 'unknown name "due_date"' in diagnostics[0].message


# --- a loop back to the same state restarts its deadlines ---------------------------------------

def test_a_loop_back_to_the_same_state_restarts_its_deadlines(waiting: Engine,
                                                              clock: FakeClock) -> None:
    reference = waiting.start("waiting", APPLICANT, {}).reference
    sent = _reminders(waiting)
    clock.advance(7 * DAY)
    waiting.fire(reference, "nudge", APPLICANT)  # day 7: back in "waiting"
    restarted = clock()
    assert sorted((t["kind"], t["due_at"]) for t in waiting.timers(reference)) == [
        ("deadline", restarted + 10 * DAY), ("reminder", restarted + 8 * DAY)]
    clock.advance(5 * DAY)  # day 12: the first stay's deadline (day 10) is gone
    assert waiting.tick() == []
    assert waiting.case(reference, APPLICANT).state == "waiting"
    clock.advance(3 * DAY)  # day 15: 8 days into the new stay
    assert waiting.tick() == [(reference, "expire", "reminded")]
    assert len(sent) == 1
    clock.advance(2 * DAY)  # day 17: 10 days into the new stay
    assert waiting.tick() == [(reference, "expire", "fired")]
    assert waiting.case(reference, APPLICANT).state == "expired"
