"""Several processes on one case, and a process killed while it writes.

Each child process has its own Engine on the same database (an SQLite file, or PostgreSQL),
like the workers of a real deployment. The functions the children run are in helpers.py.
The four workers on one case are started with `spawn`: fresh interpreters. The many
short-lived children of the kill and startup tests come from a `forkserver` that imported
the engine once (fresh processes too, forked from a clean server, not from pytest), to keep
the suite fast.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from helpers import (
    APPLICANT,
    PATIENCE,
    PROCEDURES,
    START,
    MakeEngine,
    assert_consistent,
    build_engine,
    fire_until_killed,
    passport_under_review,
    toggle_worker,
)

from engine import Engine, load_procedure, references
from engine.blobs import MemoryBlobStore
from engine.compiler import canonical_json
from engine.values import SYSTEM

SPAWN = mp.get_context("spawn")
FORKSERVER = mp.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["helpers"])
WORKERS = 4
FIRES_PER_WORKER = 12
KILLS = 5


# --- helpers of the parent ----------------------------------------------------------------------

def join_all(processes: list[Any]) -> None:
    deadline = time.monotonic() + PATIENCE
    for p in processes:
        p.join(max(0.1, deadline - time.monotonic()))
    stuck = [p for p in processes if p.is_alive()]
    for p in stuck:
        p.kill()
        p.join()
    assert not stuck, "a child process did not finish"


def count(url: str, sql: str, **params: Any) -> int:
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.connect() as c:
            return int(c.execute(sqlalchemy.text(sql), params).scalar_one())
    finally:
        raw.dispose()


def assert_whole(engine: Engine, url: str, reference: str) -> None:
    """No half-written change: the case, its history, outbox and timers agree."""
    case = engine.case(reference, SYSTEM)
    history = engine.history(reference, SYSTEM)
    assert_consistent(case, history)
    case_id = "(SELECT id FROM cases WHERE reference = :r)"
    # every change writes exactly one outbox row in the same transaction as its history row
    assert count(url, f"SELECT count(*) FROM outbox WHERE case_id = {case_id}",
                 r=reference) == len(history)
    # the only pending timers are those of the state the case is in
    assert count(url, f"SELECT count(*) FROM timers WHERE case_id = {case_id} "
                      "AND status = 'pending' AND state <> :s", r=reference, s=case.state) == 0
    expected = 2 if case.state == "info_requested" else 0  # its deadline and reminder
    assert len(engine.timers(reference)) == expected


def waiting_backends(url: str, application_name: str) -> int:
    """How many connections named `application_name` wait for a lock now.

    Asked in a fresh transaction each time: pg_stat_activity is a snapshot per transaction.
    """
    return count(url, "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a "
                      "ON a.pid = l.pid WHERE NOT l.granted AND a.application_name = :n",
                 n=application_name)


def named(url: str) -> tuple[str, str]:
    """`url` whose connections carry a unique application_name (to spot them in pg_locks)."""
    name = f"guichet-test-{uuid.uuid4().hex[:12]}"
    if not url.startswith("postgresql"):
        return url, name
    named_url = sqlalchemy.engine.make_url(url).update_query_dict({"application_name": name})
    return str(named_url.render_as_string(hide_password=False)), name


def until_blocked(url: str, name: str, waiters: int, running: Callable[[], bool]) -> None:
    """Return once `waiters` connections named `name` wait for a lock (or none runs).

    On SQLite there is no lock table to look at; a short pause lets the other side queue for
    the write lock (the outcome asserted is the same whether it queued or not).
    """
    if not url.startswith("postgresql"):
        time.sleep(0.2)
        return
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and running():
        if waiting_backends(url, name) >= waiters:
            return
        time.sleep(0.02)


def behind(other: Any, url: str, name: str, work: Callable[[], Any]) -> list[Any]:
    """Run `work` while `other` holds an uncommitted write, commit it once `work` waits on
    it, and return what `work` gave (or its error's text)."""
    thread, outcome = in_thread(work)
    try:
        until_blocked(url, name, 1, thread.is_alive)
    finally:
        other.commit()
        other.close()
        other.engine.dispose()
    thread.join(PATIENCE)
    return outcome


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `work` in a thread; its result, or the error's text, ends up in the list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:
            outcome.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def start_engine(url: str, source: Path) -> Engine:
    """Engine(source, url), closing its connections even when starting fails half-way."""
    engine = Engine.__new__(Engine)
    try:
        engine.__init__(source, url, blobs=MemoryBlobStore())  # type: ignore[misc]
    except BaseException:
        if hasattr(engine, "_store"):  # Engine() does not dispose its pool when it fails
            engine.close()
        raise
    return engine


# --- tests --------------------------------------------------------------------------------------

def test_four_processes_on_one_case_lose_and_duplicate_nothing(make_engine: MakeEngine,
                                                               database_url: str) -> None:
    setup = make_engine(database_url)  # creates the schema before the children arrive
    ref = passport_under_review(setup).reference
    before = setup.case(ref, SYSTEM).version
    startup, go, results = SPAWN.Lock(), SPAWN.Barrier(WORKERS), SPAWN.Queue()
    workers = [SPAWN.Process(target=toggle_worker, args=(database_url, ref, FIRES_PER_WORKER,
                                                  i % 2 == 0, startup, go, results))
               for i in range(WORKERS)]
    for w in workers:
        w.start()
    reports = [results.get(timeout=PATIENCE) for _ in workers]
    join_all(workers)

    assert [error for *_, error in reports if error] == []
    successes = sum(done for _, done, _, _ in reports)
    assert successes == WORKERS * FIRES_PER_WORKER

    fresh = make_engine(database_url)
    case = fresh.case(ref, SYSTEM)
    history = fresh.history(ref, SYSTEM)
    assert_consistent(case, history)  # sequences 1..N, chained, version == N
    fired = history[before:]
    assert len(fired) == successes
    assert [h.trigger for h in fired] == ["request_information", "provide_information"] * (
        successes // 2)
    assert len({h.sequence for h in history}) == len(history)
    assert case.state == "under_review"  # an even number of toggles
    assert_whole(fresh, database_url, ref)


def test_a_process_killed_while_firing_leaves_no_half_written_transition(
        make_engine: MakeEngine, database_url: str) -> None:
    setup = make_engine(database_url)
    ref = passport_under_review(setup).reference
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    lengths = [setup.case(ref, SYSTEM).version]
    for _ in range(KILLS):
        running = FORKSERVER.Event()
        child = FORKSERVER.Process(target=fire_until_killed, args=(database_url, ref, running))
        child.start()
        started = running.wait(PATIENCE)
        if started:
            time.sleep(rng.uniform(0, 0.15))  # a random moment of its loop
        child.kill()  # SIGKILL: no cleanup, no rollback by the client
        child.join()
        assert started, "the child never fired"
        assert child.exitcode == -signal.SIGKILL

        fresh = make_engine(database_url)  # as after a restart
        assert_whole(fresh, database_url, ref)
        lengths.append(len(fresh.history(ref, SYSTEM)))
        fresh.close()
    # each child fired at least once before it was killed, and that committed step stayed
    assert all(later > earlier for earlier, later in zip(lengths, lengths[1:], strict=False)), (
        seed, lengths)


@pytest.mark.parametrize("database_url", [
    "sqlite",
    "postgresql",
], indirect=True)
def test_engines_start_concurrently(database_url: str, make_engine: MakeEngine) -> None:
    """Several workers starting at once on one database must all come up.

    On PostgreSQL the tables already exist (a restart), and the parent holds a lock on
    `history` until every child is waiting, so their startups overlap for certain.
    """
    url, name = named(database_url)
    holder = None
    if database_url.startswith("postgresql"):
        make_engine(database_url)  # an existing database
        holder = sqlalchemy.create_engine(database_url).connect()
        holder.exec_driver_sql("LOCK TABLE history IN ACCESS EXCLUSIVE MODE")
    go, results = FORKSERVER.Barrier(WORKERS), FORKSERVER.Queue()
    children = [FORKSERVER.Process(target=build_engine, args=(url, go, results))
                for _ in range(WORKERS)]
    try:
        for c in children:
            c.start()
        if holder is not None:
            until_blocked(database_url, name, WORKERS,
                          lambda: any(c.is_alive() for c in children))
    finally:
        if holder is not None:
            holder.rollback()  # release the lock
            holder.close()
            holder.engine.dispose()
    outcomes = [results.get(timeout=PATIENCE) for _ in children]
    join_all(children)
    assert outcomes == ["ok"] * WORKERS
    assert count(database_url, "SELECT count(*) FROM procedure_versions "
                               "WHERE procedure_id = 'passport'") == 1



@pytest.mark.parametrize("database_url", [
    "sqlite",
    "postgresql",
], indirect=True)
def test_the_first_cases_of_a_year_started_together_get_distinct_numbers(
        make_engine: MakeEngine, database_url: str) -> None:
    url, name = named(database_url)
    engine = make_engine(url)
    # another worker is opening the first passport case of 2026: its counter row is written
    # but not committed yet
    other = sqlalchemy.create_engine(database_url).connect()
    other.execute(sqlalchemy.text("INSERT INTO counters (key, value) VALUES ('PAS-2026', 1)"))
    outcome = behind(other, database_url, name,
                     lambda: engine.start("passport", APPLICANT, {}).reference)
    # number 2 has no check character (skipped): the next case is number 3
    assert outcome == [references.make("PAS", 2026, 3)]


@pytest.mark.parametrize("database_url", [
    "sqlite",
    "postgresql",
], indirect=True)
def test_workers_registering_a_new_procedure_version_together_all_start(
        make_engine: MakeEngine, database_url: str, tmp_path: Path) -> None:
    make_engine(database_url)  # the database exists, with the shipped versions
    source = tmp_path / "criminal_record.yaml"
    shutil.copy(PROCEDURES / "criminal_record.yaml", source)
    text = source.read_text(encoding="utf-8")
    source.write_text(text.replace('version: "2026.1"', 'version: "2026.2"', 1),
                      encoding="utf-8")
    new = load_procedure(source)
    url, name = named(database_url)
    # another worker is registering the same new version: inserted, not committed yet
    other = sqlalchemy.create_engine(database_url).connect()
    other.execute(sqlalchemy.text(
        "INSERT INTO procedure_versions (hash, procedure_id, version, definition, created_at) "
        "VALUES (:h, :p, :v, :d, :t)"),
        {"h": new.hash, "p": new.id, "v": new.version, "d": canonical_json(new.definition),
         "t": START})
    outcome = behind(other, database_url, name, lambda: start_engine(url, source))
    assert len(outcome) == 1 and isinstance(outcome[0], Engine), outcome
    started: Engine = outcome[0]
    started.close()
    assert started.procedures["criminal_record"].hash == new.hash
    assert count(database_url, "SELECT count(*) FROM procedure_versions WHERE hash = :h",
                 h=new.hash) == 1
