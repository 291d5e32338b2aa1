"""Who may open a case and act on it is declared by the procedure, never implied by a role's
name (issue 9, point 1): `start: {roles: [...]}` names the roles that open cases, and their
holders act only on the cases they opened; the other declared roles are staff."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MakeEngine, pdf

from engine import Actor, Engine, NotAllowed

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
    assert permits.cases("permit") == []


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
    assert permits.case(reference).version == 1
    permits.update(reference, ARCHITECT, {"plot": "Lot 13"})
    permits.attach(reference, "plans", "p.pdf", pdf(), ARCHITECT)
    assert permits.fire(reference, "submit", ARCHITECT).state == "submitted"
    history = permits.history(reference)
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
