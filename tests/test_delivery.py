"""Outbox delivery and payment authorisation (regressions found in review)."""

from __future__ import annotations

import pytest
from helpers import APPLICANT, OTHER_APPLICANT, passport_data

from engine import Engine, Event, NotAllowed, store


def test_deliver_pending_does_not_hand_a_delivered_row_to_hooks_again(
        sqlite_engine: Engine) -> None:
    heard: list[Event] = []
    sqlite_engine.on("case_started", heard.append)
    sqlite_engine.start("passport", APPLICANT, passport_data())
    assert len(heard) == 1  # delivered at once, after commit
    assert sqlite_engine.deliver_pending() == 0
    assert len(heard) == 1


def test_a_large_backlog_is_marked_delivered_in_chunks(
        sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(5):  # five rows nobody listens to yet
        sqlite_engine.start("passport", APPLICANT, passport_data())
    heard: list[Event] = []
    sqlite_engine.on("case_started", heard.append)
    monkeypatch.setattr(store, "_MARK_CHUNK", 2)
    assert sqlite_engine.deliver_pending() == 5
    assert len(heard) == 5
    assert sqlite_engine.deliver_pending() == 0  # every row was marked
    assert len(heard) == 5


def test_a_repeated_payment_is_not_answered_to_somebody_else(sqlite_engine: Engine) -> None:
    case = sqlite_engine.start("passport", APPLICANT, passport_data())
    sqlite_engine.pay(case.reference, 30000, "tmoney", "TM-77", APPLICANT)
    with pytest.raises(NotAllowed) as refused:
        sqlite_engine.pay(case.reference, 30000, "tmoney", "TM-77", OTHER_APPLICANT)
    assert "not yours" in refused.value.message("en")
    again = sqlite_engine.pay(case.reference, 30000, "tmoney", "TM-77", APPLICANT)
    assert again.fees_paid == 30000 and again.version == 2  # the owner's repeat is harmless
