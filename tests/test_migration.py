"""The additive migration: a database made by the previous version gets the new nullable
columns (payments.method, cases.parent_reference and its index) when an Engine opens it.

tests/fixtures/schema_issue9.json holds the schema the previous version (issue 9) created,
as SQLite stored it (tables, indexes, guard triggers) and as the PostgreSQL DDL it ran
(tables, indexes, guard functions and triggers).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from helpers import APPLICANT, MakeEngine, criminal_record_data

from engine import PaymentTotal, store
from engine.store import SchemaError

OLD_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "schema_issue9.json"
AT = dt.datetime(2025, 1, 2, 3, 4, 5)


def create_old_schema(url: str, *, without: str | None = None) -> None:
    """The tables and guards of the previous version (`without`: drop that text from each
    statement, to make an older shape still)."""
    raw = sqlalchemy.create_engine(url)
    statements = json.loads(OLD_SCHEMA.read_text(encoding="utf-8"))[raw.dialect.name]
    try:
        with raw.begin() as c:
            for statement in statements:
                if without is not None:
                    if "TRIGGER" in statement or "FUNCTION" in statement:
                        continue
                    statement = statement.replace(without, "")
                c.exec_driver_sql(statement)
    finally:
        raw.dispose()


def insert_old_payment(url: str) -> None:
    """One case and its payment, written as the previous version wrote them."""
    raw = sqlalchemy.create_engine(url)
    rows: list[tuple[str, dict[str, Any]]] = [
        ("INSERT INTO procedure_versions (hash, procedure_id, version, definition, created_at) "
         "VALUES ('old', 'criminal_record', '0', '{}', :at)", {}),
        ("INSERT INTO cases (reference, procedure_id, procedure_hash, state, applicant_id, "
         "parties, data, documents, actors, fees_paid, version, created_at, updated_at, "
         "state_entered_at) VALUES ('CJ-2025-000001-A', 'criminal_record', 'old', 'draft', "
         "'citizen-0', '{}', '{}', '[]', '{}', 500, 2, :at, :at, :at)", {}),
        ("INSERT INTO payments (case_id, amount, provider, provider_reference, actor_id, at) "
         "SELECT id, 500, 'tmoney', 'TM-OLD', 'citizen-0', :at FROM cases", {}),
    ]
    try:
        with raw.begin() as c:
            for sql, values in rows:
                c.execute(sqlalchemy.text(sql), {"at": AT, **values})
    finally:
        raw.dispose()


def columns(url: str, table: str) -> set[str]:
    raw = sqlalchemy.create_engine(url)
    try:
        return {c["name"] for c in sqlalchemy.inspect(raw).get_columns(table)}
    finally:
        raw.dispose()


def indexes(url: str, table: str) -> set[str]:
    raw = sqlalchemy.create_engine(url)
    try:
        return {i["name"] or "" for i in sqlalchemy.inspect(raw).get_indexes(table)}
    finally:
        raw.dispose()


def run_sql(url: str, sql: str) -> None:
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.begin() as c:
            c.exec_driver_sql(sql)
    finally:
        raw.dispose()


def test_the_fixture_is_the_previous_shape(database_url: str) -> None:
    create_old_schema(database_url)
    assert "method" not in columns(database_url, "payments")
    assert "parent_reference" not in columns(database_url, "cases")


def test_opening_an_old_database_adds_the_new_columns_and_keeps_its_rows(
        make_engine: MakeEngine, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    create_old_schema(database_url)
    insert_old_payment(database_url)
    with caplog.at_level(logging.INFO, logger="guichet.store"):
        engine = make_engine(database_url)
    assert "method" in columns(database_url, "payments")
    assert "parent_reference" in columns(database_url, "cases")
    assert "ix_cases_parent_reference" in indexes(database_url, "cases")
    said = [r.getMessage() for r in caplog.records]
    assert any("added column payments.method" in m for m in said), said
    assert any("added column cases.parent_reference" in m for m in said), said
    # the payments guard names the new column: it is updated without a false alarm
    assert not [m for m in said if "reinstalled" in m], said
    # the old payment is counted, with no method; a new one records its method
    assert engine.payment_statistics() == {"": PaymentTotal(1, 500)}
    by_post = {"collection_mode": "post", "postal_address": "BP 1, Lomé"}
    case = engine.start("criminal_record", APPLICANT, criminal_record_data(**by_post))
    engine.pay(case.reference, 500, "tmoney", "TM-NEW", APPLICANT, method="tmoney")
    assert engine.payment_statistics() == {"": PaymentTotal(1, 500),
                                           "tmoney": PaymentTotal(1, 500)}


def test_the_guards_hold_on_the_new_column_after_the_upgrade(
        make_engine: MakeEngine, database_url: str) -> None:
    create_old_schema(database_url)
    insert_old_payment(database_url)
    make_engine(database_url)
    for sql in ("UPDATE payments SET method = 'cash'", "UPDATE payments SET amount = 1",
                "DELETE FROM payments"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
            run_sql(database_url, sql)


def test_a_second_start_changes_nothing(make_engine: MakeEngine, database_url: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    create_old_schema(database_url)
    make_engine(database_url).close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="guichet.store"):
        make_engine(database_url)
    assert [r.getMessage() for r in caplog.records] == []


def test_a_missing_column_that_may_not_be_null_refuses_to_start(database_url: str) -> None:
    create_old_schema(database_url, without="amount INTEGER NOT NULL, ")
    assert "amount" not in columns(database_url, "payments")
    database = store.connect(database_url)
    try:
        with pytest.raises(SchemaError, match="payments lacks column amount"):
            store.create_schema(database)
    finally:
        database.dispose()


def test_follow_ups_are_the_cases_naming_a_parent(make_engine: MakeEngine,
                                                  database_url: str) -> None:
    engine = make_engine(database_url)
    parent = engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
    children = [engine.start("criminal_record", APPLICANT, criminal_record_data()).reference
                for _ in range(2)]
    engine.start("criminal_record", APPLICANT, criminal_record_data())  # not a follow-up
    for child in children:
        run_sql(database_url, f"UPDATE cases SET parent_reference = '{parent}' "
                              f"WHERE reference = '{child}'")
    assert engine._store.follow_ups(parent) == children
    assert engine._store.follow_ups(children[0]) == []
