"""Replacing and removing a document's files while the case can be edited (issue 10, point 6).

`Engine.attach(..., replace=True)` removes the document's current files and attaches the new
one in one step; `Engine.remove_document` removes one file (by SHA-256) or all of them. Both
are allowed where attaching is; the history records them (@attach with `replaced`,
@remove), hooks get `document_removed`, files stay in the blob store and in the `documents`
table, and masking covers the files named. CLI: `case attach --replace`, `case remove`.
Scenario steps: `attach:` + `replace: true`, `remove:`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from click.testing import CliRunner
from click.testing import Result as CliResult
from helpers import FakeClock, MakeEngine, pdf

from cli import main
from engine import (
    EVENTS,
    Actor,
    Engine,
    Event,
    InvalidData,
    NotAllowed,
    load_procedure,
    store,
)
from engine.analysis.scenarios import Result, Runner, load_scenario
from engine.blobs import digest
from engine.values import SYSTEM
from engine.workflow import MASKED

LICENCE = """\
id: licence
version: "1"
reference_prefix: LIC
title: {fr: Licence, en: Licence}
authority: {ministry: {fr: Ministère du Commerce, en: Ministry of Trade}}
retention: "1 years"
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Agent}}
  inspector: {label: {fr: Inspecteur, en: Inspector}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
fields:
  - {id: name, type: string, label: {fr: Nom, en: Name}, required: true}
documents:
  - id: statutes
    label: {fr: Statuts, en: Statutes}
    media_types: [application/pdf]
    max_files: 2
  - id: record
    label: {fr: Casier, en: Record}
    required: false
    media_types: [application/pdf]
    max_files: 2
    sensitive: true
    visible_to: [inspector]
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true, editable: true}
  review: {label: {fr: Examen, en: Review}}
  granted: {label: {fr: Accordée, en: Granted}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: review, roles: [applicant], requires: {documents: all}}
  - {trigger: grant, from: review, to: granted, roles: [inspector]}
  - {trigger: send_back, from: review, to: draft, roles: [agent]}
"""

CITIZEN = Actor("citizen-1", ["applicant"])
NEIGHBOUR = Actor("citizen-2", ["applicant"])
AGENT = Actor("agent-1", ["agent"])
INSPECTOR = Actor("inspector-1", ["inspector"])


def licence_file(tmp_path: Path) -> Path:
    path = tmp_path / "procedures" / "licence.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(LICENCE, encoding="utf-8")
    return path


@pytest.fixture
def licences(make_engine: MakeEngine, database_url: str, tmp_path: Path) -> Engine:
    return make_engine(database_url, procedures=licence_file(tmp_path))


def opened(engine: Engine, *files: str) -> str:
    """A licence case with one `statutes` file per name in `files`."""
    reference = engine.start("licence", CITIZEN, {"name": "Kossi"}).reference
    for name in files:
        engine.attach(reference, "statutes", name, pdf(name), CITIZEN)
    return reference


def document_rows(url: str) -> list[tuple[str, str]]:
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.connect() as c:
            return [(r[0], r[1]) for r in c.execute(sqlalchemy.text(
                "SELECT document_id, filename FROM documents ORDER BY id"))]
    finally:
        raw.dispose()


# --- replace ------------------------------------------------------------------------------------

def test_replace_swaps_the_files_in_one_step_and_keeps_the_old_ones(
        licences: Engine, database_url: str) -> None:
    reference = opened(licences, "v1.pdf", "v1-annex.pdf")
    before = licences.case(reference, CITIZEN).version
    case = licences.attach(reference, "statutes", "v2.pdf", pdf("v2.pdf"), CITIZEN,
                           replace=True)
    assert [d.filename for d in case.documents] == ["v2.pdf"]
    assert case.version == before + 1  # one step
    last = licences.history(reference, SYSTEM)[-1]
    assert last.trigger == "@attach" and last.payload["filename"] == "v2.pdf"
    assert last.payload["replaced"] == [
        {"filename": name, "sha256": digest(pdf(name)), "size": len(pdf(name)),
         "media_type": "application/pdf"} for name in ("v1.pdf", "v1-annex.pdf")]
    # the record keeps every file: the rows, and the bytes in the blob store
    assert document_rows(database_url) == [("statutes", "v1.pdf"), ("statutes", "v1-annex.pdf"),
                                           ("statutes", "v2.pdf")]
    assert licences.blobs.get(digest(pdf("v1.pdf"))) == pdf("v1.pdf")


def test_replace_accepts_a_file_where_the_document_is_full(licences: Engine) -> None:
    reference = opened(licences, "a.pdf", "b.pdf")  # max_files: 2
    with pytest.raises(InvalidData) as full:
        licences.attach(reference, "statutes", "c.pdf", pdf("c"), CITIZEN)
    assert set(full.value.errors) == {"statutes"}
    case = licences.attach(reference, "statutes", "c.pdf", pdf("c"), CITIZEN, replace=True)
    assert [d.filename for d in case.documents] == ["c.pdf"]


def test_replace_leaves_the_other_documents_alone(licences: Engine) -> None:
    reference = opened(licences, "a.pdf")
    licences.attach(reference, "record", "r.pdf", pdf("r"), CITIZEN)
    case = licences.attach(reference, "statutes", "b.pdf", pdf("b"), CITIZEN, replace=True)
    assert sorted((d.document_id, d.filename) for d in case.documents) == [
        ("record", "r.pdf"), ("statutes", "b.pdf")]
    assert licences.history(reference, SYSTEM)[-1].payload["replaced"][0]["filename"] == "a.pdf"


# --- remove -------------------------------------------------------------------------------------

def test_removing_every_file_makes_a_required_document_missing_again(
        licences: Engine, database_url: str) -> None:
    events: list[Event] = []
    licences.on("document_removed", events.append)
    reference = opened(licences, "a.pdf", "b.pdf")
    assert licences.documents_missing(reference) == []
    case = licences.remove_document(reference, "statutes", CITIZEN)
    assert case.documents == ()
    assert licences.documents_missing(reference) == ["statutes"]
    entry = licences.history(reference, SYSTEM)[-1]
    assert (entry.trigger, entry.actor_id, entry.actor_role) == ("@remove", "citizen-1",
                                                                 "applicant")
    assert entry.payload == {"document_id": "statutes", "removed": [
        {"filename": n, "sha256": digest(pdf(n)), "size": len(pdf(n)),
         "media_type": "application/pdf"} for n in ("a.pdf", "b.pdf")]}
    assert [e.payload["removed"][1]["filename"] for e in events] == ["b.pdf"]
    assert len(document_rows(database_url)) == 2  # append-only: nothing deleted
    assert licences.blobs.get(digest(pdf("a.pdf"))) == pdf("a.pdf")  # still readable


def test_removing_one_file_by_its_hash(licences: Engine) -> None:
    reference = opened(licences, "a.pdf", "b.pdf")
    case = licences.remove_document(reference, "statutes", CITIZEN,
                                    sha256=digest(pdf("a.pdf")).upper())
    assert [d.filename for d in case.documents] == ["b.pdf"]
    removed = licences.history(reference, SYSTEM)[-1].payload["removed"]
    assert [f["filename"] for f in removed] == ["a.pdf"]


def test_unknown_documents_files_and_hashes_are_invalid_data(licences: Engine) -> None:
    reference = opened(licences, "a.pdf")
    with pytest.raises(InvalidData) as undeclared:
        licences.remove_document(reference, "passport_photo", CITIZEN)
    assert set(undeclared.value.errors) == {"passport_photo"}
    assert undeclared.value.errors["passport_photo"]["en"] == (
        "unknown document for this procedure")
    with pytest.raises(InvalidData) as empty:
        licences.remove_document(reference, "record", CITIZEN)
    assert empty.value.errors["record"]["en"] == "no file is attached for this document"
    with pytest.raises(InvalidData) as unknown_hash:
        licences.remove_document(reference, "statutes", CITIZEN, sha256="0" * 64)
    assert unknown_hash.value.errors["sha256"]["en"] == (
        "no file of this document has this SHA-256 hash")
    assert unknown_hash.value.errors["sha256"]["fr"] == (
        "aucun fichier de cette pièce n'a cette empreinte SHA-256")
    with pytest.raises(InvalidData) as bad_hash:
        licences.remove_document(reference, "statutes", CITIZEN, sha256="\x00")
    assert set(bad_hash.value.errors) == {"sha256"}
    assert len(licences.case(reference, SYSTEM).documents) == 1
    assert len(licences.history(reference, SYSTEM)) == 2  # nothing recorded


def test_removing_and_replacing_follow_the_attach_permission(licences: Engine) -> None:
    reference = opened(licences, "a.pdf")
    with pytest.raises(NotAllowed):
        licences.remove_document(reference, "statutes", NEIGHBOUR)
    licences.fire(reference, "submit", CITIZEN)
    with pytest.raises(NotAllowed) as applicant:
        licences.remove_document(reference, "statutes", CITIZEN)
    assert applicant.value.message("en") == "the case cannot be changed at this step"
    with pytest.raises(NotAllowed):
        licences.attach(reference, "statutes", "b.pdf", pdf("b"), CITIZEN, replace=True)
    # staff attach outside editable states, so they remove and replace there too
    licences.attach(reference, "statutes", "b.pdf", pdf("b"), AGENT, replace=True)
    assert licences.remove_document(reference, "statutes", AGENT).documents == ()
    licences.attach(reference, "statutes", "c.pdf", pdf("c"), AGENT)
    licences.fire(reference, "grant", INSPECTOR)
    with pytest.raises(NotAllowed):  # a closed case
        licences.remove_document(reference, "statutes", AGENT)


# --- masking and retention ----------------------------------------------------------------------

def test_the_files_of_a_marked_document_are_masked_in_history_and_hooks(
        licences: Engine) -> None:
    events: list[Event] = []
    for name in EVENTS:
        licences.on(name, events.append)
    reference = opened(licences, "a.pdf")
    licences.attach(reference, "record", "casier-kossi.pdf", pdf("k1"), CITIZEN)
    licences.attach(reference, "record", "casier-kossi-2.pdf", pdf("k2"), CITIZEN, replace=True)
    licences.remove_document(reference, "record", CITIZEN)
    seen = licences.history(reference, AGENT)  # acts on no marked document: not visible_to
    replaced, removed = seen[-2].payload["replaced"], seen[-1].payload["removed"]
    assert [(f["filename"], f["sha256"]) for f in [*replaced, *removed]] == [(MASKED, MASKED)] * 2
    assert removed[0]["size"] == len(pdf("k2"))  # what is not personal stays
    assert "casier-kossi" not in json.dumps([dict(e.payload) for e in seen])
    assert "casier-kossi" not in json.dumps([dict(e.payload) for e in events])
    assert [e.name for e in events].count("document_removed") == 1
    own = licences.history(reference, CITIZEN)[-1].payload["removed"]
    assert own[0]["filename"] == "casier-kossi-2.pdf"
    inspector = licences.history(reference, INSPECTOR)[-2].payload["replaced"]
    assert inspector[0]["filename"] == "casier-kossi.pdf"


def test_a_case_with_replaced_and_removed_files_is_purged(
        licences: Engine, clock: FakeClock) -> None:
    reference = opened(licences, "private-a.pdf")
    licences.attach(reference, "statutes", "private-b.pdf", pdf("b"), CITIZEN, replace=True)
    licences.attach(reference, "record", "private-r.pdf", pdf("r"), CITIZEN)
    licences.remove_document(reference, "record", CITIZEN, sha256=digest(pdf("r")))
    licences.fire(reference, "submit", CITIZEN)
    licences.fire(reference, "grant", INSPECTOR)
    clock.advance(dt.timedelta(days=400))
    [done] = licences.purge()
    assert done.reference == reference
    history = licences.history(reference, SYSTEM)
    text = json.dumps([dict(e.payload) for e in history])
    assert "private-" not in text
    replaced = history[2].payload["replaced"][0]
    assert (replaced["filename"], replaced["sha256"]) == (store.PURGED,
                                                           digest(pdf("private-a.pdf")))
    assert history[4].payload["removed"][0]["sha256"] == digest(pdf("r"))


# --- the command line ---------------------------------------------------------------------------

@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    monkeypatch.chdir(tmp_path)
    procedures = str(licence_file(tmp_path))
    url = f"sqlite:///{tmp_path / 'cases.db'}"

    def invoke(*args: str, code: int = 0) -> CliResult:
        result = CliRunner().invoke(main, ["case", "--db", url, "--procedures", procedures,
                                           *args])
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return invoke


def test_cli_attach_replace_and_remove(run: Callable[..., CliResult], tmp_path: Path) -> None:
    for name in ("a.pdf", "b.pdf", "c.pdf"):
        (tmp_path / name).write_bytes(pdf(name))
    started = run("start", "licence", "--as", "applicant:citizen-1", "--json",
                  "--data", '{"name": "Kossi"}')
    reference = json.loads(started.stdout)["reference"]
    run("attach", reference, "statutes", str(tmp_path / "a.pdf"), "--as", "applicant:citizen-1")
    run("attach", reference, "statutes", str(tmp_path / "b.pdf"), "--as", "applicant:citizen-1")
    replaced = run("attach", reference, "statutes", str(tmp_path / "c.pdf"), "--replace",
                   "--as", "applicant:citizen-1", "--json")
    assert [d["filename"] for d in json.loads(replaced.stdout)["documents"]] == ["c.pdf"]
    run("attach", reference, "statutes", str(tmp_path / "a.pdf"), "--as", "applicant:citizen-1")
    one = run("remove", reference, "statutes", "--sha256", digest(pdf("c.pdf")),
              "--as", "applicant:citizen-1", "--json")
    assert [d["filename"] for d in json.loads(one.stdout)["documents"]] == ["a.pdf"]
    unknown = run("remove", reference, "statutes", "--sha256", "f" * 64, "--lang", "en",
                  "--as", "applicant:citizen-1", code=1)
    assert "no file of this document has this SHA-256 hash" in unknown.stderr
    everything = run("remove", reference, "statutes", "--as", "applicant:citizen-1", "--json")
    assert json.loads(everything.stdout)["documents"] == []
    history = json.loads(run("history", reference, "--as-system", "--json").stdout)
    assert [e["trigger"] for e in history][-3:] == ["@attach", "@remove", "@remove"]


# --- scenarios ----------------------------------------------------------------------------------

SCENARIO = """\
procedure: licence
steps:
  - start: {name: Kossi}
    as: applicant:citizen-1
  - attach: statutes
    file: {count: 2}
    as: applicant:citizen-1
  - attach: statutes
    replace: true
    as: applicant:citizen-1
    expect: {documents_missing: [], history_length: 4}
  - remove: statutes
    as: applicant:citizen-1
    expect: {documents_missing: [statutes], history_length: 5}
  - fire: submit
    as: applicant:citizen-1
    expect: {refused: blocked}
"""


def scenario_result(tmp_path: Path, text: str) -> tuple[Result | None, list[str]]:
    """The result of playing a scenario on the licence (None, and the diagnostics, when it
    does not load)."""
    procedure = load_procedure(licence_file(tmp_path))
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    scenario, diagnostics = load_scenario(path, {"licence": procedure})
    if scenario is None or diagnostics:
        return None, [d.message for d in diagnostics]
    result = Runner([procedure]).run(scenario)
    return result, result.failures


def test_a_scenario_replaces_and_removes(tmp_path: Path) -> None:
    result, problems = scenario_result(tmp_path, SCENARIO)
    assert result is not None and result.passed, problems


def test_a_scenario_expecting_the_wrong_documents_fails(tmp_path: Path) -> None:
    wrong = SCENARIO.replace("expect: {documents_missing: [statutes], history_length: 5}",
                             "expect: {documents_missing: []}")
    result, problems = scenario_result(tmp_path, wrong)
    assert result is not None and not result.passed
    assert "documents_missing" in problems[0]


def test_a_scenario_removing_an_undeclared_document_is_reported(tmp_path: Path) -> None:
    result, problems = scenario_result(tmp_path, SCENARIO.replace("remove: statutes",
                                                                  "remove: statute"))
    assert result is None
    assert any('unknown document "statute"' in p for p in problems), problems
