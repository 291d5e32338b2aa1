"""Deadlines and reminders as timer rows, and how `tick` settles each due one.

A state's deadlines become timer rows when a case enters it (when each falls:
`Workflow.timings`), and are cancelled when it leaves. A due timer is claimed in the
transaction that fires it, and only for the stay in its state that scheduled it: a timer
another ticker fired, or one of an earlier stay, never fires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import ConcurrentUpdate, DatabaseUnavailable, GuichetError
from .workflow import Workflow

Timer = Mapping[str, Any]


class TimerSettled(Exception):
    """The timer was fired or cancelled since it was read: nothing to do."""

    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


class StaleTimer(Exception):
    """The timer belongs to a stay in a state the case has left (or left and re-entered)."""


def timer_rows(workflow: Workflow, case_id: int, state_id: str, now: dt.datetime,
               data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The timer rows of a stay in `state_id` that begins `now`, for a case holding `data`
    (a deadline may read its duration there)."""
    rows = []
    for timing in workflow.timings(state_id, now, data):
        common = {"case_id": case_id, "state": state_id, "trigger": timing.deadline.trigger,
                  "deadline_index": timing.index, "status": "pending", "updated_at": now,
                  "state_entered_at": now}
        rows.append({**common, "kind": "deadline", "due_at": timing.due})
        if timing.remind_at is not None:
            rows.append({**common, "kind": "reminder", "due_at": timing.remind_at})
    return rows


def check_stay(timer: Timer, case: Mapping[str, Any]) -> None:
    """Raise StaleTimer for a timer scheduled for another stay than the case's current one."""
    if timer["state"] != case["state"] or timer["state_entered_at"] != case["state_entered_at"]:
        raise StaleTimer()


def deadline_due(timer: Timer, pending: Iterable[Mapping[str, Any]]) -> dt.datetime:
    """When the deadline a reminder `timer` announces falls: the due time of its pending
    deadline timer (same stay, same deadline), as scheduled when the state was entered;
    StaleTimer when it is gone."""
    for row in pending:
        if (row["kind"] == "deadline" and row["state"] == timer["state"]
                and row["deadline_index"] == timer["deadline_index"]
                and row["state_entered_at"] == timer["state_entered_at"]):
            due: dt.datetime = row["due_at"]
            return due
    raise StaleTimer()


def settle_due(timer: Timer, fire: Callable[[], str],
               settle: Callable[[str], None]) -> str:
    """Run one due timer (`fire` fires its deadline or sends its reminder) and say how it
    went: fired, reminded, already done, stale, retry or refused: <why>. DatabaseUnavailable
    propagates (the timer stays pending for the next tick)."""
    try:
        return fire()
    except TimerSettled as settled:
        return settled.result
    except StaleTimer:
        settle("cancelled")
        return "stale"
    except ConcurrentUpdate:
        return "retry"
    except DatabaseUnavailable:
        raise  # not the deadline's fault: it stays pending, the tick stops and says why
    except GuichetError as exc:
        settle("refused")
        return "refused: " + exc.message("en")
