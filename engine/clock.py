"""Time as the engine sees it: naive UTC datetimes from a clock, real or fake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

#: What an Engine asks for the current moment (naive UTC).
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The real clock: now, in UTC, without a time zone (as every stored timestamp)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class FakeClock:
    """A clock that only moves when told to: scenarios, tests and `--now` use it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        """Move the clock forward by `delta`; returns the new now."""
        self.now += delta
        return self.now
