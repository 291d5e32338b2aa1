"""Reusable test helpers: actors, sniffable file contents, valid data for each shipped procedure,
and happy-path drivers that take a case from `start` to its accepted final state.

Import from a test file with `from helpers import ...` (the tests directory is on sys.path).
Everything here uses only the public Engine API, so the drivers double as usage examples.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine import Actor, Blocked, Case, ConcurrentUpdate, Engine, HistoryEntry
from engine.clock import FakeClock
from engine.values import SYSTEM

ROOT = Path(__file__).resolve().parent.parent
PROCEDURES = ROOT / "procedures"

# --- golden files -------------------------------------------------------------------------------

#: GUICHET_REGEN=1 rewrites the golden files from what the code now renders (read the diff).
REGEN = os.environ.get("GUICHET_REGEN") == "1"


def assert_golden(golden: Path, text: str) -> None:
    """`text` is exactly the golden file's content (rewritten first under GUICHET_REGEN=1)."""
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


# --- time ---------------------------------------------------------------------------------------

START = dt.datetime(2026, 3, 2, 9, 0)  # a Monday, naive UTC like the engine's clock


def fake_clock(now: dt.datetime = START) -> FakeClock:
    """The engine's fake clock, at `now` (by default START): moves only when told to."""
    return FakeClock(now)


#: The `make_engine` fixture: make_engine(url, procedures=None, blobs=..., **options).
MakeEngine = Callable[..., Engine]


# --- actors -------------------------------------------------------------------------------------

APPLICANT = Actor("citizen-1", ["applicant"])
OTHER_APPLICANT = Actor("citizen-2", ["applicant"])
AGENT = Actor("agent-1", ["agent"])
AGENT_2 = Actor("agent-2", ["agent"])
SUPERVISOR = Actor("supervisor-1", ["supervisor"])
SGG = Actor("sgg-1", ["sgg"])
MINISTER = Actor("minister-1", ["minister"])
CLERK = Actor("clerk-1", ["clerk"])
MAGISTRATE = Actor("magistrate-1", ["magistrate"])

# --- file contents, recognised by their first bytes ---------------------------------------------

PDF = b"%PDF-1.4\n% a tiny test document\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 a tiny test photo"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR a tiny test image"
TEXT = b"just some text, not a document\n"


def pdf(tag: str = "") -> bytes:
    """A distinct PDF (different bytes give different blobs)."""
    return PDF + tag.encode()


def jpeg(tag: str = "") -> bytes:
    return JPEG + tag.encode()


# --- valid form data ----------------------------------------------------------------------------

def passport_data(**overrides: Any) -> dict[str, Any]:
    """An adult's first ordinary passport application (every required field)."""
    data: dict[str, Any] = {
        "passport_type": "ordinary", "request_type": "first", "surname": "Amegah",
        "first_names": "Kossi", "sex": "male", "birth_date": "1990-05-01",
        "birth_place": "Lomé", "nin": "1234567890", "marital_status": "single",
        "profession": "teacher", "address": "Rue 1, Lomé", "phone": "90 12 34 56",
        "emergency_contact_name": "Ama Amegah", "emergency_contact_phone": "91234567",
    }
    data.update(overrides)
    return data


def _member(surname: str, role: str) -> dict[str, Any]:
    return {"surname": surname, "first_names": "Yao", "birth_date": "1980-01-15",
            "birth_place": "Kpalimé", "address": "Quartier Bè, Lomé", "profession": "farmer",
            "nationality": "TG", "role_in_board": role}


def association_data(**overrides: Any) -> dict[str, Any]:
    """A national (non-foreign) association declaration with one extra receipt copy."""
    data: dict[str, Any] = {
        "name": "Les Amis du Football de Bè", "acronym": "AFB", "kind": "sports",
        "object": "Promouvoir la pratique du football chez les jeunes du quartier.",
        "head_office_address": "Rue 12, Bè, Lomé", "head_office_region": "grand_lome",
        "constituent_assembly_date": "2025-11-20", "contact_phone": "+22890000001",
        "contact_email": "afb@example.tg",
        "founding_members": [_member("Agbeko", "president"),
                             _member("Mensah", "secretary_general"),
                             _member("Koffi", "treasurer")],
        "extra_copies": 1,
    }
    data.update(overrides)
    return data


def criminal_record_data(**overrides: Any) -> dict[str, Any]:
    """A Togolese national born in Togo, collecting in person at the Lomé court."""
    data: dict[str, Any] = {
        "surname": "Adjovi", "first_names": "Akossiwa", "sex": "female",
        "birth_date": "1995-08-12", "born_in_togo": True, "birth_place": "Sokodé",
        "nationality": "TG", "father_name": "Adjovi Komlan", "mother_name": "Afi Dossou",
        "phone": "+228 90 11 22 33", "identity_document_kind": "birth_certificate",
        "collection_mode": "in_person", "processing_centre": "lome", "by_proxy": False,
    }
    data.update(overrides)
    return data


VALID_DATA = {"passport": passport_data, "association": association_data,
              "criminal_record": criminal_record_data}

#: The documents each happy-path case must have (document id -> (files, content maker)).
REQUIRED_DOCUMENTS: Mapping[str, Mapping[str, tuple[int, Any]]] = {
    "passport": {
        "nationality_certificate": (1, pdf), "birth_certificate": (1, pdf),
        "id_card_copy": (1, pdf), "emergency_contact_certificate": (1, pdf),
        "proof_of_profession": (1, pdf), "photos": (2, jpeg),
    },
    "association": {
        "statutes": (1, pdf), "constituent_assembly_minutes": (1, pdf),
        "members_list": (1, pdf),
    },
    "criminal_record": {"identity_proof": (1, pdf)},
}


def attach_required(engine: Engine, reference: str, actor: Actor = APPLICANT) -> Case:
    """Attach every document the happy-path case requires (each file with distinct bytes)."""
    case = engine.case(reference, actor)
    for document_id, (count, make) in REQUIRED_DOCUMENTS[case.procedure_id].items():
        for i in range(count):
            case = engine.attach(reference, document_id, f"{document_id}-{i}.bin",
                                 make(f"{reference}/{document_id}/{i}"), actor)
    return case


def pay_outstanding(engine: Engine, reference: str, actor: Actor = APPLICANT,
                    amount: int | None = None, provider: str = "tmoney") -> Case:
    """Pay `amount` (by default all the case still owes), under a fresh provider reference."""
    case = engine.case(reference, actor)
    amount = case.fees_outstanding if amount is None else amount
    if amount == 0:
        return case
    return engine.pay(reference, amount, provider, f"{provider}-{reference}-{case.version}",
                      actor)


def submitted(engine: Engine, procedure_id: str, actor: Actor = APPLICANT,
              amount: int | None = None, **overrides: Any) -> Case:
    """A new case of `procedure_id`, complete, paid (`amount`, or all fees) and submitted."""
    case = engine.start(procedure_id, actor, VALID_DATA[procedure_id](**overrides))
    attach_required(engine, case.reference, actor)
    pay_outstanding(engine, case.reference, actor, amount)
    return engine.fire(case.reference, "submit", actor)


def in_future(engine: Engine, days: int) -> str:
    """An ISO date `days` after the engine's today."""
    return (engine.clock().date() + dt.timedelta(days=days)).isoformat()


# --- happy paths --------------------------------------------------------------------------------

def passport_under_review(engine: Engine, applicant: Actor = APPLICANT) -> Case:
    case = submitted(engine, "passport", applicant)
    return engine.fire(case.reference, "start_review", AGENT)


def enrolled_passport(engine: Engine, applicant: Actor = APPLICANT) -> str:
    """A passport case taken to `enrolled` (biometrics captured); its reference."""
    ref = passport_under_review(engine, applicant).reference
    engine.fire(ref, "schedule_enrolment", AGENT, {"appointment_date": in_future(engine, 7)})
    engine.fire(ref, "record_enrolment", AGENT, {
        "originals_checked": True, "photo_captured": True, "fingerprints_captured": True,
        "signature_captured": True})
    return ref


def passport_issued(engine: Engine, applicant: Actor = APPLICANT) -> Case:
    ref = enrolled_passport(engine, applicant)
    engine.fire(ref, "approve", SUPERVISOR)
    engine.fire(ref, "mark_ready", AGENT)
    return engine.fire(ref, "hand_over", AGENT, {"passport_number": "TG1234567",
                                                 "holder_verified": True})


def association_registered(engine: Engine, applicant: Actor = APPLICANT) -> Case:
    # only the review fee at submission; the extra receipt copy is due at sign_receipt
    ref = submitted(engine, "association", applicant, amount=25_000).reference
    engine.fire(ref, "start_review", AGENT)
    engine.fire(ref, "validate", AGENT)
    engine.fire(ref, "record_deposit", AGENT_2, {"deposit_date": engine.clock().date().isoformat(),
                                                 "originals_checked": True})
    pay_outstanding(engine, ref, applicant)  # 500 XOF for the extra copy
    return engine.fire(ref, "sign_receipt", SUPERVISOR)


def criminal_record_collected(engine: Engine, applicant: Actor = APPLICANT) -> Case:
    ref = submitted(engine, "criminal_record", applicant).reference
    engine.fire(ref, "start_verification", CLERK)
    engine.fire(ref, "verify", CLERK)
    engine.fire(ref, "sign", MAGISTRATE)
    engine.fire(ref, "make_available", CLERK)
    return engine.fire(ref, "hand_over", CLERK, {"collected_by": "holder",
                                                 "identity_checked": True})


#: procedure id -> (driver, accepted final state, every history trigger in order)
HAPPY_PATHS: Mapping[str, tuple[Any, str, list[str]]] = {
    "passport": (passport_issued, "issued", [
        "@start", *["@attach"] * 7, "@pay", "submit", "start_review", "schedule_enrolment",
        "record_enrolment", "approve", "mark_ready", "hand_over"]),
    "association": (association_registered, "registered", [
        "@start", *["@attach"] * 3, "@pay", "submit", "start_review", "validate",
        "record_deposit", "@pay", "sign_receipt"]),
    "criminal_record": (criminal_record_collected, "collected", [
        "@start", "@attach", "@pay", "submit", "start_verification", "verify", "sign",
        "make_available", "hand_over"]),
}


# --- invariants ---------------------------------------------------------------------------------

def assert_consistent(case: Case, history: list[HistoryEntry]) -> None:
    """The invariants every stored case keeps, whatever happened to the process writing it.

    One history row per change, numbered 1..N with no gap or duplicate; the version counts
    them; each row starts where the previous one ended; the case is where the last row ended.
    """
    assert [h.sequence for h in history] == list(range(1, len(history) + 1))
    assert case.version == len(history)
    assert history[0].trigger == "@start" and history[0].from_state is None
    for before, after in zip(history, history[1:], strict=False):
        assert after.from_state == before.to_state, (before, after)
        if after.trigger.startswith("@"):
            assert after.from_state == after.to_state
    assert case.state == history[-1].to_state


# --- child processes of the concurrency tests ---------------------------------------------------
# They live here, not in the test module, so a child process does not import pytest.

#: Toggling between these states never ends a case: request_information / provide_information.
LOOP = {"under_review": ("request_information", AGENT, {"message": "Merci de préciser."}),
        "info_requested": ("provide_information", APPLICANT, {})}
PASSPORT = PROCEDURES / "passport.yaml"  # children load one procedure: they start faster
PATIENCE = 120  # seconds a child may take before a test gives up on it


def toggle_worker(url: str, reference: str, fires: int, expected_version: bool, startup: Any,
                  go: Any, results: Any) -> None:
    """Fire `fires` transitions of LOOP on one case; report (pid, done, retries, error).

    With `expected_version`, each fire names the version it was decided on; without, the
    engine's own optimistic check must catch the race. Lost races are retried.
    """
    done = retries = 0
    error = None
    try:
        with startup:  # engines start one at a time (see test_engines_start_concurrently)
            engine = Engine(PASSPORT, url)
        go.wait()
        pause = random.Random(os.getpid())
        while done < fires:
            case = engine.case(reference, SYSTEM)
            trigger, actor, data = LOOP[case.state]
            time.sleep(pause.uniform(0, 0.003))  # think a little: others may act meanwhile
            try:
                engine.fire(reference, trigger, actor, data,
                            expected_version=case.version if expected_version else None)
            except ConcurrentUpdate:
                retries += 1
                continue
            except Blocked as exc:  # somebody moved the case since we read it
                if [(r.code, r.subject) for r in exc.reasons] != [("state", trigger)]:
                    raise
                retries += 1
                continue
            done += 1
        engine.close()
    except BaseException as exc:  # everything goes back to the parent
        error = f"{type(exc).__name__}: {exc}"
    results.put((os.getpid(), done, retries, error))


def fire_until_killed(url: str, reference: str, running: Any) -> None:
    """Fire LOOP transitions as fast as possible, say so after the first, never stop alone."""
    engine = Engine(PASSPORT, url)
    give_up = time.monotonic() + PATIENCE  # only if the parent died without killing us
    while time.monotonic() < give_up:
        case = engine.case(reference, SYSTEM)
        trigger, actor, data = LOOP[case.state]
        engine.fire(reference, trigger, actor, data)
        if not running.is_set():
            running.set()


def build_engine(url: str, go: Any, results: Any) -> None:
    """Start an Engine together with the other children; report "ok" or the error."""
    go.wait()
    try:
        Engine(PASSPORT, url).close()
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def tick_until_idle(url: str, now: dt.datetime, go: Any, results: Any) -> None:
    """Tick at `now` until no timer is due, together with other tickers; report the results."""
    outcomes: list[str] = []
    error = None
    try:
        engine = Engine(PASSPORT, url)
        go.wait()
        while done := engine.tick(now):
            outcomes.extend(result for _, _, result in done)
        engine.close()
    except BaseException as exc:  # everything goes back to the parent
        error = f"{type(exc).__name__}: {exc}"
    results.put((outcomes, error))
