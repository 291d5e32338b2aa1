"""The record cannot be rewritten (issue 7, point 6).

`history`, `payments` and `documents` are append-only and outbox rows change only their
`delivered_at`, once: the database refuses every other change, whatever the statement
(UPDATE, DELETE, SQLite's REPLACE, upserts, PostgreSQL's TRUNCATE). Every Engine start checks
the guards and reinstalls, with a warning, one found missing or altered. On PostgreSQL the
engine runs as a role that owns nothing, with the grants the README gives (run from the
README itself here).

The statements are raw SQL through a separate SQLAlchemy engine, as someone with a database
client would type them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from helpers import (
    CLERK,
    OTHER_APPLICANT,
    ROOT,
    FakeClock,
    MakeEngine,
    criminal_record_collected,
    criminal_record_data,
    submitted,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine import EVENTS, DatabaseUnavailable, Engine, Event, runtime, store
from engine.values import SYSTEM

TABLES = {"history": store.history_t, "payments": store.payments_t,
          "documents": store.documents_t, "outbox": store.outbox_t}
#: A column of each append-only table, and a value that would forge it.
FORGERIES = {"history": ("actor_id", "'forger'"), "payments": ("amount", "1"),
             "documents": ("sha256", "'forged'")}
#: The columns the README grants UPDATE on for purging (the guards bound what they become).
PURGE_GRANTS = {"history": ("actor_id", "payload"), "documents": ("filename", "actor_id"),
                "payments": ("actor_id",), "outbox": ("payload", "delivered_at")}


# --- raw SQL ------------------------------------------------------------------------------------

def run(url: str, statement: str, **params: Any) -> None:
    """Run one statement in its own transaction, through a connection of its own."""
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.begin() as c:
            c.execute(sqlalchemy.text(statement), params)
    finally:
        raw.dispose()


def refused(url: str, statement: str, **params: Any) -> str:
    """The database's message refusing `statement` (the test fails if it is accepted)."""
    with pytest.raises(DBAPIError) as caught:
        run(url, statement, **params)
    return str(caught.value.orig)


def rows(url: str, table: str) -> list[Any]:
    """Every row of `table`, in id order, read with the engine's own column types."""
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.connect() as c:
            t = TABLES[table]
            return list(c.execute(sqlalchemy.select(t).order_by(t.c.id)).all())
    finally:
        raw.dispose()


def replacing(dialect: str, table: str, column: str, value: str) -> list[str]:
    """Statements writing a copy of row :id of `table` (with `column` = `value`) over it:
    REPLACE and INSERT OR REPLACE on SQLite, upserts on both databases, conflicting on the id
    and on each unique key."""
    t = TABLES[table]
    names = [c.name for c in t.c]
    keys = [tuple(c.name for c in u.columns) for u in t.constraints
            if isinstance(u, sqlalchemy.UniqueConstraint)]

    def copy(verb: str, keep_id: bool) -> str:
        columns = [n for n in names if keep_id or n != "id"]
        values = ", ".join(value if n == column else n for n in columns)
        return (f"{verb} INTO {table} ({', '.join(columns)}) "
                f"SELECT {values} FROM {table} WHERE id = :id")

    update = f"DO UPDATE SET {column} = {value}"
    if dialect == "sqlite":
        return [copy("REPLACE", True), copy("INSERT OR REPLACE", True),
                *[copy("INSERT OR REPLACE", False) for _ in keys],  # on the unique key only
                f"{copy('INSERT', True)} ON CONFLICT {update}"]
    return [f"{copy('INSERT', True)} ON CONFLICT (id) {update}",
            *[f"{copy('INSERT', False)} ON CONFLICT ({', '.join(key)}) {update}"
              for key in keys]]


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


def listen_to_everything(engine: Engine, heard: list[Event]) -> None:
    for name in EVENTS:
        engine.on(name, heard.append)


# --- append-only tables -------------------------------------------------------------------------

@pytest.mark.parametrize("table", ["history", "payments", "documents"])
def test_append_only_rows_cannot_be_updated_deleted_or_replaced(
        engine: Engine, database_url: str, table: str) -> None:
    case = submitted(engine, "criminal_record")
    before = rows(database_url, table)
    assert before, f"the case wrote no {table} row"
    first = before[0].id
    column, value = FORGERIES[table]
    statements = [f"UPDATE {table} SET {column} = {value} WHERE id = :id",
                  f"DELETE FROM {table} WHERE id = :id",
                  *replacing(dialect_of(database_url), table, column, value)]
    for statement in statements:
        message = refused(database_url, statement, id=first)
        assert f"{table} is append-only" in message, statement
    assert rows(database_url, table) == before
    # the engine's own writes still pass the guards
    assert engine.fire(case.reference, "start_verification", CLERK).version == case.version + 1


# --- the outbox ---------------------------------------------------------------------------------

def test_outbox_rows_change_only_their_delivery_time_once(
        make_engine: MakeEngine, database_url: str, clock: FakeClock) -> None:
    # two hosts deliver the same rows: host a hands them to its hooks and has not marked them
    # yet when host b hands them over again and marks them; a's marking then changes nothing
    heard: list[Event] = []
    a, b = make_engine(database_url), make_engine(database_url)
    listen_to_everything(a, heard)
    listen_to_everything(b, heard)
    case = submitted(a, "criminal_record")
    assert b.deliver_pending() >= 1  # the submit row, delivered by a but not marked yet
    first_marked = clock.now
    clock.advance(dt.timedelta(minutes=5))
    a.flush()
    delivered = rows(database_url, "outbox")
    assert all(r.delivered_at is not None for r in delivered)
    assert delivered[-1].delivered_at == first_marked
    # a row nobody has delivered yet
    make_engine(database_url).start("criminal_record", OTHER_APPLICANT, criminal_record_data())
    before = rows(database_url, "outbox")
    pending = before[-1]
    assert pending.delivered_at is None and pending.case_id != delivered[-1].case_id
    for row, other in ((delivered[-1], pending), (pending, delivered[-1])):
        for change in ["payload = '{\"forged\": true}'", "event = 'forged'",
                       f"case_id = {other.case_id}", "created_at = '2030-01-01 00:00:00'"]:
            statement = f"UPDATE outbox SET {change} WHERE id = :id"
            assert "outbox rows are immutable" in refused(database_url, statement, id=row.id)
        for statement in [f"DELETE FROM outbox WHERE id = {row.id}",
                          *replacing(dialect_of(database_url), "outbox", "event", "'forged'")]:
            assert "outbox rows are immutable" in refused(database_url, statement, id=row.id)
    for statement in ["UPDATE outbox SET delivered_at = NULL WHERE id = :id",
                      "UPDATE outbox SET delivered_at = '2030-01-01 00:00:00' WHERE id = :id"]:
        assert "outbox rows are immutable" in refused(database_url, statement,
                                                      id=delivered[-1].id)
    assert rows(database_url, "outbox") == before
    assert a.case(case.reference, SYSTEM).state == "submitted"


# --- purging: the one rewrite the guards accept -------------------------------------------------

def purge_rewrites(engine: Engine, reference: str) -> list[tuple[str, dict[str, Any]]]:
    """What Engine.purge would write over the case's record rows: (table, row) pairs, each row
    with its id and its new values (JSON as text, as a database client would send it)."""
    case = engine._store.read_case(reference)
    assert case is not None
    plan = runtime._purge_plan(case, engine._store.case_record(case["id"]))
    return [(table, {k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})
            for table, changed in plan.rewrites.items() for row in changed]


def rewrite(url: str, table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(f"{k} = :{k}" for k in row if k != "id")
    run(url, f"UPDATE {table} SET {columns} WHERE id = :id", **row)


def refused_rewrite(url: str, table: str, row: dict[str, Any]) -> str:
    with pytest.raises(DBAPIError) as caught:
        rewrite(url, table, row)
    return str(caught.value.orig)


def record(url: str) -> dict[str, list[Any]]:
    return {table: rows(url, table) for table in TABLES}


def case_id(engine: Engine, reference: str) -> int:
    case = engine._store.read_case(reference)
    assert case is not None
    return int(case["id"])


def replacing_purge(dialect: str) -> list[str]:
    """Statements writing a copy of the purges row of case :id over it (another pseudonym)."""
    columns = "case_id, pseudonym, purged_by, purged_at"
    copy = (f"INTO purges ({columns}) SELECT case_id, 'purged:000000000000', purged_by, "
            "purged_at FROM purges WHERE case_id = :id")
    upsert = f"INSERT {copy} ON CONFLICT (case_id) DO UPDATE SET pseudonym = 'purged:0'"
    return [f"REPLACE {copy}", f"INSERT OR REPLACE {copy}", upsert] if dialect == "sqlite" \
        else [upsert]


def test_only_a_purges_row_lets_purging_rewrite_the_record_and_only_as_purging_does(
        engine: Engine, database_url: str) -> None:
    closed = criminal_record_collected(engine).reference
    open_case = submitted(engine, "criminal_record", OTHER_APPLICANT).reference
    rewrites = purge_rewrites(engine, closed)
    assert {table for table, _ in rewrites} == {"history", "outbox", "documents", "payments"}
    before = record(database_url)

    # what purging writes, without a purges row: refused
    for table, row in [*rewrites, *purge_rewrites(engine, open_case)]:
        message = refused_rewrite(database_url, table, row)
        assert "append-only" in message or "immutable" in message, (table, row)
    assert record(database_url) == before

    # a purges row: only for a closed case, under a pseudonym of the fixed form
    insert = ("INSERT INTO purges (case_id, pseudonym, purged_by, purged_at) "
              "VALUES (:c, :p, 'system', :t)")
    when = dt.datetime(2031, 1, 1)
    alias = runtime.pseudonym(closed)
    for target, pseudonym in ((open_case, runtime.pseudonym(open_case)), (closed, "clerk-1"),
                              (closed, "purged:xyz"), (closed, alias + "0")):
        message = refused(database_url, insert, c=case_id(engine, target), p=pseudonym, t=when)
        assert "only a closed case is purged" in message, (target, pseudonym)
    run(database_url, insert, c=case_id(engine, closed), p=alias, t=when)

    # with it, nothing but erasing: no other value, key, actor, file name or column
    start = next(row for table, row in rewrites if table == "history")
    erased = json.loads(start["payload"])
    paid = next(r for r in rows(database_url, "history") if r.trigger == "@pay")
    first = {table: rows(database_url, table)[0].id
             for table in ("documents", "payments", "outbox")}
    forgeries = [
        ("history", {**start, "payload": json.dumps(
            {**erased, "data": {**erased["data"], "surname": "Forged"}})}),
        ("history", {**start, "payload": json.dumps({**erased, "forged": "(purged)"})}),
        ("history", {**start, "payload": json.dumps(
            {"data": dict(list(erased["data"].items())[1:])})}),  # a key less
        ("history", {**start, "payload": '"(purged)"'}),  # the whole payload
        ("history", {"id": paid.id, "payload": json.dumps({**paid.payload, "amount": 1})}),
        ("history", {**start, "actor_id": "clerk-1"}),
        ("history", {**start, "trigger": "forged"}),
        ("documents", {"id": first["documents"], "filename": "other.pdf"}),
        ("documents", {"id": first["documents"], "sha256": "forged"}),
        ("payments", {"id": first["payments"], "amount": 1}),
        ("payments", {"id": first["payments"], "actor_id": "someone"}),
        ("outbox", {"id": first["outbox"], "event": "forged"}),
        ("outbox", {"id": first["outbox"], "payload": '{"forged": "(purged)"}'}),
        *purge_rewrites(engine, open_case),  # another case: it has no purges row
    ]
    for table, row in forgeries:
        message = refused_rewrite(database_url, table, row)
        assert "append-only" in message or "immutable" in message, (table, row)
    assert record(database_url) == before

    # what purging writes passes, row by row; the purges row stays as it is
    for table, row in rewrites:
        rewrite(database_url, table, row)
    assert record(database_url) != before
    for statement in ["UPDATE purges SET pseudonym = 'purged:000000000000'",
                      "DELETE FROM purges", *replacing_purge(dialect_of(database_url))]:
        message = refused(database_url, statement, id=case_id(engine, closed))
        assert "purges is append-only" in message, statement


# --- the guards are checked at every start ------------------------------------------------------

def test_a_removed_or_altered_sqlite_guard_is_reinstalled_at_start(
        make_engine: MakeEngine, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="guichet"):
        engine = make_engine(sqlite_url)
    assert not caplog.records  # a first install warns about nothing
    submitted(engine, "criminal_record")
    run(sqlite_url, "DROP TRIGGER history_no_replace")
    run(sqlite_url, "DROP TRIGGER outbox_immutable")
    run(sqlite_url, "CREATE TRIGGER outbox_immutable BEFORE UPDATE ON outbox WHEN 0 "
                    "BEGIN SELECT RAISE(ABORT, 'outbox rows are immutable'); END")
    with caplog.at_level(logging.WARNING, logger="guichet"):
        make_engine(sqlite_url)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "history_no_replace on table history was missing" in warned
    assert "outbox_immutable on table outbox was altered" in warned
    history = rows(sqlite_url, "history")
    assert "history is append-only" in refused(
        sqlite_url, replacing("sqlite", "history", "actor_id", "'forger'")[0], id=history[0].id)
    assert "outbox rows are immutable" in refused(
        sqlite_url, "UPDATE outbox SET event = 'forged'")
    assert rows(sqlite_url, "history") == history


# --- PostgreSQL: TRUNCATE, tampered functions and triggers, a role that owns nothing ------------

@pytest.fixture
def pg_url(postgresql_url: str) -> Iterator[str]:
    """This session's PostgreSQL schema, with no Guichet table before or after the test."""
    def drop() -> None:
        database = store.connect(postgresql_url)
        try:
            store.drop_schema(database)
        finally:
            database.dispose()
    drop()
    yield postgresql_url
    drop()


def test_truncate_is_refused_on_postgresql(make_engine: MakeEngine, pg_url: str) -> None:
    submitted(make_engine(pg_url), "criminal_record")
    before = {table: rows(pg_url, table) for table in TABLES}
    for table in TABLES:
        message = refused(pg_url, f"TRUNCATE {table}")
        assert "append-only" in message or "immutable" in message, table
    assert "append-only" in refused(pg_url, "TRUNCATE cases CASCADE")  # reaches history
    assert "purges is append-only" in refused(pg_url, "TRUNCATE purges")
    assert {table: rows(pg_url, table) for table in TABLES} == before


PERMISSIVE = ("RETURNS trigger AS $$ BEGIN IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; "
              "RETURN NEW; END; $$ LANGUAGE plpgsql")
#: name -> (statements tampering with one guard, what the next start must say about it)
TAMPERING = {
    "function body": ([f"CREATE OR REPLACE FUNCTION guichet_history_append_only() {PERMISSIVE}"],
                      "function guichet_history_append_only() on table history was altered"),
    "trigger disabled": (["ALTER TABLE payments DISABLE TRIGGER payments_append_only"],
                         "trigger payments_append_only on table payments was disabled"),
    "trigger made conditional": ([
        "DROP TRIGGER documents_append_only ON documents",
        "CREATE TRIGGER documents_append_only BEFORE UPDATE OR DELETE ON documents "
        "FOR EACH ROW WHEN (false) EXECUTE FUNCTION guichet_documents_append_only()"],
        "trigger documents_append_only on table documents was altered"),
    "trigger on another function": ([
        f"CREATE FUNCTION let_through() {PERMISSIVE}",
        "DROP TRIGGER history_append_only ON history",
        "CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON history "
        "FOR EACH ROW EXECUTE FUNCTION let_through()"],
        "trigger history_append_only on table history was altered"),
    "function replaced": ([
        "DROP FUNCTION guichet_payments_append_only() CASCADE",
        "CREATE FUNCTION guichet_payments_append_only() RETURNS int AS 'SELECT 1' "
        "LANGUAGE sql"],
        "function guichet_payments_append_only() on table payments was replaced"),
    "truncate trigger dropped": (["DROP TRIGGER outbox_no_truncate ON outbox"],
                                 "trigger outbox_no_truncate on table outbox was missing"),
    "purges check dropped": (["DROP TRIGGER purges_checked ON purges"],
                             "trigger purges_checked on table purges was missing"),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_a_tampered_postgresql_guard_is_repaired_with_a_warning(
        make_engine: MakeEngine, pg_url: str, caplog: pytest.LogCaptureFixture,
        tampering: str) -> None:
    with caplog.at_level(logging.WARNING, logger="guichet"):
        submitted(make_engine(pg_url), "criminal_record")
        make_engine(pg_url)  # a second start finds everything in place
    assert not caplog.records
    statements, warning = TAMPERING[tampering]
    for statement in statements:
        run(pg_url, statement)
    with caplog.at_level(logging.WARNING, logger="guichet"):
        make_engine(pg_url)
    assert warning in " ".join(r.getMessage() for r in caplog.records)
    # every guard holds again
    before = {table: rows(pg_url, table) for table in TABLES}
    for table in FORGERIES:
        column, value = FORGERIES[table]
        message = refused(pg_url, f"UPDATE {table} SET {column} = {value}")
        assert f"{table} is append-only" in message
        assert f"{table} is append-only" in refused(pg_url, f"DELETE FROM {table}")
    assert "immutable" in refused(pg_url, "UPDATE outbox SET event = 'forged'")
    assert "immutable" in refused(pg_url, "TRUNCATE outbox")
    assert {table: rows(pg_url, table) for table in TABLES} == before
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="guichet"):
        make_engine(pg_url)
    assert not caplog.records


def readme_grants(schema: str, role: str) -> list[str]:
    """The statements of the README's block creating `guichet_app`, for `role` on `schema`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Running with least privilege", 1)[1]
    block = next(b for b in re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
                 if "CREATE ROLE guichet_app" in b)
    block = block.replace("guichet_app", role)
    block = re.sub(r"\bguichet\b", f'"{schema}"', block)
    return [s.strip() for s in block.split(";") if s.strip()]


@pytest.fixture
def app_role(pg_url: str) -> Iterator[tuple[str, str]]:
    """A role name unique to this pytest session and the URL to connect as it (the test
    creates the role); the role is dropped afterwards."""
    role = f"guichet_app_{os.getpid()}"
    yield role, make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    admin = sqlalchemy.create_engine(pg_url)
    try:
        with admin.begin() as c:
            exists = c.execute(sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                               {"r": role}).first()
            if exists:
                c.execute(sqlalchemy.text("SELECT pg_terminate_backend(pid) FROM "
                                          "pg_stat_activity WHERE usename = :r"), {"r": role})
                c.exec_driver_sql(f'DROP OWNED BY "{role}"')
                c.exec_driver_sql(f'DROP ROLE "{role}"')
    finally:
        admin.dispose()


def current_schema(url: str) -> str:
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.connect() as c:
            return str(c.exec_driver_sql("SELECT current_schema()").scalar_one())
    finally:
        raw.dispose()


def grant_as_readme(owner_url: str, role: str) -> None:
    for statement in readme_grants(current_schema(owner_url), role):
        run(owner_url, statement)


def test_the_engine_runs_as_a_role_that_cannot_disable_the_guards(
        make_engine: MakeEngine, pg_url: str, app_role: tuple[str, str], clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    role, app_url = app_role
    make_engine(pg_url).close()  # the owner creates the tables, functions and triggers
    grant_as_readme(pg_url, role)
    with caplog.at_level(logging.WARNING, logger="guichet"):
        app = make_engine(app_url)
    assert not caplog.records
    heard: list[Event] = []
    listen_to_everything(app, heard)
    case = submitted(app, "criminal_record")
    app.fire(case.reference, "start_verification", CLERK)
    app.start("criminal_record", OTHER_APPLICANT, criminal_record_data())
    clock.advance(dt.timedelta(days=400))
    app.tick()  # timers: settled and cancelled by UPDATE
    app.close()
    assert all(r.delivered_at is not None for r in rows(pg_url, "outbox"))
    assert heard

    owner = sqlalchemy.create_engine(pg_url)
    try:
        with owner.connect() as c:
            owners = c.exec_driver_sql(
                "SELECT DISTINCT tableowner FROM pg_tables "
                "WHERE schemaname = current_schema()").scalars().all()
    finally:
        owner.dispose()
    assert owners and role not in owners
    before = {table: rows(pg_url, table) for table in TABLES}
    attempts = [
        "ALTER TABLE history DISABLE TRIGGER ALL",
        "ALTER TABLE history DISABLE TRIGGER history_append_only",
        "DROP TRIGGER history_append_only ON history",
        f"CREATE OR REPLACE FUNCTION guichet_history_append_only() {PERMISSIVE}",
        "SET session_replication_role = replica",
        "DELETE FROM outbox",
        "UPDATE purges SET pseudonym = 'purged:000000000000'",
        "DELETE FROM purges",
        "TRUNCATE purges",
    ]
    for table in FORGERIES:
        column, value = FORGERIES[table]
        attempts += [f"DELETE FROM {table}", f"TRUNCATE {table}"]
        if column not in PURGE_GRANTS.get(table, ()):
            attempts.append(f"UPDATE {table} SET {column} = {value}")
    for statement in attempts:
        message = refused(app_url, statement)
        assert "must be owner" in message or "permission denied" in message, statement
    # the columns purging rewrites are granted: the triggers refuse what purging would not do
    for statement in ["UPDATE outbox SET payload = '{}'",
                      "UPDATE history SET actor_id = 'forger'",
                      "UPDATE history SET payload = '{}'",
                      "UPDATE documents SET filename = '(purged)'",
                      "UPDATE payments SET actor_id = 'forger'"]:
        message = refused(app_url, statement)
        assert "append-only" in message or "immutable" in message, statement
    assert {table: rows(pg_url, table) for table in TABLES} == before


def test_the_engine_role_purges_and_still_cannot_rewrite_the_record(
        make_engine: MakeEngine, pg_url: str, app_role: tuple[str, str], clock: FakeClock,
        tmp_path: Path) -> None:
    role, app_url = app_role
    source = (ROOT / "procedures" / "criminal_record.yaml").read_text(encoding="utf-8")
    source = re.sub(r"(?m)^retention:.*\n", "", source)
    path = tmp_path / "criminal_record.yaml"
    path.write_text(re.sub(r"(?m)^(validity:.*\n)", r'\1retention: "1 year"\n', source,
                           count=1), encoding="utf-8")
    make_engine(pg_url, procedures=[path]).close()
    grant_as_readme(pg_url, role)
    app = make_engine(app_url, procedures=[path])
    closed = criminal_record_collected(app).reference
    clock.advance(dt.timedelta(days=365))
    assert [r.reference for r in app.purge()] == [closed]
    assert app.case(closed, SYSTEM).data == {}
    before = {table: rows(pg_url, table) for table in TABLES}
    for statement, refusal in [
            ("UPDATE history SET actor_id = 'forger'", "append-only"),
            ("UPDATE history SET payload = '{\"data\": \"forged\"}'", "append-only"),
            ("UPDATE outbox SET payload = '{\"forged\": \"(purged)\"}'", "immutable"),
            ("UPDATE documents SET filename = 'forged.pdf'", "append-only"),
            ("UPDATE payments SET actor_id = 'forger'", "append-only"),
            ("UPDATE purges SET pseudonym = 'purged:000000000000'", "permission denied"),
            ("DELETE FROM purges", "permission denied"),
            ("ALTER TABLE purges DISABLE TRIGGER purges_checked", "must be owner")]:
        assert refusal in refused(app_url, statement), statement
    assert {table: rows(pg_url, table) for table in TABLES} == before


def test_a_role_that_owns_nothing_refuses_to_start_on_a_tampered_guard(
        make_engine: MakeEngine, pg_url: str, app_role: tuple[str, str]) -> None:
    role, app_url = app_role
    make_engine(pg_url).close()
    grant_as_readme(pg_url, role)
    run(pg_url, f"CREATE OR REPLACE FUNCTION guichet_history_append_only() {PERMISSIVE}")
    with pytest.raises(DatabaseUnavailable) as refusal:
        make_engine(app_url)
    assert isinstance(refusal.value, store.SchemaError)
    message = str(refusal.value)
    assert "\n" not in message
    assert "guichet_history_append_only" in message and "owner" in message
    make_engine(pg_url).close()  # the owner repairs it
    make_engine(app_url).close()  # and the role starts again


def test_a_role_that_may_not_create_tables_gets_a_clear_error(
        make_engine: MakeEngine, pg_url: str, app_role: tuple[str, str]) -> None:
    role, app_url = app_role
    run(pg_url, f'CREATE ROLE "{role}" LOGIN')
    with pytest.raises(store.SchemaError, match="needs USAGE on the schema"):
        make_engine(app_url)
    run(pg_url, f'GRANT USAGE ON SCHEMA "{current_schema(pg_url)}" TO "{role}"')
    with pytest.raises(store.SchemaError, match="may not create the Guichet tables"):
        make_engine(app_url)


def test_readme_grants_name_every_table() -> None:
    granted = " ".join(readme_grants("s", "r"))
    for table in store.SQLModel.metadata.tables:
        assert f'"s".{table}' in granted, table
