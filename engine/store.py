"""Persistence: SQLModel tables, and transactions built on SQLAlchemy Core.

The tables are declared once with SQLModel; the hot path (one transaction per fire) uses Core
statements on those same tables, not ORM sessions. SQLite is the embedded default (WAL, a busy
timeout, BEGIN IMMEDIATE, synchronous=FULL); PostgreSQL works through the same code. History
is append-only: database triggers refuse UPDATE and DELETE on it. This is the only module of
the engine that imports SQLModel or SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON as SA_JSON
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel

JSONValue = Any


def _timestamp(nullable: bool = False) -> Column[Any]:
    """A naive UTC timestamp column (the engine's clock gives naive UTC datetimes)."""
    return Column(DateTime(), nullable=nullable)


class ProcedureVersion(SQLModel, table=True):
    """One version of a procedure: its canonical definition and content hash."""

    __tablename__ = "procedure_versions"
    hash: str = Field(primary_key=True, max_length=64)
    procedure_id: str = Field(index=True, max_length=64)
    version: str
    definition: str  # canonical JSON
    created_at: dt.datetime = Field(sa_column=_timestamp())


class CaseRow(SQLModel, table=True):
    """A case: its state, data and a version counter for optimistic concurrency."""

    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_procedure_state", "procedure_id", "state"),)
    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(unique=True, max_length=32)
    procedure_id: str = Field(max_length=64)
    procedure_hash: str = Field(foreign_key="procedure_versions.hash", max_length=64)
    state: str = Field(max_length=64)
    outcome: str | None = Field(default=None, max_length=32)
    applicant_id: str = Field(index=True, max_length=128)
    data: JSONValue = Field(sa_column=Column(SA_JSON, nullable=False))
    documents: JSONValue = Field(sa_column=Column(SA_JSON, nullable=False))
    actors: JSONValue = Field(sa_column=Column(SA_JSON, nullable=False))  # trigger -> actor ids
    fees_paid: int = 0
    version: int
    created_at: dt.datetime = Field(sa_column=_timestamp())
    updated_at: dt.datetime = Field(sa_column=_timestamp())
    state_entered_at: dt.datetime = Field(sa_column=_timestamp())


class HistoryRow(SQLModel, table=True):
    """One step of a case (append-only): the audit trail."""

    __tablename__ = "history"
    __table_args__ = (UniqueConstraint("case_id", "sequence"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id")
    sequence: int
    trigger: str = Field(max_length=64)
    from_state: str | None = Field(default=None, max_length=64)
    to_state: str = Field(max_length=64)
    actor_id: str = Field(max_length=128)
    actor_role: str = Field(max_length=64)
    payload: JSONValue = Field(sa_column=Column(SA_JSON, nullable=False))
    at: dt.datetime = Field(sa_column=_timestamp())


class DocumentRow(SQLModel, table=True):
    """A file attached to a case; the content is in the blob store under `sha256`."""

    __tablename__ = "documents"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    document_id: str = Field(max_length=64)
    filename: str = Field(max_length=255)
    media_type: str = Field(max_length=64)
    size: int
    sha256: str = Field(max_length=64)
    actor_id: str = Field(max_length=128)
    at: dt.datetime = Field(sa_column=_timestamp())


class PaymentRow(SQLModel, table=True):
    """A payment: idempotent on (provider, provider_reference)."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("provider", "provider_reference"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    amount: int
    provider: str = Field(max_length=64)
    provider_reference: str = Field(max_length=128)
    actor_id: str = Field(max_length=128)
    at: dt.datetime = Field(sa_column=_timestamp())


class OutboxRow(SQLModel, table=True):
    """A side effect written with the transition and handed to hooks after commit."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    event: str = Field(max_length=32)
    payload: JSONValue = Field(sa_column=Column(SA_JSON, nullable=False))
    created_at: dt.datetime = Field(sa_column=_timestamp())
    delivered_at: dt.datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class TimerRow(SQLModel, table=True):
    """A deadline (or its reminder) of a case in a state; fired by `tick`, never in memory."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_due", "status", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    state: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # deadline | reminder
    trigger: str = Field(max_length=64)
    deadline_index: int
    due_at: dt.datetime = Field(sa_column=_timestamp())
    status: str = Field(default="pending", max_length=16)  # pending | fired | cancelled
    updated_at: dt.datetime = Field(sa_column=_timestamp())


class CounterRow(SQLModel, table=True):
    """Sequence numbers of references, one per prefix and year."""

    __tablename__ = "counters"
    key: str = Field(primary_key=True, max_length=32)
    value: int


procedures_t = ProcedureVersion.__table__  # type: ignore[attr-defined]
cases_t = CaseRow.__table__  # type: ignore[attr-defined]
history_t = HistoryRow.__table__  # type: ignore[attr-defined]
documents_t = DocumentRow.__table__  # type: ignore[attr-defined]
payments_t = PaymentRow.__table__  # type: ignore[attr-defined]
outbox_t = OutboxRow.__table__  # type: ignore[attr-defined]
timers_t = TimerRow.__table__  # type: ignore[attr-defined]
counters_t = CounterRow.__table__  # type: ignore[attr-defined]

_SQLITE_HISTORY_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS history_no_update BEFORE UPDATE ON history "
    "BEGIN SELECT RAISE(ABORT, 'history is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS history_no_delete BEFORE DELETE ON history "
    "BEGIN SELECT RAISE(ABORT, 'history is append-only'); END",
]
_POSTGRESQL_HISTORY_GUARDS = [
    "CREATE OR REPLACE FUNCTION guichet_history_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'history is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON history "
    "FOR EACH ROW EXECUTE FUNCTION guichet_history_append_only()",
]
_POSTGRESQL_GUARD_EXISTS = (
    "SELECT 1 FROM pg_trigger WHERE tgname = 'history_append_only' "
    "AND tgrelid = to_regclass('history')"
)
#: Serialises schema creation between hosts starting at once (pg_advisory_xact_lock key).
_SCHEMA_LOCK = 0x6775696368  # "guich"


_MARK_CHUNK = 1000  # ids per UPDATE: far below every driver's limit on parameters


class Conflict(Exception):
    """The case changed since it was read (optimistic concurrency)."""


class DuplicatePayment(Exception):
    """A payment with this provider reference is already recorded."""


def _is_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url


def connect(url: str, synchronous: str = "FULL", busy_timeout_ms: int = 10_000) -> Engine:
    """An SQLAlchemy engine for `url`, configured for Guichet (see the module docstring)."""
    if url.startswith("sqlite"):
        return _connect_sqlite(url, synchronous, busy_timeout_ms)
    return create_engine(url, pool_pre_ping=True)


def _connect_sqlite(url: str, synchronous: str, busy_timeout_ms: int) -> Engine:
    memory = _is_memory(url)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        # every transaction ends explicitly (commit, or rollback when a connection closes),
        # so the pool's extra rollback on each return is not needed
        pool_reset_on_return=None,
        **({"poolclass": StaticPool} if memory else {}),
    )

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # a deferred transaction that later writes fails at once with "database is locked";
        # an immediate one waits for the write lock (busy timeout) instead. Reads stay
        # deferred so that, in WAL mode, they never wait for a writer.
        reading = connection.get_execution_options().get("guichet_read", False)
        driver: Any = connection.connection.driver_connection
        statement = "BEGIN" if reading else "BEGIN IMMEDIATE"
        with _as_sqlalchemy_errors(connection, statement, ()):
            driver.execute(statement)

    return engine


def create_schema(engine: Engine) -> None:
    """Create the tables and the append-only guards on history, where missing.

    One transaction; on PostgreSQL under an advisory lock, so that hosts starting together
    do not race, and an existing guard is left alone (no lock taken on history).
    """
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
        SQLModel.metadata.create_all(connection, tables=list(_tables()))
        if engine.dialect.name == "sqlite":
            for statement in _SQLITE_HISTORY_GUARDS:
                connection.exec_driver_sql(statement)
        elif engine.dialect.name == "postgresql":
            if connection.exec_driver_sql(_POSTGRESQL_GUARD_EXISTS).first() is None:
                for statement in _POSTGRESQL_HISTORY_GUARDS:
                    connection.exec_driver_sql(statement)


def drop_schema(engine: Engine) -> None:
    """Drop every Guichet table (tests and tools only: history is otherwise permanent)."""
    SQLModel.metadata.drop_all(engine, tables=list(_tables()))


def _tables() -> Iterator[Any]:
    yield from (procedures_t, cases_t, history_t, documents_t, payments_t, outbox_t, timers_t,
                counters_t)


def _p(name: str, column: Any = None) -> Any:
    """A bind parameter (typed like `column`, so JSON and timestamps are converted)."""
    return bindparam(name, type_=column.type if column is not None else None)


class _Statements:
    """The statements of the hot path, built once on the SQLModel tables."""

    def __init__(self, upsert: Any) -> None:
        o, t = outbox_t.c, timers_t.c
        self.find_payment = select(payments_t).where(and_(
            payments_t.c.provider == _p("b_provider"),
            payments_t.c.provider_reference == _p("b_provider_reference")))
        self.cancel_timers = update(timers_t).where(and_(
            t.case_id == _p("b_case_id"), t.status == "pending")).values(
            status="cancelled", updated_at=_p("b_now", t.updated_at))
        self.settle_timer = update(timers_t).where(and_(
            t.id == _p("b_id"), t.status == "pending")).values(
            status=_p("b_status"), updated_at=_p("b_now", t.updated_at))
        self.next_sequence = upsert(counters_t).values(
            key=_p("b_key"), value=1).on_conflict_do_update(
            index_elements=["key"], set_={"value": counters_t.c.value + 1},
        ).returning(counters_t.c.value)
        self.mark_delivered = update(outbox_t).where(o.id.in_(bindparam("b_ids", expanding=True))
                                                     ).values(delivered_at=_p("b_now",
                                                                              o.delivered_at))
        self._update_case: dict[tuple[str, ...], Any] = {}

    def update_case(self, columns: tuple[str, ...]) -> Any:
        """UPDATE of these columns where id and version match (one statement per column set)."""
        statement = self._update_case.get(columns)
        if statement is None:
            c = cases_t.c
            statement = update(cases_t).where(and_(
                c.id == _p("b_id"), c.version == _p("b_expected"))).values(
                {name: _p(name, c[name]) for name in columns})
            self._update_case[columns] = statement
        return statement


def _columns(table: Any) -> dict[str, Any]:
    """Every column but the generated id, each as a typed bind parameter of its own name."""
    return {c.name: _p(c.name, c) for c in table.c if c.name != "id"}


class _Prepared:
    """A Core statement compiled once for one database; executed straight on the driver.

    Values are converted as SQLAlchemy would store them (JSON as text; timestamps as
    SQLAlchemy's SQLite text format), so Core reads them back unchanged.
    """

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.names = tuple(compiled.binds)
        self.literals = {k: v for k, v in compiled.params.items() if v is not None}
        self.order: tuple[str, ...] | None = (tuple(compiled.positiontup)
                                              if compiled.positiontup else None)
        sqlite = dialect.name == "sqlite"
        self.converters: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            if isinstance(bind.type, SA_JSON):
                self.converters[name] = _json_text
            elif isinstance(bind.type, DateTime) and sqlite:
                self.converters[name] = _sqlite_timestamp

    def parameters(self, values: Mapping[str, Any]) -> Any:
        converted = {**self.literals, **values}
        for name, convert in self.converters.items():
            if name in converted and converted[name] is not None:
                converted[name] = convert(converted[name])
        if self.order is None:
            return {name: converted.get(name) for name in self.names}
        return tuple(converted.get(name) for name in self.order)  # absent: NULL

    def run(self, c: Connection, values: Mapping[str, Any]) -> Any:
        cursor = c.connection.cursor()
        parameters = self.parameters(values)
        with _as_sqlalchemy_errors(c, self.sql, parameters):
            cursor.execute(self.sql, parameters)
        return cursor

    def run_many(self, c: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor = c.connection.cursor()
        parameters = [self.parameters(row) for row in rows]
        with _as_sqlalchemy_errors(c, self.sql, parameters):
            cursor.executemany(self.sql, parameters)
        cursor.close()


@contextmanager
def _as_sqlalchemy_errors(c: Connection, sql: str, parameters: Any) -> Iterator[None]:
    """Driver errors raised as SQLAlchemy's (IntegrityError, OperationalError...), as Core
    would raise them, so callers handle one family whatever path ran the statement."""
    error = c.dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        raise DBAPIError.instance(sql, parameters, exc, error, dialect=c.dialect) from exc


def _json_text(value: Any) -> str:
    return json.dumps(value)


def _json_value(text: str | bytes) -> Any:
    return json.loads(text)


def _sqlite_timestamp(value: dt.datetime) -> str:
    # how SQLAlchemy stores DateTime in SQLite: "%Y-%m-%d %H:%M:%S.%f"
    return value.isoformat(sep=" ", timespec="microseconds")


class _Hot:
    """The writes every step makes, prepared for the driver (SQLite and PostgreSQL)."""

    def __init__(self, dialect: Any, statements: _Statements) -> None:
        self.dialect = dialect
        self.insert_history = _Prepared(insert(history_t).values(_columns(history_t)), dialect)
        self.insert_outbox = _Prepared(insert(outbox_t).values(_columns(outbox_t))
                                       .returning(outbox_t.c.id), dialect)
        self.insert_document = _Prepared(insert(documents_t).values(_columns(documents_t)),
                                         dialect)
        self.insert_timers = _Prepared(insert(timers_t).values(_columns(timers_t)), dialect)
        self.cancel_timers = _Prepared(statements.cancel_timers, dialect)
        self.insert_payment = _Prepared(insert(payments_t).values(_columns(payments_t)), dialect)
        self.find_payment = _Prepared(statements.find_payment, dialect)
        self.payment_columns = tuple(c.name for c in payments_t.c)
        self.next_sequence = _Prepared(statements.next_sequence, dialect)
        self.insert_case = _Prepared(insert(cases_t).values(_columns(cases_t))
                                     .returning(cases_t.c.id), dialect)
        self.case_by_reference = _Prepared(
            select(cases_t).where(cases_t.c.reference == _p("b_reference")), dialect)
        self.case_columns = tuple(c.name for c in cases_t.c)
        sqlite = dialect.name == "sqlite"
        self.case_readers = {  # what the driver returns -> what Core would
            c.name: (_json_value if isinstance(c.type, SA_JSON) else
                     dt.datetime.fromisoformat if isinstance(c.type, DateTime) else None)
            for c in cases_t.c if sqlite and isinstance(c.type, SA_JSON | DateTime)}
        self._updates: dict[tuple[str, ...], _Prepared] = {}

    def case_row(self, c: Connection, reference: str) -> dict[str, Any] | None:
        found = self.case_by_reference.run(c, {"b_reference": reference}).fetchone()
        if found is None:
            return None
        row = dict(zip(self.case_columns, found, strict=True))
        for name, read in self.case_readers.items():
            if row[name] is not None:
                row[name] = read(row[name])
        return row

    def update_case(self, columns: tuple[str, ...], statements: _Statements) -> _Prepared:
        prepared = self._updates.get(columns)
        if prepared is None:
            prepared = self._updates[columns] = _Prepared(statements.update_case(columns),
                                                          self.dialect)
        return prepared


class Store:
    """Reads and one-transaction writes on the Guichet tables.

    The writes of every step go straight to the driver with SQL compiled once from Core
    statements (SQLAlchemy's per-call work was most of a step's cost); everything else,
    and every read, uses Core.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        upsert = postgresql_insert if self.dialect == "postgresql" else sqlite_insert
        self._upsert = upsert
        self.sql = _Statements(upsert)
        self.hot = _Hot(engine.dialect, self.sql)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite); commits or rolls back whole."""
        with self.engine.begin() as connection:
            yield connection

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads only (a deferred transaction on SQLite)."""
        with self.engine.connect() as connection:
            yield connection.execution_options(guichet_read=True)

    # --- procedure versions ---------------------------------------------------------------------

    def save_procedure(self, hash_: str, procedure_id: str, version: str, definition: str,
                       now: dt.datetime) -> None:
        """Store a procedure version once (hosts saving the same one at once do not clash)."""
        statement = self._upsert(procedures_t).values(
            hash=hash_, procedure_id=procedure_id, version=version, definition=definition,
            created_at=now).on_conflict_do_nothing(index_elements=["hash"])
        with self.transaction() as c:
            c.execute(statement)

    def procedure_definition(self, hash_: str) -> str | None:
        with self.reading() as c:
            row = c.execute(select(procedures_t.c.definition)
                            .where(procedures_t.c.hash == hash_)).first()
        return None if row is None else str(row[0])

    # --- cases ----------------------------------------------------------------------------------

    def next_sequence(self, c: Connection, key: str) -> int:
        """Allocate the next number of counter `key` inside the caller's transaction.

        One atomic upsert: two hosts opening the first case of a year at once both succeed.
        """
        return int(self.hot.next_sequence.run(c, {"b_key": key}).fetchone()[0])

    def insert_case(self, c: Connection, values: Mapping[str, Any]) -> int:
        return int(self.hot.insert_case.run(c, values).fetchone()[0])

    def case_by_reference(self, c: Connection, reference: str) -> dict[str, Any] | None:
        return self.hot.case_row(c, reference)

    def update_case(self, c: Connection, case_id: int, expected: int,
                    values: Mapping[str, Any]) -> None:
        """Write a case if its version is still `expected`; raises Conflict otherwise."""
        prepared = self.hot.update_case(tuple(sorted(values)), self.sql)
        cursor = prepared.run(c, {"b_id": case_id, "b_expected": expected, **values})
        if cursor.rowcount != 1:
            raise Conflict()

    def append_history(self, c: Connection, row: Mapping[str, Any]) -> None:
        try:
            self.hot.insert_history.run(c, row)
        except IntegrityError:
            raise Conflict() from None

    def add_outbox(self, c: Connection, row: Mapping[str, Any]) -> int:
        """Write one outbox row; returns its id."""
        return int(self.hot.insert_outbox.run(c, row).fetchone()[0])

    def mark_delivered(self, c: Connection, ids: Sequence[int], now: dt.datetime) -> None:
        """Mark outbox rows delivered, inside the caller's transaction."""
        for start in range(0, len(ids), _MARK_CHUNK):
            chunk = list(ids[start:start + _MARK_CHUNK])
            c.execute(self.sql.mark_delivered, {"b_ids": chunk, "b_now": now})

    def pending_outbox(self, after_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Undelivered outbox rows after `after_id`, oldest first."""
        with self.reading() as c:
            rows = c.execute(
                select(outbox_t, cases_t.c.reference).join(cases_t)
                .where(and_(outbox_t.c.delivered_at.is_(None), outbox_t.c.id > after_id))
                .order_by(outbox_t.c.id).limit(limit)
            ).mappings().all()
        return [dict(r) for r in rows]

    def history(self, reference: str) -> list[dict[str, Any]]:
        with self.reading() as c:
            rows = c.execute(
                select(history_t).join(cases_t).where(cases_t.c.reference == reference)
                .order_by(history_t.c.sequence)
            ).mappings().all()
        return [dict(r) for r in rows]

    def read_case(self, reference: str) -> dict[str, Any] | None:
        with self.reading() as c:
            return self.case_by_reference(c, reference)

    def list_cases(self, procedure: str | None, state: str | None, applicant: str | None,
                   limit: int, after_id: int) -> list[dict[str, Any]]:
        query = select(cases_t).where(cases_t.c.id > after_id)
        if procedure:
            query = query.where(cases_t.c.procedure_id == procedure)
        if state:
            query = query.where(cases_t.c.state == state)
        if applicant:
            query = query.where(cases_t.c.applicant_id == applicant)
        with self.reading() as c:
            rows = c.execute(query.order_by(cases_t.c.id).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    # --- documents and payments -----------------------------------------------------------------

    def insert_document(self, c: Connection, values: Mapping[str, Any]) -> None:
        self.hot.insert_document.run(c, values)

    def find_payment(self, c: Connection, provider: str, provider_reference: str
                     ) -> dict[str, Any] | None:
        """The payment with this provider reference (only its ids and amount are read)."""
        row = self.hot.find_payment.run(c, {
            "b_provider": provider, "b_provider_reference": provider_reference,
        }).fetchone()
        return None if row is None else dict(zip(self.hot.payment_columns, row, strict=True))

    def insert_payment(self, c: Connection, values: Mapping[str, Any]) -> None:
        """Record a payment; a concurrent twin (same provider reference) raises
        DuplicatePayment, and the caller's transaction is then rolled back whole."""
        try:
            self.hot.insert_payment.run(c, values)
        except IntegrityError:
            raise DuplicatePayment() from None

    # --- timers ---------------------------------------------------------------------------------

    def add_timers(self, c: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.hot.insert_timers.run_many(c, rows)

    def cancel_timers(self, c: Connection, case_id: int, now: dt.datetime) -> None:
        self.hot.cancel_timers.run(c, {"b_case_id": case_id, "b_now": now})

    def due_timers(self, now: dt.datetime, limit: int = 500) -> list[dict[str, Any]]:
        with self.reading() as c:
            rows = c.execute(
                select(timers_t, cases_t.c.reference).join(cases_t)
                .where(and_(timers_t.c.status == "pending", timers_t.c.due_at <= now))
                .order_by(timers_t.c.due_at, timers_t.c.id).limit(limit)
            ).mappings().all()
        return [dict(r) for r in rows]

    def settle_timer(self, c: Connection, timer_id: int, status: str, now: dt.datetime) -> bool:
        """Mark a pending timer fired or cancelled; False if somebody settled it first."""
        result = c.execute(self.sql.settle_timer,
                           {"b_id": timer_id, "b_status": status, "b_now": now})
        return bool(result.rowcount == 1)

    def pending_timers(self, case_id: int) -> list[dict[str, Any]]:
        with self.reading() as c:
            rows = c.execute(select(timers_t).where(and_(timers_t.c.case_id == case_id,
                                                         timers_t.c.status == "pending"))
                             .order_by(timers_t.c.due_at)).mappings().all()
        return [dict(r) for r in rows]
