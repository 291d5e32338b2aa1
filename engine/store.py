"""Persistence: SQLModel tables, and transactions built on SQLAlchemy Core.

The tables are declared once with SQLModel; the hot path (one transaction per fire) uses Core
statements on those same tables, not ORM sessions. SQLite is the embedded default (WAL, a busy
timeout, BEGIN IMMEDIATE, synchronous=FULL); PostgreSQL works through the same code. History,
payments and documents are append-only and outbox rows change only their delivery time:
database triggers refuse everything else, and every start checks them (`create_schema`). This
is the only module of the engine that imports SQLModel or SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import select as select_module
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
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
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel

from .errors import DatabaseUnavailable, InvalidDatabaseURL

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
    applicant_id: str = Field(index=True, max_length=128)  # "" until claimed (on behalf)
    #: the case this one follows up (opened from it), if any
    parent_reference: str | None = Field(default=None, index=True, max_length=32)
    parties: JSONValue = Field(sa_column=Column(SA_JSON, nullable=False))  # see Case.parties
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
    for_party: str | None = Field(default=None, max_length=64)  # the party acted for
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
    method: str | None = Field(default=None, max_length=64)  # a `payment_methods` id
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
    # pending|fired|cancelled|refused; paused (clock stopped) then resumed|cancelled
    status: str = Field(default="pending", max_length=16)
    updated_at: dt.datetime = Field(sa_column=_timestamp())
    # when the case entered `state` for the stay this timer belongs to (a case that leaves
    # and comes back gets new timers; the old ones must never fire)
    state_entered_at: dt.datetime = Field(sa_column=_timestamp())
    # a paused deadline (status "paused", `pause_in`): the time it has left, as a duration
    # ("3 business days", "86400 seconds"); its due_at is when its clock stopped
    remaining: str | None = Field(default=None, max_length=32, nullable=True)


class CounterRow(SQLModel, table=True):
    """Sequence numbers of references, one per prefix and year."""

    __tablename__ = "counters"
    key: str = Field(primary_key=True, max_length=32)
    value: int


class PurgeRow(SQLModel, table=True):
    """A case whose personal data was erased after its retention (append-only). Its row is
    what lets the guards accept purging's rewrites of that case's record, and only those."""

    __tablename__ = "purges"
    case_id: int = Field(primary_key=True, foreign_key="cases.id",
                         sa_column_kwargs={"autoincrement": False})
    #: what the applicant's id became in the case's record: purged:<12 hex digits>
    pseudonym: str = Field(max_length=64)
    purged_by: str = Field(max_length=128)
    purged_at: dt.datetime = Field(sa_column=_timestamp())


procedures_t = ProcedureVersion.__table__  # type: ignore[attr-defined]
cases_t = CaseRow.__table__  # type: ignore[attr-defined]
history_t = HistoryRow.__table__  # type: ignore[attr-defined]
documents_t = DocumentRow.__table__  # type: ignore[attr-defined]
payments_t = PaymentRow.__table__  # type: ignore[attr-defined]
outbox_t = OutboxRow.__table__  # type: ignore[attr-defined]
timers_t = TimerRow.__table__  # type: ignore[attr-defined]
counters_t = CounterRow.__table__  # type: ignore[attr-defined]
purges_t = PurgeRow.__table__  # type: ignore[attr-defined]

# --- guards: rows that are never rewritten ------------------------------------------------------
# history, payments and documents are append-only; outbox rows are never deleted and only their
# delivered_at is set, once (from NULL). Database triggers enforce it, so that no statement,
# whoever types it, rewrites the record; create_schema checks at every start that each guard is
# in place and unaltered. Cases, timers and counters change by design.
#
# One controlled exception: purging a case's personal data after its retention (Engine.purge).
# In one transaction, purging first inserts the case's row in `purges` (append-only too; only
# for a closed case, with a pseudonym of the fixed form purged:<12 hex digits>), then rewrites
# the case's record. The guards accept an UPDATE of a record row only when a purges row exists
# for the row's case, every column but those of _PURGEABLE is unchanged, and each of those is
# unchanged or becomes what purging makes of it: an actor id the case's pseudonym, a file name
# PURGED, a JSON payload the same document with values (leaves or whole subtrees) replaced by
# PURGED or the pseudonym -- same keys, same array lengths, every other value as it was
# (`_sqlite_redacted`, `_pg_redacted`). A purges row lets one erase, never write anything else.

log = logging.getLogger("guichet.store")

#: Tables whose rows are never updated, deleted or replaced (but as purging rewrites them).
_APPEND_ONLY = ("history", "payments", "documents", "purges")
_GUARDED = (*_APPEND_ONLY, "outbox")
_OUTBOX_MESSAGE = "outbox rows are immutable: only delivered_at is set, once"
_PURGES_MESSAGE = "purges: only a closed case is purged, under a pseudonym purged:<12 hex digits>"
#: What purging writes instead of a file name or a value of a JSON payload.
PURGED = "(purged)"
#: The columns purging may rewrite, and what each may become: "pseudonym" (the purges row's),
#: "marker" (PURGED), "redacted" (a JSON payload with values replaced by either).
_PURGEABLE: dict[str, dict[str, str]] = {
    "history": {"actor_id": "pseudonym", "payload": "redacted"},
    "documents": {"filename": "marker", "actor_id": "pseudonym"},
    "payments": {"actor_id": "pseudonym"},
    "outbox": {"payload": "redacted"},
}
#: pg_trigger.tgtype bits
_ROW, _BEFORE, _INSERT, _DELETE, _UPDATE, _TRUNCATE = 1, 2, 4, 8, 16, 32
_INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL SQLSTATE


@dataclass(frozen=True)
class _Guard:
    """One trigger (or, on PostgreSQL, trigger function) protecting the rows of `table`."""

    table: str
    name: str
    sql: str  # SQLite: as sqlite_master stores it, so that a start-up can compare it


def _unique_keys(table: str) -> list[tuple[str, ...]]:
    """The primary key and each unique constraint of `table`, as column names."""
    t = SQLModel.metadata.tables[table]
    keys = [tuple(c.name for c in t.primary_key.columns)]
    keys += sorted(tuple(c.name for c in u.columns) for u in t.constraints
                   if isinstance(u, UniqueConstraint))
    return keys


def _kept(table: str, *also: str) -> list[str]:
    """The columns of `table` every UPDATE must leave as they are: all but those purging may
    rewrite and `also` (new columns are kept too)."""
    rewritable = {*_PURGEABLE.get(table, {}), *also}
    return [c.name for c in SQLModel.metadata.tables[table].c if c.name not in rewritable]


def _sqlite_redacted(column: str) -> str:
    """True when NEW.column is OLD.column (JSON) with values replaced by PURGED or the
    pseudonym `p.pseudonym`: every node of the new document is at the same path in the old
    one, of the same type and value, or is one of those two texts; every node of the old one
    is in the new one unless its parent was replaced. One parse of each document (the
    materialised subqueries get an automatic index), not one per node."""
    new, old = f"NEW.{column}", f"OLD.{column}"
    return (
        f"json_type({new}) IS json_type({old}) "
        f"AND NOT EXISTS (SELECT 1 FROM json_tree({new}) n LEFT JOIN (SELECT fullkey AS k, "
        f"type AS t, atom AS a FROM json_tree({old}) LIMIT -1) o ON o.k = n.fullkey "
        "WHERE NOT (o.t IS n.type AND (n.type IN ('object', 'array') OR o.a IS n.atom) "
        f"OR o.k IS NOT NULL AND n.type = 'text' AND n.atom IN ('{PURGED}', p.pseudonym))) "
        f"AND NOT EXISTS (SELECT 1 FROM json_tree({old}) o CROSS JOIN (SELECT fullkey AS k, "
        f"type AS t FROM json_tree({new}) LIMIT -1) up ON up.k = o.path LEFT JOIN "
        f"(SELECT fullkey AS k FROM json_tree({new}) LIMIT -1) n ON n.k = o.fullkey "
        "WHERE up.t IN ('object', 'array') AND n.k IS NULL)")


def _sqlite_purge_allows(table: str) -> str:
    """True when the case of the updated row has a purges row `p` and each column purging
    may rewrite is unchanged or as purging makes it (see _PURGEABLE)."""
    rules = []
    for column, kind in _PURGEABLE[table].items():
        becomes = {"pseudonym": f"NEW.{column} = p.pseudonym",
                   "marker": f"NEW.{column} = '{PURGED}'"}.get(kind) or _sqlite_redacted(column)
        rules.append(f"(NEW.{column} IS OLD.{column} OR {becomes})")
    return ("EXISTS (SELECT 1 FROM purges p WHERE p.case_id = OLD.case_id AND "
            f"{' AND '.join(rules)})")


def _sqlite_unchanged(columns: Sequence[str]) -> str:
    return " AND ".join(f"NEW.{c} IS OLD.{c}" for c in columns)


def _sqlite_trigger(table: str, name: str, event_: str, message: str, when: str = "") -> _Guard:
    """A BEFORE trigger aborting the statement (when `when` holds), with `message`."""
    condition = f" WHEN {when}" if when else ""
    return _Guard(table, name, f"CREATE TRIGGER {name} BEFORE {event_} ON {table}{condition} "
                               f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


def _sqlite_conflict(table: str) -> str:
    """True when the new row would replace one (REPLACE, INSERT OR REPLACE, upserts).

    REPLACE deletes the row it conflicts with without firing DELETE triggers, and an upsert
    updates it: refusing the INSERT itself closes both ways. A conflict raises IntegrityError,
    as the unique constraint did.
    """
    def exists(key: tuple[str, ...]) -> str:
        match = " AND ".join(f"{c} = NEW.{c}" for c in key)
        return f"EXISTS (SELECT 1 FROM {table} WHERE {match})"
    return " OR ".join(exists(key) for key in _unique_keys(table))


def _sqlite_guards() -> list[_Guard]:
    """The SQLite triggers: no UPDATE (but purging's), DELETE or replacing INSERT on
    append-only tables, and no INSERT in purges but for a closed case under a pseudonym; on the
    outbox, no DELETE, no replacing INSERT, and no UPDATE but setting delivered_at once (and
    purging's)."""
    guards: list[_Guard] = []
    for table in _APPEND_ONLY:
        message = f"{table} is append-only"
        purged = (f"NOT ({_sqlite_unchanged(_kept(table))} AND {_sqlite_purge_allows(table)})"
                  if table in _PURGEABLE else "")
        guards += [
            _sqlite_trigger(table, f"{table}_no_update", "UPDATE", message, purged),
            _sqlite_trigger(table, f"{table}_no_delete", "DELETE", message),
            _sqlite_trigger(table, f"{table}_no_replace", "INSERT",
                            f"{message}: this row is already recorded", _sqlite_conflict(table)),
        ]
    guards.append(_sqlite_trigger(
        "purges", "purges_checked", "INSERT", _PURGES_MESSAGE,
        f"NOT (NEW.pseudonym GLOB 'purged:{'[0-9a-f]' * 12}' AND EXISTS (SELECT 1 FROM cases c "
        "WHERE c.id = NEW.case_id AND c.outcome IS NOT NULL))"))
    kept = _kept("outbox", "delivered_at")
    guards += [
        _sqlite_trigger("outbox", "outbox_immutable", "UPDATE", _OUTBOX_MESSAGE,
                        f"NOT ({_sqlite_unchanged(kept)} AND (OLD.delivered_at IS NULL "
                        "OR NEW.delivered_at IS OLD.delivered_at) AND (NEW.payload IS "
                        f"OLD.payload OR {_sqlite_purge_allows('outbox')}))"),
        _sqlite_trigger("outbox", "outbox_no_delete", "DELETE", _OUTBOX_MESSAGE),
        _sqlite_trigger("outbox", "outbox_no_replace", "INSERT", _OUTBOX_MESSAGE,
                        _sqlite_conflict("outbox")),
    ]
    return guards


@dataclass(frozen=True)
class _PgFunction:
    """A PL/pgSQL trigger function; `body` is what pg_proc.prosrc must hold."""

    table: str
    name: str
    body: str

    @property
    def sql(self) -> str:
        return (f"CREATE OR REPLACE FUNCTION {self.name}() RETURNS trigger AS "
                f"$${self.body}$$ LANGUAGE plpgsql")


@dataclass(frozen=True)
class _PgTrigger:
    """A BEFORE trigger running `function`, for each row or once per statement."""

    table: str
    name: str
    function: str
    events: tuple[str, ...]  # INSERT, UPDATE, DELETE, TRUNCATE
    row: bool

    @property
    def tgtype(self) -> int:
        """What pg_trigger.tgtype holds for this trigger."""
        bits = {"INSERT": _INSERT, "DELETE": _DELETE, "UPDATE": _UPDATE, "TRUNCATE": _TRUNCATE}
        return _BEFORE | (_ROW if self.row else 0) | sum(bits[e] for e in self.events)

    @property
    def sql(self) -> str:
        return (f"CREATE TRIGGER {self.name} BEFORE {' OR '.join(self.events)} ON {self.table} "
                f"FOR EACH {'ROW' if self.row else 'STATEMENT'} "
                f"EXECUTE FUNCTION {self.function}()")


def _pg_unchanged(table: str, columns: Sequence[str]) -> str:
    """True when NEW and OLD hold the same `columns` (JSON compared as text)."""
    t = SQLModel.metadata.tables[table]

    def row(side: str) -> str:
        return "ROW(" + ", ".join(f"{side}.{c}::text" if isinstance(t.c[c].type, SA_JSON)
                                  else f"{side}.{c}" for c in columns) + ")"
    return f"{row('NEW')} IS NOT DISTINCT FROM {row('OLD')}"


def _pg_redacted(column: str) -> str:
    """True when NEW.column is OLD.column (JSON) with values replaced by PURGED or the
    pseudonym `purged_as`: walking both documents together (as jsonb), each node of the new
    one is one of those two texts where the old one has a node, or an object with the same
    keys, an array of the same length, or the same scalar."""
    new, old = f"NEW.{column}::jsonb", f"OLD.{column}::jsonb"
    return (
        f"jsonb_typeof({new}) = jsonb_typeof({old}) AND NOT EXISTS (WITH RECURSIVE "
        f"pair(o, n) AS (SELECT {old}, {new} UNION ALL SELECT c.o, c.n FROM pair CROSS JOIN "
        "LATERAL (SELECT pair.o -> k, pair.n -> k FROM jsonb_object_keys(CASE WHEN "
        "jsonb_typeof(pair.n) = 'object' AND jsonb_typeof(pair.o) = 'object' THEN pair.n END) "
        "AS k UNION ALL SELECT pair.o -> i, pair.n -> i FROM generate_series(0, CASE WHEN "
        "jsonb_typeof(pair.n) = 'array' AND jsonb_typeof(pair.o) = 'array' THEN "
        "jsonb_array_length(pair.n) - 1 ELSE -1 END) AS i) AS c(o, n)) "
        "SELECT 1 FROM pair WHERE NOT coalesce(jsonb_typeof(n) = 'string' "
        f"AND n #>> '{{}}' IN ('{PURGED}', purged_as) AND o IS NOT NULL "
        "OR jsonb_typeof(n) = 'object' AND jsonb_typeof(o) = 'object' "
        "AND ARRAY(SELECT jsonb_object_keys(n) ORDER BY 1) = "
        "ARRAY(SELECT jsonb_object_keys(o) ORDER BY 1) "
        "OR jsonb_typeof(n) = 'array' AND jsonb_typeof(o) = 'array' "
        "AND jsonb_array_length(n) = jsonb_array_length(o) "
        "OR jsonb_typeof(n) NOT IN ('object', 'array') AND n = o, false))")


def _pg_purge_allows(table: str) -> str:
    """What each column purging may rewrite must be: unchanged or as purging makes it (the
    function has read the case's pseudonym into `purged_as`)."""
    t = SQLModel.metadata.tables[table]
    rules = []
    for column, kind in _PURGEABLE[table].items():
        same = (f"NEW.{column}::text = OLD.{column}::text" if isinstance(t.c[column].type, SA_JSON)
                else f"NEW.{column} IS NOT DISTINCT FROM OLD.{column}")
        becomes = {"pseudonym": f"NEW.{column} = purged_as",
                   "marker": f"NEW.{column} = '{PURGED}'"}.get(kind) or _pg_redacted(column)
        rules.append(f"({same} OR {becomes})")
    return " AND ".join(rules)


def _pg_purged_update(table: str, condition: str) -> str:
    """The statements letting an UPDATE through when `condition` holds and the case of the
    row has a purges row whose rewrites it makes (see _PURGEABLE)."""
    return (f"IF TG_OP = 'UPDATE' THEN IF {condition} THEN SELECT p.pseudonym INTO purged_as "
            "FROM purges p WHERE p.case_id = OLD.case_id; IF FOUND AND "
            f"{_pg_purge_allows(table)} THEN RETURN NEW; END IF; END IF; END IF; ")


def _pg_append_only_body(table: str) -> str:
    """Refuse everything but purging's UPDATE (for purges: but a valid INSERT)."""
    refuse = f"RAISE EXCEPTION '{table} is append-only'; END; "
    if table == "purges":
        return (" BEGIN IF TG_OP = 'INSERT' THEN IF NEW.pseudonym ~ '^purged:[0-9a-f]{12}$' "
                "AND EXISTS (SELECT 1 FROM cases c WHERE c.id = NEW.case_id AND c.outcome IS "
                f"NOT NULL) THEN RETURN NEW; END IF; RAISE EXCEPTION '{_PURGES_MESSAGE}'; "
                f"END IF; {refuse}")
    return (" DECLARE purged_as text; BEGIN "
            f"{_pg_purged_update(table, _pg_unchanged(table, _kept(table)))}{refuse}")


def _pg_outbox_body() -> str:
    """Allow an UPDATE that changes nothing but a NULL delivered_at (and purging's UPDATE);
    refuse everything else."""
    kept = _pg_unchanged("outbox", _kept("outbox", "delivered_at"))
    delivery = ("(OLD.delivered_at IS NULL OR NEW.delivered_at IS NOT DISTINCT FROM "
                "OLD.delivered_at)")
    return (" DECLARE purged_as text; BEGIN IF TG_OP = 'UPDATE' THEN IF "
            f"{kept} AND {delivery} AND NEW.payload::text = OLD.payload::text THEN RETURN NEW; "
            f"END IF; END IF; {_pg_purged_update('outbox', f'{kept} AND {delivery}')}"
            f"RAISE EXCEPTION '{_OUTBOX_MESSAGE}'; END; ")


def _postgresql_guards() -> tuple[list[_PgFunction], list[_PgTrigger]]:
    """The PostgreSQL functions and triggers: row triggers refuse UPDATE and DELETE (an
    INSERT ... ON CONFLICT DO UPDATE fires them too; PostgreSQL has no REPLACE), statement
    triggers refuse TRUNCATE (which fires no row trigger); a row trigger checks each INSERT
    in purges."""
    functions = [_PgFunction(t, f"guichet_{t}_append_only", _pg_append_only_body(t))
                 for t in _APPEND_ONLY]
    functions.append(_PgFunction("outbox", "guichet_outbox_immutable", _pg_outbox_body()))
    triggers: list[_PgTrigger] = []
    for f in functions:
        row_name = "outbox_immutable" if f.table == "outbox" else f"{f.table}_append_only"
        triggers += [_PgTrigger(f.table, row_name, f.name, ("UPDATE", "DELETE"), row=True),
                     _PgTrigger(f.table, f"{f.table}_no_truncate", f.name, ("TRUNCATE",),
                                row=False)]
    triggers.append(_PgTrigger("purges", "purges_checked", "guichet_purges_append_only",
                               ("INSERT",), row=True))
    return functions, triggers


_SQLITE_GUARDS = _sqlite_guards()
_POSTGRESQL_FUNCTIONS, _POSTGRESQL_TRIGGERS = _postgresql_guards()
_SQLITE_TRIGGER_SQL = text("SELECT tbl_name, sql FROM sqlite_master "
                           "WHERE type = 'trigger' AND name = :name")
_PG_FUNCTION_STATE = text(
    "SELECT p.prosrc, l.lanname, p.prorettype = 'trigger'::regtype FROM pg_proc p "
    "JOIN pg_language l ON l.oid = p.prolang WHERE p.proname = :name AND p.pronargs = 0 "
    "AND p.pronamespace = to_regnamespace(current_schema())")
_PG_TRIGGER_STATE = text(
    "SELECT t.tgtype, t.tgenabled, "
    "t.tgqual IS NULL AND t.tgattr::text = '' AND t.tgnargs = 0, "
    "p.proname = :function AND p.pronamespace = c.relnamespace "
    "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
    "WHERE t.tgname = :name AND c.relname = :table "
    "AND c.relnamespace = to_regnamespace(current_schema())")
#: A worker's reservation of a timer (`Store.reserved_timer`): a session advisory lock keyed
#: by the schema and the timer's id, so that schemas sharing a database do not meet.
_RESERVE = text("SELECT pg_try_advisory_lock(hashtext(current_schema()), :b_id)")
#: The reservation and, in the same round trip, the timer's status (a timer another worker
#: ran since it was read is let go).
_RESERVE_PENDING = text(
    "SELECT pg_try_advisory_lock(hashtext(current_schema()), :b_id) AS locked, "
    "(SELECT status FROM timers WHERE id = :b_timer) AS status")
_RELEASE = text("SELECT pg_advisory_unlock(hashtext(current_schema()), :b_id)")
#: Due timers a worker looks through for one no other worker has reserved.
RESERVE_CANDIDATES = 32
#: Serialises schema creation between hosts starting at once (pg_advisory_xact_lock key).
_SCHEMA_LOCK = 0x6775696368  # "guich"


_MARK_CHUNK = 1000  # ids per UPDATE: far below every driver's limit on parameters


class Conflict(Exception):
    """The case changed since it was read (optimistic concurrency)."""


class DuplicatePayment(Exception):
    """A payment with this provider reference is already recorded."""


def _is_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url


#: What a database that cannot be reached, opened or waited for raises (a pool out of
#: connections too); the engine says DatabaseUnavailable instead. So it does for the DB-API's
#: plain DatabaseError (SQLite: "file is not a database"), but not for its subclasses
#: (IntegrityError and the like are about a statement, not the database).
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)


def _safe_url(url: str) -> str:
    """`url` without its password, fit to print (also when it does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _raise_if_unavailable(engine: Engine, exc: Exception) -> None:
    """Raise `exc` as DatabaseUnavailable, naming the database, when it says that the database
    cannot be used (see _UNAVAILABLE); otherwise return, and the caller re-raises `exc`."""
    if isinstance(exc, _UNAVAILABLE) or type(exc) is DatabaseError:
        url = engine.url.render_as_string(hide_password=True)
        orig = getattr(exc, "orig", None)
        raise DatabaseUnavailable(_first_line(str(orig or exc)), url) from exc


def connect(url: str, synchronous: str = "FULL", busy_timeout_ms: int = 10_000) -> Engine:
    """An SQLAlchemy engine for `url`, configured for Guichet (see the module docstring).

    No connection is opened yet. A URL that does not parse, or names an unknown dialect,
    raises InvalidDatabaseURL.
    """
    try:
        make_url(url)  # a malformed port is a ValueError here
    except (ArgumentError, ValueError) as exc:
        raise InvalidDatabaseURL(_first_line(str(exc)), _safe_url(url)) from None
    try:
        if url.startswith("sqlite"):
            return _connect_sqlite(url, synchronous, busy_timeout_ms)
        return _connect_server(url)
    except ArgumentError as exc:  # e.g. an unknown dialect (NoSuchModuleError)
        raise InvalidDatabaseURL(_first_line(str(exc)), _safe_url(url)) from None


def _connect_server(url: str) -> Engine:
    """A server database (PostgreSQL): no ping on each checkout (a round trip per
    transaction); instead a connection the server has closed meanwhile (restart, idle
    timeout, terminated backend) is replaced at checkout, for free (`_closed_by_server`), so
    the transaction starts on a live one. A server that cannot be reached still raises
    DatabaseUnavailable when the new connection is opened."""
    engine = create_engine(url, pool_pre_ping=False)

    @event.listens_for(engine, "checkout")
    def replace_dead(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if _closed_by_server(dbapi_connection):
            raise DisconnectionError("the server closed this connection")  # pool retries

    return engine


def _closed_by_server(dbapi_connection: Any) -> bool:
    """Whether an idle pooled connection is dead: the driver knows it closed, or its socket
    is readable (an idle connection is sent nothing but the server's farewell: an error
    message, then end of file). No round trip: a zero-timeout poll of the socket."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if getattr(dbapi_connection, "closed", False) or pgconn is None:
        return bool(getattr(dbapi_connection, "closed", False))
    try:
        return bool(select_module.select([pgconn.socket], [], [], 0)[0])
    except Exception:  # no socket to poll (the driver's error, OSError...): not usable
        return True


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


class SchemaError(DatabaseUnavailable):
    """The tables or their guards are missing or altered and this database role may not set
    them up: start-up is refused (one line, said as the database would: see `str`)."""

    def __str__(self) -> str:
        return self.problem


def create_schema(engine: Engine) -> None:
    """Create the tables where missing, add the nullable columns a database made by an
    earlier version lacks (`_add_missing_columns`), and check every guard (see _GUARDED).

    One transaction; on PostgreSQL under an advisory lock, so that hosts starting together do
    not race. When everything is in place nothing is created or locked, so a role owning
    nothing starts on tables its owner created (README, "Running with least privilege"). A
    guard found missing or altered on an existing table is reinstalled with a warning; when
    this role may not reinstall it, start-up is refused with SchemaError.

    The first connection is opened here: a database that cannot be reached or opened raises
    DatabaseUnavailable (SchemaError is one).
    """
    try:
        _create_schema(engine)
    except SchemaError as exc:
        exc.url = exc.url or engine.url.render_as_string(hide_password=True)
        raise
    except (DBAPIError, PoolTimeout) as exc:
        _raise_if_unavailable(engine, exc)
        raise


def _create_schema(engine: Engine) -> None:
    dialect = engine.dialect.name
    with engine.begin() as c:
        if dialect == "postgresql":
            c.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            if c.exec_driver_sql("SELECT current_schema()").scalar() is None:
                raise SchemaError("no schema to work in: the search_path names none that this "
                                  "database role may use (it needs USAGE on the schema)")
        inspector = sa_inspect(c)
        existing = {t.name for t in _tables() if inspector.has_table(t.name)}
        _run_ddl("create the Guichet tables",
                 lambda: SQLModel.metadata.create_all(c, tables=list(_tables())))
        upgraded = _add_missing_columns(c, inspector, existing)
        # a guard is expected missing on a new table, and changed on an upgraded one (it
        # names every column): (re)installing those says nothing
        quiet = {"missing": set(_GUARDED) - existing, "altered": upgraded}
        if dialect == "sqlite":
            _check_sqlite_guards(c, quiet)
        elif dialect == "postgresql":
            _check_postgresql_guards(c, quiet)


def _add_missing_columns(c: Connection, inspector: Any, existing: set[str]) -> set[str]:
    """Add to the tables that already existed the nullable columns this version declares
    and they lack (an additive migration: ALTER TABLE ... ADD COLUMN, and their indexes),
    logging each; returns the names of the tables changed. A missing column that may not be
    null cannot be added so: SchemaError."""
    upgraded: set[str] = set()
    for table in _tables():
        if table.name not in existing:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in (col for col in table.c if col.name not in present):
            if not column.nullable:
                raise SchemaError(f"table {table.name} lacks column {column.name}, which this "
                                  "version of Guichet cannot add (it may not be null)")
            _add_column(c, table, column)
            upgraded.add(table.name)
    return upgraded


def _add_column(c: Connection, table: Any, column: Any) -> None:
    """ALTER TABLE `table` ADD COLUMN `column` (nullable), then the indexes naming it."""
    kind = column.type.compile(dialect=c.dialect)
    statement = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"
    _run_ddl(f"add column {column.name} to table {table.name}",
             lambda: c.exec_driver_sql(statement))
    for index in [i for i in table.indexes if column.name in {col.name for col in i.columns}]:
        _run_ddl(f"create index {index.name}", partial(index.create, c, checkfirst=True))
    log.warning("database upgraded: added column %s.%s (%s, null in existing rows)",
                table.name, column.name, kind)


def _check_sqlite_guards(c: Connection, quiet: Mapping[str, set[str]]) -> None:
    """Install each SQLite trigger that is missing; replace one whose text differs."""
    for guard in _SQLITE_GUARDS:
        found = c.execute(_SQLITE_TRIGGER_SQL, {"name": guard.name}).first()
        if found is None:
            _reinstall(c, guard, "missing", quiet, [guard.sql])
        elif (found[0], found[1]) != (guard.table, guard.sql):
            _reinstall(c, guard, "altered", quiet,
                       [f"DROP TRIGGER {guard.name}", guard.sql])


def _check_postgresql_guards(c: Connection, quiet: Mapping[str, set[str]]) -> None:
    """Check each trigger function's body, then each trigger's table, events, function and
    state (enabled, unconditional); (re)create what is missing or differs."""
    for f in _POSTGRESQL_FUNCTIONS:
        function = _Guard(f.table, f"function {f.name}()", f.sql)
        found = c.execute(_PG_FUNCTION_STATE, {"name": f.name}).first()
        if found is None:
            _reinstall(c, function, "missing", quiet, [f.sql])
        elif not found[2]:  # not a trigger function: CREATE OR REPLACE cannot change that
            _reinstall(c, function, "replaced", quiet,
                       [f"DROP FUNCTION {f.name}() CASCADE", f.sql])
        elif (found[0], found[1]) != (f.body, "plpgsql"):
            _reinstall(c, function, "altered", quiet, [f.sql])
    for t in _POSTGRESQL_TRIGGERS:
        trigger = _Guard(t.table, f"trigger {t.name}", t.sql)
        problem = _pg_trigger_problem(c, t)
        if problem is not None:
            _reinstall(c, trigger, problem, quiet,
                       [f"DROP TRIGGER IF EXISTS {t.name} ON {t.table}", t.sql])


def _pg_trigger_problem(c: Connection, t: _PgTrigger) -> str | None:
    """What is wrong with trigger `t` as the catalog shows it; None when it is as created."""
    found = c.execute(_PG_TRIGGER_STATE,
                      {"name": t.name, "table": t.table, "function": t.function}).first()
    if found is None:
        return "missing"
    tgtype, enabled, unconditional, runs_ours = found
    if enabled not in ("O", "A"):  # D: disabled; R: fires only on replicas
        return "disabled"
    if tgtype != t.tgtype or not unconditional or not runs_ours:
        return "altered"
    return None


def _reinstall(c: Connection, guard: _Guard, problem: str, quiet: Mapping[str, set[str]],
               statements: Sequence[str]) -> None:
    """Run `statements` to (re)create `guard`, then warn unless `quiet` expects the problem
    on its table: a guard missing on a table created just now, or changed on a table this
    start added columns to (the guard of the new version names them)."""
    purpose = f"reinstall the {problem} guard {guard.name} on table {guard.table}"
    _run_ddl(purpose, lambda: [c.exec_driver_sql(s) for s in statements])
    if guard.table not in quiet.get(problem, ()):
        cause = ("new in this version of Guichet, or dropped" if problem == "missing" else
                 "changed by hand, or by another version of Guichet")
        log.warning("guard %s on table %s was %s (%s): reinstalled; while it was not working, "
                    "rows of %s may have been rewritten", guard.name, guard.table, problem,
                    cause, guard.table)


def _run_ddl(purpose: str, run: Callable[[], object]) -> None:
    """Run schema changes; a role lacking the privilege gets SchemaError, saying what to do."""
    try:
        run()
    except DBAPIError as exc:
        orig = exc.orig
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if state != _INSUFFICIENT_PRIVILEGE:
            raise
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else "permission denied"
        raise SchemaError(f"this database role may not {purpose} ({reason}); start Guichet "
                          "once as the owner of the tables, then as this role") from None


def drop_schema(engine: Engine) -> None:
    """Drop every Guichet table and guard (tests and tools only: history is otherwise
    permanent)."""
    with engine.begin() as c:
        SQLModel.metadata.drop_all(c, tables=list(_tables()))
        if engine.dialect.name == "postgresql":
            for f in _POSTGRESQL_FUNCTIONS:
                c.exec_driver_sql(f"DROP FUNCTION IF EXISTS {f.name}()")


def _tables() -> Iterator[Any]:
    yield from (procedures_t, cases_t, history_t, documents_t, payments_t, outbox_t, timers_t,
                counters_t, purges_t)


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
        # a worker's claim (see Store.claim_timer): the timer and its case, never waited for
        self.claim_timer = (
            select(t.status, cases_t.c.version).join(cases_t, cases_t.c.id == t.case_id)
            .where(t.id == _p("b_id"))
            .with_for_update(of=[timers_t, cases_t], skip_locked=True))
        self.settle_timer = update(timers_t).where(and_(
            t.id == _p("b_id"), t.status == "pending")).values(
            status=_p("b_status"), updated_at=_p("b_now", t.updated_at))
        self.next_sequence = upsert(counters_t).values(
            key=_p("b_key"), value=1).on_conflict_do_update(
            index_elements=["key"], set_={"value": counters_t.c.value + 1},
        ).returning(counters_t.c.value)
        # a row is marked once: a second host (or thread) delivering it again keeps the first
        # time, which the outbox guard would refuse to change
        self.mark_delivered = update(outbox_t).where(and_(
            o.id.in_(bindparam("b_ids", expanding=True)), o.delivered_at.is_(None))
        ).values(delivered_at=_p("b_now", o.delivered_at))
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

    def run(self, c: Connection | _Raw, values: Mapping[str, Any]) -> Any:
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


@dataclass(frozen=True)
class _Raw:
    """A pooled driver connection for one hot read, shaped as _Prepared runs on: the
    statements of the hot path need no SQLAlchemy Connection around them."""

    connection: Any  # the driver's connection (has cursor())
    dialect: Any


@contextmanager
def _as_sqlalchemy_errors(c: Connection | _Raw, sql: str, parameters: Any) -> Iterator[None]:
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

    def case_row(self, c: Connection | _Raw, reference: str) -> dict[str, Any] | None:
        cursor = self.case_by_reference.run(c, {"b_reference": reference})
        found = cursor.fetchone()
        cursor.close()  # the statement is done: no read snapshot stays open
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
        self._candidates: list[dict[str, Any]] = []  # due timers read for reserved_timer

    @property
    def database_file(self) -> Path | None:
        """The SQLite database file, its real path (links followed: two names of one file
        are one database); None for PostgreSQL or an in-memory database."""
        url = self.engine.url
        if self.dialect != "sqlite" or _is_memory(str(url)) or not url.database:
            return None
        return Path(url.database).resolve()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite); commits or rolls back whole.

        A connection-level failure (opening, BEGIN, a statement, COMMIT) raises
        DatabaseUnavailable; Conflict, DuplicatePayment and other errors pass unchanged.
        """
        try:
            with self.engine.begin() as connection:
                yield connection
        except (DBAPIError, PoolTimeout) as exc:
            _raise_if_unavailable(self.engine, exc)
            raise

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads only (a deferred transaction on SQLite); a connection-level
        failure raises DatabaseUnavailable, as in `transaction`."""
        try:
            with self.engine.connect() as connection:
                yield connection.execution_options(guichet_read=True)
        except (DBAPIError, PoolTimeout) as exc:
            _raise_if_unavailable(self.engine, exc)
            raise

    @contextmanager
    def _hot_read(self) -> Iterator[_Raw]:
        """A pooled driver connection for one read of the hot path (a case by reference, a
        payment): no SQLAlchemy Connection is built around it. The read runs outside any
        transaction (one statement sees one snapshot): on PostgreSQL in autocommit, so it
        is one round trip (no BEGIN, no ROLLBACK when the connection returns)."""
        try:
            raw = self.engine.raw_connection()
        except (DBAPIError, PoolTimeout) as exc:
            _raise_if_unavailable(self.engine, exc)
            raise
        driver = raw.driver_connection if self.dialect == "postgresql" else None
        try:
            if driver is not None:  # one statement, its own snapshot: no BEGIN, no ROLLBACK
                driver.autocommit = True
            yield _Raw(raw, self.engine.dialect)
        except DBAPIError as exc:
            _raise_if_unavailable(self.engine, exc)
            raise
        finally:
            if driver is not None and not driver.closed:
                driver.autocommit = False
            raw.close()

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

    def write_step(self, c: Connection, case_id: int, expected: int, values: Mapping[str, Any],
                   history: Mapping[str, Any], outbox: Mapping[str, Any], *,
                   before: Callable[[], None] | None = None,
                   cancel_timers_at: dt.datetime | None = None,
                   timers: Sequence[Mapping[str, Any]] = ()) -> int:
        """The writes of one step in the transaction `c`, in this order: `before` (e.g. the
        document or payment row it adds), the case row if its version is still `expected`
        (Conflict otherwise), its history row, the case's pending timers cancelled (when
        `cancel_timers_at` is given) and new `timers`, its outbox row; returns the outbox
        row's id.

        On PostgreSQL they are sent in one round trip, BEGIN included (psycopg's pipeline
        mode): the version check and every statement's error are seen when it returns,
        before anything commits, and raise as each statement alone would (Conflict,
        DuplicatePayment). On SQLite they run one after the other.
        """
        updated = self.hot.update_case(tuple(sorted(values)), self.sql)
        with self._pipelined(c):
            if before is not None:
                before()
            cursor = updated.run(c, {"b_id": case_id, "b_expected": expected, **values})
            if not self._pipelining(c) and cursor.rowcount != 1:
                raise Conflict()
            self.append_history(c, history)
            if cancel_timers_at is not None:
                self.cancel_timers(c, case_id, cancel_timers_at)
            self.add_timers(c, timers)
            added = self.hot.insert_outbox.run(c, outbox)
        if cursor.rowcount != 1:  # pipelined: nothing is committed yet
            raise Conflict()
        return int(added.fetchone()[0])

    def write_opening(self, c: Connection, row: Mapping[str, Any], history: Mapping[str, Any],
                      timers: Callable[[int], Sequence[Mapping[str, Any]]],
                      outbox: Mapping[str, Any]) -> tuple[int, int]:
        """Insert a case (`row`, with its reference), its first history row, `timers(its
        id)` and its outbox row in the transaction `c`: (case id, outbox row id). On
        PostgreSQL two round trips (the case row's id, then the rest: pipeline mode)."""
        with self._pipelined(c):
            case_id = self.insert_case(c, row)
            self.append_history(c, {**history, "case_id": case_id})
            self.add_timers(c, timers(case_id))
            added = self.hot.insert_outbox.run(c, {**outbox, "case_id": case_id})
        return case_id, int(added.fetchone()[0])

    def _pipelining(self, c: Connection) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def _pipelined(self, c: Connection) -> Iterator[None]:
        """On PostgreSQL, the driver's pipeline mode: the statements run in it are sent
        without waiting, and their results (and errors) come back in one round trip at its
        end (or earlier, where a row is fetched). An IntegrityError is raised as the
        statement alone would have been: Conflict on history, DuplicatePayment on payments.
        On SQLite, nothing changes."""
        if not self._pipelining(c):
            yield
            return
        driver: Any = c.connection.driver_connection
        try:
            with _as_sqlalchemy_errors(c, "(pipelined statements)", ()), driver.pipeline():
                yield
        except IntegrityError as exc:
            table = getattr(getattr(exc.orig, "diag", None), "table_name", None)
            if table == "history":
                raise Conflict() from None
            if table == "payments":
                raise DuplicatePayment() from None
            raise

    def mark_delivered(self, c: Connection, ids: Sequence[int], now: dt.datetime) -> None:
        """Mark outbox rows delivered, inside the caller's transaction."""
        for start in range(0, len(ids), _MARK_CHUNK):
            chunk = list(ids[start:start + _MARK_CHUNK])
            c.execute(self.sql.mark_delivered, {"b_ids": chunk, "b_now": now})

    def pending_outbox(self, after_id: int = 0, limit: int = 100,
                       before: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Undelivered outbox rows after `after_id` (written before `before`, if given),
        oldest first."""
        o = outbox_t.c
        written = o.created_at < before if before is not None else true()
        with self.reading() as c:
            rows = c.execute(
                select(outbox_t, cases_t.c.reference).join(cases_t)
                .where(and_(o.delivered_at.is_(None), o.id > after_id, written))
                .order_by(o.id).limit(limit)
            ).mappings().all()
        return [dict(r) for r in rows]

    @contextmanager
    def alone(self, task: int) -> Iterator[bool]:
        """Whether this process is the only one doing `task` (a small integer) for the
        `with` block: on PostgreSQL a session advisory lock, tried, never waited for, released
        at the end or with the connection; on SQLite (one worker at a time) always True."""
        if self.dialect != "postgresql":
            yield True
            return
        with self.reading() as reader:
            c = reader.execution_options(isolation_level="AUTOCOMMIT")
            key = {"b_id": -task}  # negative: never a timer's reservation
            mine = bool(c.execute(_RESERVE, key).scalar())
            try:
                yield mine
            finally:
                if mine:
                    c.execute(_RELEASE, key)

    def history(self, reference: str) -> list[dict[str, Any]]:
        with self.reading() as c:
            rows = c.execute(
                select(history_t).join(cases_t).where(cases_t.c.reference == reference)
                .order_by(history_t.c.sequence)
            ).mappings().all()
        return [dict(r) for r in rows]

    def step_effects(self, reference: str) -> dict[int, dict[str, Any]]:
        """The outbox payloads of a case's steps (start and transitions), by step sequence."""
        with self.reading() as c:
            rows = c.execute(
                select(outbox_t.c.payload).join(cases_t)
                .where(and_(cases_t.c.reference == reference,
                            outbox_t.c.event.in_(("case_started", "transition"))))
                .order_by(outbox_t.c.id)
            ).all()
        return {r[0]["sequence"]: r[0] for r in rows if "sequence" in r[0]}

    def read_case(self, reference: str) -> dict[str, Any] | None:
        """The case row with this reference, read outside any write transaction."""
        with self._hot_read() as raw:
            return self.hot.case_row(raw, reference)

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

    def find_payment(self, c: Connection | _Raw, provider: str, provider_reference: str
                     ) -> dict[str, Any] | None:
        """The payment with this provider reference (only its ids and amount are read)."""
        cursor = self.hot.find_payment.run(c, {
            "b_provider": provider, "b_provider_reference": provider_reference,
        })
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else dict(zip(self.hot.payment_columns, row, strict=True))

    def payment(self, provider: str, provider_reference: str) -> dict[str, Any] | None:
        """The payment with this provider reference, read outside any write transaction."""
        with self._hot_read() as raw:
            return self.find_payment(raw, provider, provider_reference)

    def insert_payment(self, c: Connection, values: Mapping[str, Any]) -> None:
        """Record a payment; a concurrent twin (same provider reference) raises
        DuplicatePayment, and the caller's transaction is then rolled back whole."""
        try:
            self.hot.insert_payment.run(c, values)
        except IntegrityError:
            raise DuplicatePayment() from None

    def payment_totals(self, procedures: Sequence[str] | None = None,
                       since: dt.datetime | None = None, until: dt.datetime | None = None
                       ) -> dict[str | None, tuple[int, int]]:
        """{method (None: none recorded): (count, amount)} of the payments on the cases of
        `procedures` (None: of every case), recorded at or after `since` and before `until`
        (None: no bound), summed by the database (GROUP BY)."""
        p = payments_t.c
        query = select(p.method, func.count(), func.coalesce(func.sum(p.amount), 0))
        if procedures is not None:
            query = query.join(cases_t, cases_t.c.id == p.case_id).where(
                cases_t.c.procedure_id.in_(list(procedures)))
        if since is not None:
            query = query.where(p.at >= since)
        if until is not None:
            query = query.where(p.at < until)
        with self.reading() as c:
            rows = c.execute(query.group_by(p.method)).all()
        return {method: (int(count), int(amount)) for method, count, amount in rows}

    def follow_ups(self, reference: str) -> list[str]:
        """The references of the cases whose parent is the case `reference`, oldest first."""
        with self.reading() as c:
            found = c.execute(select(cases_t.c.reference)
                              .where(cases_t.c.parent_reference == reference)
                              .order_by(cases_t.c.id)).scalars().all()
        return [str(r) for r in found]

    # --- timers ---------------------------------------------------------------------------------

    def add_timers(self, c: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.hot.insert_timers.run_many(c, rows)

    def cancel_timers(self, c: Connection, case_id: int, now: dt.datetime) -> None:
        self.hot.cancel_timers.run(c, {"b_case_id": case_id, "b_now": now})

    def _candidates_due(self, now: dt.datetime, skip: Collection[int]
                        ) -> Iterator[dict[str, Any]]:
        """Due timers not in `skip`, read RESERVE_CANDIDATES at a time and kept between calls
        (one read for many reservations; one another worker ran meanwhile is let go when its
        status is checked), then read again once, for timers that fell due since."""
        for fresh in (False, True):
            if fresh or not self._candidates:
                self._candidates = self.due_timers(now, RESERVE_CANDIDATES, exclude=skip)
            while self._candidates:
                timer = self._candidates.pop(0)
                if timer["id"] not in skip and timer["due_at"] <= now:
                    yield timer
            if fresh:
                return

    def due_timers(self, now: dt.datetime, limit: int = 500, exclude: Collection[int] = ()
                   ) -> list[dict[str, Any]]:
        """The pending timers due at `now` whose id is not in `exclude`, oldest first, at most
        `limit` (ordered by due_at alone, the index's order, so the scan stops after `limit`
        rows however many fall at the same moment; ties then by id)."""
        t = timers_t.c
        others = t.id.not_in(list(exclude)) if exclude else true()
        with self.reading() as c:
            rows = c.execute(
                select(timers_t, cases_t.c.reference).join(cases_t)
                .where(and_(t.status == "pending", t.due_at <= now, others))
                .order_by(t.due_at).limit(limit)
            ).mappings().all()
        return sorted((dict(r) for r in rows), key=lambda r: (r["due_at"], r["id"]))

    def claim_timer(self, c: Connection, timer_id: int) -> dict[str, Any] | None:
        """Lock a timer and its case row in the write transaction `c`: their `status` and
        `version`, or None when another transaction holds either (PostgreSQL: FOR UPDATE
        SKIP LOCKED, never waits; the caller ends its transaction, releasing what it got).
        On SQLite, BEGIN IMMEDIATE already holds the database: it only reads them."""
        row = c.execute(self.sql.claim_timer, {"b_id": timer_id}).mappings().first()
        return dict(row) if row is not None else None

    @contextmanager
    def reserved_timer(self, now: dt.datetime, skip: Collection[int] = ()
                       ) -> Iterator[dict[str, Any] | None]:
        """The oldest timer due at `now` (with its case's `reference`) whose id is not in
        `skip` and that no other worker has reserved, reserved for the `with` block; None
        when there is none.

        On PostgreSQL the reservation is a session advisory lock taken on a connection held
        for the block, outside any transaction: another worker skips the timer instead of
        deciding and rendering it too, and the server releases the lock when the block ends
        or when the worker's connection dies (a worker killed meanwhile loses nothing). It
        only spares work: the timer is still claimed, `FOR UPDATE SKIP LOCKED`, in the
        transaction that fires it (`claim_timer`). On SQLite, where one worker runs at a time,
        the first due timer is simply read.
        """
        if self.dialect != "postgresql":
            due = self.due_timers(now, 1, exclude=skip)
            yield due[0] if due else None
            return
        with self.reading() as reader:
            c = reader.execution_options(isolation_level="AUTOCOMMIT")
            for timer in self._candidates_due(now, skip):
                key = {"b_id": int(timer["id"]) % 2_147_483_647, "b_timer": timer["id"]}
                locked, status = c.execute(_RESERVE_PENDING, key).one()
                if not locked:
                    continue  # another worker has it
                try:
                    if status == "pending":  # not run since it was read
                        yield timer
                        return
                finally:
                    c.execute(_RELEASE, key)
            yield None

    def oldest_due(self, now: dt.datetime) -> dt.datetime | None:
        """When the oldest pending timer due at `now` fell; None when none is due."""
        t = timers_t.c
        with self.reading() as c:
            found = c.execute(select(func.min(t.due_at)).where(and_(
                t.status == "pending", t.due_at <= now))).scalar()
        return found if isinstance(found, dt.datetime) or found is None else \
            dt.datetime.fromisoformat(str(found))

    def settle_timer(self, c: Connection, timer_id: int, status: str, now: dt.datetime) -> bool:
        """Mark a pending timer fired or cancelled; False if somebody settled it first."""
        result = c.execute(self.sql.settle_timer,
                           {"b_id": timer_id, "b_status": status, "b_now": now})
        return bool(result.rowcount == 1)

    def clock_timers(self, case_id: int) -> list[dict[str, Any]]:
        """The pending and paused timers of a case: what the legal clock of a step reads."""
        with self.reading() as c:
            rows = c.execute(select(timers_t).where(and_(
                timers_t.c.case_id == case_id, timers_t.c.status.in_(("pending", "paused"))))
                .order_by(timers_t.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def end_paused(self, c: Connection, timer_ids: Sequence[int], status: str,
                   now: dt.datetime) -> None:
        """Mark paused timers resumed or cancelled (those still paused)."""
        if timer_ids:
            t = timers_t.c
            c.execute(update(timers_t).where(and_(t.id.in_(list(timer_ids)),
                                                  t.status == "paused"))
                      .values(status=status, updated_at=now))

    def pending_timers(self, case_id: int) -> list[dict[str, Any]]:
        with self.reading() as c:
            rows = c.execute(select(timers_t).where(and_(timers_t.c.case_id == case_id,
                                                         timers_t.c.status == "pending"))
                             .order_by(timers_t.c.due_at)).mappings().all()
        return [dict(r) for r in rows]

    # --- purging (see the guards above) ---------------------------------------------------------

    def closed_versions(self) -> list[str]:
        """The procedure versions (hashes) that have closed cases not purged yet."""
        with self.reading() as c:
            found = c.execute(select(cases_t.c.procedure_hash).distinct().where(and_(
                cases_t.c.outcome.is_not(None), ~_purged(cases_t.c.id)))).scalars().all()
        return sorted(str(h) for h in found)

    def purge_candidates(self, procedure_hash: str, closed_before: dt.datetime, after_id: int,
                         limit: int = 200) -> list[dict[str, Any]]:
        """Closed cases of a version, not purged, closed at or before `closed_before`, oldest
        id first; each row with `closed_at`: when the history records entering the final
        state (the case's updated_at if it records none)."""
        h = history_t.c
        closed_at = func.coalesce(select(func.max(h.at)).where(and_(
            h.case_id == cases_t.c.id, h.to_state == cases_t.c.state,
            or_(h.from_state.is_(None), h.from_state != h.to_state))).scalar_subquery(),
            cases_t.c.updated_at)
        query = (select(cases_t, closed_at.label("closed_at")).where(and_(
            cases_t.c.procedure_hash == procedure_hash, cases_t.c.outcome.is_not(None),
            cases_t.c.id > after_id, ~_purged(cases_t.c.id), closed_at <= closed_before))
            .order_by(cases_t.c.id).limit(limit))
        with self.reading() as c:
            rows = c.execute(query).mappings().all()
        return [dict(r) for r in rows]

    def is_purged(self, case_id: int) -> bool:
        with self.reading() as c:
            return c.execute(select(purges_t.c.case_id)
                             .where(purges_t.c.case_id == case_id)).first() is not None

    def case_record(self, case_id: int) -> dict[str, list[dict[str, Any]]]:
        """Every row of a case's record, by table: history, outbox, documents, payments."""
        record = {}
        with self.reading() as c:
            for name, t in _RECORD.items():
                rows = c.execute(select(t).where(t.c.case_id == case_id).order_by(t.c.id))
                record[name] = [dict(r) for r in rows.mappings().all()]
        return record

    def insert_purge(self, c: Connection, values: Mapping[str, Any]) -> None:
        """Record that a case is purged (first, in the purging transaction: the guards accept
        its rewrites only then); a case purged meanwhile raises Conflict."""
        try:
            c.execute(insert(purges_t).values(dict(values)))
        except IntegrityError:
            raise Conflict() from None

    def rewrite(self, c: Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Purging's rewrite of record rows of `table` ("history", "outbox", "documents" or
        "payments"): each row gives its id and the new values of the columns it changes."""
        t = _RECORD[table]
        for row in rows:
            c.execute(update(t).where(t.c.id == row["id"])
                      .values({k: v for k, v in row.items() if k != "id"}))

    def blobs_in_use(self, sha256s: Sequence[str], except_case: int) -> set[str]:
        """Which of these files a case other than `except_case`, not purged, still has."""
        if not sha256s:
            return set()
        d = documents_t.c
        with self.reading() as c:
            found = c.execute(select(d.sha256).distinct().where(and_(
                d.sha256.in_(list(sha256s)), d.case_id != except_case,
                ~_purged(d.case_id)))).scalars().all()
        return {str(s) for s in found}

    # --- statistics (see StatsScope) ------------------------------------------------------------

    def procedure_hashes(self, procedures: Sequence[str]) -> list[tuple[str, str]]:
        """(procedure id, hash) of every stored version of `procedures`."""
        v = procedures_t.c
        with self.reading() as c:
            rows = c.execute(select(v.procedure_id, v.hash)
                             .where(v.procedure_id.in_(list(procedures)))).all()
        return sorted((str(p), str(h)) for p, h in rows)

    def stats_requests(self, scope: StatsScope) -> list[dict[str, Any]]:
        """{procedure_id, grp, outcome (None: open), cases} of the cases in scope."""
        return self._stats(_requests_sql, scope)

    def stats_cases(self, scope: StatsScope) -> list[dict[str, Any]]:
        """Per (procedure_id, grp): `decided` (closed with an outcome of scope.decided, after
        leaving the initial state), admin_p50/p90/p99 (their administration's time: seconds in
        states neither initial, waiting nor final), total_p50/p90/p99 (from leaving the initial
        state to entering a final one), with_target and within_target (administration's time
        at most the target), `backlog` (open cases that left the initial state), age_0..age_n
        (of them, by seconds since they left it, in scope.buckets), over_target, and `waiting`
        (open cases in a waiting state)."""
        return self._stats(_cases_sql, scope)

    def stats_stays(self, scope: StatsScope) -> list[dict[str, Any]]:
        """Per (procedure_id, state): `stays` ended, and stay_p50/p90/p99 of their seconds."""
        return self._stats(_stays_sql, scope)

    def _stats(self, build: Callable[[str, StatsScope, dict[str, Any]], str], scope: StatsScope
               ) -> list[dict[str, Any]]:
        if not scope.procedures or not scope.versions:
            return []
        params: dict[str, Any] = {}
        statement = text(build(self.dialect, scope, params))
        binds: list[Any] = [bindparam(n, expanding=True) for n in (
            "s_procedures", "s_decided", "s_initial", "s_final", "s_waiting") if n in params]
        binds += [bindparam(n, type_=DateTime()) for n in ("s_since", "s_until") if n in params]
        with self.reading() as c:
            rows = c.execute(statement.bindparams(*binds), params).mappings().all()
        return [dict(r) for r in rows]


#: The tables of a case's record that purging rewrites.
_RECORD = {"history": history_t, "outbox": outbox_t, "documents": documents_t,
           "payments": payments_t}


def _purged(case_id: Any) -> Any:
    """True for a case that has a purges row."""
    return select(purges_t.c.case_id).where(purges_t.c.case_id == case_id).exists()


# --- statistics (engine/stats.py) ---------------------------------------------------------------
# Times are whole seconds since the epoch, computed by the database; a case's stays are its
# history rows that enter a state (the first row, and every row whose state differs from the
# one before: attachments and payments do not end a stay), each lasting until the next one
# (LEAD over the case's rows by sequence: SQLite >= 3.25 and PostgreSQL). Percentiles are
# nearest-rank: the value at rank ceil(p * n / 100) in ascending order.

#: What a state is to the administration's clock (engine/stats.py sends one per state).
STAY_KINDS = ("initial", "waiting", "work", "final")
#: The breakdowns the database computes (a form field's value for "field").
STATS_GROUPS = ("", "month", "week", "authority", "state", "field")
_PERCENTILES = (50, 90, 99)

_EPOCH = {"sqlite": "CAST(strftime('%s', {0}) AS INTEGER)",
          "postgresql": "CAST(FLOOR(EXTRACT(EPOCH FROM {0})) AS BIGINT)"}
_GROUP_SQL = {
    "sqlite": {"": "''", "month": "strftime('%Y-%m', c.created_at)",
               "week": "date(c.created_at, 'weekday 0', '-6 days')",
               "authority": "v.authority", "state": "c.state",
               "field": "json_extract(c.data, :s_path)"},
    "postgresql": {"": "''", "month": "to_char(c.created_at, 'YYYY-MM')",
                   "week": "to_char(date_trunc('week', c.created_at), 'YYYY-MM-DD')",
                   "authority": "v.authority", "state": "c.state",
                   "field": "(c.data ->> CAST(:s_field AS TEXT))"},
}


@dataclass(frozen=True)
class StatsScope:
    """The cases statistics read: those of `procedures` opened at or after `since` and before
    `until` (None: no bound), as of `now`, grouped by `group` (one of STATS_GROUPS; "field":
    the value of form field `field`). `versions`: (procedure hash, target in seconds or None,
    authority) of every version; `kinds`: (procedure hash, state, one of STAY_KINDS)."""

    procedures: tuple[str, ...]
    versions: tuple[tuple[str, int | None, str], ...]
    kinds: tuple[tuple[str, str, str], ...]
    now: dt.datetime
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    group: str = ""
    field: str | None = None
    #: the outcomes of a decided case (its times are the percentiles' and the target's)
    decided: tuple[str, ...] = ("accepted", "rejected")
    #: upper bounds of the backlog's age buckets, in seconds (the last bucket is open)
    buckets: tuple[int, ...] = ()


def _epoch(dialect: str, column: str) -> str:
    return _EPOCH[dialect].format(column)


def _by_version(scope: StatsScope, index: int, cast: str, params: dict[str, Any]) -> str:
    """CASE on the case's version giving column `index` of scope.versions (bound values)."""
    whens = []
    for i, version in enumerate(scope.versions):
        params[f"s_v{i}"], params[f"s_v{i}_{index}"] = version[0], version[index]
        whens.append(f"WHEN :s_v{i} THEN CAST(:s_v{i}_{index} AS {cast})")
    return f"CASE c.procedure_hash {' '.join(whens)} END"


def _kind_sql(scope: StatsScope, hash_: str, state: str, params: dict[str, Any]) -> str:
    """The kind of `state` in version `hash_` (STAY_KINDS): IN lists of "hash/state" keys,
    which both databases search without scanning (SQLite a b-tree, PostgreSQL a hash)."""
    key = f"{hash_} || '/' || {state}"
    cases = []
    for kind in ("initial", "final", "waiting"):
        params[f"s_{kind}"] = [f"{h}/{s}" for h, s, k in scope.kinds if k == kind]
        cases.append(f"WHEN {key} IN :s_{kind} THEN '{kind}'")
    return f"CASE {' '.join(cases)} ELSE 'work' END"


def _scope_sql(dialect: str, scope: StatsScope, params: dict[str, Any]) -> str:
    """The CTEs `scope` (the cases in scope: target, kind of their state now, group) and
    `stays` (their stays: state, kind, entered, left_at; None while it lasts)."""
    if scope.group not in STATS_GROUPS or (scope.group == "field") != bool(scope.field):
        raise ValueError(f"unknown statistics group {scope.group!r}")
    params["s_procedures"] = list(scope.procedures)
    if scope.group == "field":
        params["s_path" if dialect == "sqlite" else "s_field"] = (
            f'$."{scope.field}"' if dialect == "sqlite" else scope.field)
    period = ""
    if scope.since is not None:
        params["s_since"] = scope.since
        period += " AND c.created_at >= :s_since"
    if scope.until is not None:
        params["s_until"] = scope.until
        period += " AND c.created_at < :s_until"
    group = _GROUP_SQL[dialect][scope.group].replace(
        "v.authority", _by_version(scope, 2, "VARCHAR(255)", params))
    at = _epoch(dialect, "h.at")
    return (f"WITH scope AS (SELECT c.id, c.procedure_id, c.procedure_hash, c.outcome, "
            f"{_by_version(scope, 1, 'BIGINT', params)} AS target, "
            f"{_kind_sql(scope, 'c.procedure_hash', 'c.state', params)} AS now_kind, "
            f"{group} AS grp FROM cases c WHERE c.procedure_id IN :s_procedures{period}), "
            f"stays AS (SELECT h.case_id, h.to_state AS state, "
            f"{_kind_sql(scope, 's.procedure_hash', 'h.to_state', params)} AS kind, "
            f"{at} AS entered, LEAD({at}) OVER (PARTITION BY h.case_id ORDER BY h.sequence) "
            "AS left_at FROM scope s JOIN history h ON h.case_id = s.id "
            "WHERE h.from_state IS NULL OR h.from_state <> h.to_state)")


def _ranks(value: str, rank: str, where: str = "1 = 1") -> str:
    """MAX(...) picking the p50, p90 and p99 of `value` (ranked by `rank` among `n`)."""
    return ", ".join(f"MAX(CASE WHEN {where} AND {rank} = ({p} * n + 99) / 100 THEN {value} "
                     f"END) AS {value}_p{p}" for p in _PERCENTILES)


def _cases_sql(dialect: str, scope: StatsScope, params: dict[str, Any]) -> str:
    """Per (procedure, group): decided cases' percentiles of administration and total time,
    how many met the target, and the open cases' backlog by age of their clock."""
    params["s_now"] = _seconds(scope.now)
    params["s_decided"] = list(scope.decided)
    backlog = "outcome IS NULL AND started IS NOT NULL"
    bounds = [f":s_b{i}" for i in range(len(scope.buckets))]
    params.update({f"s_b{i}": b for i, b in enumerate(scope.buckets)})
    ages = _ages(backlog, bounds)
    return (
        f"{_scope_sql(dialect, scope, params)}, clocks AS (SELECT case_id, "
        "MIN(CASE WHEN kind = 'initial' THEN left_at END) AS started, "
        "MIN(CASE WHEN kind = 'final' THEN entered END) AS stopped, "
        "SUM(CASE WHEN kind = 'work' THEN COALESCE(left_at, :s_now) - entered "
        "ELSE 0 END) AS admin FROM stays GROUP BY case_id), per_case AS (SELECT s.id, "
        "s.procedure_id, s.grp, s.outcome, s.target, s.now_kind, k.started, k.stopped, "
        "k.admin FROM scope s JOIN clocks k ON k.case_id = s.id), "
        "timed AS (SELECT p.*, stopped - started AS total, CASE WHEN outcome IN :s_decided "
        "AND started IS NOT NULL AND stopped IS NOT NULL THEN 1 ELSE 0 END AS is_timed "
        "FROM per_case p), ranked AS (SELECT t.*, "
        "ROW_NUMBER() OVER (PARTITION BY procedure_id, grp, is_timed ORDER BY admin) AS ra, "
        "ROW_NUMBER() OVER (PARTITION BY procedure_id, grp, is_timed ORDER BY total) AS rt, "
        "COUNT(*) OVER (PARTITION BY procedure_id, grp, is_timed) AS n FROM timed t) "
        "SELECT procedure_id, grp, SUM(is_timed) AS decided, "
        f"{_ranks('admin', 'ra', 'is_timed = 1')}, {_ranks('total', 'rt', 'is_timed = 1')}, "
        "SUM(CASE WHEN is_timed = 1 AND target IS NOT NULL THEN 1 ELSE 0 END) AS with_target, "
        "SUM(CASE WHEN is_timed = 1 AND admin <= target THEN 1 ELSE 0 END) AS within_target, "
        f"SUM(CASE WHEN {backlog} THEN 1 ELSE 0 END) AS backlog, {ages}, "
        f"SUM(CASE WHEN {backlog} AND admin > target THEN 1 ELSE 0 END) AS over_target, "
        "SUM(CASE WHEN outcome IS NULL AND now_kind = 'waiting' THEN 1 ELSE 0 END) AS waiting "
        "FROM ranked GROUP BY procedure_id, grp")


def _ages(condition: str, bounds: Sequence[str]) -> str:
    """One SUM per backlog age bucket: (the bound before, the bound]; the last is open."""
    lows = ["", *(f" AND :s_now - started > {b}" for b in bounds)]
    highs = [*(f" AND :s_now - started <= {b}" for b in bounds), ""]
    return ", ".join(f"SUM(CASE WHEN {condition}{low}{high} THEN 1 ELSE 0 END) AS age_{i}"
                     for i, (low, high) in enumerate(zip(lows, highs, strict=True)))


def _stays_sql(dialect: str, scope: StatsScope, params: dict[str, Any]) -> str:
    """Per (procedure, state): how many stays ended, and the percentiles of their length."""
    return (
        f"{_scope_sql(dialect, scope, params)}, spent AS (SELECT s.procedure_id, st.state, "
        "st.left_at - st.entered AS stay FROM scope s JOIN stays st ON st.case_id = s.id "
        "WHERE st.left_at IS NOT NULL), ranked AS (SELECT d.*, ROW_NUMBER() OVER (PARTITION "
        "BY procedure_id, state ORDER BY stay) AS r, COUNT(*) OVER (PARTITION BY "
        "procedure_id, state) AS n FROM spent d) SELECT procedure_id, state, MAX(n) AS stays, "
        f"{_ranks('stay', 'r')} FROM ranked GROUP BY procedure_id, state")


def _requests_sql(dialect: str, scope: StatsScope, params: dict[str, Any]) -> str:
    """Per (procedure, group, outcome): how many cases (no history read)."""
    head = _scope_sql(dialect, scope, params).partition(", stays AS (")[0]
    return (f"{head} SELECT procedure_id, grp, outcome, COUNT(*) AS cases FROM scope "
            "GROUP BY procedure_id, grp, outcome")


def _seconds(moment: dt.datetime) -> int:
    """A naive UTC datetime as whole seconds since the epoch."""
    return int((moment - dt.datetime(1970, 1, 1)).total_seconds() // 1)
