"""Retention is enforced (issue 9, point 6): `Engine.purge` and `guichet purge`.

A closed case whose procedure version declares `retention:` has its personal data erased once
that retention, counted from when it entered its final state, has passed: form data, file
names and files, values of step input, form changes and rendered texts, parties' contacts;
the applicant's id becomes a pseudonym. The skeleton of the record stays (sequence, trigger,
states, times, roles, staff ids, payments), and a `@purge` row records the purge. The guards
accept purging's rewrites, and nothing else (tests/test_audit.py tries the rest).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner
from helpers import (
    APPLICANT,
    CLERK,
    OTHER_APPLICANT,
    PROCEDURES,
    FakeClock,
    MakeEngine,
    criminal_record_collected,
    criminal_record_data,
    pdf,
    submitted,
)
from sqlalchemy.exc import DBAPIError

from cli import main
from engine import EVENTS, Engine, Event, Procedure, load_procedure, runtime
from engine.values import SYSTEM

#: What the applicant's case holds that is theirs (criminal_record_data, helpers' file names).
PERSONAL = ["Adjovi", "Akossiwa", "Sokodé", "Afi Dossou", "90112233", APPLICANT.id,
            "identity_proof-0.bin"]
RECORD = ("cases", "history", "outbox", "documents", "payments")


# --- procedures with and without retention ------------------------------------------------------

def with_retention(tmp_path: Path, name: str, retention: str | None) -> Path:
    """A copy of a shipped procedure file declaring `retention` (None: declaring none)."""
    source = (PROCEDURES / f"{name}.yaml").read_text(encoding="utf-8")
    source = re.sub(r"(?m)^retention:.*\n", "", source)
    if retention is not None:
        source = re.sub(r"(?m)^(validity:.*\n)", rf'\1retention: "{retention}"\n', source,
                        count=1)
    path = tmp_path / "procedures" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path


@pytest.fixture
def procedures(tmp_path: Path) -> list[Procedure]:
    """The criminal record kept 5 years after closing; the passport without retention."""
    return [load_procedure(with_retention(tmp_path, "criminal_record", "5 years")),
            load_procedure(with_retention(tmp_path, "passport", None))]


@pytest.fixture
def engine(make_engine: MakeEngine, database_url: str, procedures: list[Procedure]) -> Engine:
    return make_engine(database_url, procedures=procedures)


RETENTION = dt.timedelta(days=5 * 365)  # "5 years" (a year counts 365 days)


# --- reading the database as it is ---------------------------------------------------------------

def raw_rows(url: str, reference: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the case's record, by table, as stored (JSON as text)."""
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.connect() as c:
            case_id = c.execute(sqlalchemy.text("SELECT id FROM cases WHERE reference = :r"),
                                {"r": reference}).scalar_one()
            found = {}
            for table in RECORD:
                key = "id" if table == "cases" else "case_id"
                rows = c.execute(sqlalchemy.text(
                    f"SELECT * FROM {table} WHERE {key} = :id ORDER BY id"), {"id": case_id})
                found[table] = [dict(r) for r in rows.mappings()]
            return found
    finally:
        raw.dispose()


def text_of(rows: Any) -> str:
    return json.dumps(rows, default=str, ensure_ascii=False)


def skeleton(engine: Engine, reference: str) -> list[tuple[Any, ...]]:
    return [(h.sequence, h.trigger, h.from_state, h.to_state, h.actor_role, h.at, h.for_party)
            for h in engine.history(reference, SYSTEM)]


def pseudonym(reference: str) -> str:
    return "purged:" + hashlib.sha256(reference.encode()).hexdigest()[:12]


def refused(url: str, statement: str, **params: Any) -> str:
    raw = sqlalchemy.create_engine(url)
    try:
        with pytest.raises(DBAPIError) as caught, raw.begin() as c:
            c.execute(sqlalchemy.text(statement), params)
    finally:
        raw.dispose()
    return str(caught.value.orig)


# --- purging ------------------------------------------------------------------------------------

def test_a_closed_case_past_its_retention_is_purged_and_only_it(
        engine: Engine, database_url: str, clock: FakeClock) -> None:
    heard: list[Event] = []
    for name in EVENTS:
        engine.on(name, heard.append)
    old = criminal_record_collected(engine).reference
    closed_at = clock.now
    clock.advance(dt.timedelta(days=30))
    recent = criminal_record_collected(engine, OTHER_APPLICANT).reference  # closed later
    still_open = submitted(engine, "criminal_record").reference
    engine.flush()  # outbox rows delivered so far: marked now, not by the purge
    before = {ref: raw_rows(database_url, ref) for ref in (recent, still_open)}
    trail = skeleton(engine, old)
    listed = {c.reference: c for c in engine.cases(actor=SYSTEM)}
    files = [d.sha256 for d in engine.case(old, SYSTEM).documents]
    assert engine.blobs.get(files[0])

    clock.now = closed_at + RETENTION - dt.timedelta(minutes=1)
    assert engine.purge() == []  # a minute short of 5 years
    clock.now = closed_at + RETENTION
    heard.clear()
    done = engine.purge()

    assert [r.reference for r in done] == [old]
    result = done[0]
    assert (result.procedure_id, result.closed_at, result.retention) == (
        "criminal_record", closed_at, "5 years")
    assert "surname" in result.fields and result.file_names == 1
    assert result.files_deleted == tuple(files) and result.files_kept == ()
    assert result.history_rows > 0 and result.outbox_rows > 0 and not result.dry_run

    # the personal data is gone from every row of the case, and its file from the store
    stored = raw_rows(database_url, old)
    for value in PERSONAL:
        assert value not in text_of(stored), value
    with pytest.raises(KeyError):
        engine.blobs.get(files[0])
    case = engine.case(old, SYSTEM)
    assert case.data == {} and case.applicant_id == pseudonym(old)
    assert [d.filename for d in case.documents] == ["(purged)"]
    assert [d.sha256 for d in case.documents] == files  # what was attached stays known

    # the skeleton of the record stays, with a record of the purge
    history = engine.history(old, SYSTEM)
    assert skeleton(engine, old)[:-1] == trail
    purge = history[-1]
    assert (purge.trigger, purge.actor_id, purge.actor_role, purge.at) == (
        "@purge", SYSTEM.id, "system", clock.now)
    assert purge.from_state == purge.to_state == "collected"
    actors = {h.actor_id for h in history}
    assert pseudonym(old) in actors and CLERK.id in actors and APPLICANT.id not in actors
    start = history[0]
    assert set(start.payload["data"]) == set(criminal_record_data())  # which fields: kept
    assert set(start.payload["data"].values()) <= {"(purged)", None}
    attach = next(h for h in history if h.trigger == "@attach")
    assert attach.payload["document_id"] == "identity_proof"
    assert attach.payload["filename"] == "(purged)"
    pay = next(h for h in history if h.trigger == "@pay")
    assert pay.payload == {"amount": 500, "provider": "tmoney",
                           "provider_reference": f"tmoney-{old}-2"}
    signed = next(h for h in history if h.trigger == "sign")
    assert signed.issued[0]["id"] == "bulletin_n3"
    assert signed.issued[0]["text"] == {"fr": "(purged)", "en": "(purged)"}
    payments = stored["payments"]
    assert [(p["amount"], p["provider"], p["actor_id"]) for p in payments] == [
        (500, "tmoney", pseudonym(old))]

    # statistics: the case is still listed, with its state, outcome and times
    after = {c.reference: c for c in engine.cases(actor=SYSTEM)}
    assert set(after) == set(listed)
    for attribute in ("state", "outcome", "created_at", "updated_at", "fees_paid"):
        assert getattr(after[old], attribute) == getattr(listed[old], attribute), attribute

    # one event says so; the other cases are untouched
    assert [(e.name, e.reference) for e in heard] == [("case_purged", old)]
    assert heard[0].payload["trigger"] == "@purge"
    assert {ref: raw_rows(database_url, ref) for ref in (recent, still_open)} == before

    # the later one goes when its own retention ends; the open one never
    clock.now += dt.timedelta(days=30)
    assert [r.reference for r in engine.purge()] == [recent]
    clock.now += dt.timedelta(days=100 * 365)
    assert engine.purge() == []
    assert engine.case(still_open, SYSTEM).data["surname"] == "Adjovi"


def test_the_guards_still_refuse_other_rewrites_of_a_purged_case(
        engine: Engine, database_url: str, clock: FakeClock) -> None:
    reference = criminal_record_collected(engine).reference
    clock.advance(RETENTION)
    assert len(engine.purge()) == 1
    before = raw_rows(database_url, reference)
    history = before["history"]
    alias = pseudonym(reference)
    attempts = {
        "history": [f"UPDATE history SET actor_id = 'magistrate-9' WHERE id = {history[4]['id']}",
                    f"UPDATE history SET trigger = 'forged' WHERE id = {history[0]['id']}",
                    f"UPDATE history SET at = '2030-01-01 00:00:00' WHERE id = {history[0]['id']}",
                    "UPDATE history SET payload = '{\"data\": \"forged\"}' "
                    f"WHERE id = {history[0]['id']}",
                    # a kept value changed: the amount of the payment step
                    "UPDATE history SET payload = '{\"amount\": 1, \"provider\": \"tmoney\", "
                    f"\"provider_reference\": \"tmoney-{reference}-2\"}}' "
                    f"WHERE id = {history[2]['id']}",
                    f"DELETE FROM history WHERE id = {history[-1]['id']}"],
        "documents": ["UPDATE documents SET filename = 'other.pdf'",
                      "UPDATE documents SET actor_id = 'someone-else'",
                      "UPDATE documents SET sha256 = 'forged'"],
        "payments": ["UPDATE payments SET amount = 1", "DELETE FROM payments"],
        "outbox": ["UPDATE outbox SET event = 'forged'",
                   "UPDATE outbox SET payload = '{\"forged\": true}'"],
        "purges": [f"UPDATE purges SET pseudonym = '{alias[:-1]}0'", "DELETE FROM purges"],
    }
    for statements in attempts.values():
        for statement in statements:
            message = refused(database_url, statement)
            assert "append-only" in message or "immutable" in message, statement
    assert raw_rows(database_url, reference) == before
    # what purging writes may be written again: it changes nothing
    row = history[0]
    raw = sqlalchemy.create_engine(database_url)
    try:
        with raw.begin() as c:
            c.execute(sqlalchemy.text("UPDATE history SET payload = :p, actor_id = :a "
                                      "WHERE id = :id"),
                      {"p": json.dumps(row["payload"]) if not isinstance(row["payload"], str)
                       else row["payload"], "a": alias, "id": row["id"]})
    finally:
        raw.dispose()


def test_a_purge_the_guards_refuse_writes_nothing(
        engine: Engine, database_url: str, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The guards bind the engine too: a purge that wrote anything but erasures (here, a
    bug writing "forged" instead of "(purged)") fails whole, at its last row."""
    reference = criminal_record_collected(engine).reference
    sha256 = engine.case(reference, SYSTEM).documents[0].sha256
    clock.advance(RETENTION)
    before = raw_rows(database_url, reference)
    real = runtime._erased
    monkeypatch.setattr(runtime, "_erased",
                        lambda value: "forged" if real(value) == "(purged)" else real(value))
    with pytest.raises(DBAPIError) as refusal:
        engine.purge()
    assert "append-only" in str(refusal.value) or "immutable" in str(refusal.value)
    assert raw_rows(database_url, reference) == before
    assert engine.blobs.get(sha256)
    monkeypatch.undo()
    assert [r.reference for r in engine.purge()] == [reference]


def test_dry_run_changes_nothing_and_purging_twice_is_a_no_op(
        engine: Engine, database_url: str, clock: FakeClock) -> None:
    reference = criminal_record_collected(engine).reference
    sha256 = engine.case(reference, SYSTEM).documents[0].sha256
    clock.advance(RETENTION + dt.timedelta(days=1))
    before = raw_rows(database_url, reference)
    planned = engine.purge(dry_run=True)
    assert [r.reference for r in planned] == [reference] and planned[0].dry_run
    assert raw_rows(database_url, reference) == before
    assert engine.blobs.get(sha256)
    assert engine.purge(dry_run=True) == planned  # still to do
    done = engine.purge()
    assert [dataclasses.replace(r, dry_run=True) for r in done] == planned
    purged = raw_rows(database_url, reference)
    assert engine.purge() == [] and engine.purge(dry_run=True) == []
    assert raw_rows(database_url, reference) == purged


def test_a_file_another_case_still_has_is_kept(
        engine: Engine, clock: FakeClock) -> None:
    shared = pdf("the same scan, attached to two cases")
    closed = engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    live = engine.start("criminal_record", OTHER_APPLICANT, criminal_record_data()).reference
    for reference, actor in ((closed, APPLICANT), (live, OTHER_APPLICANT)):
        engine.attach(reference, "identity_proof", "scan.pdf", shared, actor)
    sha256 = engine.case(closed, SYSTEM).documents[0].sha256
    engine.fire(closed, "withdraw", APPLICANT)
    clock.advance(RETENTION)
    done = engine.purge()
    assert [(r.reference, r.files_deleted, r.files_kept) for r in done] == [
        (closed, (), (sha256,))]
    assert engine.blobs.get(sha256) == shared  # the live case still has it
    engine.fire(live, "withdraw", OTHER_APPLICANT)
    clock.advance(RETENTION)
    done = engine.purge()
    assert [(r.reference, r.files_deleted, r.files_kept) for r in done] == [
        (live, (sha256,), ())]
    with pytest.raises(KeyError):
        engine.blobs.get(sha256)


def test_a_version_without_retention_is_never_purged(
        engine: Engine, clock: FakeClock) -> None:
    assert engine.procedures["passport"].retention is None
    reference = engine.start("passport", APPLICANT, {"surname": "Amegah"}).reference
    engine.fire(reference, "withdraw", APPLICANT)
    clock.advance(dt.timedelta(days=100 * 365))
    assert engine.purge() == []
    assert engine.case(reference, SYSTEM).data["surname"] == "Amegah"


def test_parties_keep_their_kind_and_lose_their_ids_and_contacts() -> None:
    """An organisation's administrator and members become the case's pseudonym wherever they
    acted; a party's contact data is erased; the agent who opened a case at a counter (staff)
    stays."""
    row = {"reference": "CJN-2026-000001-R", "procedure_id": "criminal_record",
           "applicant_id": "org-7", "data": {"name": "Labo"}, "documents": [],
           "actors": {"submit": ["member-1", "member-2"], "verify": ["clerk-1"]},
           "parties": {"applicant": {"kind": "organisation", "administrator": "member-1",
                                     "members": ["member-1", "member-2"],
                                     "opened_by": "agent-1"},
                       "respondent": {"phone": "+228 90 00 00 00", "name": "Koffi"}}}
    history = [{"id": 1, "trigger": "@members", "actor_id": "member-1",
                "payload": {"added": ["member-2"], "removed": []}},
               {"id": 2, "trigger": "verify", "actor_id": "clerk-1", "payload": {}}]
    sms = {"channel": "sms", "to": "respondent", "subject": None,
           "text": {"fr": "Koffi, vous êtes convoqué", "en": "Koffi, you are summoned"},
           "contact": {"phone": "+22890000000", "email": None}}
    outbox = [{"id": 3, "event": "transition", "payload": {
        "trigger": "summon", "sequence": 4, "from": "a", "to": "b", "actor": "member-2",
        "role": "applicant", "outcome": None, "input": {"date": "2026-04-01"},
        "notifications": [sms], "issued": []}}]
    plan = runtime._purge_plan(row, {"history": history, "outbox": outbox, "documents": [],
                                     "payments": []})
    assert plan.rewrites["outbox"] == [{"id": 3, "payload": {
        "trigger": "summon", "sequence": 4, "from": "a", "to": "b", "actor": pseudonym(
            row["reference"]), "role": "applicant", "outcome": None,
        "input": {"date": "(purged)"}, "notifications": [{
            "channel": "sms", "to": "respondent", "subject": None,
            "text": {"fr": "(purged)", "en": "(purged)"},
            "contact": {"phone": "(purged)", "email": None}}], "issued": []}}]
    alias = pseudonym(row["reference"])
    assert plan.case["applicant_id"] == alias
    assert plan.case["actors"] == {"submit": [alias], "verify": ["clerk-1"]}
    assert plan.case["parties"] == {
        "applicant": {"kind": "organisation", "administrator": alias,
                      "members": [alias, alias], "opened_by": "agent-1"},
        "respondent": {"phone": "(purged)", "name": "(purged)"}}
    assert plan.rewrites["history"] == [{"id": 1, "actor_id": alias, "payload": {
        "added": ["(purged)"], "removed": []}}]  # the clerk's row is left as it is


# --- the command line ---------------------------------------------------------------------------

def test_guichet_purge_prints_one_line_per_case(
        make_engine: MakeEngine, tmp_path: Path, procedures: list[Procedure],
        clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    engine = make_engine(url, procedures=procedures, blobs=None)  # the CLI's own blob store
    first = criminal_record_collected(engine).reference
    second = criminal_record_collected(engine, OTHER_APPLICANT).reference
    submitted(engine, "criminal_record")  # open: never purged
    engine.close()
    when = (clock.now + RETENTION).isoformat()
    runner = CliRunner()
    options = ["--db", url, "--procedures", str(tmp_path / "procedures"), "--now", when]

    dry = runner.invoke(main, ["purge", "--dry-run", *options])
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [first, second]
    assert "would erase: 16 field(s), 1 file name(s)" in lines[0]
    assert "files: 1 to delete" in lines[0]
    assert dry.stderr == "2 case(s) to purge (dry run: nothing changed)\n"

    done = runner.invoke(main, ["purge", *options])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[first, "criminal_record"],
                                                    [second, "criminal_record"]]
    assert f"closed {clock.now:%Y-%m-%d %H:%M:%S}  retention 5 years  erased:" in lines[0]
    assert "files: 1 deleted" in lines[0]
    assert done.stderr == "2 case(s) purged\n"

    again = runner.invoke(main, ["purge", *options, "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout) == []
    shown = runner.invoke(main, ["case", "--db", url, "--procedures",
                                 str(tmp_path / "procedures"), "show", first, "--as-system",
                                 "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["data"] == {}


def test_guichet_purge_json_and_usage_errors(
        make_engine: MakeEngine, tmp_path: Path, procedures: list[Procedure],
        clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    engine = make_engine(url, procedures=procedures, blobs=None)
    reference = criminal_record_collected(engine).reference
    engine.close()
    runner = CliRunner()
    options = ["--db", url, "--procedures", str(tmp_path / "procedures")]
    result = runner.invoke(main, ["purge", *options, "--json", "--dry-run", "--now",
                                  (clock.now + RETENTION).isoformat() + "+00:00"])
    assert result.exit_code == 0, result.output
    (planned,) = json.loads(result.stdout)
    assert planned["reference"] == reference and planned["dry_run"] is True
    assert planned["closed_at"] == clock.now.isoformat()
    result = runner.invoke(main, ["purge", *options, "--now", "next year"])
    assert result.exit_code == 2 and "is not an ISO date-time" in result.stderr
    result = runner.invoke(main, ["purge", "--db", "nonsense"])
    assert result.exit_code == 2 and "not a usable database URL" in result.stderr
