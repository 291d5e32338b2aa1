"""`guichet worker` (issue 13, point 1): several workers share the timers of one PostgreSQL
database (each fires once or is cancelled, never for a case that left its stay), a worker
stops gracefully on SIGTERM, a killed one loses nothing, SQLite takes one worker at a time,
and every log line is JSON.

The workers run as real processes: `guichet worker` itself (subprocess) where the command is
under test, or a child running `Worker` where a test must catch it in the middle of a claim
(its claim is wrapped to say so, then to wait for the signal or the kill). Timers are made
due by starting the cases on a clock two days back: the workers run on the real clock.
Everything is checked from the timer, history and outbox rows, not from the logs.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from conftest import drop_guichet_tables
from helpers import PATIENCE, ROOT

from engine import Actor, Blocked, ConcurrentUpdate, Engine
from engine.clock import FakeClock, utc_now
from engine.worker import Worker, exclusive_lock

FORKSERVER = mp.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["helpers"])
APPLICANT = Actor("citizen-1", ["applicant"])
AGENT = Actor("agent-1", ["agent"])
CASES = 500  # each with a due deadline and a due reminder: 1,000 due timers
WORKERS = 3

WAITING = """\
id: waiting
version: "2026.1"
title: {fr: Attente d'une réponse, en: Waiting for an answer}
authority:
  ministry: {fr: Ministère des essais, en: Ministry of tests}
processing_time: 10 days
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Agent}}
  system: {label: {fr: Système, en: System}}
start:
  roles: [applicant]
states:
  waiting:
    label: {fr: En attente, en: Waiting}
    initial: true
    deadlines:
      - {after: "1 day", trigger: expire, remind_before: "12 hours"}
  answered: {label: {fr: Répondu, en: Answered}}
  expired: {label: {fr: Expiré, en: Expired}, final: expired}
transitions:
  - {trigger: answer, label: {fr: Répondre, en: Answer}, from: waiting, to: answered,
     roles: [applicant]}
  - {trigger: ask_again, label: {fr: Redemander, en: Ask again}, from: answered, to: waiting,
     roles: [agent]}
  - {trigger: expire, label: {fr: Expirer, en: Expire}, from: waiting, to: expired,
     roles: [system]}
"""


# --- fixtures and helpers of the parent ---------------------------------------------------------

@pytest.fixture
def procedure(tmp_path: Path) -> Path:
    """A procedure whose one waiting state has a deadline (1 day) and its reminder."""
    path = tmp_path / "waiting.yaml"
    path.write_text(WAITING, encoding="utf-8")
    return path


@pytest.fixture
def pg_url(postgresql_url: str) -> Iterator[str]:
    """This session's PostgreSQL schema, without Guichet tables before and after the test."""
    drop_guichet_tables(postgresql_url)
    yield postgresql_url
    drop_guichet_tables(postgresql_url)


def seed(url: str, procedure: Path, cases: int, *, reminders: bool = True) -> list[str]:
    """Start `cases` cases two days back: each has a due deadline (and a due reminder)."""
    engine = Engine(procedure, url, clock=FakeClock(utc_now() - dt.timedelta(days=2)))
    try:
        references = [engine.start("waiting", APPLICANT).reference for _ in range(cases)]
    finally:
        engine.close()
    if not reminders:
        query(url, "UPDATE timers SET status = 'cancelled' WHERE kind = 'reminder'")
    return references


def query(url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of one SQL statement, in its own transaction."""
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.begin() as c:
            result = c.execute(sqlalchemy.text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        raw.dispose()


def due_pending(url: str) -> int:
    now = utc_now()
    return int(query(url, "SELECT count(*) FROM timers WHERE status = 'pending' "
                          "AND due_at <= :now", now=now)[0][0])


def guichet(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`guichet ARGS` as a separate process, its stderr written to `log` (a pipe nobody
    reads while it runs would fill up and stop it)."""
    command = [sys.executable, "-c", "from cli import main; main()", *args]
    with open(log, "wb") as stderr:
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def finish(process: subprocess.Popen[bytes], log: Path) -> tuple[int, str]:
    """Wait for a `guichet` process: its exit status and what it wrote on stderr."""
    return process.wait(PATIENCE), log.read_text(encoding="utf-8")


def log_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line a worker wrote on stderr, each of which must be a JSON object."""
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# --- what the children run ----------------------------------------------------------------------

def answer_and_ask_again(url: str, procedure: str, references: list[str], go: Any,
                         results: Any) -> None:
    """The fourth process: answer each case (it leaves `waiting`, cancelling its timers) and
    ask again for half of them (a new stay, new timers not due), racing the workers."""
    error = None
    try:
        engine = Engine(procedure, url)
        go.wait()
        order = random.Random(os.getpid())
        for reference in order.sample(references, len(references)):
            try:
                engine.fire(reference, "answer", APPLICANT)
                if order.random() < 0.5:
                    engine.fire(reference, "ask_again", AGENT)
            except (Blocked, ConcurrentUpdate):
                continue  # a worker expired it first (Blocked: not in `waiting` any more)
        engine.close()
    except BaseException as exc:  # everything goes back to the parent
        error = f"{type(exc).__name__}: {exc}"
    results.put(error)


def worker_caught_in_claim(url: str, procedure: str, claimed: Any, then: str) -> None:
    """A worker whose first claim says so, then waits: for SIGTERM (`then="signal"`: it
    must finish that timer, then stop) or for SIGKILL (`then="kill"`)."""
    from engine.worker import stop_on_signals

    engine = Engine(procedure, url)
    stop = threading.Event()
    stop_on_signals(stop)

    def caught(claim: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            got = claim(*args)  # the timer (and its case) are held from here on
            claimed.set()
            if then == "signal":
                stop.wait(PATIENCE)
            else:
                time.sleep(PATIENCE)
            return got

        return wrapped

    # the claim, in the transaction that fires the timer (FOR UPDATE SKIP LOCKED on
    # PostgreSQL, inside BEGIN IMMEDIATE on SQLite)
    engine._store.claim_timer = caught(engine._store.claim_timer)  # type: ignore[method-assign]
    Worker(engine, interval=0.05, log=lambda line: None).run(stop)
    engine.close()


# --- tests --------------------------------------------------------------------------------------

def test_three_workers_fire_each_timer_once_while_a_fourth_process_moves_the_cases(
        pg_url: str, procedure: Path, tmp_path: Path) -> None:
    """3 `guichet worker` processes on 1,000 due timers (500 deadlines, 500 reminders) while
    a fourth process answers the cases (leaving `waiting`) and asks again for half of them:
    every due timer ends fired or cancelled, each fired one is in the record exactly once,
    and none fired for a case that had left the stay that scheduled it."""
    references = seed(pg_url, procedure, CASES)
    go, results = FORKSERVER.Event(), FORKSERVER.Queue()
    mover = FORKSERVER.Process(target=answer_and_ask_again,
                               args=(pg_url, str(procedure), references, go, results))
    mover.start()
    logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
    workers = [guichet(log, "worker", "--db", pg_url, "--procedures", str(procedure),
                       "--interval", "0.05", "--batch", "50") for log in logs]
    try:  # the fourth process sets off once the workers are at work
        until(lambda: query(pg_url, "SELECT count(*) FROM timers WHERE status = 'fired'")
              != [(0,)], "a first timer fired")
        go.set()
        assert results.get(timeout=PATIENCE) is None
        mover.join(PATIENCE)
        until(lambda: due_pending(pg_url) == 0, "the workers to run every due timer")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        outputs = [finish(w, log) for w, log in zip(workers, logs, strict=True)]
    assert [status for status, _ in outputs] == [0] * WORKERS, outputs
    lines = [line for _, err in outputs for line in log_lines(err)]
    assert {line["action"] for line in lines} >= {"start", "fire", "remind", "health", "stop"}
    assert len({line["worker"] for line in lines}) == WORKERS

    timers = query(pg_url, "SELECT t.id, t.case_id, t.kind, t.status, t.state_entered_at "
                           "FROM timers t WHERE t.due_at <= :now", now=utc_now())
    assert len(timers) == 2 * CASES  # the new stays' timers are not due
    assert {status for *_, status, _ in timers} <= {"fired", "cancelled"}
    fired = [t for t in timers if t[3] == "fired"]
    # a fired deadline is exactly one `expire` step, taken from the stay that scheduled it
    expires = query(pg_url, "SELECT e.case_id, p.at FROM history e JOIN history p "
                            "ON p.case_id = e.case_id AND p.sequence = e.sequence - 1 "
                            "WHERE e.trigger = 'expire'")
    deadlines = [(case_id, entered) for _, case_id, kind, _, entered in fired
                 if kind == "deadline"]
    assert sorted(expires) == sorted(deadlines)
    # a fired reminder is exactly one reminder in the outbox
    reminded = sorted(case_id for _, case_id, kind, *_ in fired if kind == "reminder")
    sent = query(pg_url, "SELECT case_id FROM outbox WHERE event = 'reminder'")
    assert sorted(case_id for (case_id,) in sent) == reminded
    # and no case went on after it expired, nor expired outside `waiting`
    assert query(pg_url, "SELECT count(*) FROM history WHERE trigger = 'expire' "
                         "AND from_state <> 'waiting'") == [(0,)]
    assert query(pg_url, "SELECT count(*) FROM history h JOIN history e ON "
                         "e.case_id = h.case_id AND e.trigger = 'expire' "
                         "WHERE h.sequence > e.sequence") == [(0,)]


def test_sigterm_finishes_the_timer_in_progress_and_exits_0(database_url: str,
                                                            procedure: Path) -> None:
    seed(database_url, procedure, 3, reminders=False)
    claimed = FORKSERVER.Event()
    child = FORKSERVER.Process(target=worker_caught_in_claim,
                               args=(database_url, str(procedure), claimed, "signal"))
    child.start()
    try:
        assert claimed.wait(PATIENCE)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGTERM)  # while it holds its first timer's claim
        child.join(PATIENCE)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    # the timer it was firing is fired, and recorded; it took no other one after the signal
    statuses = sorted(s for (s,) in query(database_url, "SELECT status FROM timers "
                                                        "WHERE kind = 'deadline'"))
    assert statuses == ["fired", "pending", "pending"]
    assert query(database_url, "SELECT count(*) FROM history "
                               "WHERE trigger = 'expire'") == [(1,)]


def test_a_worker_killed_in_the_middle_of_a_claim_loses_nothing(database_url: str,
                                                               procedure: Path) -> None:
    references = seed(database_url, procedure, 3, reminders=False)
    claimed = FORKSERVER.Event()
    child = FORKSERVER.Process(target=worker_caught_in_claim,
                               args=(database_url, str(procedure), claimed, "kill"))
    child.start()
    try:
        assert claimed.wait(PATIENCE)
    finally:
        child.kill()  # SIGKILL: its transaction (and, on SQLite, its worker lock) dies
        child.join(PATIENCE)
    assert query(database_url, "SELECT count(*) FROM timers WHERE status = 'fired'") == [(0,)]
    engine = Engine(procedure, database_url)
    try:
        worker = Worker(engine, log=lambda line: None)

        def another_round() -> bool:  # PostgreSQL frees a dead session's locks once it
            worker.run_once()         # sees its connection closed: a round may skip it
            return due_pending(database_url) == 0

        until(another_round, "another worker to fire the killed worker's timer")
    finally:
        engine.close()
    assert query(database_url, "SELECT status, count(*) FROM timers WHERE kind = 'deadline' "
                               "GROUP BY status") == [("fired", len(references))]
    expired = query(database_url, "SELECT c.reference FROM history h JOIN cases c "
                                  "ON c.id = h.case_id WHERE h.trigger = 'expire'")
    assert sorted(r for (r,) in expired) == sorted(references)


def test_sqlite_takes_one_worker_at_a_time(sqlite_url: str, procedure: Path,
                                           tmp_path: Path) -> None:
    seed(sqlite_url, procedure, 2)
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    with exclusive_lock(Path(f"{database}-worker.lock")):  # as a running worker holds it
        status, err = finish(guichet(tmp_path / "refused.log", "worker", "--once", "--db",
                                     sqlite_url, "--procedures", str(procedure)),
                             tmp_path / "refused.log")
    assert status == 1
    assert len(err.splitlines()) == 1
    assert err.startswith("error: another worker is running on this SQLite database")
    assert due_pending(sqlite_url) == 4  # it touched nothing
    engine = Engine(procedure, sqlite_url)
    try:  # once the lock is free, a worker runs
        assert Worker(engine, log=lambda line: None).run_once().fired == 2
    finally:
        engine.close()


def test_each_action_is_one_json_line_and_a_health_line_ends_the_round(
        sqlite_url: str, procedure: Path, tmp_path: Path) -> None:
    references = seed(sqlite_url, procedure, 3)
    log = tmp_path / "worker.log"
    status, err = finish(guichet(log, "worker", "--once", "--db", sqlite_url,
                                 "--procedures", str(procedure)), log)
    assert status == 0, err
    lines = log_lines(err)
    for line in lines:
        assert {"time", "worker", "action"} <= set(line)
        dt.datetime.fromisoformat(line["time"])
    timers = [line for line in lines if line["action"] in ("fire", "remind")]
    assert sorted(line["reference"] for line in timers) == sorted(2 * references)
    assert all({"timer", "trigger", "result"} <= set(line) for line in timers)
    fired = query(sqlite_url, "SELECT id FROM timers WHERE status = 'fired'")
    assert sorted(line["timer"] for line in timers) == sorted(i for (i,) in fired)
    [health] = [line for line in lines if line["action"] == "health"]
    assert (health["rounds"], health["fired"], health["reminded"], health["errors"]) == (
        1, len(references), len(references), 0)
    assert health["lag_seconds"] == 0  # nothing is due any more


def test_timers_that_keep_failing_rest_and_do_not_hold_back_the_others(
        sqlite_url: str, procedure: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two cases whose timers fail unexpectedly (a rendering bug, say) fill a batch of 2: the
    third case's timers still fire, and the failing ones are not retried at every round."""
    references = seed(sqlite_url, procedure, 3)
    engine = Engine(procedure, sqlite_url)
    broken = set(references[:2])
    real = engine.run_timer

    def run_timer(timer: Any, now: Any = None) -> str:
        if timer["reference"] in broken:
            raise KeyError("boom")
        return real(timer, now)

    monkeypatch.setattr(engine, "run_timer", run_timer)
    worker = Worker(engine, interval=0, batch=2, log=lambda line: None)
    try:
        for _ in range(5):
            worker.run_once()
    finally:
        engine.close()
    pending = query(sqlite_url, "SELECT c.reference, t.status FROM timers t JOIN cases c "
                                "ON c.id = t.case_id WHERE t.status = 'pending'")
    assert sorted(r for r, _ in pending) == sorted(2 * references[:2])  # the third's fired
    assert worker.health.errors == 4  # each failing timer tried once: resting since


def test_a_worker_leaves_fresh_outbox_rows_to_their_writer(database_url: str,
                                                           procedure: Path) -> None:
    """A row written a moment ago is being delivered by the process that wrote it: a
    worker's replay leaves it; once older than the grace period, a worker delivers it."""
    clock = FakeClock(utc_now())
    web = Engine(procedure, database_url, clock=clock)
    worker_engine = Engine(procedure, database_url, clock=clock)
    calls = {"web": 0, "worker": 0}
    web.on("case_started", lambda event: calls.__setitem__("web", calls["web"] + 1))
    worker_engine.on("case_started",
                     lambda event: calls.__setitem__("worker", calls["worker"] + 1))
    try:
        web.start("waiting", APPLICANT)
        worker = Worker(worker_engine, log=lambda line: None)
        worker.run_once()
        assert calls == {"web": 1, "worker": 0}
        clock.advance(dt.timedelta(minutes=2))  # the writer died before marking it
        worker.run_once()
        assert calls == {"web": 1, "worker": 1}
        worker.run_once()  # marked: not again
        assert calls == {"web": 1, "worker": 1}
    finally:
        web.close()
        worker_engine.close()


def test_a_signal_arriving_while_the_worker_waits_stops_it() -> None:
    """The signal handler runs in the main thread, which may hold the stop event's internal
    lock at that moment (inside `stop.wait`): setting the event there would wait for itself
    forever (a worker that ignored SIGTERM). Here the lock is held when the signal comes."""
    code = (
        "import signal, threading\n"
        "from engine.worker import stop_on_signals\n"
        "stop = threading.Event()\n"
        "stop_on_signals(stop)\n"
        "with stop._cond:  # as inside stop.wait()\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "assert stop.wait(10), 'not stopped'\n"
        "print('stopped')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr
