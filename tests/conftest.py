"""Shared fixtures: databases (SQLite file, PostgreSQL), a fake clock, and Engine factories.

`database_url` runs a test on both databases. The PostgreSQL variant needs
GUICHET_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) and is
skipped when it is unset. Each pytest session works in its own PostgreSQL schema
(`guichet_test_<pid>`, set through the connection's search_path) so that sessions running at
the same time on one server never see each other's tables; inside it, every Guichet table is
dropped before and after each test with `engine.store.drop_schema`, and the schema itself is
dropped when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from helpers import PROCEDURES, FakeClock, MakeEngine, fake_clock
from sqlalchemy.engine import make_url

from engine import Engine, Procedure, load_procedure, procedure_files, store
from engine.blobs import BlobStore, DirectoryBlobStore

POSTGRESQL_ENV = "GUICHET_TEST_DATABASE_URL"


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


# --- databases ----------------------------------------------------------------------------------

def with_search_path(url: str, schema: str) -> str:
    """`url` with every connection's search_path set to `schema` (libpq `options`)."""
    u = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return u.render_as_string(hide_password=False)


def drop_guichet_tables(url: str) -> None:
    database = store.connect(url)
    try:
        store.drop_schema(database)
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """The URL of this session's PostgreSQL schema (skips when no server is configured)."""
    base = os.environ.get(POSTGRESQL_ENV)
    if not base:
        pytest.skip(f"set {POSTGRESQL_ENV} to run the PostgreSQL variant")
    schema = f"guichet_test_{os.getpid()}"
    admin = sqlalchemy.create_engine(base)
    try:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield with_search_path(base, schema)
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'guichet.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty Guichet database: an SQLite file, or PostgreSQL (tables dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'guichet.db'}"
        return
    url: str = request.getfixturevalue("postgresql_url")
    drop_guichet_tables(url)  # in case a previous run died half-way
    yield url
    drop_guichet_tables(url)


# --- engines ------------------------------------------------------------------------------------

DEFAULT_BLOBS: Any = object()  # sentinel: a DirectoryBlobStore in tmp_path/blobs


@pytest.fixture(scope="session")
def shipped_procedures() -> list[Procedure]:
    """The shipped procedures, compiled once per session (compiling is the slow part)."""
    return [load_procedure(path) for path in procedure_files([PROCEDURES])]


@pytest.fixture
def make_engine(clock: FakeClock, tmp_path: Path,
                shipped_procedures: list[Procedure]) -> Iterator[MakeEngine]:
    """Build Engines on the fake clock; all are closed at the end of the test.

    `make_engine(url, procedures=..., blobs=...)`: procedures default to the shipped ones
    (pass paths to load files); blobs default to a directory in tmp_path (never the engine's
    own default, which for PostgreSQL is relative to the working directory); pass
    `blobs=None` to get the engine's default.
    """
    made: list[Engine] = []

    def make(url: str, procedures: Any = None, blobs: BlobStore | None = DEFAULT_BLOBS,
             **options: Any) -> Engine:
        if procedures is None:
            procedures = shipped_procedures
        if blobs is DEFAULT_BLOBS:
            blobs = DirectoryBlobStore(tmp_path / "blobs")
        engine = Engine(procedures, url, blobs=blobs, clock=clock, **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


@pytest.fixture
def engine(make_engine: MakeEngine, database_url: str) -> Engine:
    """An Engine with the shipped procedures, on each database in turn."""
    return make_engine(database_url)


@pytest.fixture
def sqlite_engine(make_engine: MakeEngine, sqlite_url: str) -> Engine:
    """An Engine with the shipped procedures on an SQLite file (database-independent tests)."""
    return make_engine(sqlite_url)
