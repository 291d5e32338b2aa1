"""Database failures reach hosts and the CLI as the engine's DatabaseUnavailable (issue 8.7).

A host catches `engine.GuichetError` (or `DatabaseUnavailable`) and needs no SQLAlchemy: a
database that cannot be reached or opened, a connection that fails or waits too long (a lock),
a file that is not a database and tables this role may not set up all say DatabaseUnavailable;
a URL that cannot be used says InvalidDatabaseURL (one). Errors about a statement rather than
the database (IntegrityError, Conflict) pass unchanged.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import APPLICANT, PROCEDURES, FakeClock, passport_data
from sqlalchemy.exc import IntegrityError, OperationalError

from cli import main
from engine import (
    DatabaseUnavailable,
    Engine,
    GuichetError,
    InvalidDatabaseURL,
    store,
)
from engine.values import SYSTEM

UNREACHABLE = "postgresql+psycopg://guichet:secret@127.0.0.1:1/cases"  # nothing listens on 1
UNREACHABLE_SHOWN = "postgresql+psycopg://guichet:***@127.0.0.1:1/cases"


def refusal(url: str) -> DatabaseUnavailable:
    with pytest.raises(DatabaseUnavailable) as caught:
        Engine(PROCEDURES, url)
    return caught.value


def test_an_unopenable_sqlite_file_is_database_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir.db"
    error = refusal(url)
    assert isinstance(error, GuichetError) and not isinstance(error, InvalidDatabaseURL)
    assert error.problem == "unable to open database file"
    assert error.url == url
    assert error.message("fr") == "la base de données est indisponible"
    assert error.message("en") == "the database is unavailable"
    assert str(error) == f"database {url} unavailable: unable to open database file"
    assert isinstance(error.__cause__, OperationalError)  # the driver's error, for the logs


def test_a_file_that_is_not_a_database_is_database_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"not a database, " * 64)
    error = refusal(f"sqlite:///{path}")
    assert error.problem == "file is not a database"


def test_an_unreachable_server_is_database_unavailable_and_hides_the_password() -> None:
    error = refusal(UNREACHABLE)
    assert error.url == UNREACHABLE_SHOWN
    assert error.problem
    for text in (str(error), error.problem, error.message("fr"), error.message("en")):
        assert "secret" not in text and "\n" not in text


@pytest.mark.parametrize("url", [
    "nonsense",
    "postgresql://guichet:secret@db:port/cases",  # a malformed port
    "nosuchdialect://guichet:secret@x/",
])
def test_an_unusable_url_is_invalid_database_url(url: str) -> None:
    error = refusal(url)
    assert isinstance(error, InvalidDatabaseURL)
    assert error.message("en") == "the database URL is not usable"
    assert error.problem and "secret" not in str(error)
    assert str(error).startswith("not a usable database URL: '")


def test_transaction_and_reading_raise_database_unavailable() -> None:
    database = store.Store(store.connect(UNREACHABLE))
    try:
        with pytest.raises(DatabaseUnavailable) as reading:
            with database.reading():
                pass
        with pytest.raises(DatabaseUnavailable) as writing:
            with database.transaction():
                pass
    finally:
        database.close()
    assert reading.value.url == writing.value.url == UNREACHABLE_SHOWN


def test_a_lock_held_too_long_is_database_unavailable_and_passes(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    database = store.Store(store.connect(f"sqlite:///{path}", busy_timeout_ms=50))
    store.create_schema(database.engine)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable) as locked:
            with database.transaction():
                pass
        holder.execute("ROLLBACK")
        with database.transaction() as c:  # transient: the next one goes through
            assert database.next_sequence(c, "K") == 1
    finally:
        holder.close()
        database.close()
    assert locked.value.problem == "database is locked"


def test_statement_errors_pass_unchanged(tmp_path: Path) -> None:
    database = store.Store(store.connect(f"sqlite:///{tmp_path / 'x.db'}"))
    store.create_schema(database.engine)
    insert = "INSERT INTO counters (key, value) VALUES ('K', 1)"
    try:
        with database.transaction() as c:
            c.exec_driver_sql(insert)
        with pytest.raises(IntegrityError):
            with database.transaction() as c:
                c.exec_driver_sql(insert)
        with pytest.raises(store.Conflict):
            with database.transaction():
                raise store.Conflict()
    finally:
        database.close()


def test_a_schema_error_is_database_unavailable_with_its_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = "this database role may not create the Guichet tables (permission denied)"

    def refuse(_engine: Any) -> None:
        raise store.SchemaError(line)

    monkeypatch.setattr(store, "_create_schema", refuse)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    error = refusal(url)
    assert isinstance(error, store.SchemaError)
    assert str(error) == line and error.problem == line
    assert error.url == url  # filled in by create_schema
    result = CliRunner().invoke(main, ["case", "--db", url, "--procedures", str(PROCEDURES),
                                       "list", "--as-system"])
    assert result.exit_code == 1
    assert result.stderr == f"error: database {url}: {line}\n"


def test_the_cli_says_a_file_is_not_a_database_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"not a database, " * 64)
    url = f"sqlite:///{path}"
    result = CliRunner().invoke(main, ["case", "--db", url, "--procedures", str(PROCEDURES),
                                       "list", "--as-system", "--json"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout.replace("\n", "").replace(" ", "") == (
        '{"error":"DatabaseError","message":"database' + url.replace(" ", "")
        + ':fileisnotadatabase"}')


def test_a_tick_that_cannot_reach_the_database_leaves_its_timer_pending(
        sqlite_engine: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deadline whose fire meets an unavailable database is tried again at the next tick,
    never settled as refused (as when the failure was an OperationalError)."""
    engine = sqlite_engine
    reference = engine.start("passport", APPLICANT, passport_data()).reference
    clock.advance(dt.timedelta(days=31))
    transaction = engine._store.transaction
    failures = [DatabaseUnavailable("database is locked", "sqlite://")]

    def failing_once() -> Any:
        if failures:
            raise failures.pop()
        return transaction()

    monkeypatch.setattr(engine._store, "transaction", failing_once)
    with pytest.raises(DatabaseUnavailable):
        engine.tick()
    assert sorted(t["kind"] for t in engine.timers(reference)) == ["deadline", "reminder"]
    assert sorted(result for _, _, result in engine.tick()) == ["fired", "reminded"]
    assert engine.case(reference, SYSTEM).outcome is not None


def test_a_connection_the_server_closed_is_replaced_without_a_ping(
        make_engine: Any, postgresql_url: str) -> None:
    """No ping on each checkout (a round trip per transaction): a pooled connection whose
    backend was terminated (a server restart, an idle timeout) is seen closed at checkout
    and replaced, and the next read and write work."""
    from conftest import drop_guichet_tables
    drop_guichet_tables(postgresql_url)
    engine = make_engine(postgresql_url)
    ref = engine.start("passport", APPLICANT, passport_data()).reference
    database = engine._store.engine
    assert not database.pool._pre_ping
    pooled = database.raw_connection()  # the one idle connection of the pool
    pid = pooled.driver_connection.info.backend_pid
    pooled.close()  # back to the pool
    killer = store.connect(postgresql_url)
    try:
        with killer.begin() as c:
            assert c.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
    finally:
        killer.dispose()
    import time
    time.sleep(0.2)  # the server's farewell reaches the pooled connection's socket
    assert engine.case(ref, APPLICANT).version == 1  # a read, on a new connection
    engine.update(ref, APPLICANT, {"profession": "nurse"})  # and a write
    assert engine.case(ref, APPLICANT).version == 2
    drop_guichet_tables(postgresql_url)
