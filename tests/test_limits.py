"""Bad runtime input gets a clear error and changes nothing (issue 7, points 8 and 10).

Every limit is checked before the database sees the value, the same on SQLite and PostgreSQL:
identifiers over their column length or holding NUL, lone surrogates or control characters;
amounts beyond the INTEGER columns or above what is still due; data nested too deep or too
large; text fields without a declared maximum. The CLI reads bounded data files and strips
terminal control characters from what it prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner, Result
from helpers import (
    APPLICANT,
    CLERK,
    PROCEDURES,
    START,
    assert_consistent,
    association_data,
    criminal_record_data,
    passport_data,
    pdf,
    submitted,
)
from test_concurrency import behind, count, named

import cli
from engine import Actor, Engine, InvalidData, limits
from engine.forms import Form
from engine.model import Field, Text
from engine.values import SYSTEM

# --- helpers ------------------------------------------------------------------------------------


def snapshot(engine: Engine, reference: str) -> tuple[int, int, int, int, dict[str, Any]]:
    """What a refused call must leave as it was: version, history, fees, files, data."""
    case = engine.case(reference, SYSTEM)
    return (case.version, len(engine.history(reference, SYSTEM)), case.fees_paid,
            len(case.documents), dict(case.data))


def refused(call: Any, *args: Any) -> InvalidData:
    """The InvalidData `call(*args)` raises; its message can be printed in both languages."""
    with pytest.raises(InvalidData) as excinfo:
        call(*args)
    for language in ("fr", "en"):
        excinfo.value.message(language).encode("utf-8")  # no lone surrogate in a message
    return excinfo.value


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def criminal_case(engine: Engine) -> str:
    return engine.start("criminal_record", APPLICANT, criminal_record_data()).reference


BAD_TEXTS = {"nul": "A\x00B", "surrogate": "A\ud800B", "low surrogate": "\udfffB"}


# --- actors -------------------------------------------------------------------------------------

BAD_ACTORS = [
    ("x" * (limits.MAX_ACTOR_ID + 1), ["applicant"]),
    ("", ["applicant"]),
    ("citizen\x00", ["applicant"]),
    ("citizen\ud800", ["applicant"]),
    ("citizen\x1b[2J", ["applicant"]),
    ("citizen\n2", ["applicant"]),
    ("citizen\x9b", ["applicant"]),
    ("citizen-1", ["r" * (limits.MAX_ROLE + 1)]),
    ("citizen-1", ["agent\x00"]),
    ("citizen-1", [""]),
    ("citizen-1", []),
]


@pytest.mark.parametrize(("actor_id", "roles"), BAD_ACTORS,
                         ids=[f"actor-{i}" for i in range(len(BAD_ACTORS))])
def test_an_actor_is_refused_when_built_with_a_bad_id_or_role(actor_id: str,
                                                              roles: list[str]) -> None:
    with pytest.raises(ValueError) as excinfo:
        Actor(actor_id, roles)
    error = excinfo.value
    assert isinstance(error, InvalidData)
    assert set(error.errors) <= {"actor.id", "actor.roles"} and error.errors
    assert error.message("en").startswith("Invalid data:")
    error.message("fr").encode("utf-8")


def test_an_actor_at_its_limits_is_accepted() -> None:
    actor = Actor("x" * limits.MAX_ACTOR_ID, ["r" * limits.MAX_ROLE, "applicant"])
    assert len(actor.id) == 128 and "applicant" in actor.roles
    assert Actor("agent-É7", "agent").roles == frozenset({"agent"})


# --- payments -----------------------------------------------------------------------------------

def test_bad_provider_texts_are_refused_and_change_nothing(engine: Engine,
                                                           database_url: str) -> None:
    ref = criminal_case(engine)
    before = snapshot(engine, ref)
    bad = [
        ("tmoney", "TM-\ud800", "provider_reference"),
        ("tmoney", "TM-\x00", "provider_reference"),
        ("tmoney", "TM-\x1b[2J", "provider_reference"),
        ("tmoney", "R" * (limits.MAX_PROVIDER_REFERENCE + 1), "provider_reference"),
        ("tmoney", "", "provider_reference"),
        ("p" * (limits.MAX_PROVIDER + 1), "TM-1", "provider"),
        ("t\udc00money", "TM-1", "provider"),
        ("", "TM-1", "provider"),
    ]
    for provider, reference, field in bad:
        error = refused(engine.pay, ref, 100, provider, reference, APPLICANT)
        assert set(error.errors) == {field}, (provider, reference, error.errors)
    assert snapshot(engine, ref) == before
    assert count(database_url, "SELECT count(*) FROM payments") == 0
    # at their limits they are accepted, and stored whole
    long_reference = "R" * limits.MAX_PROVIDER_REFERENCE
    engine.pay(ref, 100, "p" * limits.MAX_PROVIDER, long_reference, APPLICANT)
    assert engine.history(ref, SYSTEM)[-1].payload["provider_reference"] == long_reference


def test_amounts_beyond_the_integer_columns_are_refused(engine: Engine) -> None:
    ref = criminal_case(engine)
    before = snapshot(engine, ref)
    for amount in (2**31, 2**31 - 1 + 2**31, 2**63, 2**64, 10**30):
        error = refused(engine.pay, ref, amount, "tmoney", f"TM-{amount}", APPLICANT)
        assert set(error.errors) == {"amount"}
        assert "2147483647" in error.errors["amount"]["en"]
    assert snapshot(engine, ref) == before


def test_a_payment_above_what_is_still_due_is_refused(engine: Engine, database_url: str) -> None:
    ref = criminal_case(engine)  # 500 XOF due (the bulletin; collected in person)
    assert engine.case(ref, SYSTEM).fees_outstanding == 500
    before = snapshot(engine, ref)
    error = refused(engine.pay, ref, 501, "tmoney", "TM-1", APPLICANT)
    assert set(error.errors) == {"amount"}
    assert "500" in error.errors["amount"]["en"] and "500" in error.errors["amount"]["fr"]
    assert snapshot(engine, ref) == before

    assert engine.pay(ref, 300, "tmoney", "TM-2", APPLICANT).fees_outstanding == 200
    error = refused(engine.pay, ref, 201, "tmoney", "TM-3", APPLICANT)
    assert "200" in error.errors["amount"]["en"]
    assert engine.pay(ref, 200, "tmoney", "TM-4", APPLICANT).fees_paid == 500
    # the same payment again is still a repeat (nothing to do), not an overpayment
    assert engine.pay(ref, 200, "tmoney", "TM-4", APPLICANT).version == 3
    refused(engine.pay, ref, 1, "tmoney", "TM-5", APPLICANT)
    # fees follow the case's current data: posting the extract adds 1000 XOF
    engine.fire(ref, "withdraw", APPLICANT)
    assert count(database_url, "SELECT count(*) FROM payments") == 2
    posted = engine.start("criminal_record", APPLICANT, criminal_record_data(
        collection_mode="post", postal_address="BP 12, Lomé"))
    assert posted.fees_due == 1500
    assert engine.pay(posted.reference, 1500, "tmoney", "TM-6", APPLICANT).fees_outstanding == 0


# --- the concurrent-duplicate-payment retry (point 10) ------------------------------------------

def test_a_twin_payment_committed_between_the_look_and_the_insert_is_a_repeat(
        engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic on both databases: the first look for the provider reference misses the
    twin (it committed just after), the insert then hits the unique constraint, and the
    engine answers as for a repeat instead of failing."""
    ref = criminal_case(engine)
    twin = engine.pay(ref, 200, "tmoney", "TM-RACE", APPLICANT)
    looks: list[str] = []
    find = engine._store.find_payment

    def late_find(c: Any, provider: str, reference: str) -> dict[str, Any] | None:
        looks.append(reference)
        return None if len(looks) == 1 else find(c, provider, reference)

    monkeypatch.setattr(engine._store, "find_payment", late_find)
    again = engine.pay(ref, 200, "tmoney", "TM-RACE", APPLICANT)
    assert looks == ["TM-RACE", "TM-RACE"]  # the retry looked again and found the twin
    assert (again.version, again.fees_paid) == (twin.version, twin.fees_paid) == (2, 200)
    assert count(database_url, "SELECT count(*) FROM payments") == 1
    assert_consistent(engine.case(ref, SYSTEM), engine.history(ref, SYSTEM))


def test_a_payment_racing_an_uncommitted_twin_is_answered_as_a_repeat(
        make_engine: Any, database_url: str) -> None:
    """A real race: another worker has written the same payment and not committed yet. On
    PostgreSQL our insert waits on the unique index, then fails once the twin commits; the
    engine must answer as for a repeat. (SQLite serialises writers: no race to lose.)"""
    url, name = named(database_url)
    engine = make_engine(url)
    ref = criminal_case(engine)
    case_id = count(database_url, "SELECT id FROM cases WHERE reference = :r", r=ref)
    other = sqlalchemy.create_engine(database_url).connect()
    at = "2026-03-02 09:00:00.000000"
    other.execute(sqlalchemy.text(
        "INSERT INTO payments (case_id, amount, provider, provider_reference, actor_id, at) "
        "VALUES (:c, 500, 'tmoney', 'TM-TWIN', 'citizen-1', :at)"), {"c": case_id, "at": at})
    other.execute(sqlalchemy.text(
        "UPDATE cases SET fees_paid = 500, version = 2 WHERE id = :c"), {"c": case_id})
    other.execute(sqlalchemy.text(
        "INSERT INTO history (case_id, sequence, trigger, from_state, to_state, actor_id, "
        "actor_role, payload, at) VALUES (:c, 2, '@pay', 'draft', 'draft', 'citizen-1', "
        "'applicant', :p, :at)"),
        {"c": case_id, "p": json.dumps({"amount": 500, "provider": "tmoney",
                                        "provider_reference": "TM-TWIN"}), "at": at})
    outcome = behind(other, database_url, name,
                     lambda: engine.pay(ref, 500, "tmoney", "TM-TWIN", APPLICANT))
    assert len(outcome) == 1 and not isinstance(outcome[0], str), outcome
    assert (outcome[0].version, outcome[0].fees_paid) == (2, 500)
    assert count(database_url, "SELECT count(*) FROM payments") == 1
    assert_consistent(engine.case(ref, SYSTEM), engine.history(ref, SYSTEM))


# --- attached files -----------------------------------------------------------------------------

def test_bad_file_names_and_document_ids_are_refused_and_change_nothing(
        engine: Engine, database_url: str) -> None:
    ref = criminal_case(engine)
    before = snapshot(engine, ref)
    bad = [
        ("identity_proof", "scan\x00.pdf", "filename"),
        ("identity_proof", "scan\ud800.pdf", "filename"),
        ("identity_proof", "scan\x1b[2J.pdf", "filename"),
        ("identity_proof", "x" * (limits.MAX_FILENAME - 3) + ".pdf", "filename"),
        ("identity\ud800", "scan.pdf", "document_id"),
        ("d" * (limits.MAX_DOCUMENT_ID + 1), "scan.pdf", "document_id"),
    ]
    for i, (document_id, filename, field) in enumerate(bad):
        error = refused(engine.attach, ref, document_id, filename, pdf(str(i)), APPLICANT)
        assert set(error.errors) == {field}, (filename, error.errors)
    assert snapshot(engine, ref) == before
    assert count(database_url, "SELECT count(*) FROM documents") == 0
    longest = "x" * (limits.MAX_FILENAME - 4) + ".pdf"  # never truncated
    case = engine.attach(ref, "identity_proof", longest, pdf(), APPLICANT)
    assert [d.filename for d in case.documents] == [longest]
    assert engine.case(ref, SYSTEM).documents[0].filename == longest


# --- form data ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", BAD_TEXTS)
def test_nul_and_lone_surrogates_in_data_are_refused_at_start(engine: Engine,
                                                              kind: str) -> None:
    text = BAD_TEXTS[kind]
    attempts: list[tuple[str, dict[str, Any], str]] = [
        ("passport", passport_data(surname=text), "surname"),
        ("passport", passport_data(address=f"Rue 1{text}"), "address"),
        ("association", association_data(founding_members=[
            {**association_data()["founding_members"][0], "surname": text},
            *association_data()["founding_members"][1:]]), "founding_members"),
        ("passport", {**passport_data(), text: "x"}, ""),
    ]
    for procedure, data, field in attempts:
        error = refused(engine.start, procedure, APPLICANT, data)
        assert len(error.errors) == 1
        assert next(iter(error.errors)).startswith(field)
    assert engine.cases(actor=SYSTEM) == []


def test_nul_and_lone_surrogates_in_step_data_change_nothing(engine: Engine) -> None:
    ref = submitted(engine, "criminal_record").reference
    engine.fire(ref, "start_verification", CLERK)
    before = snapshot(engine, ref)
    for text in BAD_TEXTS.values():
        error = refused(engine.fire, ref, "request_information", CLERK,
                        {"message": f"Merci de préciser {text}"})
        assert set(error.errors) == {"message"}
    assert snapshot(engine, ref) == before


def test_data_nested_thousands_deep_is_refused_without_recursion_error(engine: Engine) -> None:
    deep = nested(100_000)
    for data in ({"surname": deep}, {"unknown": deep}, {"founding_members": deep}):
        error = refused(engine.start, "association", APPLICANT, {**association_data(), **data})
        assert len(error.errors) == 1
        assert "32" in next(iter(error.errors.values()))["en"]
    assert engine.cases(actor=SYSTEM) == []
    ref = engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    before = snapshot(engine, ref)
    refused(engine.fire, ref, "withdraw", APPLICANT, {"surname": deep})
    assert snapshot(engine, ref) == before


def test_a_huge_staff_message_is_refused_without_a_declared_max_length(engine: Engine) -> None:
    ref = submitted(engine, "criminal_record").reference
    engine.fire(ref, "start_verification", CLERK)
    before = snapshot(engine, ref)
    error = refused(engine.fire, ref, "request_information", CLERK,
                    {"message": "x" * (limits.DEFAULT_TEXT_MAX_LENGTH + 1)})
    assert set(error.errors) == {"message"}
    assert "10000" in error.errors["message"]["en"]
    assert snapshot(engine, ref) == before
    long = "x" * limits.DEFAULT_TEXT_MAX_LENGTH
    assert engine.fire(ref, "request_information", CLERK, {"message": long}).version == \
        before[0] + 1


def field(name: str, kind: str, **options: Any) -> Field:
    return Field(name, kind, Text(fr=name, en=name), (name,), **options)


def test_form_defaults_bound_text_length_and_integers() -> None:
    form = Form.of([field("note", "text"), field("name", "string"), field("n", "integer"),
                    field("x", "number"), field("bounded", "integer", maximum=2**60),
                    field("rows", "group", fields=(field("line", "text"),))])
    today = START.date()
    ok, errors = form.validate({"note": "a" * 10_000, "name": "b" * 1_000, "n": 2**53 - 1,
                                "x": -(2**53 - 1), "rows": [{"line": "c"}]}, today)
    assert errors == {}
    _, errors = form.validate({"note": "a" * 10_001, "name": "b" * 1_001, "n": 2**53,
                               "x": -(2**53) - 1.0, "bounded": 2**54,
                               "rows": [{"line": "c" * 10_001}]}, today)
    assert set(errors) == {"note", "name", "n", "x", "bounded", "rows.0.line"}
    assert errors["n"]["en"] == f"must be at most {2**53 - 1}"
    _, errors = form.validate({"n": float("nan"), "x": float("inf"),
                               "rows": [{"line": "\x00"}], "note": "\ud800"}, today)
    assert set(errors) == {"n", "x", "rows.0.line", "note"}
    _, errors = form.validate({"declared": "fine", "rows": nested(50)}, today)
    assert set(errors) == {"declared", "rows"}
    assert form.validate({"name": "Amegah\tKossi\n"}, today)[1] == {}  # tabs and newlines


# --- check_payload, for the engine's other entry points -----------------------------------------

def test_check_payload_accepts_ordinary_data() -> None:
    limits.check_payload(association_data())
    limits.check_payload({"a": nested(limits.MAX_DEPTH - 1), "b": None, "c": 1.5, "d": True,
                     "e": 2**63 - 1, "f": "Amegah\tKossi\r\n"})
    limits.check_payload({})


@pytest.mark.parametrize(("data", "field", "text"), [
    ({"k" * (limits.MAX_DATA_BYTES + 1): 1}, "kkk", "bytes"),
    ({"a": nested(limits.MAX_DEPTH)}, "a", "32 levels"),
    ({"a": nested(100_000)}, "a", "32 levels"),
    ({"a": [{"b": {"c": "x\x00"}}]}, "a", "NUL"),
    ({"a": {"b\ud800": 1}}, "a", "surrogate"),
    ({"a\udfff": 1}, "a\\udfff", "surrogate"),
    ({"a": ["x" * (limits.MAX_DATA_BYTES + 1)]}, "a", "bytes"),
    ({f"k{i}": "x" * 1000 for i in range(limits.MAX_DATA_BYTES // 1000 + 1)}, "k", "bytes"),
    ({"a": float("nan")}, "a", "finite"),
    ({"a": [float("-inf")]}, "a", "finite"),
    ({"a": 2**63}, "a", "integer"),
    ({"a": -(2**63) - 1}, "a", "integer"),
    ({"a": b"bytes"}, "a", "JSON"),
    ({"a": {1: "x"}}, "a", "JSON"),
    ({"a": {"x"}}, "a", "JSON"),
], ids=["big-key", "depth-32", "depth-100000", "nul", "surrogate-key", "surrogate-top-key",
        "big-string", "big-total", "nan", "inf", "int-high", "int-low", "bytes", "int-key", "set"])
def test_check_payload_refuses_and_names_the_top_level_field(data: dict[Any, Any], field: str,
                                                             text: str) -> None:
    error = refused(limits.check_payload, data)
    assert len(error.errors) == 1
    name, messages = next(iter(error.errors.items()))
    assert name.startswith(field)
    assert text in messages["en"]
    assert messages["fr"]


def test_check_text_and_check_amount() -> None:
    assert limits.check_text("provider", "tmoney", limits.MAX_PROVIDER) == "tmoney"
    for value in ("", "x" * 65, "a\x00", "a\ud800", "a\x7f", "a\x85", 12):
        error = refused(limits.check_text, "provider", value, limits.MAX_PROVIDER)
        assert set(error.errors) == {"provider"}
    assert limits.check_amount("amount", limits.MAX_AMOUNT) == 2**31 - 1
    for amount in (0, -1, True, 1.0, "5", limits.MAX_AMOUNT + 1):
        refused(limits.check_amount, "amount", amount)
    limits.check_owed("amount", 500, 1500, 1000)
    refused(limits.check_owed, "amount", 501, 1500, 1000)
    # whatever the fees say, the sum paid never passes the INTEGER column
    refused(limits.check_owed, "amount", 2, 2**40, limits.MAX_AMOUNT - 1)


# --- the command line ---------------------------------------------------------------------------

PASSPORT = str(PROCEDURES / "passport.yaml")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv(cli.DATABASE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'cases.db'}"

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli.main, ["case", "--db", url, "--procedures", PASSPORT, *args])
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, RecursionError | UnicodeError)
        return result

    yield invoke


ME = "applicant:citizen-1"  # who reads in the CLI tests: the applicant who wrote the data


def one_error_line(result: Result) -> str:
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def test_cli_data_nested_thousands_deep_is_one_line_and_exit_1(run: Any) -> None:
    Path("deep.json").write_text('{"surname": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                 encoding="utf-8")
    Path("shallow.json").write_text(json.dumps({"surname": nested(40)}), encoding="utf-8")
    for name in ("deep.json", "shallow.json"):
        line = one_error_line(run("start", "passport", "--as", "applicant:citizen-1",
                                  "--data", f"@{name}", code=1))
        assert "32" in line
        error = json.loads(run("start", "passport", "--as", "applicant:citizen-1", "--json",
                               "--data", f"@{name}", code=1).stdout)
        assert error["error"] == "InvalidData"
    deep_inline = '{"surname": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert "32" in one_error_line(run("start", "passport", "--as", "applicant:citizen-1",
                                      "--data", deep_inline, code=1))
    assert not Path("cases.db").exists()  # refused before the engine was built


def test_cli_data_files_are_bounded(run: Any) -> None:
    Path("big.json").write_text(json.dumps({"surname": "x" * limits.MAX_DATA_BYTES}),
                                encoding="utf-8")
    line = one_error_line(run("start", "passport", "--as", "applicant:citizen-1", "--data",
                              "@big.json", code=1))
    assert "1048576" in line
    special = run("start", "passport", "--as", "applicant:citizen-1", "--data", "@/dev/zero",
                  code=2)
    assert "not a regular file" in special.stderr


def test_cli_refuses_nul_and_surrogates_in_data_and_actors(run: Any) -> None:
    line = one_error_line(run("start", "passport", "--as", "applicant:citizen-1", "--data",
                              '{"surname": "A\\ud800"}', code=1))
    assert "surname" in line
    assert "surname" in one_error_line(run("start", "passport", "--as", "applicant:citizen-1",
                                           "--data", '{"surname": "A\\u0000"}', code=1))
    assert "actor.id" in one_error_line(run("start", "passport", "--as",
                                            "applicant:citizen\x1b[2J", code=1))
    assert "--state" in one_error_line(run("list", "--as", ME, "--state", "draft\ud800", code=1))
    assert "--procedure" in one_error_line(run("list", "--as", ME, "--procedure", "pass\x00port",
                                               code=1))


def test_cli_output_never_carries_terminal_control_characters(run: Any) -> None:
    hostile = "Amegah\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\x08"
    Path("data.json").write_text(json.dumps(passport_data(surname="Amegah", address=hostile)),
                                 encoding="utf-8")
    started = run("start", "passport", "--as", "applicant:citizen-1", "--data", "@data.json",
                  "--json")
    reference = json.loads(started.stdout)["reference"]
    outputs = [
        started,
        run("show", "--as", ME, reference),
        run("show", "--as", ME, reference, "--json"),
        run("history", "--as", ME, reference),
        run("history", "--as", ME, reference, "--json"),
        run("list", "--as", ME, "--json"),
        run("fire", reference, "\x1b[2Jteleport", "--as", "agent:agent-1", code=1),
        run("fire", reference, "\x1b[2Jteleport", "--as", "agent:agent-1", "--json", code=1),
    ]
    for result in outputs:
        text = result.stdout + result.stderr
        assert not any(c in text for c in "\x1b\x07\x9b\x7f\x08"), repr(text)
    shown = run("show", "--as", ME, reference).stdout
    assert "  address: Amegah31m" in shown.splitlines()
    # JSON output stays lossless: control characters are escaped, not dropped
    data = json.loads(run("show", "--as", ME, reference, "--json").stdout)["data"]
    assert data["address"] == hostile
    history = json.loads(run("history", "--as", ME, reference, "--json").stdout)
    assert history[0]["payload"]["data"]["address"] == hostile


def test_cli_prints_text_stored_before_the_limits_without_crashing(run: Any,
                                                                  tmp_path: Path) -> None:
    """`case list --json`, `case show` and `case history --json` crashed on a lone surrogate
    already in the database; they print it escaped (JSON) or replaced (text)."""
    Path("data.json").write_text(json.dumps(passport_data()), encoding="utf-8")
    reference = json.loads(run("start", "passport", "--as", "applicant:citizen-1", "--data",
                               "@data.json", "--json").stdout)["reference"]
    raw = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'cases.db'}")
    try:
        with raw.begin() as c:
            c.execute(sqlalchemy.text("UPDATE cases SET data = :d WHERE reference = :r"),
                      {"d": json.dumps(passport_data(surname="A\ud800\x1b[2J")),
                       "r": reference})
            case_id = c.execute(sqlalchemy.text("SELECT id FROM cases WHERE reference = :r"),
                                {"r": reference}).scalar_one()
            c.execute(sqlalchemy.text(
                "INSERT INTO history (case_id, sequence, trigger, from_state, to_state, "
                "actor_id, actor_role, payload, at) VALUES (:c, 2, '@pay', 'draft', 'draft', "
                "'citizen-1', 'applicant', :p, '2026-03-02 09:00:00.000000')"),
                {"c": case_id, "p": json.dumps({"provider_reference": "\udfff"})})
    finally:
        raw.dispose()
    listed = json.loads(run("list", "--as", ME, "--json").stdout)
    assert listed[0]["data"]["surname"] == "A\ud800\x1b[2J"
    assert "  surname: A\ufffd" in run("show", "--as", ME, reference).stdout.splitlines()
    history = json.loads(run("history", "--as", ME, reference, "--json").stdout)
    assert history[-1]["payload"] == {"provider_reference": "\udfff"}
    run("history", "--as", ME, reference)


def test_cli_output_helpers_escape_and_strip() -> None:
    assert cli.printable("a\x1b[2;3Hb\x1b]8;;http://x\x1b\\c\x9b1md\x00e\tf\ng\ud800") == \
        "ab" + "c" + "1md" + "e\tf\ng\ufffd"
    text = cli.json_text({"a": "\x1b\x9b\x7f\ud800é"})
    assert not any(c in text for c in "\x1b\x9b\x7f\ud800")
    assert "é" in text
    assert json.loads(text) == {"a": "\x1b\x9b\x7f\ud800é"}


def test_the_cli_prints_only_through_its_safe_helpers() -> None:
    """Every print goes through echo() or json_text(): a new one cannot bypass the filter."""
    source = Path(cli.__file__).read_text(encoding="utf-8")
    direct = [line.strip() for line in source.splitlines()
              if "click.echo(" in line or "click.secho(" in line]
    assert direct and all("printable(" in line or "json_text(" in line for line in direct), direct


@pytest.mark.parametrize("name", ["procedure", "state", "applicant"])
def test_case_list_filters_are_checked_before_the_database(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidData) as refused:
        engine.cases(**{name: "draft\ud800"}, actor=SYSTEM)
    assert set(refused.value.errors) == {name}
