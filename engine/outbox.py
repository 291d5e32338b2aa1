"""Hooks and the outbox: side effects handed to the host after commit, at least once.

Every step writes one outbox row in its own transaction. After commit the row is handed to
the hooks registered for its events; once they all succeed its id waits here to be marked
delivered by the next write transaction (marking never costs a transaction of its own). A
crash before that only means the row is handed over again by `deliver_pending`.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .values import Event

log = logging.getLogger("guichet")

#: The events hooks can subscribe to with `Engine.on`.
EVENTS = ("case_started", "transition", "state_entered", "notification", "document_issued",
          "payment_recorded", "document_attached", "document_removed", "case_edited",
          "case_claimed", "members_changed", "reminder", "case_purged")

Hook = Callable[[Event], None]


class Outbox:
    """The hooks of one Engine and the outbox rows handed to them, not yet marked."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = defaultdict(list)
        self._delivered: list[int] = []  # handed to hooks, to mark in the next transaction
        self._lock = threading.Lock()

    def on(self, event: str, callback: Hook) -> None:
        """Call `callback(Event)` after commit each time `event` happens (see EVENTS)."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        self._hooks[event].append(callback)

    @property
    def listening(self) -> bool:
        """Whether any hook is registered."""
        return any(self._hooks.values())

    def deliver(self, outbox_id: int, reference: str, kind: str,
                payload: Mapping[str, Any]) -> bool:
        """Call the hooks of one outbox row; True when they all succeeded (it is then
        marked delivered by the next write transaction)."""
        if not self._hooks:
            return False  # nobody listens yet: the row stays pending for deliver_pending()
        events = list(expand(kind, reference, payload))
        if not any(self._hooks.get(e.name) for e in events):
            return False  # nobody listens yet: the row stays pending for deliver_pending()
        try:
            for e in events:
                for hook in self._hooks.get(e.name, ()):
                    hook(e)
        except Exception:  # a failing host hook must not undo a committed transition
            log.exception("hook failed for %s (%s); it stays in the outbox", reference, kind)
            return False
        with self._lock:
            self._delivered.append(outbox_id)
        return True

    def to_mark(self) -> list[int]:
        """The ids delivered since they were last marked."""
        with self._lock:
            return list(self._delivered)

    def marked(self, ids: list[int]) -> None:
        """Forget ids a committed transaction marked delivered."""
        done = set(ids)
        with self._lock:
            self._delivered = [i for i in self._delivered if i not in done]


def expand(kind: str, reference: str, payload: Mapping[str, Any]) -> Iterator[Event]:
    """The hook events one outbox row stands for."""
    yield Event(kind, reference, payload)
    if kind in ("transition", "case_started"):
        yield Event("state_entered", reference, {"state": payload["to"], "from": payload["from"]})
    for note in payload.get("notifications", []):
        yield Event("notification", reference, note)
    for item in payload.get("issued", []):
        yield Event("document_issued", reference, item)
