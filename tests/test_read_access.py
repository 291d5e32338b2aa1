"""Who may read what (issue 9, point 5): `Engine.case(reference, actor)`, `history` and
`cases` answer only those who may see the case, and mask the values each reader may not see;
hook payloads never carry a marked value; the CLI says who reads, every time."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner
from helpers import APPLICANT, CLERK, PROCEDURES, MakeEngine, criminal_record_data, pdf

from cli import main
from engine import EVENTS, Actor, Engine, Event, NotAllowed, compile_source, load_procedure
from engine.analysis.scenarios import Runner, load_scenario
from engine.values import SYSTEM
from engine.workflow import MASKED, CaseView, Workflow

HEARING = """\
id: hearing
version: "1"
reference_prefix: HRG
title: {fr: Audience, en: Hearing}
authority: {ministry: {fr: Ministère de la Justice, en: Ministry of Justice}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Greffier, en: Clerk}}
  judge: {label: {fr: Juge, en: Judge}}
  auditor: {label: {fr: Auditeur, en: Auditor}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
read: [auditor]
fields:
  - {id: name, type: string, label: {fr: Nom, en: Name}, required: true}
  - {id: convictions, type: text, label: {fr: Condamnations, en: Convictions}, sensitive: true}
  - {id: judge_note, type: text, label: {fr: Note, en: Note}, visible_to: [judge]}
  - id: relatives
    type: group
    label: {fr: Proches, en: Relatives}
    fields:
      - {id: relative_name, type: string, label: {fr: Nom, en: Name}, sensitive: true}
      - {id: relation, type: string, label: {fr: Lien, en: Relation}}
documents:
  - id: record
    label: {fr: Extrait, en: Extract}
    required: false
    media_types: [application/pdf]
    sensitive: true
    visible_to: [judge]
  - {id: photo, label: {fr: Photo, en: Photo}, required: false, media_types: [application/pdf]}
states:
  draft:
    label: {fr: Brouillon, en: Draft}
    initial: true
    editable: true
    deadlines: [{after: "30 days", trigger: abandon}]
  review: {label: {fr: Examen, en: Review}}
  decided: {label: {fr: Jugé, en: Decided}, final: accepted}
  abandoned: {label: {fr: Abandonné, en: Abandoned}, final: expired}
transitions:
  - {trigger: submit, from: draft, to: review, roles: [applicant]}
  - {trigger: abandon, from: draft, to: abandoned, roles: [system]}
  - {trigger: send_back, from: review, to: draft, roles: [clerk]}
  - trigger: decide
    from: review
    to: decided
    roles: [judge]
    input:
      - {id: ruling, type: text, label: {fr: Décision, en: Ruling}, sensitive: true}
      - {id: room, type: string, label: {fr: Salle, en: Room}}
    notify:
      - channel: sms
        template: {fr: "Audience {{ reference }} : RULING", en: "Hearing {{ reference }}: RULING"}
      - channel: portal
        to: clerk
        template: {fr: "Audience {{ reference }} jugée.", en: "Hearing {{ reference }} decided."}
    issue:
      - id: judgment
        title: {fr: Jugement, en: Judgment}
        template: {fr: "Jugement pour {{ name }}.", en: "Judgment for {{ name }}."}
"""

CITIZEN = Actor("citizen-1", ["applicant"])
NEIGHBOUR = Actor("citizen-2", ["applicant"])  # the same role, not a party of the case
GREFFIER = Actor("clerk-1", ["clerk"])  # acts on the procedure: reads every case
JUDGE = Actor("judge-1", ["judge"])
AUDITOR = Actor("audit-1", ["auditor"])  # `read:` only
OFFICER = Actor("agent-1", ["agent"])  # a passport agent: a role this procedure lacks
SECRET = "theft, 2019, suspended"
FORM = {"name": "Kossi", "convictions": SECRET, "judge_note": "seen before",
        "relatives": [{"relative_name": "Ama", "relation": "sister"}]}


def hearing_file(tmp_path: Path, ruling_in_sms: bool = True) -> Path:
    path = tmp_path / "hearing.yaml"
    text = HEARING.replace("RULING", "{{ ruling }}" if ruling_in_sms else "jugée")
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def hearings(make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> Engine:
    return make_engine(sqlite_url, procedures=hearing_file(tmp_path))


def decided(engine: Engine) -> str:
    """A hearing opened with FORM, a sensitive record attached, submitted and decided."""
    reference = engine.start("hearing", CITIZEN, FORM).reference
    engine.attach(reference, "record", "casier-kossi.pdf", pdf("record"), CITIZEN)
    engine.attach(reference, "photo", "photo.pdf", pdf("photo"), CITIZEN)
    engine.update(reference, CITIZEN, {"convictions": SECRET + "; fine, 2021"})
    engine.fire(reference, "submit", CITIZEN)
    engine.fire(reference, "decide", JUDGE, {"ruling": "acquitted", "room": "B"})
    return reference


# --- who may see a case -------------------------------------------------------------------------

@pytest.mark.parametrize("reader", [OFFICER, NEIGHBOUR, Actor("x", ["applicant", "agent"])],
                         ids=["another procedure's agent", "another applicant", "both"])
def test_who_may_not_read_gets_not_allowed_from_case_and_history(
        make_engine: MakeEngine, database_url: str, tmp_path: Path, reader: Actor) -> None:
    engine = make_engine(database_url, procedures=hearing_file(tmp_path))
    reference = engine.start("hearing", CITIZEN, FORM).reference
    for read in (engine.case, engine.history):
        with pytest.raises(NotAllowed) as refused:
            read(reference, reader)
        assert refused.value.message("en") == "you may not read this case"
        assert refused.value.message("fr") == "vous n'avez pas accès à ce dossier"
    assert engine.cases("hearing", actor=reader) == []


@pytest.mark.parametrize("reader", [CITIZEN, GREFFIER, JUDGE, AUDITOR, SYSTEM],
                         ids=["applicant", "clerk", "judge", "read: role", "system"])
def test_its_parties_its_staff_the_read_roles_and_the_system_read_a_case(
        hearings: Engine, reader: Actor) -> None:
    reference = decided(hearings)
    assert hearings.case(reference, reader).reference == reference
    assert len(hearings.history(reference, reader)) == 6
    assert [c.reference for c in hearings.cases(actor=reader)] == [reference]


def test_a_clerk_of_another_procedure_may_not_read_a_criminal_record(
        sqlite_engine: Engine) -> None:
    reference = sqlite_engine.start("criminal_record", APPLICANT, criminal_record_data()
                                    ).reference
    with pytest.raises(NotAllowed):
        sqlite_engine.case(reference, Actor("agent-1", ["agent"]))  # the passport's agent
    assert sqlite_engine.case(reference, CLERK).data["father_name"] == \
        criminal_record_data()["father_name"]


def test_a_host_reading_for_no_person_says_so() -> None:
    for read in (Engine.case, Engine.history, Engine.cases):
        assert inspect.signature(read).parameters["actor"].default is inspect.Parameter.empty


def test_cases_passes_over_what_the_reader_may_not_see_page_by_page(hearings: Engine) -> None:
    mine = [hearings.start("hearing", CITIZEN, FORM).reference for _ in range(3)]
    theirs = [hearings.start("hearing", NEIGHBOUR, FORM).reference for _ in range(4)]
    mine.append(hearings.start("hearing", CITIZEN, FORM).reference)
    first = hearings.cases(actor=CITIZEN, limit=2)
    rest = hearings.cases(actor=CITIZEN, limit=2, after=first[-1].reference)
    assert [c.reference for c in first + rest] == mine  # the 4 of theirs skipped in between
    assert hearings.cases(actor=CITIZEN, after=mine[-1]) == []
    assert [c.reference for c in hearings.cases(actor=NEIGHBOUR, limit=10)] == theirs
    assert len(hearings.cases(actor=GREFFIER, limit=5)) == 5


# --- what each reader sees ----------------------------------------------------------------------

def test_sensitive_values_are_masked_for_a_reader_outside_visible_to(hearings: Engine) -> None:
    reference = decided(hearings)
    seen = {who: hearings.case(reference, actor)
            for who, actor in (("applicant", CITIZEN), ("clerk", GREFFIER), ("judge", JUDGE),
                               ("auditor", AUDITOR), ("system", SYSTEM))}
    # the applicant, the judge (named by visible_to) and the system see everything
    for who in ("applicant", "judge", "system"):
        assert seen[who].data["convictions"] == SECRET + "; fine, 2021", who
        assert seen[who].data["judge_note"] == "seen before", who
        assert seen[who].data["ruling"] == "acquitted", who
        assert seen[who].data["relatives"] == FORM["relatives"], who
        assert seen[who].documents[0].filename == "casier-kossi.pdf", who
    # the clerk acts on the procedure: sensitive values yes, the judge's note and record no
    clerk = seen["clerk"]
    assert clerk.data["convictions"] == SECRET + "; fine, 2021"
    assert clerk.data["judge_note"] == MASKED
    assert [(d.document_id, d.filename, d.sha256) for d in clerk.documents][0] == (
        "record", MASKED, MASKED)
    assert clerk.documents[1].filename == "photo.pdf"  # an unmarked document
    # the auditor reads the case (`read:`), none of its sensitive values
    auditor = seen["auditor"]
    assert auditor.data["name"] == "Kossi" and auditor.data["room"] == "B"
    assert (auditor.data["convictions"], auditor.data["judge_note"], auditor.data["ruling"]) \
        == (MASKED, MASKED, MASKED)
    assert auditor.data["relatives"] == [{"relative_name": MASKED, "relation": "sister"}]
    assert auditor.documents[0].size == seen["system"].documents[0].size  # the rest stays
    assert SECRET not in json.dumps(dict(auditor.data))
    # what is masked is the value, never the state, fees or version
    assert {(c.state, c.version, c.fees_due) for c in seen.values()} == {("decided", 6, 0)}


def test_the_history_is_masked_as_the_case_is(hearings: Engine) -> None:
    reference = decided(hearings)
    full = hearings.history(reference, CITIZEN)
    seen = hearings.history(reference, AUDITOR)
    assert [e.trigger for e in seen] == [e.trigger for e in full] == [
        "@start", "@attach", "@attach", "@edit", "submit", "decide"]
    start, record, photo, edit, _, decide = seen
    assert start.payload["data"]["convictions"] == MASKED
    assert start.payload["data"]["name"] == "Kossi"
    assert (record.payload["filename"], record.payload["sha256"]) == (MASKED, MASKED)
    assert photo.payload["filename"] == "photo.pdf"
    assert edit.changes == {"convictions": {"before": MASKED, "after": MASKED}}
    assert (decide.payload["ruling"], decide.payload["room"]) == (MASKED, "B")
    # a notification whose template prints a value the reader may not see: its text masked
    sms, portal = decide.notifications
    assert sms["text"] == {"fr": MASKED, "en": MASKED}
    assert "jugée" in portal["text"]["fr"]
    assert "Kossi" in decide.issued[0]["text"]["fr"]
    # the applicant sees the record of their own case as it was written
    assert full[3].changes["convictions"]["after"] == SECRET + "; fine, 2021"
    assert "acquitted" in full[5].notifications[0]["text"]["fr"]
    assert SECRET not in json.dumps([dict(e.payload) for e in seen])


def test_write_methods_return_the_case_as_their_actor_may_see_it(hearings: Engine) -> None:
    reference = hearings.start("hearing", CITIZEN, FORM).reference
    assert hearings.case(reference, CITIZEN).data["judge_note"] == "seen before"
    submitted = hearings.fire(reference, "submit", CITIZEN)
    assert submitted.data["convictions"] == SECRET
    attached = hearings.attach(reference, "photo", "p.pdf", pdf("p"), GREFFIER)
    assert attached.data["judge_note"] == MASKED and attached.data["convictions"] == SECRET
    ruled = hearings.fire(reference, "decide", JUDGE, {"ruling": "acquitted"})
    assert ruled.data["judge_note"] == "seen before" and ruled.data["ruling"] == "acquitted"


def test_a_deadline_fires_as_the_system_and_reads_everything(hearings: Engine,
                                                             clock: Any) -> None:
    reference = hearings.start("hearing", CITIZEN, FORM).reference
    clock.advance(dt.timedelta(days=31))
    assert (reference, "abandon", "fired") in hearings.tick()
    assert hearings.case(reference, SYSTEM).state == "abandoned"


# --- hooks --------------------------------------------------------------------------------------

def test_outbox_payloads_never_carry_a_marked_value(make_engine: MakeEngine, database_url: str,
                                                   tmp_path: Path) -> None:
    engine = make_engine(database_url, procedures=hearing_file(tmp_path, ruling_in_sms=False))
    events: list[Event] = []
    for name in EVENTS:
        engine.on(name, events.append)
    reference = decided(engine)
    sent = json.dumps([e.payload for e in events], ensure_ascii=False)
    for value in ("theft", "acquitted", "seen before", "Ama", "casier-kossi"):
        assert value not in sent, value
    by_name = {e.name: e for e in events}
    assert by_name["transition"].payload["input"] == {"ruling": MASKED, "room": "B"}
    assert by_name["case_edited"].payload["@changes"] == {
        "convictions": {"before": MASKED, "after": MASKED}}
    record = next(e for e in events if e.name == "document_attached"
                  and e.payload["document_id"] == "record")
    assert (record.payload["filename"], record.payload["sha256"]) == (MASKED, MASKED)
    assert record.payload["size"] > 0
    photo = next(e for e in events if e.name == "document_attached"
                 and e.payload["document_id"] == "photo")
    assert photo.payload["filename"] == "photo.pdf"  # an unmarked document is not masked
    # the stored outbox rows (what deliver_pending hands over again) are the same
    raw = sqlalchemy.create_engine(database_url)
    try:
        with raw.connect() as c:
            rows = c.execute(sqlalchemy.text("SELECT payload FROM outbox")).scalars().all()
    finally:
        raw.dispose()
    stored = json.dumps([r if isinstance(r, dict) else json.loads(r) for r in rows],
                        ensure_ascii=False)
    for value in ("theft", "acquitted", "seen before", "casier-kossi"):
        assert value not in stored, value
    # ...while the record itself keeps every value, for those who may see it
    assert engine.history(reference, SYSTEM)[-1].payload["ruling"] == "acquitted"


def test_a_procedure_without_markings_hands_hooks_the_payload_as_it_was(
        sqlite_engine: Engine) -> None:
    workflow = sqlite_engine.workflow(sqlite_engine.procedures["passport"].hash)
    payload = {"input": {"appointment_date": "2026-04-01"}}
    assert workflow.hook_payload(payload) is payload


# --- the rule, in one place -----------------------------------------------------------------

def test_workflow_answers_who_reads_and_what(tmp_path: Path) -> None:
    workflow = Workflow(load_procedure(hearing_file(tmp_path)))
    case = CaseView("review", CITIZEN.id, FORM, {}, 0, {})
    assert workflow.acting_roles == {"clerk", "judge", "system"}
    assert workflow.reader_roles == {"clerk", "judge", "system", "auditor"}
    assert [workflow.may_read(case, a) for a in (CITIZEN, NEIGHBOUR, OFFICER, AUDITOR)] == [
        True, False, False, True]
    everything = {"name", "convictions", "judge_note", "relatives", "ruling", "room"}
    assert workflow.visible_fields(case, CITIZEN) == everything
    assert workflow.visible_fields(case, GREFFIER) == everything - {"judge_note"}
    assert workflow.visible_fields(case, AUDITOR) == {"name", "relatives", "room"}
    hooks = workflow.masking(None, None)
    assert hooks.fields == {"convictions", "judge_note", "ruling"}
    assert hooks.rows == {"relatives": {"relative_name"}} and hooks.documents == {"record"}


def test_validate_knows_the_roles_of_read_and_visible_to() -> None:
    text = HEARING.replace("read: [auditor]", "read: [auditer]").replace(
        "visible_to: [judge]}", "visible_to: [jduge]}")
    _, diagnostics = compile_source(text, "hearing.yaml")
    found = sorted(d.message for d in diagnostics if d.severity == "error")
    assert found == ['unknown role "auditer"; did you mean "auditor"?',
                     'unknown role "jduge"; did you mean "judge"?']
    _, clean = compile_source(HEARING, "hearing.yaml")
    assert [str(d) for d in clean if d.rule == "undefined-role"] == []  # nor unused: it reads


def test_the_shipped_criminal_record_marks_its_sensitive_values() -> None:
    procedure = load_procedure(PROCEDURES / "criminal_record.yaml")
    marked = {f.id for f in procedure.fields if f.sensitive}
    marked |= {f.id for t in procedure.transitions for f in t.input if f.sensitive}
    assert marked == {"father_name", "mother_name", "reason"}
    assert procedure.read_roles == ()  # no auditor-like role to grant it to


# --- scenarios ----------------------------------------------------------------------------------

SCENARIO = """\
procedure: hearing
name: the auditor reads, masked
steps:
  - start: {name: Kossi, convictions: "theft", judge_note: "seen"}
    as: applicant:citizen-1
  - read: case
    as: auditor:audit-1
    expect:
      data: {name: Kossi, convictions: "•••", judge_note: "•••"}
  - read: history
    as: clerk:clerk-1
  - read: case
    as: agent:agent-1
    expect:
      refused: {error: not_allowed}
  - read: case
    as: clerk:clerk-1
    expect:
      data: {convictions: theft}
"""


def run_scenario(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    procedure = load_procedure(hearing_file(tmp_path))
    scenario, diagnostics = load_scenario(path, {"hearing": procedure})
    assert scenario is not None, [str(d) for d in diagnostics]
    return Runner([procedure]).run(scenario).failures


def test_a_scenario_reads_as_an_actor(tmp_path: Path) -> None:
    assert run_scenario(tmp_path, SCENARIO) == []
    failures = run_scenario(tmp_path, SCENARIO.replace('convictions: "•••"', "convictions: theft"))
    assert len(failures) == 1 and "data.convictions: expected 'theft', actual '•••'" in failures[0]
    refused = run_scenario(tmp_path, SCENARIO.replace("as: agent:agent-1", "as: judge:judge-1"))
    assert len(refused) == 1 and "expected a refusal (not_allowed)" in refused[0]


def test_a_scenario_reads_only_a_case_or_its_history(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace("read: history", "read: everything"), encoding="utf-8")
    scenario, diagnostics = load_scenario(path, {"hearing": load_procedure(hearing_file(tmp_path))})
    assert scenario is None
    assert [d.message for d in diagnostics] == ['"everything" is not one of case, history']


# --- the command line ---------------------------------------------------------------------------

@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)
    procedures = str(hearing_file(tmp_path))
    url = f"sqlite:///{tmp_path / 'cases.db'}"

    def invoke(*args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(main, ["case", "--db", url, "--procedures", procedures,
                                           *args])
        assert result.exit_code == code, (result.output, result.exception)
        return result

    yield invoke


def test_cli_show_as_an_actor_masks_what_they_may_not_see(run: Any) -> None:
    started = run("start", "hearing", "--as", "applicant:citizen-1", "--json", "--data",
                  json.dumps(FORM))
    reference = json.loads(started.stdout)["reference"]
    assert SECRET in started.stdout  # the applicant's own case, returned to them
    shown = run("show", reference, "--as", "auditor:audit-1").stdout
    assert f"  convictions: {MASKED}" in shown.splitlines()
    assert "  name: Kossi" in shown.splitlines()
    assert SECRET not in shown
    as_json = json.loads(run("show", reference, "--as", "auditor:audit-1", "--json").stdout)
    assert as_json["data"]["convictions"] == MASKED
    history = run("history", reference, "--as", "auditor:audit-1", "--json").stdout
    assert SECRET not in history and MASKED in history
    listed = run("list", "--as", "auditor:audit-1", "--json").stdout
    assert SECRET not in listed and json.loads(listed)[0]["reference"] == reference
    assert SECRET in run("show", reference, "--as", "clerk:clerk-1").stdout
    assert SECRET in run("show", reference, "--as-system").stdout
    refused = run("show", reference, "--as", "agent:agent-1", "--lang", "en", code=1)
    assert refused.stderr == "error: you may not read this case\n"
    assert json.loads(run("list", "--as", "applicant:citizen-2", "--json").stdout) == []


@pytest.mark.parametrize("command", [["show", "HRG-2026-000001-X"], ["history", "X"], ["list"]])
def test_cli_reads_only_when_told_who_reads(run: Any, command: list[str]) -> None:
    result = run(*command, code=2)
    assert "say who reads: --as ROLE:ID" in result.stderr
    both = run(*command, "--as", "clerk:c-1", "--as-system", code=2)
    assert "say who reads" in both.stderr
