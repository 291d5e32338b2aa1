"""Fail closed: a condition that cannot be evaluated never waives a requirement (issue 7.3).

A `when:` on a field, document or fee that raises makes it apply; a guard that raises or
evaluates to an undefined value refuses with a reason; nothing of this escapes `start`,
`fire` or `available` as an exception other than the engine's own refusals.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import APPLICANT, CLERK, MakeEngine, pdf

from engine import Blocked, Engine, GuichetError
from engine.values import SYSTEM

DOUBTFUL = """\
id: doubtful
version: "1"
reference_prefix: DBT
title: {fr: Essai, en: Trial}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Agent, en: Clerk}}
fields:
  - {id: count, type: integer, label: {fr: Nombre, en: Count}}
  - id: detail
    type: text
    label: {fr: Détail, en: Detail}
    required: true
    when: count > 2
documents:
  - id: proof
    label: {fr: Justificatif, en: Proof}
    media_types: [application/pdf]
    required: true
    when: count > 2
fees:
  - id: surcharge
    label: {fr: Supplément, en: Surcharge}
    amount: 700
    when: count > 2
    due: submit
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true, editable: true}
  submitted: {label: {fr: Soumise, en: Submitted}}
  done: {label: {fr: Terminée, en: Done}, final: accepted}
transitions:
  - trigger: submit
    label: {fr: Soumettre, en: Submit}
    from: draft
    to: submitted
    roles: [applicant]
    requires: {fields: all, documents: all}
  - trigger: accept
    label: {fr: Accepter, en: Accept}
    from: submitted
    to: done
    roles: [clerk]
    when: documents.proof > 0
  - trigger: chase
    label: {fr: Relancer, en: Chase}
    from: submitted
    to: submitted
    roles: [clerk]
    when: documents.proof == 0
  - trigger: probe
    label: {fr: Sonder, en: Probe}
    from: submitted
    to: done
    roles: [clerk]
    when: count|attr('__class__')
"""


@pytest.fixture
def doubtful(make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> Engine:
    source = tmp_path / "doubtful.yaml"
    source.write_text(DOUBTFUL, encoding="utf-8")
    return make_engine(sqlite_url, procedures=source)


def codes(error: GuichetError) -> list[tuple[str, str]]:
    return [(r.code, r.subject) for r in error.reasons]


def test_a_when_that_cannot_be_evaluated_makes_field_document_and_fee_apply(
        doubtful: Engine) -> None:
    reference = doubtful.start("doubtful", APPLICANT).reference  # count unset: None > 2 raises
    with pytest.raises(Blocked) as blocked:
        doubtful.fire(reference, "submit", APPLICANT)
    assert codes(blocked.value) == [("field", "detail"), ("document", "proof"),
                                    ("payment", "submit")]
    assert doubtful.case(reference, SYSTEM).fees_due == 700
    assert doubtful.documents_missing(reference) == ["proof"]


def test_a_when_that_holds_or_fails_cleanly_behaves_as_written(doubtful: Engine) -> None:
    reference = doubtful.start("doubtful", APPLICANT, {"count": 1}).reference
    assert doubtful.case(reference, SYSTEM).fees_due == 0
    assert doubtful.fire(reference, "submit", APPLICANT).state == "submitted"


def test_a_field_whose_when_fails_keeps_its_value(doubtful: Engine) -> None:
    reference = doubtful.start("doubtful", APPLICANT, {"detail": "kept"}).reference
    assert doubtful.case(reference, SYSTEM).data["detail"] == "kept"


def submitted_without_proof(engine: Engine) -> str:
    reference = engine.start("doubtful", APPLICANT, {"count": 0}).reference
    engine.fire(reference, "submit", APPLICANT)
    return reference


def test_documents_of_a_declared_document_never_attached_is_zero(doubtful: Engine) -> None:
    reference = submitted_without_proof(doubtful)
    assert doubtful.fire(reference, "chase", CLERK).state == "submitted"
    with pytest.raises(Blocked) as blocked:
        doubtful.fire(reference, "accept", CLERK)
    assert codes(blocked.value) == [("guard", "accept")]
    assert "are not met" in blocked.value.message("en")
    assert blocked.value.reasons[0].detail.startswith("documents")
    doubtful.attach(reference, "proof", "proof.pdf", pdf("late"), CLERK)
    assert doubtful.fire(reference, "accept", CLERK).state == "done"


def test_a_guard_that_evaluates_to_an_undefined_value_refuses(doubtful: Engine) -> None:
    reference = submitted_without_proof(doubtful)
    with pytest.raises(Blocked) as blocked:
        doubtful.fire(reference, "probe", CLERK)
    assert codes(blocked.value) == [("guard", "probe")]
    assert "cannot be checked for now" in blocked.value.message("en")
    assert "ne peuvent pas être vérifiées" in blocked.value.message("fr")
    probe = {a.trigger: a for a in doubtful.available(reference, CLERK)}["probe"]
    assert not probe.allowed and [r.code for r in probe.reasons] == ["guard"]
    assert doubtful.case(reference, SYSTEM).state == "submitted"
    assert len(doubtful.history(reference, SYSTEM)) == 2
