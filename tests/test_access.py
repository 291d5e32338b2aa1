"""Who may open a case and act on it is declared by the procedure, never implied by a role's
name (issue 9, point 1): `start: {roles: [...]}` names the roles that open cases, and their
holders act only on the cases they opened; the other declared roles are staff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import MakeEngine, pdf

from engine import Actor, Engine, InvalidData, NotAllowed
from engine.values import SYSTEM

PERMIT = """\
id: permit
version: "1"
reference_prefix: PC
title: {fr: Permis de construire, en: Building permit}
authority: {ministry: {fr: Ministère de l'Urbanisme, en: Ministry of Town Planning}}
roles:
  architect: {label: {fr: Architecte, en: Architect}}
  instructor: {label: {fr: Instructeur, en: Instructor}}
START
fields:
  - {id: plot, type: text, label: {fr: Parcelle, en: Plot}}
documents:
  - id: plans
    label: {fr: Plans, en: Plans}
    media_types: [application/pdf]
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true, editable: true}
  submitted: {label: {fr: Déposé, en: Filed}}
  granted: {label: {fr: Accordé, en: Granted}, final: accepted}
transitions:
  - trigger: submit
    label: {fr: Déposer, en: File}
    from: draft
    to: submitted
    roles: [architect]
  - trigger: grant
    label: {fr: Accorder, en: Grant}
    from: submitted
    to: granted
    roles: [instructor]
"""

ARCHITECT = Actor("arch-1", ["architect"])
COLLEAGUE = Actor("arch-2", ["architect"])
INSTRUCTOR = Actor("instr-1", ["instructor"])
STRANGER = Actor("someone", ["inspector"])  # a role the procedure does not declare


def permit_engine(make_engine: MakeEngine, url: str, tmp_path: Path, start: str) -> Engine:
    source = tmp_path / "permit.yaml"
    source.write_text(PERMIT.replace("START", start), encoding="utf-8")
    return make_engine(url, procedures=source)


@pytest.fixture
def permits(make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> Engine:
    return permit_engine(make_engine, sqlite_url, tmp_path, "start: {roles: [architect]}")


@pytest.mark.parametrize("actor", [STRANGER, INSTRUCTOR], ids=["undeclared role", "staff"])
def test_only_the_declared_roles_open_a_case(permits: Engine, actor: Actor) -> None:
    with pytest.raises(NotAllowed) as refused:
        permits.start("permit", actor, {"plot": "Lot 12"})
    assert refused.value.message("en") == "only these roles may open a case: architect"
    assert permits.cases("permit", actor=SYSTEM) == []


def test_an_architect_acts_only_on_the_cases_they_opened(permits: Engine) -> None:
    reference = permits.start("permit", ARCHITECT, {"plot": "Lot 12"}).reference
    with pytest.raises(NotAllowed) as firing:
        permits.fire(reference, "submit", COLLEAGUE)
    for attempt in (lambda: permits.attach(reference, "plans", "p.pdf", pdf(), COLLEAGUE),
                    lambda: permits.update(reference, COLLEAGUE, {"plot": "Lot 13"}),
                    lambda: permits.attach(reference, "plans", "p.pdf", pdf(), STRANGER)):
        with pytest.raises(NotAllowed):
            attempt()
    assert [(r.code, r.subject) for r in firing.value.reasons] == [("ownership", "submit")]
    assert permits.case(reference, SYSTEM).version == 1
    permits.update(reference, ARCHITECT, {"plot": "Lot 13"})
    permits.attach(reference, "plans", "p.pdf", pdf(), ARCHITECT)
    assert permits.fire(reference, "submit", ARCHITECT).state == "submitted"
    history = permits.history(reference, SYSTEM)
    assert [(h.trigger, h.actor_role) for h in history] == [
        ("@start", "architect"), ("@edit", "architect"), ("@attach", "architect"),
        ("submit", "architect")]
    assert permits.fire(reference, "grant", INSTRUCTOR).state == "granted"


def test_staff_may_not_handle_their_own_case_whatever_the_role_names(permits: Engine) -> None:
    both = Actor("arch-3", ["architect", "instructor"])
    reference = permits.start("permit", both, {"plot": "Lot 7"}).reference
    permits.fire(reference, "submit", both)
    with pytest.raises(NotAllowed) as refused:
        permits.fire(reference, "grant", both)
    assert [r.code for r in refused.value.reasons] == ["separation"]


def test_without_start_and_without_an_applicant_role_no_one_opens_a_case(
        make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> None:
    engine = permit_engine(make_engine, sqlite_url, tmp_path, "")
    with pytest.raises(NotAllowed) as refused:
        engine.start("permit", ARCHITECT, {"plot": "Lot 12"})
    assert refused.value.message("en") == "no one may open a case of this procedure"


def test_the_compatibility_rule_a_role_named_applicant_opens_cases(
        make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> None:
    """A file written before `start:` existed keeps working: its `applicant` role opens and
    owns cases (validate warns and says what to add)."""
    old_way = PERMIT.replace("architect", "applicant")
    source = tmp_path / "old.yaml"
    source.write_text(old_way.replace("START", ""), encoding="utf-8")
    engine = make_engine(sqlite_url, procedures=source)
    applicant = Actor("citizen-1", ["applicant"])
    reference = engine.start("permit", applicant, {"plot": "Lot 1"}).reference
    with pytest.raises(NotAllowed):
        engine.fire(reference, "submit", Actor("citizen-2", ["applicant"]))
    assert engine.fire(reference, "submit", applicant).state == "submitted"


# --- acting for someone: a case opened at the counter, claimed later ---------------------------

COUNTER = Actor("counter-1", ["counter"])


@pytest.fixture
def counter(make_engine: MakeEngine, database_url: str, tmp_path: Path) -> Engine:
    source = tmp_path / "permit.yaml"
    declared = PERMIT.replace("START", "start: {roles: [architect], on_behalf: [counter]}")
    declared = declared.replace("  instructor:", "  counter: {label: {fr: Guichet, en: Counter}}"
                                "\n  instructor:")
    source.write_text(declared, encoding="utf-8")
    return make_engine(database_url, procedures=source)


def test_an_agent_opens_and_fills_a_case_for_a_person_who_claims_it(counter: Engine) -> None:
    opened = counter.start("permit", COUNTER, {"plot": "Lot 4"}, on_behalf=True)
    reference, code = opened.reference, opened.claim_code
    assert code is not None and len(code.replace("-", "")) == 12
    assert (opened.claimed, opened.opened_for_by) == (False, "counter-1")
    counter.update(reference, COUNTER, {"plot": "Lot 5"})
    counter.attach(reference, "plans", "plans.pdf", pdf("plans"), COUNTER)
    assert counter.fire(reference, "submit", COUNTER).state == "submitted"
    history = counter.history(reference, SYSTEM)
    assert [(h.trigger, h.actor_id, h.actor_role, h.for_party) for h in history] == [
        ("@start", "counter-1", "counter", "applicant"),
        ("@edit", "counter-1", "counter", "applicant"),
        ("@attach", "counter-1", "counter", "applicant"),
        ("submit", "counter-1", "counter", "applicant")]
    assert counter.case(reference, SYSTEM).claim_code is None  # given once, on the receipt

    with pytest.raises(InvalidData):
        counter.claim(reference, ARCHITECT, "AAAA-BBBB-CCCC")
    with pytest.raises(NotAllowed):
        counter.claim(reference, INSTRUCTOR, code)  # not a role that opens cases
    claimed = counter.claim(reference, ARCHITECT, code.lower().replace("-", " "))
    assert (claimed.applicant_id, claimed.claimed, claimed.opened_for_by) == (
        "arch-1", True, None)
    last = counter.history(reference, SYSTEM)[-1]
    assert (last.trigger, last.actor_id, last.for_party) == ("@claim", "arch-1", None)
    with pytest.raises(NotAllowed):
        counter.claim(reference, COLLEAGUE, code)  # claimed once only
    with pytest.raises(NotAllowed):
        counter.update(reference, COUNTER, {"plot": "Lot 6"})  # no longer acts for them


def test_only_a_declared_counter_role_opens_a_case_for_someone(counter: Engine) -> None:
    for actor in (ARCHITECT, INSTRUCTOR):
        with pytest.raises(NotAllowed) as refused:
            counter.start("permit", actor, {"plot": "Lot 4"}, on_behalf=True)
        assert "counter" in refused.value.message("en")
    assert counter.cases("permit", actor=SYSTEM) == []


# --- notifying a party who never logs in ------------------------------------------------------

MEDIATION = """\
id: mediation
version: "1"
reference_prefix: MED
title: {fr: Médiation, en: Mediation}
authority: {ministry: {fr: Ministère de la Justice, en: Ministry of Justice}}
roles:
  claimant: {label: {fr: Requérant, en: Claimant}}
  mediator: {label: {fr: Médiateur, en: Mediator}}
start: {roles: [claimant]}
parties:
  respondent:
    label: {fr: Partie adverse, en: Respondent}
    name: respondent_name
    phone: respondent_phone
fields:
  - {id: respondent_name, type: text, label: {fr: Nom, en: Name}, required: true}
  - {id: respondent_phone, type: phone, label: {fr: Téléphone, en: Phone}, required: true}
states:
  filed: {label: {fr: Déposée, en: Filed}, initial: true}
  summoned: {label: {fr: Convoquée, en: Summoned}, final: accepted}
transitions:
  - trigger: summon
    label: {fr: Convoquer, en: Summon}
    from: filed
    to: summoned
    roles: [mediator]
    notify:
      - channel: sms
        to: respondent
        template:
          fr: "{{ respondent_name }}, vous êtes convoqué(e) (dossier {{ reference }})."
          en: "{{ respondent_name }}, you are summoned (case {{ reference }})."
"""


def test_a_respondent_is_notified_by_sms_at_the_number_a_field_gives(
        make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> None:
    source = tmp_path / "mediation.yaml"
    source.write_text(MEDIATION, encoding="utf-8")
    engine = make_engine(sqlite_url, procedures=source)
    sent: list[Any] = []
    engine.on("notification", lambda event: sent.append(event.payload))
    claimant = Actor("citizen-9", ["claimant"])
    reference = engine.start("mediation", claimant, {"respondent_name": "Kofi Mensah",
                                                     "respondent_phone": "90 11 22 33"}
                             ).reference
    engine.fire(reference, "summon", Actor("med-1", ["mediator"]))
    [sms] = sent
    assert (sms["channel"], sms["to"]) == ("sms", "respondent")
    assert sms["contact"] == {"name": "Kofi Mensah", "phone": "+22890112233"}
    assert sms["text"]["fr"].startswith("Kofi Mensah, vous êtes convoqué(e)")


# --- an organisation applies; its members act for it --------------------------------------------

def test_an_organisation_applies_and_only_its_members_act_for_it(
        make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> None:
    engine = permit_engine(make_engine, sqlite_url, tmp_path,
                           "start: {roles: [architect], organisations: true}")
    admin, member, outsider = ARCHITECT, COLLEAGUE, Actor("arch-9", ["architect"])
    case = engine.start("permit", admin, {"plot": "Lot 3"}, organisation="cabinet-ak")
    reference = case.reference
    assert case.applicant_id == "cabinet-ak"
    with pytest.raises(NotAllowed):
        engine.update(reference, member, {"plot": "Lot 4"})  # not a member yet
    with pytest.raises(NotAllowed):
        engine.set_members(reference, member, [member.id])  # not the administrator
    engine.set_members(reference, admin, [member.id])
    engine.update(reference, member, {"plot": "Lot 4"})
    engine.set_members(reference, admin, [])
    with pytest.raises(NotAllowed):
        engine.update(reference, member, {"plot": "Lot 5"})  # removed
    engine.set_members(reference, admin, [member.id])
    with pytest.raises(NotAllowed):
        engine.fire(reference, "submit", outsider)
    assert engine.fire(reference, "submit", member).state == "submitted"
    both = Actor(member.id, ["architect", "instructor"])
    with pytest.raises(NotAllowed) as refused:
        engine.fire(reference, "grant", both)  # a member may not grant their own request
    assert [r.code for r in refused.value.reasons] == ["separation"]
    steps = [(h.trigger, h.actor_id, dict(h.payload)) for h in engine.history(reference, SYSTEM)
             if h.trigger == "@members"]
    assert steps == [("@members", "arch-1", {"added": ["arch-2"], "removed": []}),
                     ("@members", "arch-1", {"added": [], "removed": ["arch-2"]}),
                     ("@members", "arch-1", {"added": ["arch-2"], "removed": []})]


def test_organisations_apply_only_where_the_procedure_says(permits: Engine) -> None:
    with pytest.raises(NotAllowed) as refused:
        permits.start("permit", ARCHITECT, {"plot": "Lot 3"}, organisation="cabinet-ak")
    assert "not open to organisations" in refused.value.message("en")


def test_an_agent_acting_as_staff_on_a_case_opened_for_someone_acts_for_no_one(
        make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> None:
    """The same clerk may fill a case for a walk-in person and, later, handle it as staff:
    only the applicant's steps are recorded as done for the applicant."""
    source = tmp_path / "permit.yaml"
    declared = PERMIT.replace("START", "start: {roles: [architect], on_behalf: [instructor]}")
    source.write_text(declared, encoding="utf-8")
    engine = make_engine(sqlite_url, procedures=source)
    clerk = Actor("instr-1", ["instructor"])
    reference = engine.start("permit", clerk, {"plot": "Lot 8"}, on_behalf=True).reference
    engine.fire(reference, "submit", clerk)
    engine.fire(reference, "grant", Actor("instr-2", ["instructor"]))
    assert [(h.trigger, h.actor_role, h.for_party)
            for h in engine.history(reference, SYSTEM)] == [
        ("@start", "instructor", "applicant"), ("submit", "instructor", "applicant"),
        ("grant", "instructor", None)]
