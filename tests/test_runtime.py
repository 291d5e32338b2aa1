"""The runtime contract of `Engine`: cases, transitions, errors, documents, payments, versions,
hooks, history, deadlines and references.

Tests that depend on the database (transactions, constraints, triggers, counters, timers) take
the `engine` / `database_url` fixtures and run on SQLite and PostgreSQL; the others run on an
SQLite file only (`sqlite_engine`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from helpers import (
    AGENT,
    APPLICANT,
    CLERK,
    HAPPY_PATHS,
    JPEG,
    OTHER_APPLICANT,
    PDF,
    PNG,
    PROCEDURES,
    SUPERVISOR,
    TEXT,
    FakeClock,
    MakeEngine,
    assert_consistent,
    association_data,
    attach_required,
    criminal_record_data,
    enrolled_passport,
    in_future,
    jpeg,
    passport_data,
    passport_under_review,
    pay_outstanding,
    pdf,
    submitted,
)
from sqlalchemy.exc import DBAPIError

from engine import (
    EVENTS,
    Actor,
    Blocked,
    ConcurrentUpdate,
    Engine,
    Event,
    GuichetError,
    InvalidData,
    NotAllowed,
    UnknownCase,
    UnknownProcedure,
    UnknownTrigger,
    references,
)
from engine.blobs import DirectoryBlobStore
from engine.values import SYSTEM

REFERENCE = re.compile(r"[A-Z]{2,5}-[0-9]{4}-[0-9]{6}-[0-9A-Z]")
DAY = dt.timedelta(days=1)


def reasons(error: GuichetError) -> list[tuple[str, str]]:
    return [(r.code, r.subject) for r in error.reasons]


def assert_bilingual(error: GuichetError) -> None:
    """A runtime error has a French and an English text, and they differ."""
    fr, en = error.message("fr"), error.message("en")
    assert fr and en and fr != en


# --- happy paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("procedure_id", sorted(HAPPY_PATHS))
def test_happy_path_reaches_the_accepted_final_state(engine: Engine, procedure_id: str) -> None:
    drive, final_state, triggers = HAPPY_PATHS[procedure_id]
    case = drive(engine)
    history = engine.history(case.reference, SYSTEM)
    assert case.procedure_id == procedure_id
    assert case.state == final_state
    assert case.outcome == "accepted" and case.closed
    assert [h.trigger for h in history] == triggers
    assert case.version == len(history)
    assert_consistent(case, history)
    assert case.fees_due > 0 and case.fees_paid == case.fees_due
    assert engine.case(case.reference, SYSTEM) == case
    listed = engine.cases(procedure_id, final_state, actor=SYSTEM)
    assert [c.reference for c in listed] == [case.reference]


def test_a_closed_case_takes_no_more_changes(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    case = HAPPY_PATHS["criminal_record"][0](engine)
    with pytest.raises(NotAllowed) as attaching:
        engine.attach(case.reference, "identity_proof", "late.pdf", pdf("late"), APPLICANT)
    with pytest.raises(NotAllowed) as paying:
        engine.pay(case.reference, 500, "tmoney", "late-payment", APPLICANT)
    with pytest.raises(Blocked) as firing:
        engine.fire(case.reference, "withdraw", APPLICANT)
    assert "closed" in attaching.value.message("en") and "closed" in paying.value.message("en")
    assert reasons(firing.value) == [("state", "withdraw")]
    assert engine.case(case.reference, SYSTEM) == case


# --- NotAllowed ---------------------------------------------------------------------------------

def test_not_allowed_for_a_role_the_actor_does_not_hold(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    with pytest.raises(NotAllowed) as by_agent:
        engine.fire(ref, "submit", AGENT)
    with pytest.raises(NotAllowed) as by_applicant:
        engine.fire(ref, "abandon_draft", APPLICANT)  # the system's step
    with pytest.raises(NotAllowed) as starting:
        engine.start("passport", AGENT, passport_data())
    assert reasons(by_agent.value) == [("role", "submit")]
    assert "applicant" in by_agent.value.message("en")
    assert reasons(by_applicant.value) == [("role", "abandon_draft")]
    assert_bilingual(by_agent.value)
    assert_bilingual(starting.value)
    assert engine.case(ref, SYSTEM).version == 1 and engine.case(ref, SYSTEM).state == "draft"
    assert len(engine.cases(actor=SYSTEM)) == 1


def test_not_allowed_on_another_applicants_case(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    with pytest.raises(NotAllowed) as firing:
        engine.fire(ref, "withdraw", OTHER_APPLICANT)
    with pytest.raises(NotAllowed) as attaching:
        engine.attach(ref, "birth_certificate", "b.pdf", PDF, OTHER_APPLICANT)
    with pytest.raises(NotAllowed) as paying:
        engine.pay(ref, 30_000, "tmoney", "TM-OTHER", OTHER_APPLICANT)
    assert reasons(firing.value) == [("ownership", "withdraw")]
    assert "not yours" in firing.value.message("en")
    assert "pas le vôtre" in firing.value.message("fr")
    assert "not yours" in attaching.value.message("en")
    assert "not yours" in paying.value.message("en")
    case = engine.case(ref, APPLICANT)  # its applicant sees it as it was
    assert (case.state, case.version, case.fees_paid, case.documents) == ("draft", 1, 0, ())


def test_not_allowed_to_approve_after_handling_the_file(sqlite_engine: Engine) -> None:
    """Separation of duties, not_actor_of: who reviewed or enrolled may not approve."""
    engine = sqlite_engine
    ref = enrolled_passport(engine)
    both = Actor(AGENT.id, ["agent", "supervisor"])  # did start_review as an agent
    with pytest.raises(NotAllowed) as excinfo:
        engine.fire(ref, "approve", both)
    assert reasons(excinfo.value) == [("separation", "approve")]
    assert "start_review" in excinfo.value.message("en")
    assert_bilingual(excinfo.value)
    assert engine.case(ref, SYSTEM).state == "enrolled"
    assert engine.fire(ref, "approve", SUPERVISOR).state == "in_production"


def test_not_allowed_to_handle_ones_own_case(sqlite_engine: Engine) -> None:
    """Separation of duties, not_applicant: an officer who applied may not enrol themselves."""
    engine = sqlite_engine
    officer_as_citizen = Actor("officer-9", ["applicant"])
    officer_at_work = Actor("officer-9", ["agent"])
    ref = passport_under_review(engine, officer_as_citizen).reference
    engine.fire(ref, "schedule_enrolment", AGENT, {"appointment_date": in_future(engine, 3)})
    enrolment = {"originals_checked": True, "photo_captured": True,
                 "fingerprints_captured": True, "signature_captured": True}
    with pytest.raises(NotAllowed) as excinfo:
        engine.fire(ref, "record_enrolment", officer_at_work, enrolment)
    assert reasons(excinfo.value) == [("separation", "record_enrolment")]
    assert "your own case" in excinfo.value.message("en")
    assert engine.case(ref, SYSTEM).state == "enrolment_scheduled"
    assert engine.fire(ref, "record_enrolment", AGENT, enrolment).state == "enrolled"


# --- Blocked ------------------------------------------------------------------------------------

def test_blocked_lists_every_unmet_requirement_at_once(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    data = passport_data(request_type="renewal", old_passport_number="A1234567",
                         old_passport_expiry="2030-01-01")  # renewal too early: guard fails
    del data["surname"], data["phone"]
    ref = engine.start("passport", APPLICANT, data).reference
    engine.attach(ref, "birth_certificate", "birth.pdf", PDF, APPLICANT)
    engine.attach(ref, "photos", "one.jpg", JPEG, APPLICANT)  # two are needed
    with pytest.raises(Blocked) as excinfo:
        engine.fire(ref, "submit", APPLICANT)
    found = reasons(excinfo.value)
    assert sorted(found) == sorted([
        ("field", "surname"), ("field", "phone"),
        ("document", "nationality_certificate"), ("document", "id_card_copy"),
        ("document", "emergency_contact_certificate"), ("document", "proof_of_profession"),
        ("document", "photos"), ("document", "old_passport"),
        ("payment", "submit"), ("guard", "submit"),
    ])
    en, fr = excinfo.value.message("en"), excinfo.value.message("fr")
    assert "missing field: Surname" in en and "champ obligatoire manquant : Nom" in fr
    assert "missing document: Passport photos" in en
    assert "still to pay: 30000 XOF" in en and "reste à payer : 30000 FCFA" in fr
    case = engine.case(ref, SYSTEM)
    assert (case.state, case.version) == ("draft", 3)


def test_blocked_from_a_state_without_that_trigger(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    with pytest.raises(Blocked) as excinfo:
        engine.fire(ref, "approve", SUPERVISOR)
    assert reasons(excinfo.value) == [("state", "approve")]
    assert_bilingual(excinfo.value)


# --- InvalidData --------------------------------------------------------------------------------

def test_invalid_data_names_each_bad_field_in_french_and_english(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    data = passport_data(phone="12345", birth_date="1990-02-30", sex="other", nickname="Koko")
    with pytest.raises(InvalidData) as excinfo:
        engine.start("passport", APPLICANT, data)
    errors = excinfo.value.errors
    assert set(errors) == {"phone", "birth_date", "sex", "nickname"}
    assert errors["sex"] == {"fr": "n'est pas une valeur proposée",
                             "en": "is not one of the options"}
    assert errors["nickname"] == {"fr": "n'est pas un champ de ce formulaire",
                                  "en": "is not a field of this form"}
    assert errors["birth_date"] == {"fr": "n'est pas une date valide (AAAA-MM-JJ)",
                                    "en": "is not a valid date (YYYY-MM-DD)"}
    assert errors["phone"]["en"].startswith("must be an international number")
    assert errors["phone"]["fr"].startswith("doit être un numéro international")
    assert "phone: must be" in excinfo.value.message("en")
    assert "sex: n'est pas une valeur proposée" in excinfo.value.message("fr")
    assert engine.cases(actor=SYSTEM) == []


def test_invalid_step_input_is_refused_field_by_field(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = passport_under_review(engine).reference
    with pytest.raises(InvalidData) as too_short:
        engine.fire(ref, "request_information", AGENT, {"message": "short"})
    with pytest.raises(InvalidData) as missing:
        engine.fire(ref, "request_information", AGENT)
    with pytest.raises(InvalidData) as past:
        engine.fire(ref, "schedule_enrolment", AGENT, {"appointment_date": "2026-01-05"})
    assert too_short.value.errors == {"message": {
        "fr": "doit compter au moins 10 caractère(s)",
        "en": "must be at least 10 character(s) long"}}
    assert missing.value.errors == {"message": {"fr": "est obligatoire", "en": "is required"}}
    assert past.value.errors == {"appointment_date": {"fr": "doit être le 2026-03-02 ou après",
                                                      "en": "must be on or after 2026-03-02"}}
    assert engine.case(ref, SYSTEM).state == "under_review"


def test_form_fields_cannot_be_edited_in_a_non_editable_state(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = submitted(engine, "passport").reference
    version = engine.case(ref, SYSTEM).version
    with pytest.raises(InvalidData) as by_applicant:
        engine.fire(ref, "withdraw", APPLICANT, {"surname": "Forged"})
    with pytest.raises(InvalidData) as by_agent:
        engine.fire(ref, "start_review", AGENT, {"surname": "Forged"})
    frozen = {"surname": {"fr": "ne peut pas être modifié à cette étape",
                          "en": "cannot be changed at this step"}}
    assert by_applicant.value.errors == frozen
    assert by_agent.value.errors == frozen
    case = engine.case(ref, SYSTEM)
    assert (case.state, case.version, case.data["surname"]) == ("submitted", version, "Amegah")


def test_form_fields_can_be_edited_in_an_editable_state(sqlite_engine: Engine) -> None:
    """The counterpart of the test above: in info_requested the applicant corrects the form."""
    engine = sqlite_engine
    ref = passport_under_review(engine).reference
    engine.fire(ref, "request_information", AGENT, {"message": "Précisez votre profession."})
    case = engine.fire(ref, "provide_information", APPLICANT,
                       {"profession": "engineer", "phone": "+228 91 00 00 00"})
    assert case.state == "under_review"
    assert case.data["profession"] == "engineer"
    assert case.data["phone"] == "+22891000000"


# --- ConcurrentUpdate, UnknownCase, UnknownTrigger, UnknownProcedure ----------------------------

def test_concurrent_update_when_the_expected_version_is_stale(engine: Engine) -> None:
    case = engine.start("criminal_record", APPLICANT, criminal_record_data())
    stale = case.version
    engine.attach(case.reference, "identity_proof", "id.pdf", PDF, APPLICANT)
    with pytest.raises(ConcurrentUpdate) as excinfo:
        engine.fire(case.reference, "withdraw", APPLICANT, expected_version=stale)
    assert_bilingual(excinfo.value)
    current = engine.case(case.reference, APPLICANT)
    assert (current.state, current.version) == ("draft", stale + 1)
    assert len(engine.history(case.reference, APPLICANT)) == stale + 1
    done = engine.fire(case.reference, "withdraw", APPLICANT, expected_version=stale + 1)
    assert (done.state, done.version) == ("withdrawn", stale + 2)


def test_unknown_case_for_a_wrong_check_character_or_a_never_issued_reference(
        sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    case = engine.start("passport", APPLICANT, passport_data())
    ref = case.reference
    mistyped = ref[:-1] + ("0" if ref[-1] != "0" else "1")
    never_issued = references.make("PAS", 2026, 999_999)
    assert references.normalise(never_issued) == never_issued  # a well-formed reference
    operations: list[Callable[[str], object]] = [
        lambda r: engine.case(r, APPLICANT), lambda r: engine.history(r, APPLICANT),
        lambda r: engine.fire(r, "withdraw", APPLICANT),
        lambda r: engine.available(r, APPLICANT),
        lambda r: engine.attach(r, "birth_certificate", "b.pdf", PDF, APPLICANT),
        lambda r: engine.pay(r, 30_000, "tmoney", "TM-1", APPLICANT),
    ]
    errors = []
    for wrong in (mistyped, never_issued, "PAS-2026-1-X", ""):
        for operation in operations:
            with pytest.raises(UnknownCase) as excinfo:
                operation(wrong)
            errors.append(excinfo.value)
    assert len(errors) == 4 * len(operations)
    assert_bilingual(errors[0])
    assert mistyped in errors[0].message("en")
    typed = engine.case(f"  {ref.lower()} ", APPLICANT)  # typed casually: found
    assert typed == engine.case(ref, APPLICANT)
    assert typed.version == 1 and typed.fees_paid == 0


def test_unknown_trigger_and_unknown_procedure(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    with pytest.raises(UnknownTrigger) as trigger:
        engine.fire(ref, "teleport", APPLICANT)
    with pytest.raises(UnknownProcedure) as procedure:
        engine.start("visa", APPLICANT, {})
    assert "teleport" in trigger.value.message("en")
    assert "visa" in procedure.value.message("fr")
    assert_bilingual(trigger.value)
    assert_bilingual(procedure.value)
    assert engine.case(ref, SYSTEM).version == 1 and len(engine.cases(actor=SYSTEM)) == 1


# --- available() --------------------------------------------------------------------------------

def test_available_lists_allowed_and_blocked_triggers_with_reasons(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    draft = {a.trigger: a for a in engine.available(ref, APPLICANT)}
    assert set(draft) == {"submit", "abandon_draft", "withdraw"}
    assert draft["withdraw"].allowed and draft["withdraw"].reasons == ()
    assert not draft["submit"].allowed
    assert {(r.code, r.subject) for r in draft["submit"].reasons} == {
        ("document", "nationality_certificate"), ("document", "birth_certificate"),
        ("document", "id_card_copy"), ("document", "emergency_contact_certificate"),
        ("document", "proof_of_profession"), ("document", "photos"), ("payment", "submit")}
    assert not draft["abandon_draft"].allowed
    assert [(r.code, r.subject) for r in draft["abandon_draft"].reasons] == [
        ("role", "abandon_draft")]
    assert draft["submit"].label == "Soumettre la demande"
    english = Actor(APPLICANT.id, ["applicant"], language="en")
    assert {a.trigger: a.label for a in engine.available(ref, english)}["submit"] == (
        "Submit the application")

    attach_required(engine, ref)
    pay_outstanding(engine, ref)
    ready = {a.trigger: a for a in engine.available(ref, APPLICANT)}
    assert ready["submit"].allowed and ready["submit"].reasons == ()
    version = engine.case(ref, SYSTEM).version

    engine.fire(ref, "submit", APPLICANT)
    staff = {a.trigger: a for a in engine.available(ref, AGENT)}
    assert set(staff) == {"start_review", "refer_to_sgg", "withdraw"}
    assert staff["start_review"].allowed
    assert [(r.code, r.subject) for r in staff["refer_to_sgg"].reasons] == [
        ("guard", "refer_to_sgg")]
    assert [(r.code, r.subject) for r in staff["withdraw"].reasons] == [("role", "withdraw")]
    assert engine.case(ref, SYSTEM).version == version + 1  # asking changed nothing


def test_available_lists_triggers_that_need_step_input(sqlite_engine: Engine) -> None:
    """Listing does not ask for the step input yet (it used to raise InvalidData here)."""
    engine = sqlite_engine
    ref = passport_under_review(engine).reference
    found = {a.trigger: a for a in engine.available(ref, AGENT)}
    assert found["request_information"].allowed
    assert found["request_information"].input == ("message",)
    assert found["schedule_enrolment"].allowed
    assert found["schedule_enrolment"].input == ("appointment_date",)
    assert not found["reject"].allowed  # the supervisor's step
    assert [(r.code, r.subject) for r in found["reject"].reasons] == [("role", "reject")]
    assert found["reject"].input == ("reason",)


# --- guards that fail while being evaluated -----------------------------------------------------

GUARDED = """\
id: guarded
version: "1"
reference_prefix: GRD
title: {fr: Essai, en: Trial}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Agent, en: Clerk}}
fields:
  - {id: total, type: integer, label: {fr: Total, en: Total}}
  - {id: count, type: integer, label: {fr: Nombre, en: Count}}
  - {id: bonus, type: integer, label: {fr: Bonus, en: Bonus}}
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
    when: total / count > 1
  - trigger: accept
    label: {fr: Accepter, en: Accept}
    from: submitted
    to: done
    roles: [clerk]
    when: bonus > 3
"""


def test_a_guard_that_raises_blocks_the_transition(make_engine: MakeEngine, sqlite_url: str,
                                                   tmp_path: Path) -> None:
    source = tmp_path / "guarded.yaml"
    source.write_text(GUARDED, encoding="utf-8")
    engine = make_engine(sqlite_url, procedures=source)
    zero = engine.start("guarded", APPLICANT, {"total": 10, "count": 0}).reference
    unset = engine.start("guarded", APPLICANT, {"total": 10}).reference
    with pytest.raises(Blocked) as dividing_by_zero:
        engine.fire(zero, "submit", APPLICANT)
    with pytest.raises(Blocked) as dividing_by_none:
        engine.fire(unset, "submit", APPLICANT)
    ok = engine.start("guarded", APPLICANT, {"total": 10, "count": 2}).reference
    assert engine.fire(ok, "submit", APPLICANT).state == "submitted"
    with pytest.raises(Blocked) as comparing_none:
        engine.fire(ok, "accept", CLERK)  # bonus is None: None > 3 raises
    assert reasons(dividing_by_zero.value) == [("guard", "submit")]
    assert reasons(dividing_by_none.value) == [("guard", "submit")]
    assert reasons(comparing_none.value) == [("guard", "accept")]
    assert "total / count > 1" not in dividing_by_zero.value.message("en")  # citizens
    assert dividing_by_zero.value.reasons[0].detail == "total / count > 1"  # staff
    [accept] = engine.available(ok, CLERK)
    assert not accept.allowed and [(r.code, r.subject) for r in accept.reasons] == [
        ("guard", "accept")]
    states = [engine.case(r, SYSTEM).state for r in (zero, unset, ok)]
    assert states == ["draft", "draft", "submitted"]
    assert [len(engine.history(r, SYSTEM)) for r in (zero, unset, ok)] == [1, 1, 2]


# --- payments -----------------------------------------------------------------------------------

def count_payments(url: str, provider_reference: str) -> int:
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.connect() as c:
            return int(c.execute(sqlalchemy.text(
                "SELECT count(*) FROM payments WHERE provider_reference = :r"),
                {"r": provider_reference}).scalar_one())
    finally:
        raw.dispose()


def test_paying_twice_with_one_provider_reference_records_one_payment(
        engine: Engine, database_url: str) -> None:
    by_post = {"collection_mode": "post", "postal_address": "BP 1, Lomé"}  # 1500 XOF due
    ref = engine.start("criminal_record", APPLICANT, criminal_record_data(**by_post)).reference
    first = engine.pay(ref, 500, "tmoney", "TM-42", APPLICANT)
    again = engine.pay(ref, 500, "tmoney", "TM-42", APPLICANT)
    assert (first.fees_paid, first.version) == (500, 2)
    assert (again.fees_paid, again.version) == (500, 2)
    assert [h.trigger for h in engine.history(ref, SYSTEM)] == ["@start", "@pay"]
    assert engine.history(ref, SYSTEM)[-1].payload == {"amount": 500, "provider": "tmoney",
                                               "provider_reference": "TM-42"}

    other = engine.start("criminal_record", OTHER_APPLICANT, criminal_record_data()).reference
    with pytest.raises(InvalidData) as elsewhere:
        engine.pay(other, 500, "tmoney", "TM-42", OTHER_APPLICANT)
    with pytest.raises(InvalidData) as other_amount:
        engine.pay(ref, 700, "tmoney", "TM-42", APPLICANT)
    assert set(elsewhere.value.errors) == {"provider_reference"}
    assert elsewhere.value.errors["provider_reference"]["en"] == (
        "this payment reference is already used")
    assert set(other_amount.value.errors) == {"provider_reference"}
    assert count_payments(database_url, "TM-42") == 1
    assert (engine.case(other, SYSTEM).fees_paid, engine.case(other, SYSTEM).version) == (0, 1)
    assert (engine.case(ref, SYSTEM).fees_paid, engine.case(ref, SYSTEM).version) == (500, 2)

    # the same reference at another provider is another payment
    assert engine.pay(ref, 1000, "flooz", "TM-42", APPLICANT).fees_paid == 1500


@pytest.mark.parametrize("amount", [0, -500, True, 12.5, "500"])
def test_a_payment_amount_must_be_a_positive_whole_number(sqlite_engine: Engine,
                                                          amount: object) -> None:
    ref = sqlite_engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    with pytest.raises(InvalidData) as excinfo:
        sqlite_engine.pay(ref, amount, "tmoney", "TM-BAD", APPLICANT)  # type: ignore[arg-type]
    assert set(excinfo.value.errors) == {"amount"}
    assert sqlite_engine.case(ref, SYSTEM).fees_paid == 0


# --- attached files -----------------------------------------------------------------------------

def test_the_media_type_is_sniffed_from_the_bytes_not_the_name(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    case = engine.attach(ref, "birth_certificate", "photo.jpg", PDF, APPLICANT)
    case = engine.attach(ref, "nationality_certificate", "scan.pdf", io.BytesIO(PNG), APPLICANT)
    birth, nationality = case.documents
    assert (birth.filename, birth.media_type, birth.size) == ("photo.jpg", "application/pdf",
                                                             len(PDF))
    assert birth.sha256 == hashlib.sha256(PDF).hexdigest()
    assert (nationality.filename, nationality.media_type) == ("scan.pdf", "image/png")
    with pytest.raises(InvalidData) as text_as_pdf:
        engine.attach(ref, "proof_of_profession", "x.pdf", TEXT, APPLICANT)
    with pytest.raises(InvalidData) as pdf_as_photo:
        engine.attach(ref, "photos", "photo.jpg", PDF, APPLICANT)  # photos: JPEG or PNG only
    with pytest.raises(InvalidData) as unknown:
        engine.attach(ref, "selfie", "me.jpg", JPEG, APPLICANT)
    assert set(text_as_pdf.value.errors) == {"proof_of_profession"}
    assert text_as_pdf.value.errors["proof_of_profession"]["en"].startswith("file type refused")
    assert set(pdf_as_photo.value.errors) == {"photos"}
    assert set(unknown.value.errors) == {"selfie"}
    assert engine.case(ref, SYSTEM).version == 3


def test_oversize_files_are_refused(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    limit = 2 * 1024 * 1024  # photos: max_size "2 MB"
    exact = JPEG + b"\0" * (limit - len(JPEG))
    too_big = exact + b"\0"
    with pytest.raises(InvalidData) as as_bytes:
        engine.attach(ref, "photos", "big.jpg", too_big, APPLICANT)
    with pytest.raises(InvalidData) as as_stream:
        engine.attach(ref, "photos", "big.jpg", io.BytesIO(too_big), APPLICANT)
    assert as_bytes.value.errors["photos"]["en"] == f"file too large (max {limit} bytes)"
    assert set(as_stream.value.errors) == {"photos"}
    assert engine.case(ref, SYSTEM).documents == ()
    case = engine.attach(ref, "photos", "exact.jpg", io.BytesIO(exact), APPLICANT)
    assert [d.size for d in case.documents] == [limit]


def test_more_files_than_max_files_are_refused(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    engine.attach(ref, "emergency_contact_certificate", "a.pdf", pdf("a"), APPLICANT)  # max 1
    engine.attach(ref, "photos", "1.jpg", jpeg("1"), APPLICANT)
    engine.attach(ref, "photos", "2.jpg", jpeg("2"), APPLICANT)  # max 2
    with pytest.raises(InvalidData) as certificate:
        engine.attach(ref, "emergency_contact_certificate", "b.pdf", pdf("b"), APPLICANT)
    with pytest.raises(InvalidData) as photo:
        engine.attach(ref, "photos", "3.jpg", jpeg("3"), APPLICANT)
    assert certificate.value.errors == {"emergency_contact_certificate": {
        "fr": "au plus 1 fichier(s)", "en": "at most 1 file(s)"}}
    assert photo.value.errors["photos"]["en"] == "at most 2 file(s)"
    case = engine.case(ref, SYSTEM)
    assert [d.document_id for d in case.documents] == [
        "emergency_contact_certificate", "photos", "photos"]
    assert case.version == 4


def test_an_applicant_cannot_attach_outside_an_editable_state(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = submitted(engine, "passport").reference
    with pytest.raises(NotAllowed) as excinfo:
        engine.attach(ref, "birth_certificate", "again.pdf", pdf("again"), APPLICANT)
    assert "cannot be changed" in excinfo.value.message("en")
    assert len(engine.case(ref, SYSTEM).documents) == 7


class Trickle(io.RawIOBase):
    """A raw stream (like an unbuffered socket or pipe): each read returns at most 4 KiB."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = min(len(buffer), 4096, len(self.data) - self.position)
        buffer[:n] = self.data[self.position:self.position + n]
        self.position += n
        return n


def test_a_stream_giving_short_reads_is_read_whole(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    content = PDF + bytes(20_000)
    case = engine.attach(ref, "birth_certificate", "b.pdf", Trickle(content),  # type: ignore
                         APPLICANT)
    [document] = case.documents
    assert (document.size, document.sha256) == (len(content),
                                                hashlib.sha256(content).hexdigest())
    huge = Trickle(JPEG + bytes(3 * 1024 * 1024))
    with pytest.raises(InvalidData) as excinfo:
        engine.attach(ref, "photos", "big.jpg", huge, APPLICANT)  # type: ignore[arg-type]
    assert set(excinfo.value.errors) == {"photos"}


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_blob_is_stored_under_its_sha256_and_the_filename_never_reaches_the_disk(
        make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> None:
    root = tmp_path / "blob-store"
    engine = make_engine(sqlite_url, blobs=DirectoryBlobStore(root))
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    name = "../../Acte de naissance KOSSI-AMEGAH.pdf"
    content = pdf("birth certificate of Kossi")
    case = engine.attach(ref, "birth_certificate", name, content, APPLICANT)
    key = hashlib.sha256(content).hexdigest()
    assert blob_files(root) == [root / key[:2] / key]
    assert (root / key[:2] / key).read_bytes() == content
    assert engine.blobs.get(key) == content
    assert case.documents[0].filename == name and case.documents[0].sha256 == key
    on_disk = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
    assert not [p for p in on_disk if "KOSSI" in p or "naissance" in p]


def test_the_default_blob_store_of_an_sqlite_file_sits_beside_it(
        make_engine: MakeEngine, tmp_path: Path, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, blobs=None)
    ref = engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    engine.attach(ref, "identity_proof", "Carte d'identité ADJOVI.jpg", JPEG, APPLICANT)
    key = hashlib.sha256(JPEG).hexdigest()
    root = tmp_path / "guichet.db.blobs"
    assert blob_files(root) == [root / key[:2] / key]
    assert not [p for p in tmp_path.rglob("*") if "ADJOVI" in p.name]


# --- procedure versions -------------------------------------------------------------------------

def test_a_case_stays_on_the_procedure_version_it_started_with(
        make_engine: MakeEngine, database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "procedures"
    folder.mkdir()
    source = folder / "criminal_record.yaml"
    shutil.copy(PROCEDURES / "criminal_record.yaml", source)
    first = make_engine(database_url, procedures=folder)
    old = first.start("criminal_record", APPLICANT, criminal_record_data())
    first.close()

    text = source.read_text(encoding="utf-8")
    assert "    amount: 500\n" in text and "fr: Confirmer et payer," in text
    source.write_text(text.replace("    amount: 500\n", "    amount: 700\n")
                      .replace("fr: Confirmer et payer,", "fr: Confirmer et régler,"),
                      encoding="utf-8")
    second = make_engine(database_url, procedures=folder)
    new = second.start("criminal_record", OTHER_APPLICANT, criminal_record_data())
    assert new.procedure_hash != old.procedure_hash
    assert second.case(old.reference, SYSTEM).procedure_hash == old.procedure_hash
    assert (second.case(old.reference, SYSTEM).fees_due, new.fees_due) == (500, 700)
    labels = {r: {a.trigger: a.label for a in second.available(r, actor)}["submit"]
              for r, actor in ((old.reference, APPLICANT), (new.reference, OTHER_APPLICANT))}
    assert labels == {old.reference: "Confirmer et payer", new.reference: "Confirmer et régler"}
    second.close()

    # a fresh engine that only knows the edited file runs the old case from its stored snapshot
    third = make_engine(database_url, procedures=source)
    for ref, actor in ((old.reference, APPLICANT), (new.reference, OTHER_APPLICANT)):
        third.attach(ref, "identity_proof", "id.pdf", pdf(ref), actor)
        third.pay(ref, 500, "tmoney", f"TM-{ref}", actor)
    assert third.fire(old.reference, "submit", APPLICANT).state == "submitted"
    with pytest.raises(Blocked) as excinfo:
        third.fire(new.reference, "submit", OTHER_APPLICANT)
    assert reasons(excinfo.value) == [("payment", "submit")]
    assert "200" in excinfo.value.message("en")
    assert third.case(old.reference, SYSTEM).procedure_hash == old.procedure_hash
    assert third.procedures["criminal_record"].hash == new.procedure_hash


# --- hooks --------------------------------------------------------------------------------------

def ready_to_submit(engine: Engine) -> str:
    ref = engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    attach_required(engine, ref)
    pay_outstanding(engine, ref)
    return ref


def test_hooks_are_called_after_commit(engine: Engine, database_url: str) -> None:
    ref = ready_to_submit(engine)
    reader = sqlalchemy.create_engine(database_url)  # another connection, another pool
    seen: list[tuple[str, str, str, int]] = []

    def look(event: Event) -> None:
        with reader.connect() as c:
            row = c.execute(sqlalchemy.text(
                "SELECT state, version FROM cases WHERE reference = :r"),
                {"r": event.reference}).one()
        seen.append((event.name, event.payload["to"], row.state, row.version))

    engine.on("transition", look)
    try:
        case = engine.fire(ref, "submit", APPLICANT)
    finally:
        reader.dispose()
    assert seen == [("transition", "submitted", "submitted", case.version)]


def test_hooks_are_not_called_when_the_change_fails(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    ref = engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    calls: list[Event] = []
    for name in EVENTS:
        engine.on(name, calls.append)
    with pytest.raises(Blocked):
        engine.fire(ref, "submit", APPLICANT)  # nothing attached, nothing paid
    with pytest.raises(NotAllowed):
        engine.fire(ref, "withdraw", OTHER_APPLICANT)
    with pytest.raises(InvalidData):
        engine.attach(ref, "identity_proof", "x.pdf", TEXT, APPLICANT)
    with pytest.raises(InvalidData):
        engine.pay(ref, 0, "tmoney", "TM-0", APPLICANT)
    assert calls == []
    engine.fire(ref, "withdraw", APPLICANT)
    assert [e.name for e in calls] == ["transition", "state_entered", "notification"]


def test_a_failing_hook_does_not_undo_the_transition(sqlite_engine: Engine,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    engine = sqlite_engine
    ref = ready_to_submit(engine)
    received: list[Event] = []

    def gateway(event: Event) -> None:
        if not received:
            received.append(event)
            raise RuntimeError("SMS gateway down")
        received.append(event)

    engine.on("transition", gateway)
    with caplog.at_level(logging.ERROR, logger="guichet"):
        case = engine.fire(ref, "submit", APPLICANT)
    assert case.state == "submitted"
    assert engine.case(ref, SYSTEM).state == "submitted"
    assert engine.history(ref, SYSTEM)[-1].trigger == "submit"
    assert any("hook failed" in r.getMessage() for r in caplog.records)
    # the event stayed in the outbox: delivering pending events hands it over again
    engine.deliver_pending()
    assert [(e.name, e.payload["trigger"]) for e in received] == [
        ("transition", "submit"), ("transition", "submit")]


def test_deliver_pending_retries_a_failed_delivery_behind_events_nobody_hears(
        make_engine: MakeEngine) -> None:
    engine = make_engine("sqlite://")  # in memory: 100 quick changes
    received: list[Event] = []

    def sms_gateway(event: Event) -> None:  # the host listens to notifications only
        received.append(event)
        if len(received) == 1:
            raise RuntimeError("SMS gateway down")

    engine.on("notification", sms_gateway)
    ref = engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    for i in range(100):  # payment_recorded events: nobody listens, they stay undelivered
        engine.pay(ref, 5, "tmoney", f"TM-{i}", APPLICANT)
    engine.fire(ref, "withdraw", APPLICANT)  # its SMS fails once
    assert len(received) == 1
    engine.deliver_pending()
    assert len(received) == 2 and received[1].payload == received[0].payload


def test_hook_events_of_a_submission(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    calls: list[Event] = []
    for name in EVENTS:
        engine.on(name, calls.append)
    case = submitted(engine, "passport")
    names = [e.name for e in calls]
    assert names[:2] == ["case_started", "state_entered"]
    assert names.count("document_attached") == 7 and names.count("payment_recorded") == 1
    assert names[-4:] == ["transition", "state_entered", "notification", "document_issued"]
    issued = calls[-1]
    assert issued.reference == case.reference and issued.payload["id"] == "acknowledgement"
    assert case.reference in issued.payload["text"]["fr"]
    with pytest.raises(ValueError):
        engine.on("case_teleported", calls.append)


# --- history is append-only ---------------------------------------------------------------------

def test_history_rows_cannot_be_updated_or_deleted(engine: Engine, database_url: str) -> None:
    ref = ready_to_submit(engine)
    before = engine.history(ref, SYSTEM)
    raw = sqlalchemy.create_engine(database_url)
    try:
        with pytest.raises(DBAPIError) as updating:
            with raw.begin() as c:
                c.exec_driver_sql("UPDATE history SET actor_id = 'forger'")
        with pytest.raises(DBAPIError) as deleting:
            with raw.begin() as c:
                c.exec_driver_sql("DELETE FROM history")
    finally:
        raw.dispose()
    assert "append-only" in str(updating.value)
    assert "append-only" in str(deleting.value)
    assert engine.history(ref, SYSTEM) == before
    assert engine.fire(ref, "submit", APPLICANT).version == len(before) + 1


# --- deadlines ----------------------------------------------------------------------------------

def test_a_draft_left_31_days_is_expired_by_tick(engine: Engine, clock: FakeClock) -> None:
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    clock.advance(29 * DAY)
    assert engine.tick() == [(ref, "abandon_draft", "reminded")]  # not due yet
    assert engine.case(ref, SYSTEM).state == "draft"
    clock.advance(2 * DAY)
    done = engine.tick()
    assert (ref, "abandon_draft", "fired") in done
    case = engine.case(ref, SYSTEM)
    history = engine.history(ref, SYSTEM)
    assert (case.state, case.outcome) == ("expired", "expired")
    last = history[-1]
    assert (last.trigger, last.from_state, last.to_state) == ("abandon_draft", "draft", "expired")
    assert (last.actor_id, last.actor_role) == ("system", "system")
    assert_consistent(case, history)
    assert engine.timers(ref) == []
    assert engine.tick() == []


def test_leaving_a_state_cancels_its_timers(engine: Engine, clock: FakeClock) -> None:
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    assert sorted((t["state"], t["kind"]) for t in engine.timers(ref)) == [
        ("draft", "deadline"), ("draft", "reminder")]
    attach_required(engine, ref)
    pay_outstanding(engine, ref)
    engine.fire(ref, "submit", APPLICANT)
    assert engine.timers(ref) == []
    engine.fire(ref, "start_review", AGENT)
    engine.fire(ref, "request_information", AGENT, {"message": "Photo floue, merci."})
    assert sorted((t["state"], t["kind"], t["trigger"]) for t in engine.timers(ref)) == [
        ("info_requested", "deadline", "expire_info_request"),
        ("info_requested", "reminder", "expire_info_request")]
    engine.fire(ref, "provide_information", APPLICANT)
    assert engine.timers(ref) == []
    clock.advance(120 * DAY)
    assert engine.tick() == []
    assert engine.case(ref, SYSTEM).state == "under_review"


def test_a_reminder_timer_sends_a_reminder_event(sqlite_engine: Engine,
                                                clock: FakeClock) -> None:
    engine = sqlite_engine
    started = clock()
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    reminders: list[Event] = []
    engine.on("reminder", reminders.append)
    clock.advance(28 * DAY)  # the reminder is due 3 days before the 30-day deadline
    assert engine.tick() == [(ref, "abandon_draft", "reminded")]
    assert engine.tick() == []  # once only
    [event] = reminders
    assert event.reference == ref and event.payload["trigger"] == "abandon_draft"
    assert event.payload["due_at"] == (started + 30 * DAY).isoformat()
    [note] = event.payload["notifications"]
    assert note["channel"] == "sms" and ref in note["text"]["fr"] and ref in note["text"]["en"]
    case = engine.case(ref, SYSTEM)
    assert (case.state, case.version) == ("draft", 1)
    assert [t["kind"] for t in engine.timers(ref)] == ["deadline"]


# --- references ---------------------------------------------------------------------------------

def issued(prefix: str, year: int, count: int) -> list[str]:
    """The first `count` references of a prefix and year (numbers without a check skipped)."""
    made = (references.make(prefix, year, n) for n in range(1, 100))
    return [r for r in made if r is not None][:count]


def test_references_have_the_documented_shape_and_are_unique(engine: Engine,
                                                             clock: FakeClock) -> None:
    passports = [engine.start("passport", APPLICANT, {}).reference for _ in range(3)]
    associations = [engine.start("association", APPLICANT, {}).reference for _ in range(2)]
    assert passports == issued("PAS", 2026, 3)
    assert associations == issued("ASC", 2026, 2)
    clock.advance(365 * DAY)
    next_year = engine.start("passport", APPLICANT, {}).reference
    assert next_year == issued("PAS", 2027, 1)[0]
    everything = [*passports, *associations, next_year]
    assert len(set(everything)) == len(everything)
    for ref in everything:
        assert REFERENCE.fullmatch(ref)
        assert references.normalise(ref) == ref
    assert passports[0].startswith("PAS-2026-000001-")


def test_cases_are_listed_by_procedure_state_and_applicant_page_by_page(
        sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    mine = [engine.start("passport", APPLICANT, {}).reference for _ in range(3)]
    theirs = engine.start("association", OTHER_APPLICANT, association_data()).reference
    engine.fire(mine[1], "withdraw", APPLICANT)
    assert [c.reference for c in engine.cases(actor=SYSTEM)] == [*mine, theirs]
    drafts = engine.cases("passport", "draft", actor=SYSTEM)
    assert [c.reference for c in drafts] == [mine[0], mine[2]]
    by_them = engine.cases(applicant=OTHER_APPLICANT.id, actor=SYSTEM)
    assert [c.reference for c in by_them] == [theirs]
    assert [c.reference for c in engine.cases(actor=APPLICANT)] == mine  # theirs unreadable
    page = engine.cases(limit=2, actor=SYSTEM)
    rest = engine.cases(limit=2, after=page[-1].reference, actor=SYSTEM)
    assert [c.reference for c in page + rest] == [*mine, theirs]
