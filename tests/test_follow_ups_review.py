"""Issue 10, the edges of the new features: what a review found and the engine now holds.

Choices withdrawn by time, deadlines read from the form after an edit, follow-ups that carry
protected or refused values, purged cases, references kept when a step is decided again,
separation of duties in staff corrections, negative amounts.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import MakeEngine
from test_real_needs import (
    AGENT,
    CITIZEN,
    INSPECTION,
    PERMIT,
    RENEWAL,
    TECHNICIAN,
    compiled,
    opened,
    quoted,
)

from engine import Actor, Blocked, Engine, NotAllowed, lint, store
from engine.clock import FakeClock
from engine.values import SYSTEM

AGENT_AND_CITIZEN = Actor("both-1", ["citizen", "agent"])


def retained(text: str) -> str:
    return text.replace('version: "1"\n', 'version: "1"\nretention: "1 year"\n', 1)


@pytest.fixture
def permits(make_engine: MakeEngine, sqlite_url: str) -> Engine:
    family = [compiled(retained(PERMIT), "permit.yaml"), compiled(INSPECTION, "i.yaml"),
              compiled(RENEWAL, "renewal.yaml")]
    return make_engine(sqlite_url, family)


def granted(engine: Engine, amount: int = 1000, **data: Any) -> str:
    reference = quoted(engine, amount, **data)
    engine.pay(reference, amount, "tmoney", f"TM-{reference}", CITIZEN)
    engine.fire(reference, "pay_quote", CITIZEN)
    return reference


# --- choices withdrawn by time --------------------------------------------------------------------

MINOR = """
id: card
version: "1"
title: {fr: Carte, en: Card}
authority: {ministry: Ministère}
start: {roles: [citizen]}
roles:
  citizen: {label: {fr: Usager, en: Citizen}}
  agent: {label: {fr: Agent, en: Agent}}
fields:
  - {id: birth_date, type: date, required: true, label: {fr: Naissance, en: Birth}}
  - id: tariff
    type: choice
    required: true
    label: {fr: Tarif, en: Tariff}
    options:
      - {value: minor, label: {fr: Mineur, en: Minor}, when: "age(birth_date) < 18"}
      - {value: adult, label: {fr: Adulte, en: Adult}}
states:
  review: {label: {fr: Examen, en: Review}, initial: true}
  done: {label: {fr: Fait, en: Done}, final: accepted}
  withdrawn: {label: {fr: Retiré, en: Withdrawn}, final: withdrawn}
transitions:
  - {trigger: accept, from: review, to: done, roles: [agent], requires: {fields: all}}
  - {trigger: withdraw, from: review, to: withdrawn, roles: [citizen]}
"""


def test_a_choice_withdrawn_by_time_blocks_only_the_steps_that_require_it(
        make_engine: MakeEngine, sqlite_url: str, clock: FakeClock) -> None:
    engine = make_engine(sqlite_url, [compiled(MINOR, "card.yaml")])
    eighteen_soon = (clock().date() - dt.timedelta(days=18 * 365 + 4 - 10)).isoformat()
    reference = engine.start("card", CITIZEN, {"birth_date": eighteen_soon,
                                               "tariff": "minor"}).reference
    clock.advance(dt.timedelta(days=30))
    with pytest.raises(Blocked) as blocked:
        engine.fire(reference, "accept", AGENT)
    assert [(r.code, r.subject) for r in blocked.value.reasons] == [("field", "tariff")]
    assert "Minor" in blocked.value.message("en")  # the option's label, not its value
    assert engine.fire(reference, "withdraw", CITIZEN).state == "withdrawn"


# --- deadlines read from the form -----------------------------------------------------------------

DRAFT = """
id: draft
version: "1"
title: {fr: Brouillon, en: Draft}
authority: {ministry: Ministère}
start: {roles: [citizen]}
roles:
  citizen: {label: {fr: Usager, en: Citizen}}
  system: {label: {fr: Système, en: System}}
fields:
  - {id: long, type: boolean, label: {fr: Long, en: Long}}
  - {id: days, type: integer, required: true, min: 5, max: 60, when: "long",
     label: {fr: Jours, en: Days}}
states:
  open:
    label: {fr: Ouvert, en: Open}
    initial: true
    editable: true
    deadlines: [{after: {field: days, unit: days}, trigger: expire, remind_before: 2 days}]
  done: {label: {fr: Fait, en: Done}, final: accepted}
  expired: {label: {fr: Expiré, en: Expired}, final: expired}
transitions:
  - {trigger: submit, from: open, to: done, roles: [citizen], requires: {fields: all}}
  - {trigger: expire, from: open, to: expired, roles: [system]}
"""


def test_a_reminder_announces_the_deadline_as_scheduled_whatever_the_edits(
        make_engine: MakeEngine, sqlite_url: str, clock: FakeClock) -> None:
    engine = make_engine(sqlite_url, [compiled(DRAFT, "draft.yaml")])
    events: list[Any] = []
    engine.on("reminder", events.append)
    opened_at = clock()
    reference = engine.start("draft", CITIZEN, {"long": True, "days": 10}).reference
    engine.update(reference, CITIZEN, {"days": 30})
    clock.advance(dt.timedelta(days=8, hours=1))
    assert [r for _, _, r in engine.tick()] == ["reminded"]
    assert events[0].payload["due_at"] == (opened_at + dt.timedelta(days=10)).isoformat()
    clock.advance(dt.timedelta(days=2))
    engine.tick()
    assert engine.case(reference, SYSTEM).state == "expired"


def test_a_deadline_whose_field_the_form_now_hides_still_ticks(
        make_engine: MakeEngine, sqlite_url: str, clock: FakeClock) -> None:
    engine = make_engine(sqlite_url, [compiled(DRAFT, "draft.yaml")])
    first = engine.start("draft", CITIZEN, {"long": True, "days": 10}).reference
    second = engine.start("draft", CITIZEN, {"long": True, "days": 10}).reference
    assert "days" not in engine.update(first, CITIZEN, {"long": False}).data
    clock.advance(dt.timedelta(days=8, hours=1))
    assert sorted(r for _, _, r in engine.tick()) == ["reminded", "reminded"]
    clock.advance(dt.timedelta(days=2))
    engine.tick()
    assert {engine.case(r, SYSTEM).state for r in (first, second)} == {"expired"}


# --- follow-ups -----------------------------------------------------------------------------------

def test_a_carried_value_the_follow_up_refuses_is_left_for_its_applicant(
        make_engine: MakeEngine, sqlite_url: str) -> None:
    strict = INSPECTION.replace("{id: owner, type: string,",
                                "{id: owner, type: string, max_length: 3,")
    engine = make_engine(sqlite_url, [compiled(PERMIT, "p.yaml"), compiled(strict, "i.yaml"),
                                      compiled(RENEWAL, "r.yaml")])
    reference = granted(engine)
    child = engine.case(engine.case(reference, CITIZEN).follow_ups[0], CITIZEN)
    assert dict(child.data) == {"parcel": "LOT-12"}  # "Mensah" is longer than 3


def test_lint_refuses_a_follow_up_that_would_unprotect_a_carried_value(tmp_path: Path
                                                                       ) -> None:
    (tmp_path / "permit.yaml").write_text(textwrap.dedent(PERMIT).replace(
        "label: {fr: Nom, en: Surname}, required: true}",
        "label: {fr: Nom, en: Surname}, required: true, sensitive: true}"), encoding="utf-8")
    (tmp_path / "inspection.yaml").write_text(textwrap.dedent(INSPECTION), encoding="utf-8")
    (tmp_path / "renewal.yaml").write_text(textwrap.dedent(RENEWAL).replace(
        "{id: holder, type: string,", "{id: holder, type: string, sensitive: true,"),
        encoding="utf-8")
    found = [d.message for d in lint([tmp_path]) if d.rule == "follow-up"]
    assert found == ['"surname" is protected (sensitive, visible_to) and would be less so in '
                     '"owner" of procedure "inspection": mark it at least as much']


def test_nothing_happens_on_a_purged_case(permits: Engine, clock: FakeClock) -> None:
    reference = granted(permits)
    clock.advance(dt.timedelta(days=400))
    assert [r.reference for r in permits.purge()] == [reference]
    with pytest.raises(NotAllowed) as refused:
        permits.fire(reference, "revoke", AGENT)
    assert "purged" in refused.value.message("en")
    with pytest.raises(NotAllowed):
        permits.start("renewal", CITIZEN, parent=reference)


def test_a_follow_up_is_the_parents_applicants_alone(permits: Engine) -> None:
    reference = granted(permits)
    with pytest.raises(NotAllowed) as refused:
        permits.start("renewal", CITIZEN, parent=reference, organisation="LAB-1")
    assert "follow-up belongs" in refused.value.message("en")
    with pytest.raises(NotAllowed) as not_offered:
        permits.start("inspection", CITIZEN, parent=reference)
    assert "« Inspection »" in not_offered.value.message("fr")  # the title, not the id


def test_a_step_decided_again_keeps_its_follow_ups_reference(
        permits: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = quoted(permits, 1000)
    permits.pay(reference, 1000, "tmoney", "TM-R", CITIZEN)
    real = store.Store.write_step
    lost = {"once": True}

    def conflict_once(self: store.Store, *args: Any, **kwargs: Any) -> int:
        if lost.pop("once", False):  # the case moved on: the step is decided again
            raise store.Conflict()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(store.Store, "write_step", conflict_once)
    case = permits.fire(reference, "pay_quote", CITIZEN)
    assert not lost and case.state == "granted"
    assert case.follow_ups[0].startswith("INS-2026-000001")


def test_follow_ups_are_listed_to_those_who_may_read_them(permits: Engine) -> None:
    reference = granted(permits)
    assert len(permits.case(reference, CITIZEN).follow_ups) == 1
    technician_sees = permits.case(reference, TECHNICIAN).follow_ups
    assert technician_sees == ()  # the inspection is not a technician's procedure


# --- staff corrections and amounts ----------------------------------------------------------------

def test_staff_never_correct_their_own_case(permits: Engine) -> None:
    reference = permits.start("permit", AGENT_AND_CITIZEN, {
        "surname": "Afi", "nationality": "GH", "profile": "student", "months": 6}).reference
    permits.fire(reference, "visit", TECHNICIAN)
    with pytest.raises(NotAllowed):
        permits.update(reference, AGENT_AND_CITIZEN, {"parcel": "LOT-9"})
    assert permits.update(reference, AGENT, {"parcel": "LOT-9"}).data["parcel"] == "LOT-9"


def test_a_negative_amount_never_cancels_another_fee(make_engine: MakeEngine,
                                                     sqlite_url: str) -> None:
    loose = PERMIT.replace("required: true, min: 1, max: 10000000,", "required: true,")
    assert loose != PERMIT
    engine = make_engine(sqlite_url, [compiled(loose, "p.yaml"), compiled(INSPECTION, "i.yaml"),
                                      compiled(RENEWAL, "r.yaml")])
    reference = opened(engine)
    engine.fire(reference, "visit", TECHNICIAN)
    case = engine.fire(reference, "quote", TECHNICIAN, {"quote_amount": -5000, "metres": 3})
    assert case.fees_due == 3000
