"""The record shows everything that happened (issue 7.9), and effects are rendered outside
the write transaction, refusing the step when they cannot be (issue 7.4)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from helpers import (
    AGENT,
    APPLICANT,
    CLERK,
    OTHER_APPLICANT,
    MakeEngine,
    attach_required,
    passport_data,
    passport_under_review,
    pay_outstanding,
    pdf,
    submitted,
)

from engine import Blocked, Engine, InvalidData, NotAllowed
from engine.expressions import Template
from engine.values import SYSTEM
from engine.workflow import Workflow

# --- form changes in the history ------------------------------------------------------------


def test_a_step_that_changes_the_form_records_before_and_after(engine: Engine) -> None:
    reference = passport_under_review(engine).reference
    engine.fire(reference, "request_information", AGENT, {"message": "Adresse incomplète."})
    engine.fire(reference, "provide_information", APPLICANT,
                {"address": "Rue 2, Lomé", "phone": "90 12 34 56"})
    last = engine.history(reference, SYSTEM)[-1]
    assert last.trigger == "provide_information"
    assert dict(last.changes) == {"address": {"before": "Rue 1, Lomé", "after": "Rue 2, Lomé"}}
    assert dict(last.payload) == {}  # the step has no input of its own
    asked = engine.history(reference, SYSTEM)[-2]
    assert dict(asked.payload) == {"message": "Adresse incomplète."} and not asked.changes


def test_a_draft_is_saved_without_submitting(engine: Engine) -> None:
    case = engine.start("passport", APPLICANT, passport_data())
    saved = engine.update(case.reference, APPLICANT, {"profession": "nurse"})
    assert (saved.state, saved.version, saved.data["profession"]) == ("draft", 2, "nurse")
    last = engine.history(case.reference, SYSTEM)[-1]
    assert (last.trigger, last.from_state, last.to_state) == ("@edit", "draft", "draft")
    assert dict(last.changes) == {"profession": {"before": "teacher", "after": "nurse"}}
    same = engine.update(case.reference, APPLICANT, {"profession": "nurse"})
    assert same.version == 2  # nothing changed: nothing written


@pytest.mark.parametrize("actor", [OTHER_APPLICANT, AGENT], ids=["another applicant", "staff"])
def test_only_the_applicant_saves_a_draft(sqlite_engine: Engine, actor: Any) -> None:
    reference = sqlite_engine.start("passport", APPLICANT, passport_data()).reference
    with pytest.raises(NotAllowed):
        sqlite_engine.update(reference, actor, {"profession": "nurse"})
    assert sqlite_engine.case(reference, SYSTEM).version == 1


def test_a_draft_cannot_be_saved_where_the_state_is_not_editable(sqlite_engine: Engine) -> None:
    reference = submitted(sqlite_engine, "passport").reference
    version = sqlite_engine.case(reference, SYSTEM).version
    with pytest.raises(NotAllowed):
        sqlite_engine.update(reference, APPLICANT, {"profession": "nurse"})
    with pytest.raises(InvalidData) as invalid:
        draft = sqlite_engine.start("passport", APPLICANT, passport_data()).reference
        sqlite_engine.update(draft, APPLICANT, {"birth_date": "not a date", "nope": 1})
    assert set(invalid.value.errors) >= {"birth_date"}
    assert sqlite_engine.case(reference, SYSTEM).version == version
    assert sqlite_engine.case(draft, SYSTEM).version == 1


def test_a_blocked_step_keeps_its_form_data_when_asked(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    reference = engine.start("passport", APPLICANT, passport_data()).reference
    with pytest.raises(Blocked):  # documents and payment still missing
        engine.fire(reference, "submit", APPLICANT, {"profession": "nurse"})
    assert engine.case(reference, SYSTEM).data["profession"] == "teacher"
    with pytest.raises(Blocked):
        engine.fire(reference, "submit", APPLICANT, {"profession": "nurse"}, keep_data=True)
    case = engine.case(reference, SYSTEM)
    assert (case.state, case.data["profession"]) == ("draft", "nurse")
    assert engine.history(reference, SYSTEM)[-1].trigger == "@edit"


# --- notifications and issued documents of each step ----------------------------------------


def test_the_history_lists_what_each_step_sent_and_issued(engine: Engine) -> None:
    reference = passport_under_review(engine).reference
    engine.fire(reference, "request_information", AGENT, {"message": "Photo floue, merci."})
    steps = {h.trigger: h for h in engine.history(reference, SYSTEM)}
    [acknowledgement] = steps["submit"].issued
    assert acknowledgement["id"] == "acknowledgement"
    assert reference in acknowledgement["text"]["fr"]
    [sms] = steps["request_information"].notifications
    assert sms["channel"] == "sms" and "Photo floue" in sms["text"]["fr"]
    assert steps["@start"].notifications == () and steps["@pay"].issued == ()


# --- rendering outside the write transaction ----------------------------------------------------

def while_rendering(monkeypatch: pytest.MonkeyPatch, action: Callable[[], Any]) -> list[str]:
    """Run `action` in another thread during the first template rendering; say how it went."""
    return during(monkeypatch, Template, "render", action)


def during(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str,
           action: Callable[[], Any]) -> list[str]:
    """Run `action` in another thread during the first call of `owner.name`; the outcome
    says "pending" then "done" (or "failed: ..."), or starts with "blocked" when the action
    had to wait for the caller (that is, the call ran inside a write transaction)."""
    outcome: list[str] = []
    original = getattr(owner, name)

    def call_and_act(*args: Any, **kwargs: Any) -> Any:
        if not outcome:
            outcome.append("pending")
            worker = threading.Thread(target=lambda: outcome.append(_attempt(action)))
            worker.start()
            worker.join(5)
            if worker.is_alive():
                outcome[0] = "blocked"
                worker.join()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, call_and_act)
    return outcome


def impatient(url: str) -> str:
    """`url` whose PostgreSQL connections give up waiting for a lock after 3 s (so that a
    write blocked behind the renderer's transaction fails instead of waiting for ever)."""
    if not url.startswith("postgresql"):
        return url  # SQLite gives up after its busy timeout
    parsed = sqlalchemy.engine.make_url(url)
    options = f"{parsed.query.get('options', '')} -clock_timeout=3000".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(
        hide_password=False)


def _attempt(action: Callable[[], Any]) -> str:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return f"failed: {exc}"
    return "done"


def test_a_fire_renders_without_holding_the_write_lock(
        make_engine: MakeEngine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(database_url)
    other = make_engine(impatient(database_url))
    reference = passport_under_review(engine).reference
    draft = engine.start("passport", APPLICANT, passport_data()).reference
    outcome = while_rendering(monkeypatch, lambda: other.update(draft, APPLICANT,
                                                                 {"profession": "nurse"}))
    engine.fire(reference, "request_information", AGENT, {"message": "Photo floue, merci."})
    assert outcome == ["pending", "done"]
    assert engine.case(reference, SYSTEM).state == "info_requested"
    assert engine.case(draft, SYSTEM).data["profession"] == "nurse"


def test_a_case_changed_while_rendering_is_decided_again(
        make_engine: MakeEngine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(database_url)
    other = make_engine(impatient(database_url))
    reference = passport_under_review(engine).reference
    outcome = while_rendering(monkeypatch, lambda: other.attach(
        reference, "birth_certificate", "verso.pdf", pdf("verso"), AGENT))
    case = engine.fire(reference, "request_information", AGENT, {"message": "Photo floue."})
    assert outcome == ["pending", "done"]
    history = engine.history(reference, SYSTEM)
    assert [h.trigger for h in history][-2:] == ["@attach", "request_information"]
    assert case.version == len(history) and case.state == "info_requested"


NOISY = """\
id: noisy
version: "1"
reference_prefix: NSY
title: {fr: Essai, en: Trial}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Agent, en: Clerk}}
fields:
  - {id: count, type: integer, label: {fr: Nombre, en: Count}}
states:
  draft:
    label: {fr: Brouillon, en: Draft}
    initial: true
    editable: true
    notify:
      - channel: sms
        template: {fr: "Dossier {{ reference }} ouvert", en: "Case {{ reference }} opened"}
  done: {label: {fr: Terminée, en: Done}, final: accepted}
transitions:
  - trigger: finish
    label: {fr: Terminer, en: Finish}
    from: draft
    to: done
    roles: [clerk]
    issue:
      - id: certificate
        title: {fr: Attestation, en: Certificate}
        template: {fr: "Part : {{ 100 // count }}", en: "Share: {{ 100 // count }}"}
"""


@pytest.fixture
def noisy(make_engine: MakeEngine, database_url: str, tmp_path: Path) -> Engine:
    source = tmp_path / "noisy.yaml"
    source.write_text(NOISY, encoding="utf-8")
    return make_engine(database_url, procedures=source)


def test_a_start_with_notifications_renders_them_outside_the_write_transaction(
        noisy: Engine, make_engine: MakeEngine, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_engine(impatient(database_url), procedures=tmp_path / "noisy.yaml")
    opened: list[str] = []
    outcome = while_rendering(monkeypatch,
                              lambda: opened.append(other.start("noisy", APPLICANT).reference))
    first = noisy.start("noisy", APPLICANT).reference
    assert outcome == ["pending", "done"]
    [step] = noisy.history(first, SYSTEM)
    assert step.notifications[0]["text"]["fr"] == f"Dossier {first} ouvert"
    assert len({first, *opened}) == 2


def test_a_template_that_cannot_be_rendered_refuses_the_step(noisy: Engine) -> None:
    reference = noisy.start("noisy", APPLICANT, {"count": 0}).reference
    with pytest.raises(Blocked) as blocked:
        noisy.fire(reference, "finish", CLERK)
    [reason] = blocked.value.reasons
    assert (reason.code, reason.subject) == ("template", "certificate")
    assert "ZeroDivision" not in reason.message("fr") and "service" in reason.message("fr")
    case = noisy.case(reference, SYSTEM)
    assert (case.state, case.version) == ("draft", 1)
    noisy.update(reference, APPLICANT, {"count": 4})
    done = noisy.fire(reference, "finish", CLERK)
    assert done.state == "done"
    assert noisy.history(reference, SYSTEM)[-1].issued[0]["text"]["en"] == "Share: 25"


def test_pay_and_attach_are_unaffected(sqlite_engine: Engine) -> None:
    reference = sqlite_engine.start("passport", APPLICANT, passport_data()).reference
    attach_required(sqlite_engine, reference)
    paid = pay_outstanding(sqlite_engine, reference)
    assert paid.fees_paid == paid.fees_due > 0


def test_pay_and_attach_decide_and_store_files_outside_the_write_transaction(
        make_engine: MakeEngine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What is owed (fee conditions) and the file's bytes are worked out before the write
    transaction of pay and attach, so another host's write never waits for them."""
    engine = make_engine(database_url)
    other = make_engine(impatient(database_url))
    reference = engine.start("passport", APPLICANT, passport_data()).reference
    draft = engine.start("passport", APPLICANT, passport_data()).reference

    def edit_other_case() -> None:
        other.update(draft, APPLICANT, {"profession": f"p{len(other.history(draft, SYSTEM))}"})

    paying = during(monkeypatch, Workflow, "fees_due", edit_other_case)
    pay_outstanding(engine, reference)
    attaching = during(monkeypatch, engine.blobs, "put", edit_other_case)
    engine.attach(reference, "birth_certificate", "acte.pdf", pdf("acte"), APPLICANT)
    assert (paying, attaching) == (["pending", "done"], ["pending", "done"])
    assert engine.case(reference, SYSTEM).fees_paid == engine.case(reference, SYSTEM).fees_due
    assert len(engine.history(draft, SYSTEM)) == 3
