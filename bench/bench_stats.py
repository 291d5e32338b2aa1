"""The statistics report on a big history: `guichet stats` against a bare SQL floor.

    python bench/bench_stats.py [--rows N] [--cases N] [--quick] [--db URL] [--json] [--repeat N]

Builds a history of `--rows` history rows (default 1,000,000) over `--cases` cases (default
150,000) of the shipped procedures (procedures/*.yaml), written with bulk inserts (SQLAlchemy
Core executemany on the engine's own tables, not through the Engine): each case opened at a
random moment of 16 months, then a random walk over its procedure's transitions, each stay
lasting a random time (exponential, mean 2 days), stopping at a final state, after 12
transitions, or at "now" (then it is open); attachments and payments (rows that do not change
state) pad the history to `--rows`; a third of the cases get a payment with a method. Data
holds every reporting dimension's field (a random option).

Then, on the same database, timed (best of `--repeat`, default 3):
- report: `engine.stats.report(engine)` (the default report: no breakdown) and its text
  tables (renderers.stats.sections), as `guichet stats` does;
- floor: the same aggregates written by hand as bare SQL on the driver's connection
  (requests per procedure and outcome; per-case administration and total times with LEAD
  and their nearest-rank p50/p90/p99 and share within target; per-state stay percentiles;
  payments by method), the kinds of states in a temporary table.
The ratio report/floor is the price of the engine's query building, version handling and
rendering. SQLite runs always (a temporary file); PostgreSQL when --db or
$GUICHET_BENCH_DATABASE_URL names one (in a schema of its own, dropped at the end).
`--quick`: 50,000 rows over 7,500 cases (a CI smoke run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from engine import Engine, load_procedure, procedure_files  # noqa: E402
from engine import store as db  # noqa: E402
from engine.clock import FakeClock  # noqa: E402
from engine.model import Procedure  # noqa: E402
from engine.stats import kind, report  # noqa: E402
from renderers.stats import sections  # noqa: E402

NOW = dt.datetime(2026, 6, 1)
PERIOD = dt.timedelta(days=480)  # 16 months
MEAN_STAY_HOURS = 48
MAX_TRANSITIONS = 12
BATCH = 20_000


# --- the history ----------------------------------------------------------------------------

def walk(procedure: Procedure, opened: dt.datetime, rng: random.Random
         ) -> list[tuple[str, str | None, str, dt.datetime]]:
    """(trigger, from, to, at) of one case: @start, then transitions until final or now."""
    state = procedure.initial_state.id
    steps: list[tuple[str, str | None, str, dt.datetime]] = [("@start", None, state, opened)]
    moment = opened
    for _ in range(MAX_TRANSITIONS):
        choices = list(procedure.transitions_from(state))
        moment += dt.timedelta(hours=rng.expovariate(1 / MEAN_STAY_HOURS))
        if not choices or moment >= NOW or procedure.states[state].final:
            break
        transition = rng.choice(choices)
        steps.append((transition.trigger, state, transition.target, moment))
        state = transition.target
    return steps


def padded(steps: list[tuple[str, str | None, str, dt.datetime]], extra: int, rng: random.Random
           ) -> list[tuple[str, str | None, str, dt.datetime]]:
    """`extra` rows that change no state (attachments) slipped in after random steps."""
    rows = list(steps)
    for _ in range(extra):
        i = rng.randrange(len(rows))
        trigger, _, state, at = rows[i]
        rows.insert(i + 1, ("@attach", state, state, at + dt.timedelta(seconds=1)))
    return rows


def dimensions(procedure: Procedure, rng: random.Random) -> dict[str, Any]:
    data = {}
    for dimension in procedure.reporting:
        field = procedure.field(dimension.field_id)
        if field is not None and field.options:
            data[field.id] = rng.choice(field.options).value
        elif field is not None:
            data[field.id] = rng.choice(["TG", "BJ", "GH"])
    return data


def generate(procedures: list[Procedure], cases: int, rows: int, seed: int = 13
             ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]]:
    """(case row, its history rows, its payment or None), case ids from 1."""
    rng = random.Random(seed)
    per_case, remainder = divmod(rows, cases)
    for case_id in range(1, cases + 1):
        procedure = procedures[case_id % len(procedures)]
        opened = NOW - PERIOD + dt.timedelta(seconds=rng.randrange(int(PERIOD.total_seconds())))
        steps = walk(procedure, opened, rng)
        want = per_case + (1 if case_id <= remainder else 0)
        steps = padded(steps, max(0, want - len(steps)), rng)
        last = steps[-1]
        outcome = procedure.states[last[2]].outcome
        yield ({"id": case_id, "reference": f"B-{case_id:08d}", "procedure_id": procedure.id,
                "procedure_hash": procedure.hash, "state": last[2], "outcome": outcome,
                "applicant_id": f"citizen-{case_id}", "parent_reference": None, "parties": {},
                "data": dimensions(procedure, rng), "documents": [], "actors": {},
                "fees_paid": 0, "version": len(steps), "created_at": opened,
                "updated_at": last[3], "state_entered_at": last[3]},
               [{"case_id": case_id, "sequence": i + 1, "trigger": trigger,
                 "from_state": source, "to_state": target, "actor_id": "bench",
                 "actor_role": "agent", "for_party": None, "payload": {}, "at": at}
                for i, (trigger, source, target, at) in enumerate(steps)],
               {"case_id": case_id, "amount": 5000, "provider": "bench",
                "provider_reference": f"P-{case_id}", "method": rng.choice(["tmoney", "flooz"]),
                "actor_id": "bench", "at": opened} if case_id % 3 == 0 else None)


def fill(url: str, procedures: list[Procedure], cases: int, rows: int) -> float:
    """Write the history (the Engine creates the tables first); returns seconds taken."""
    Engine(procedures, url, clock=FakeClock(NOW - PERIOD)).close()
    database = db.connect(url)
    started = time.perf_counter()
    batch: dict[str, list[dict[str, Any]]] = {"cases": [], "history": [], "payments": []}

    def flush() -> None:
        with database.begin() as c:
            for name, table in (("cases", db.cases_t), ("history", db.history_t),
                                ("payments", db.payments_t)):
                if batch[name]:
                    c.execute(insert(table), batch[name])
                batch[name] = []

    for case, history, payment in generate(procedures, cases, rows):
        batch["cases"].append(case)
        batch["history"].extend(history)
        if payment:
            batch["payments"].append(payment)
        if len(batch["history"]) >= BATCH:
            flush()
    flush()
    with database.begin() as c:
        if database.dialect.name == "postgresql":
            c.exec_driver_sql("SELECT setval(pg_get_serial_sequence('cases', 'id'), "
                              "(SELECT max(id) FROM cases))")
            c.exec_driver_sql("ANALYZE")
        else:
            c.exec_driver_sql("ANALYZE")
    database.dispose()
    if url.startswith("sqlite:///"):  # as a database that has been running: not all in WAL
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


# --- the floor: the same aggregates as bare SQL --------------------------------------------------

def floor_queries(dialect: str) -> list[str]:
    epoch = ("CAST(strftime('%s', {0}) AS INTEGER)" if dialect == "sqlite"
             else "CAST(FLOOR(EXTRACT(EPOCH FROM {0})) AS BIGINT)")
    at = epoch.format("h.at")
    per_case = (
        "WITH stays AS (SELECT h.case_id, h.to_state AS state, " + at + " AS entered, "
        "LEAD(" + at + ") OVER (PARTITION BY h.case_id ORDER BY h.sequence) AS left_at "
        "FROM history h WHERE h.from_state IS NULL OR h.from_state <> h.to_state)")
    times = per_case + (
        ", per_case AS (SELECT c.procedure_id, c.outcome, k2.target, "
        "MIN(CASE WHEN k.kind = 'initial' THEN s.left_at END) AS started, "
        "MIN(CASE WHEN k.kind = 'final' THEN s.entered END) AS stopped, "
        "SUM(CASE WHEN k.kind = 'work' THEN s.left_at - s.entered ELSE 0 END) AS admin "
        "FROM stays s JOIN cases c ON c.id = s.case_id JOIN bench_kinds k ON "
        "k.procedure_hash = c.procedure_hash AND k.state = s.state JOIN bench_targets k2 ON "
        "k2.procedure_hash = c.procedure_hash GROUP BY c.id, c.procedure_id, c.outcome, "
        "k2.target), timed AS (SELECT p.*, stopped - started AS total, ROW_NUMBER() OVER "
        "(PARTITION BY procedure_id ORDER BY admin) AS ra, ROW_NUMBER() OVER (PARTITION BY "
        "procedure_id ORDER BY stopped - started) AS rt, COUNT(*) OVER (PARTITION BY "
        "procedure_id) AS n FROM per_case p WHERE outcome IN ('accepted', 'rejected') AND "
        "started IS NOT NULL) SELECT procedure_id, "
        + ", ".join(f"MAX(CASE WHEN {r} = ({p} * n + 99) / 100 THEN {v} END)"
                    for v, r in (("admin", "ra"), ("total", "rt")) for p in (50, 90, 99))
        + ", SUM(CASE WHEN admin <= target THEN 1 ELSE 0 END) FROM timed GROUP BY procedure_id")
    stays = per_case + (
        ", spent AS (SELECT c.procedure_id, s.state, s.left_at - s.entered AS d, ROW_NUMBER() "
        "OVER (PARTITION BY c.procedure_id, s.state ORDER BY s.left_at - s.entered) AS r, "
        "COUNT(*) OVER (PARTITION BY c.procedure_id, s.state) AS n FROM stays s JOIN cases c "
        "ON c.id = s.case_id WHERE s.left_at IS NOT NULL) SELECT procedure_id, state, MAX(n), "
        + ", ".join(f"MAX(CASE WHEN r = ({p} * n + 99) / 100 THEN d END)" for p in (50, 90, 99))
        + " FROM spent GROUP BY procedure_id, state")
    return ["SELECT procedure_id, outcome, COUNT(*) FROM cases GROUP BY procedure_id, outcome",
            times, stays,
            "SELECT method, COUNT(*), SUM(amount) FROM payments GROUP BY method"]


def floor(url: str, procedures: list[Procedure]) -> Callable[[], int]:
    """A function running the floor's queries on one driver connection (rows read)."""
    database = db.connect(url)
    raw = database.raw_connection()
    cursor = raw.cursor()
    for name in ("bench_kinds", "bench_targets"):
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute("CREATE TABLE bench_kinds (procedure_hash VARCHAR(64), state VARCHAR(64), "
                   "kind VARCHAR(16), PRIMARY KEY (procedure_hash, state))")
    cursor.execute("CREATE TABLE bench_targets (procedure_hash VARCHAR(64) PRIMARY KEY, "
                   "target BIGINT)")
    mark = "?" if database.dialect.name == "sqlite" else "%s"
    for p in procedures:
        target = p.processing_time.approximate().total_seconds() if p.processing_time else None
        cursor.execute(f"INSERT INTO bench_targets VALUES ({mark}, {mark})", (p.hash, target))
        for s in p.states.values():
            cursor.execute(f"INSERT INTO bench_kinds VALUES ({mark}, {mark}, {mark})",
                           (p.hash, s.id, kind(s)))
    raw.commit()
    queries = floor_queries(database.dialect.name)

    def run() -> int:
        read = 0
        for query in queries:
            cursor.execute(query)
            read += len(cursor.fetchall())
        raw.rollback()
        return read
    run.close = lambda: (raw.close(), database.dispose())  # type: ignore[attr-defined]
    return run


# --- timing ---------------------------------------------------------------------------------------

def best(function: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(url: str, label: str, args: argparse.Namespace) -> dict[str, Any]:
    procedures = [load_procedure(p) for p in procedure_files([ROOT / "procedures"])]
    filled = fill(url, procedures, args.cases, args.rows)
    engine = Engine(procedures, url, clock=FakeClock(NOW))
    try:
        def the_report() -> None:
            sections(report(engine), engine.procedures)
        report_s = best(the_report, args.repeat)
        run_floor = floor(url, procedures)
        try:
            floor_s = best(run_floor, args.repeat)
        finally:
            run_floor.close()  # type: ignore[attr-defined]
    finally:
        engine.close()
    return {"database": label, "cases": args.cases, "history_rows": args.rows,
            "fill_s": round(filled, 1), "report_s": round(report_s, 3),
            "floor_s": round(floor_s, 3), "ratio": round(report_s / floor_s, 2)}


@contextmanager
def own_schema(url: str) -> Iterator[str]:
    """`url` with its connections in a schema of this run's own (dropped at the end), so
    that nothing else on the server is touched."""
    schema = f"guichet_bench_stats_{os.getpid()}"
    admin = create_engine(url)
    try:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}
                                              ).render_as_string(hide_password=False)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cases", type=int, default=150_000)
    parser.add_argument("--quick", action="store_true", help="50,000 rows over 7,500 cases")
    parser.add_argument("--db", default=os.environ.get("GUICHET_BENCH_DATABASE_URL"),
                        help="also on this PostgreSQL database [$GUICHET_BENCH_DATABASE_URL]")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.cases = 50_000, 7_500
    results = []
    with tempfile.TemporaryDirectory() as directory:
        results.append(measure(f"sqlite:///{directory}/stats.db", "sqlite", args))
    if args.db:
        with own_schema(args.db) as url:
            results.append(measure(url, "postgresql", args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'database':<11}{'cases':>9}{'rows':>11}{'fill s':>9}{'report s':>10}"
          f"{'floor s':>9}{'ratio':>7}")
    for r in results:
        print(f"{r['database']:<11}{r['cases']:>9,}{r['history_rows']:>11,}{r['fill_s']:>9}"
              f"{r['report_s']:>10}{r['floor_s']:>9}{r['ratio']:>7}")


if __name__ == "__main__":
    main()
