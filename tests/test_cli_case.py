"""`guichet case ...` and `guichet tick`: a whole passport run, JSON output, errors, usage."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import cli
from cli import main
from engine import runtime

ROOT = Path(__file__).resolve().parent.parent
PROCEDURES = str(ROOT / "procedures" / "passport.yaml")  # one file: each call loads it
PDF = b"%PDF-1.4\n% a scanned page\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 a photo"
APPLICANT = "applicant:citizen-1"
AGENT = "agent:agent-1"
SUPERVISOR = "supervisor:sup-1"
DOCUMENTS = ["nationality_certificate", "birth_certificate", "id_card_copy",
             "emergency_contact_certificate", "proof_of_profession"]
DATA = {
    "passport_type": "ordinary", "request_type": "first", "surname": "Amegah",
    "first_names": "Kossi", "sex": "male", "birth_date": "1990-05-01", "birth_place": "Lomé",
    "nin": "1234567890", "marital_status": "single", "profession": "teacher",
    "address": "Rue 1, Lomé", "phone": "90 12 34 56", "emergency_contact_name": "Ama",
    "emergency_contact_phone": "91234567",
}

Run = Callable[..., Result]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(cli.DATABASE_ENV, raising=False)
    where = tmp_path / "work"
    where.mkdir()
    monkeypatch.chdir(where)
    yield where


@pytest.fixture
def run(workdir: Path) -> Run:
    """`guichet case ARGS` (or `guichet tick ARGS` with command="tick") on a temporary db."""
    runner = CliRunner()
    url = f"sqlite:///{workdir / 'cases.db'}"

    def invoke(*args: str, code: int = 0, command: str = "case",
               procedures: str = PROCEDURES) -> Result:
        result = runner.invoke(main, [command, "--db", url, "--procedures", procedures, *args])
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    return invoke


def started(run: Run, *options: str) -> str:
    Path("data.json").write_text(json.dumps(DATA), encoding="utf-8")
    result = run("start", "passport", "--as", APPLICANT, "--data", "@data.json", "--json",
                 *options)
    return str(json.loads(result.stdout)["reference"])


def submitted(run: Run) -> str:
    reference = started(run)
    Path("scans").mkdir()
    for document in DOCUMENTS:
        Path("scans", f"{document}.pdf").write_bytes(PDF)
        run("attach", reference, document, f"scans/{document}.pdf", "--as", APPLICANT)
    for number in (1, 2):
        Path(f"photo{number}.jpg").write_bytes(JPEG + bytes([number]))
        run("attach", reference, "photos", f"photo{number}.jpg", "--as", APPLICANT)
    run("pay", reference, "30000", "--provider", "tmoney", "--provider-reference", "TM-1",
        "--as", APPLICANT)
    run("fire", reference, "submit", "--as", APPLICANT)
    return reference


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


# --- the whole run ------------------------------------------------------------------------------

def test_a_passport_from_start_to_issued(run: Run) -> None:
    Path("data.json").write_text(json.dumps(DATA), encoding="utf-8")
    result = run("start", "passport", "--as", APPLICANT, "--data", "@data.json")
    first = result.stdout.splitlines()
    reference = first[0].removeprefix("reference: ")
    assert first[0].startswith("reference: PAS-")
    assert "state:     draft (Brouillon)" in first
    assert "fees:      30000 XOF due, 0 XOF paid, 30000 XOF outstanding" in first

    Path("scans").mkdir()
    for document in DOCUMENTS:
        Path("scans", f"{document}.pdf").write_bytes(PDF)
        run("attach", reference, document, f"scans/{document}.pdf", "--as", APPLICANT)
    Path("front.jpg").write_bytes(JPEG + b"1")
    Path("back.jpg").write_bytes(JPEG + b"2")
    run("attach", reference, "photos", "front.jpg", "--as", APPLICANT)
    attached = as_json(run("attach", reference, "photos", "back.jpg", "--as", APPLICANT,
                           "--json"))
    assert attached["version"] == 8
    assert {d["filename"] for d in attached["documents"]} == {
        *(f"{d}.pdf" for d in DOCUMENTS), "front.jpg", "back.jpg"}  # base names only
    assert {d["media_type"] for d in attached["documents"]} == {"application/pdf", "image/jpeg"}

    paid = run("pay", reference, "30000", "--provider", "tmoney", "--provider-reference",
               "TM-1", "--as", APPLICANT).stdout
    assert "fees:      30000 XOF due, 30000 XOF paid" in paid
    assert "version:   9" in paid
    again = run("pay", reference, "30000", "--provider", "tmoney", "--provider-reference",
                "TM-1", "--as", APPLICANT, "--json")
    assert as_json(again)["fees_paid"] == 30000 and as_json(again)["version"] == 9

    assert "state:     submitted (Soumise)" in run("fire", reference, "submit",
                                                   "--as", APPLICANT).stdout
    offered = run("show", reference, "--as", AGENT, "--lang", "en").stdout
    assert "  start_review (Take up the file): allowed" in offered
    assert ("  refer_to_sgg (Refer to the SGG): blocked: the conditions for \"Refer to the "
            "SGG\" are not met for this case [passport_type == 'service']") in offered
    assert "  withdraw (Withdraw my application): blocked: only for roles: applicant" in offered

    run("fire", reference, "start_review", "--as", AGENT)
    Path("enrolment.yaml").write_text("appointment_date: 2099-12-10\n", encoding="utf-8")
    run("fire", reference, "schedule_enrolment", "--as", AGENT, "--data", "@enrolment.yaml")
    run("fire", reference, "record_enrolment", "--as", AGENT, "--data",
        '{"originals_checked": true, "photo_captured": true, '
        '"fingerprints_captured": true, "signature_captured": true}')
    run("fire", reference, "approve", "--as", SUPERVISOR)
    run("fire", reference, "mark_ready", "--as", AGENT)
    version = as_json(run("show", reference, "--as", AGENT, "--json"))["version"]
    issued = run("fire", reference, "hand_over", "--as", AGENT, "--expected-version",
                 str(version), "--data", '{"passport_number": "TG1234567", '
                 '"holder_verified": true}', "--lang", "en").stdout
    assert "state:     issued (Issued)" in issued
    assert "outcome:   accepted" in issued

    shown = run("show", reference, "--as", APPLICANT).stdout
    assert "  appointment_date: 2099-12-10" in shown
    assert "  passport_number: TG1234567" in shown
    assert "  holder_verified: true" in shown
    assert "  phone: +22890123456" in shown
    assert "  photos: back.jpg (image/jpeg, " in shown
    assert "version:   16" in shown

    lines = run("history", reference, "--as", APPLICANT, "--lang", "en").stdout.splitlines()
    details = [line.strip() for line in lines if line.startswith("    ")]
    assert "issued acknowledgement (portal): Acknowledgement of receipt" in details
    assert "issued delivery_record (portal): Passport delivery record" in details
    assert "sent sms → applicant: Passport TG1234567 handed over " \
           f"({reference}). Safe travels!" in details
    table = [line for line in lines if not line.startswith("    ")]
    assert table[0].split() == ["#", "time", "(UTC)", "trigger", "from", "→", "to", "actor",
                                "(role)"]
    assert len(table) == 1 + 16
    assert table[1].split()[3:] == ["@start", "-", "→", "draft", "citizen-1", "(applicant)"]
    assert table[10].split()[3:] == ["submit", "draft", "→", "submitted", "citizen-1",
                                     "(applicant)"]
    assert table[14].split()[3:] == ["approve", "enrolled", "→", "in_production", "sup-1",
                                     "(supervisor)"]
    assert table[-1].split()[3:] == ["hand_over", "ready_for_collection", "→", "issued",
                                     "agent-1", "(agent)"]

    everything = str(ROOT / "procedures")  # a directory of procedures, as in production
    listed = run("list", "--procedure", "passport", "--state", "issued", "--as", AGENT,
                 procedures=everything)
    assert listed.stdout.splitlines()[1].split()[:5] == [reference, "passport", "issued",
                                                         "accepted", "16"]
    assert listed.stderr == "1 case(s)\n"
    assert run("list", "--state", "draft", "--as-system").stdout == ""
    assert run("list", "--procedure", "criminal_record", "--as-system",
               procedures=everything).stdout == ""


def test_list_pages_with_limit_and_after(run: Run) -> None:
    first = started(run)
    second = as_json(run("start", "passport", "--as", "applicant:citizen-2", "--json"))
    page = run("list", "--limit", "1", "--as-system")
    assert [line.split()[0] for line in page.stdout.splitlines()[1:]] == [first]
    assert page.stderr == f"1 case(s); next page: --after {first}\n"
    rest = as_json(run("list", "--limit", "1", "--after", first, "--as-system", "--json"))
    assert [c["reference"] for c in rest] == [second["reference"]]
    assert as_json(run("list", "--after", second["reference"], "--as-system", "--json")) == []


# --- JSON ---------------------------------------------------------------------------------------

def test_json_outputs_parse(run: Run) -> None:
    reference = started(run)
    # --json (and --lang) work on the group as well as on each command
    shown = as_json(run("--json", "--lang", "en", "show", reference, "--as", APPLICANT))
    assert shown["reference"] == reference
    assert shown["state"] == "draft" and shown["outcome"] is None and shown["closed"] is False
    assert shown["fees_due"] == 30000 and shown["fees_outstanding"] == 30000
    assert shown["data"]["surname"] == "Amegah"
    assert shown["documents"] == []
    submit = next(a for a in shown["available"] if a["trigger"] == "submit")
    assert submit["allowed"] is False and submit["label"] == "Submit the application"
    assert {"code": "payment", "subject": "submit",
            "message": "still to pay: 30000 XOF"} in submit["reasons"]

    entries = as_json(run("history", reference, "--as", APPLICANT, "--json"))
    assert [(e["sequence"], e["trigger"], e["from_state"], e["to_state"], e["actor_id"],
             e["actor_role"]) for e in entries] == [
        (1, "@start", None, "draft", "citizen-1", "applicant")]
    assert entries[0]["payload"]["data"]["surname"] == "Amegah"
    assert entries[0]["at"].startswith("20")

    listed = as_json(run("list", "--as", APPLICANT, "--json"))
    assert [c["reference"] for c in listed] == [reference]
    assert as_json(run("--json", command="tick")) == []


def test_a_subcommand_option_wins_over_the_group_option(run: Run) -> None:
    reference = started(run)
    shown = run("--lang", "en", "show", reference, "--as", APPLICANT, "--lang", "fr").stdout
    assert "state:     draft (Brouillon)" in shown
    assert "state:     draft (Draft)" in run("--lang", "en", "show", reference,
                                              "--as-system").stdout


def test_several_roles_in_as(run: Run) -> None:
    reference = started(run)
    shown = run("show", reference, "--as", "agent,supervisor:agent-7").stdout
    assert "triggers for agent-7 (agent, supervisor):" in shown


# --- errors -------------------------------------------------------------------------------------

def one_error_line(result: Result) -> str:
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def test_blocked_prints_every_reason_on_one_line(run: Run) -> None:
    reference = started(run)
    line = one_error_line(run("fire", reference, "submit", "--as", APPLICANT, "--lang", "en",
                              code=1))
    assert line == (
        'error: "Submit the application" is not possible: missing document: Certificate of '
        "Togolese nationality; missing document: Birth certificate; missing document: Copy of the "
        "national identity card; missing document: Emergency contact certificate (legalised); "
        "missing document: Proof of occupation; missing document: Passport photos; "
        "still to pay: 30000 XOF")
    error = as_json(run("fire", reference, "submit", "--as", APPLICANT, "--json", "--lang", "en",
                        code=1))
    assert error["error"] == "Blocked"
    assert error["message"] == line.removeprefix("error: ")
    assert [r["subject"] for r in error["reasons"]] == [*DOCUMENTS, "photos", "submit"]


ERRORS: list[tuple[str, Callable[[str], list[str]], str]] = [
    ("NotAllowed", lambda ref: ["start", "passport", "--as", AGENT],
     "seuls ces rôles peuvent ouvrir un dossier : applicant"),
    ("NotAllowed", lambda ref: ["fire", ref, "submit", "--as", "applicant:somebody-else"],
     "ce dossier n'est pas le vôtre"),
    ("InvalidData", lambda ref: ["start", "passport", "--as", APPLICANT, "--data",
                                 '{"surname": 3, "sex": "x"}'], "surname: "),
    ("InvalidData", lambda ref: ["attach", ref, "photos", "note.txt", "--as", APPLICANT],
     "photos: type de fichier refusé"),
    ("InvalidData", lambda ref: ["pay", ref, "0", "--provider", "t", "--provider-reference",
                                 "r", "--as", APPLICANT], "amount: "),
    ("ConcurrentUpdate", lambda ref: ["fire", ref, "withdraw", "--as", APPLICANT,
                                      "--expected-version", "7"],
     "le dossier a été modifié entre-temps"),
    ("UnknownCase", lambda ref: ["show", ref[:-1] + ("0" if ref[-1] != "0" else "1"), "--as",
                                 APPLICANT], "aucun dossier ne porte la référence"),
    ("UnknownCase", lambda ref: ["history", "PAS-2026-1", "--as", APPLICANT],
     "aucun dossier ne porte"),
    ("UnknownCase", lambda ref: ["list", "--after", "nope", "--as-system"],
     "aucun dossier ne porte"),
    ("NotAllowed", lambda ref: ["show", ref, "--as", "applicant:somebody-else"],
     "vous n'avez pas accès à ce dossier"),
    ("NotAllowed", lambda ref: ["history", ref, "--as", "registrar:reg-1"],
     "vous n'avez pas accès à ce dossier"),
    ("UnknownTrigger", lambda ref: ["fire", ref, "teleport", "--as", AGENT],
     "étape inconnue : teleport"),
    ("UnknownProcedure", lambda ref: ["start", "visa", "--as", APPLICANT],
     "procédure inconnue : visa"),
]


@pytest.mark.parametrize(("kind", "arguments", "text"), ERRORS,
                         ids=[f"{kind}-{i}" for i, (kind, _, _) in enumerate(ERRORS)])
def test_each_refusal_is_one_line_and_exit_1(run: Run, kind: str,
                                             arguments: Callable[[str], list[str]],
                                             text: str) -> None:
    reference = started(run)
    Path("note.txt").write_text("not a photo", encoding="utf-8")
    line = one_error_line(run(*arguments(reference), code=1))
    assert text in line
    error = as_json(run(*arguments(reference), "--json", code=1))
    assert error["error"] == kind
    assert error["message"] == line.removeprefix("error: ")
    if kind == "InvalidData":
        assert error["errors"] and all(isinstance(v, str) for v in error["errors"].values())
    else:
        assert isinstance(error["reasons"], list)
    assert as_json(run("show", reference, "--as-system", "--json"))["version"] == 1  # as it was


def test_invalid_data_names_every_field(run: Run) -> None:
    error = as_json(run("start", "passport", "--as", APPLICANT, "--lang", "en", "--json",
                        "--data", '{"surname": 3, "sex": "x"}', code=1))
    assert {"surname", "sex"} <= set(error["errors"])


def test_a_broken_procedure_is_one_line_and_exit_1(workdir: Path) -> None:
    Path("broken").mkdir()
    Path("broken", "x.yaml").write_text("id: [\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["case", "--db", "sqlite:///c.db", "--procedures", "broken",
                                  "list", "--as-system"])
    line = one_error_line(result)
    assert line.startswith("error: procedure refused (1 error(s)): broken/x.yaml:2:1: error: ")
    assert line.endswith("[yaml-syntax]")
    result = runner.invoke(main, ["case", "--db", "sqlite:///c.db", "--procedures", "broken",
                                  "list", "--as-system", "--json"])
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert error["error"] == "ProcedureError"
    assert error["diagnostics"][0]["rule"] == "yaml-syntax"
    missing = runner.invoke(main, ["tick", "--db", "sqlite:///c.db", "--procedures", "none/"])
    assert "cannot read file" in one_error_line(missing)


def test_an_unopenable_database_is_one_line_and_exit_1(workdir: Path) -> None:
    result = CliRunner().invoke(main, ["case", "--db", f"sqlite:///{workdir}/no/such/dir.db",
                                       "--procedures", PROCEDURES, "list", "--as-system"])
    assert "unable to open database file" in one_error_line(result)
    refused = CliRunner().invoke(main, ["tick", "--db", "postgresql+psycopg://guichet:secret@"
                                        "127.0.0.1:1/cases", "--procedures", PROCEDURES])
    line = one_error_line(refused)
    assert line.startswith("error: database postgresql+psycopg://guichet:***@127.0.0.1:1/cases: ")
    assert "secret" not in refused.output  # the password is never printed


# --- usage errors -------------------------------------------------------------------------------

USAGE = [
    (["start", "passport", "--as", "citizen-1"], "is not ROLE:ID"),
    (["start", "passport", "--as", ":citizen-1"], "is not ROLE:ID"),
    (["start", "passport"], "Missing option '--as'"),
    (["start", "passport", "--as", APPLICANT, "--data", "{not json"], "invalid JSON"),
    (["start", "passport", "--as", APPLICANT, "--data", '{"a": 1, "a": 2}'], "duplicate key"),
    (["start", "passport", "--as", APPLICANT, "--data", '{"a": NaN}'], "NaN is not a number"),
    (["start", "passport", "--as", APPLICANT, "--data", "[1, 2]"], "must be an object"),
    (["start", "passport", "--as", APPLICANT, "--data", "@missing.json"],
     "cannot read missing.json: no such file or directory"),
    (["start", "passport", "--as", APPLICANT, "--data", "@"], "followed by a file name"),
    (["start", "passport", "--as", APPLICANT, "--data", "@bad.json"], "bad.json: invalid JSON"),
    (["start", "passport", "--as", APPLICANT, "--data", "@list.yaml"],
     "list.yaml: must be a mapping"),
    (["start", "passport", "--as", APPLICANT, "--data", "@unsafe.yaml"], "[yaml-tag]"),
    (["start", "passport", "--as", APPLICANT, "--data", "@ambiguous.yml"], "[yaml-ambiguous]"),
    (["attach", "PAS-2026-000001-7", "photos", "absent.jpg", "--as", APPLICANT], "absent.jpg"),
    (["pay", "PAS-2026-000001-7", "lots", "--provider", "t", "--provider-reference", "r",
      "--as", APPLICANT], "'lots' is not a valid integer"),
    (["pay", "PAS-2026-000001-7", "10", "--as", APPLICANT], "Missing option '--provider'"),
    (["fire", "PAS-2026-000001-7", "submit", "--as", APPLICANT, "--expected-version", "x"],
     "not a valid integer"),
    (["list", "--limit", "0"], "--limit"),
    (["list", "--bogus"], "No such option"),
    (["--lang", "de", "list"], "'de' is not one of 'fr', 'en'"),
    (["show", "PAS-2026-000001-7"], "say who reads: --as ROLE:ID"),
    (["history", "PAS-2026-000001-7", "--as", APPLICANT, "--as-system"], "say who reads"),
    (["list"], "or --as-system (everything)"),
]


@pytest.mark.parametrize(("arguments", "text"), USAGE, ids=[text for _, text in USAGE])
def test_usage_errors_exit_2(run: Run, workdir: Path, arguments: list[str], text: str) -> None:
    Path("bad.json").write_text("{", encoding="utf-8")
    Path("list.yaml").write_text("- 1\n", encoding="utf-8")
    Path("unsafe.yaml").write_text('x: !!python/object/apply:os.system ["touch pwned"]\n',
                                   encoding="utf-8")
    Path("ambiguous.yml").write_text("request_type: no\n", encoding="utf-8")
    result = run(*arguments, code=2)
    assert text in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    assert not Path("pwned").exists()
    assert not (workdir / "cases.db").exists()  # refused before the engine was built


def test_usage_errors_of_tick_and_db(workdir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["tick", "--now", "next tuesday"])
    assert result.exit_code == 2
    assert "'next tuesday' is not an ISO date-time" in result.stderr
    result = runner.invoke(main, ["case", "--db", "nonsense", "--procedures", PROCEDURES,
                                  "list", "--as-system"])
    assert result.exit_code == 2
    assert "Invalid value for '--db': not a usable database URL: 'nonsense'" in result.stderr
    assert "Traceback" not in result.output
    for url in ("postgresql://guichet:secret@db:port/cases", "nosuchdialect://guichet:secret@x/"):
        result = runner.invoke(main, ["case", "--db", url, "--procedures", PROCEDURES, "list",
                                      "--as-system"])
        assert result.exit_code == 2
        assert "not a usable database URL: '" in result.stderr
        assert "guichet:***@" in result.stderr and "secret" not in result.output


def test_data_from_a_yaml_file(run: Run) -> None:
    Path("data.yaml").write_text(
        "".join(f"{key}: {json.dumps(value, ensure_ascii=False)}\n"
                for key, value in DATA.items() if key != "birth_date")
        + "birth_date: 1990-05-01\n", encoding="utf-8")  # unquoted: a date in YAML 1.1
    case = as_json(run("start", "passport", "--as", APPLICANT, "--data", "@data.yaml",
                       "--json"))
    assert case["data"]["birth_date"] == "1990-05-01"
    assert case["data"]["surname"] == "Amegah"


# --- deadlines ----------------------------------------------------------------------------------

def test_tick_now_expires_an_abandoned_draft(run: Run) -> None:
    reference = started(run)
    assert run(command="tick").stdout == ""  # nothing is due yet
    result = run("--now", "2099-01-01T00:00:00", command="tick")
    assert result.stdout.splitlines() == [f"{reference}  abandon_draft  reminded",
                                          f"{reference}  abandon_draft  fired"]
    assert result.stderr == "2 timer(s) due\n"
    shown = as_json(run("show", reference, "--as", APPLICANT, "--json"))
    assert (shown["state"], shown["outcome"]) == ("expired", "expired")
    last = run("history", reference, "--as", APPLICANT).stdout.splitlines()[-1].split()
    assert last[1:] == ["2099-01-01", "00:00:00", "abandon_draft", "draft", "→", "expired",
                        "system", "(system)"]
    assert run("--now", "2099-01-02T00:00:00+01:00", command="tick").stdout == ""


def test_tick_leaves_a_submitted_case_alone(run: Run) -> None:
    reference = submitted(run)
    assert run("--now", "2099-01-01", "--json", command="tick").stdout == "[]\n"
    assert as_json(run("show", reference, "--as-system", "--json"))["state"] == "submitted"


# --- settings -----------------------------------------------------------------------------------

def test_database_from_environment_then_default(workdir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv(cli.DATABASE_ENV, f"sqlite:///{workdir / 'env.db'}")
    result = runner.invoke(main, ["case", "--procedures", PROCEDURES, "start", "passport",
                                  "--as", APPLICANT])
    assert result.exit_code == 0, result.output
    assert (workdir / "env.db").exists() and not (workdir / "guichet.db").exists()
    monkeypatch.delenv(cli.DATABASE_ENV)
    result = runner.invoke(main, ["case", "--procedures", PROCEDURES, "list", "--as-system",
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert (workdir / "guichet.db").exists()


def test_the_engine_is_built_lazily_and_once(run: Run, workdir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    CliRunner().invoke(main, ["case", "--db", "sqlite:///lazy.db", "start", "--help"])
    assert not (workdir / "lazy.db").exists()
    reference = started(run)
    built: list[Any] = []
    original = runtime.Engine  # cli imports it from there when a command first needs it

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(runtime, "Engine", counting)
    run("show", reference, "--as", AGENT)
    assert len(built) == 1
    run("fire", reference, "withdraw", "--as", APPLICANT)  # the command, then its printing
    assert len(built) == 2


# --- drafts and what each step sent ---------------------------------------------------------

def test_edit_saves_a_draft_and_history_shows_the_change(run: Run) -> None:
    reference = started(run)
    edited = run("edit", reference, "--as", APPLICANT, "--data", '{"profession": "nurse"}')
    assert "version:   2" in edited.stdout
    lines = run("history", reference, "--as", APPLICANT).stdout.splitlines()
    assert lines[2].split()[3:] == ["@edit", "draft", "→", "draft", "citizen-1", "(applicant)"]
    assert lines[3].strip() == "changed profession: teacher → nurse"
    refused = run("edit", reference, "--as", AGENT, "--data", '{"profession": "x"}',
                  "--lang", "en", code=1)
    assert refused.stdout == "" and "the case cannot be changed at this step" in refused.stderr
    assert "version:   2" in run("show", reference, "--as", AGENT).stdout


def test_fire_keep_data_saves_the_form_of_a_blocked_step(run: Run) -> None:
    reference = started(run)
    run("fire", reference, "submit", "--as", APPLICANT, "--data", '{"profession": "nurse"}',
        code=1)
    assert as_json(run("show", reference, "--as", APPLICANT, "--json"))["data"][
        "profession"] == "teacher"
    run("fire", reference, "submit", "--as", APPLICANT, "--data", '{"profession": "nurse"}',
        "--keep-data", code=1)
    assert as_json(run("show", reference, "--as", APPLICANT, "--json"))["data"][
        "profession"] == "nurse"


def test_show_lists_what_each_step_sent_and_issued(run: Run) -> None:
    reference = submitted(run)
    shown = run("show", reference, "--as", AGENT, "--lang", "en").stdout.splitlines()
    start = shown.index("sent and issued:")
    assert any(line.startswith("  #") and "submit: issued acknowledgement (portal)" in line
               for line in shown[start:])
    history = as_json(run("history", reference, "--as", AGENT, "--json"))
    [submit] = [h for h in history if h["trigger"] == "submit"]
    assert [i["id"] for i in submit["issued"]] == ["acknowledgement"]
