"""Deadlines and reminders as timer rows, and how `tick` settles each due one.

A state's deadlines become timer rows when a case enters it (when each falls:
`Workflow.timings`), and are cancelled when it leaves. A due timer is claimed in the
transaction that fires it, and only for the stay in its state that scheduled it: a timer
another ticker fired, or one of an earlier stay, never fires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConcurrentUpdate, DatabaseUnavailable, GuichetError
from .model import Duration
from .workflow import ClockChange, Paused, Workflow

Timer = Mapping[str, Any]


class TimerSettled(Exception):
    """The timer was fired or cancelled since it was read: nothing to do."""

    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


class StaleTimer(Exception):
    """The timer belongs to a stay in a state the case has left (or left and re-entered)."""


def timer_rows(workflow: Workflow, case_id: int, state_id: str, now: dt.datetime,
               data: Mapping[str, Any], resumed: Mapping[int, Duration] | None = None
               ) -> list[dict[str, Any]]:
    """The timer rows of a stay in `state_id` that begins `now`, for a case holding `data`
    (a deadline may read its duration there); `resumed`: deadlines whose stopped clock
    resumes with the time they had left (Workflow.timings)."""
    rows = []
    for timing in workflow.timings(state_id, now, data, resumed):
        common = {"case_id": case_id, "state": state_id, "trigger": timing.deadline.trigger,
                  "deadline_index": timing.index, "status": "pending", "updated_at": now,
                  "state_entered_at": now, "remaining": None}
        rows.append({**common, "kind": "deadline", "due_at": timing.due})
        if timing.remind_at is not None:
            rows.append({**common, "kind": "reminder", "due_at": timing.remind_at})
    return rows


@dataclass(frozen=True)
class ClockStep:
    """The timer writes of a step that moves a legal clock (see Workflow.legal_clock): the
    stopped clocks to insert as paused rows, and the paused rows it ends, by status."""

    change: ClockChange
    insert: list[dict[str, Any]]
    resumed: list[int]  # ids of paused rows whose clock runs again
    dropped: list[int]  # ids of paused rows whose clock is dropped


def clock_step(workflow: Workflow, case: Mapping[str, Any], target: str, now: dt.datetime,
               timers: Iterable[Mapping[str, Any]]) -> ClockStep:
    """What a step of `case` to `target` at `now` writes to its timers (`timers`: its
    pending and paused rows): the running deadlines of its stay that stop, the stopped ones
    that resume or are dropped."""
    source, rows = case["state"], list(timers)
    running = {r["deadline_index"]: r["due_at"] for r in rows
               if r["status"] == "pending" and r["kind"] == "deadline"
               and r["state"] == source and r["state_entered_at"] == case["state_entered_at"]}
    stopped = {(r["state"], r["deadline_index"]): r for r in rows if r["status"] == "paused"}
    paused = [Paused(state, index, _left(row)) for (state, index), row in stopped.items()]
    change = workflow.legal_clock(source, target, now, running, paused)
    kept = {(p.state, p.index) for p in change.paused}
    triggers = {(source, i): d.trigger
                for i, d in enumerate(workflow.procedure.states[source].deadlines)}
    insert = [{"case_id": case["id"], "state": p.state, "kind": "deadline",
               "trigger": triggers[(p.state, p.index)], "deadline_index": p.index,
               "due_at": now, "status": "paused", "updated_at": now,
               "state_entered_at": case["state_entered_at"], "remaining": str(p.left)}
              for p in change.paused if (p.state, p.index) not in stopped]
    ended = [(key, row["id"]) for key, row in stopped.items() if key not in kept]
    return ClockStep(change, insert,
                     [i for (state, index), i in ended
                      if state == target and index in change.resumed],
                     [i for (state, index), i in ended
                      if not (state == target and index in change.resumed)])


def _left(row: Mapping[str, Any]) -> Duration:
    try:
        return Duration.parse(str(row["remaining"]))
    except ValueError:  # written by the engine; a damaged one gives the time no extension
        return Duration(0, "seconds")


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
