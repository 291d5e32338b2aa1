"""Deadlines fire once, on time, and only for the stay in a state that scheduled them (7.2)."""

from __future__ import annotations

import collections
import datetime as dt
import multiprocessing as mp
from typing import Any

import pytest
import sqlalchemy
from helpers import (
    AGENT,
    APPLICANT,
    PATIENCE,
    FakeClock,
    MakeEngine,
    passport_data,
    passport_under_review,
    tick_until_idle,
)

from engine import Engine
from engine.values import SYSTEM

DAY = dt.timedelta(days=1)
FORKSERVER = mp.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["helpers"])


def ask_for_information(engine: Engine, reference: str) -> None:
    engine.fire(reference, "request_information", AGENT, {"message": "Photo floue, merci."})


def test_a_timer_cancelled_after_it_was_read_never_fires(engine: Engine, clock: FakeClock,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The case leaves info_requested and comes back between due_timers() and the fire:
    the old timer (cancelled) must not expire the case its new timer gives 30 more days."""
    reference = passport_under_review(engine).reference
    ask_for_information(engine, reference)
    clock.advance(31 * DAY)
    read = engine._store.due_timers

    def read_then_move(now: dt.datetime, limit: int = 500) -> list[dict[str, Any]]:
        due = read(now, limit)
        engine.fire(reference, "provide_information", APPLICANT)  # out...
        ask_for_information(engine, reference)  # ...and back in, with new timers
        return due

    monkeypatch.setattr(engine._store, "due_timers", read_then_move)
    done = engine.tick()
    assert sorted(result for _, _, result in done) == ["stale", "stale"]
    case = engine.case(reference, SYSTEM)
    assert (case.state, case.outcome) == ("info_requested", None)
    assert [h.trigger for h in engine.history(reference, SYSTEM)][-2:] == [
        "provide_information", "request_information"]
    new = engine.timers(reference)
    assert sorted(t["kind"] for t in new) == ["deadline", "reminder"]
    assert min(t["due_at"] for t in new) > clock()


def test_a_timer_of_an_earlier_stay_is_stale_even_if_still_pending(
        engine: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: a pending timer whose case re-entered its state is not fired."""
    reference = engine.start("passport", APPLICANT, passport_data()).reference
    [deadline] = [t for t in engine.timers(reference) if t["kind"] == "deadline"]
    clock.advance(31 * DAY)
    entered = deadline["state_entered_at"] - DAY  # as if scheduled by an earlier stay
    monkeypatch.setattr(engine._store, "due_timers",
                        lambda now, limit=500: [{**deadline, "reference": reference,
                                                 "state_entered_at": entered}])
    assert engine.tick() == [(reference, "abandon_draft", "stale")]
    assert engine.case(reference, SYSTEM).state == "draft"


def test_a_timer_is_claimed_with_its_fire(engine: Engine, clock: FakeClock,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A timer another ticker claimed after this one read it (its case still in the same
    stay) is answered "already done", and the case is left alone."""
    reference = engine.start("passport", APPLICANT, passport_data()).reference
    clock.advance(31 * DAY)
    due = [t for t in engine._store.due_timers(clock()) if t["kind"] == "deadline"]
    with engine._store.transaction() as c:  # another ticker's claim
        assert engine._store.settle_timer(c, due[0]["id"], "fired", clock())
    monkeypatch.setattr(engine._store, "due_timers", lambda now, limit=500: due)
    assert engine.tick() == [(reference, "abandon_draft", "already done")]
    case = engine.case(reference, SYSTEM)
    assert (case.state, case.version) == ("draft", 1)


def test_two_tickers_fire_each_of_1000_due_timers_exactly_once(
        make_engine: MakeEngine, postgresql_url: str, clock: FakeClock) -> None:
    engine = make_engine(postgresql_url)
    drop_reminders = "UPDATE timers SET status = 'cancelled' WHERE kind = 'reminder'"
    references = [engine.start("passport", APPLICANT, passport_data()).reference
                  for _ in range(1000)]
    _execute(postgresql_url, drop_reminders)  # only deadlines race here
    go, results = FORKSERVER.Event(), FORKSERVER.Queue()
    later = clock() + 31 * DAY
    tickers = [FORKSERVER.Process(target=tick_until_idle, args=(postgresql_url, later, go,
                                                                 results)) for _ in range(2)]
    for p in tickers:
        p.start()
    go.set()
    reports = [results.get(timeout=PATIENCE) for _ in tickers]
    for p in tickers:
        p.join(PATIENCE)
    assert [error for _, error in reports] == [None, None]
    outcomes = collections.Counter(r for outcome, _ in reports for r in outcome)
    assert outcomes["fired"] == 1000
    assert set(outcomes) <= {"fired", "already done", "stale", "retry"}
    fired = _execute(postgresql_url, "SELECT count(*) FROM history "
                                     "WHERE trigger = 'abandon_draft'")
    assert fired == 1000
    assert {engine.case(r, SYSTEM).state for r in references} == {"expired"}


def _execute(url: str, sql: str) -> Any:
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.begin() as c:
            result = c.execute(sqlalchemy.text(sql))
            return result.scalar_one() if result.returns_rows else None
    finally:
        raw.dispose()
