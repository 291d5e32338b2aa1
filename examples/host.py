"""A host application embedding Guichet: one passport application, from the form to the counter.

Run it from anywhere: `python examples/host.py`. It keeps its database in a temporary directory,
prints the SMS, e-mails and portal messages it would send (from the engine's hooks), and ends
with the history of the case.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from engine import Actor, Case, Engine, Event
from engine.values import SYSTEM

PROCEDURES = Path(__file__).resolve().parent.parent / "procedures"
PDF = b"%PDF-1.4\n% a scanned page\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 a photo "


class Notifier:
    """What a real host would hand to an SMS gateway, a mail server or the staff portal."""

    def __init__(self, engine: Engine, language: str = "en") -> None:
        self.engine = engine
        self.language = language

    def notification(self, event: Event) -> None:
        note = event.payload
        text = note["text"].get(self.language) or note["text"].get("fr", "")
        if note["to"] != "applicant":
            print(f"  [portal -> {note['to']}] {event.reference}: {text}")
            return
        # whom to reach: the applicant's data, read by the host itself (no person: SYSTEM)
        data = self.engine.case(event.reference, SYSTEM).data
        if note["channel"] == "sms":
            print(f"  [SMS -> {data['phone']}] {text}")
        elif note["channel"] == "email" and data.get("email"):
            subject = (note["subject"] or {}).get(self.language, "")
            print(f"  [e-mail -> {data['email']}] {subject}: {text}")
        else:
            print(f"  [portal -> applicant] {text}")

    def document_issued(self, event: Event) -> None:
        title = event.payload["title"].get(self.language)
        print(f"  [document issued] {title} for {event.reference}")


def step(case: Case, what: str) -> None:
    print(f"{what}: {case.reference} is now {case.state} (version {case.version})")


def run(directory: Path) -> None:
    engine = Engine(PROCEDURES, f"sqlite:///{directory / 'guichet.db'}")
    try:
        notifier = Notifier(engine)
        engine.on("notification", notifier.notification)
        engine.on("document_issued", notifier.document_issued)

        citizen = Actor("citizen-1", ["applicant"], language="en")
        agent = Actor("agent-1", ["agent"], language="en")
        supervisor = Actor("sup-1", ["supervisor"], language="en")

        case = engine.start("passport", citizen, {
            "passport_type": "ordinary", "request_type": "first", "surname": "Amegah",
            "first_names": "Kossi", "sex": "male", "birth_date": "1990-05-01",
            "birth_place": "Lomé", "nin": "1234567890", "marital_status": "single",
            "profession": "teacher", "address": "Rue 1, Lomé", "phone": "90 12 34 56",
            "email": "kossi@example.tg", "emergency_contact_name": "Ama Amegah",
            "emergency_contact_phone": "91 23 45 67",
        })
        step(case, "started")
        for document in ("nationality_certificate", "birth_certificate", "id_card_copy",
                         "emergency_contact_certificate", "proof_of_profession"):
            engine.attach(case.reference, document, f"{document}.pdf", PDF, citizen)
        engine.attach(case.reference, "photos", "photo-1.jpg", JPEG + b"1", citizen)
        engine.attach(case.reference, "photos", "photo-2.jpg", JPEG + b"2", citizen)
        case = engine.pay(case.reference, case.fees_due, "tmoney", "TM-0001", citizen)
        step(case, f"documents attached, {case.fees_paid} XOF paid")

        appointment = (dt.date.today() + dt.timedelta(days=14)).isoformat()
        steps: list[tuple[Actor, str, dict[str, Any]]] = [
            (citizen, "submit", {}),
            (agent, "start_review", {}),
            (agent, "schedule_enrolment", {"appointment_date": appointment}),
            (agent, "record_enrolment", {"originals_checked": True, "photo_captured": True,
                                         "fingerprints_captured": True,
                                         "signature_captured": True}),
            (supervisor, "approve", {}),  # not the agent: separation of duties
            (agent, "mark_ready", {}),
            (agent, "hand_over", {"passport_number": "TG1234567", "holder_verified": True}),
        ]
        for actor, trigger, data in steps:
            case = engine.fire(case.reference, trigger, actor, data,
                               expected_version=case.version)
            step(case, f"{trigger} by {actor.id}")

        print()
        print(f"History of {case.reference} (outcome: {case.outcome}):")
        for entry in engine.history(case.reference, citizen):  # as the applicant sees it
            print(f"{entry.sequence:>3}  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.trigger:<20} "
                  f"{entry.from_state or '-'} → {entry.to_state}  "
                  f"{entry.actor_id} ({entry.actor_role})")
    finally:
        engine.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="guichet-host-") as directory:
        run(Path(directory))


if __name__ == "__main__":
    main()
