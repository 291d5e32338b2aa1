"""The values of a statistics report (`engine.stats.report`): plain frozen dataclasses.

No database here: the renderers read these values (renderers/stats.py) without reaching the
store. Every duration is whole seconds; percentiles are nearest-rank.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from .values import PaymentTotal

#: A count of a sensitive breakdown under this is suppressed, with those that would give it
#: away (engine.stats.protect).
SMALL_GROUP = 5
#: The outcomes of a decided case: its times make the percentiles and the target's share.
DECIDED = ("accepted", "rejected")
#: What `Figures.outcomes` calls the cases still open.
OPEN = "open"


@dataclass(frozen=True)
class Percentiles:
    """The p50, p90 and p99 (nearest rank) of `count` durations in seconds; None when there
    are none, or when they are suppressed."""

    count: int | None
    p50: int | None = None
    p90: int | None = None
    p99: int | None = None


@dataclass(frozen=True)
class Figures:
    """The cases of one procedure opened in the period (or of one group of a breakdown).

    `administration`: the administration's time of the decided cases (accepted or rejected,
    after leaving the initial state): seconds spent in states neither initial, waiting for
    the applicant, nor final. `total`: from leaving the initial state to entering a final
    one. `within_target` of `with_target` decided cases took at most `target` of the
    administration's time. In a sensitive breakdown, a suppressed count is None (and times
    are None where `decided` is); a suppressed group (`suppressed`) has `requests` None and no
    other figure."""

    procedure_id: str
    group: str | None  # the breakdown's value (None: not given); the procedure's figures: None
    requests: int | None
    outcomes: Mapping[str, int | None]  # outcome (OPEN: still open) -> cases; None: suppressed
    administration: Percentiles
    total: Percentiles
    target: int | None = None  # seconds (the procedure's processing_time)
    with_target: int | None = 0  # None: suppressed
    within_target: int | None = 0
    suppressed: bool = False

    @property
    def share_within_target(self) -> float | None:
        """The share of decided cases within the target (None: no target, or none decided)."""
        if (self.target is None or not self.with_target or self.within_target is None
                or self.suppressed):
            return None
        return self.within_target / self.with_target


@dataclass(frozen=True)
class StateFigures:
    """How long cases stayed in one state: the stays that ended, in seconds. `kind`: initial,
    waiting (for the applicant), work (the administration's time) or final."""

    procedure_id: str
    state: str
    kind: str
    stays: Percentiles


@dataclass(frozen=True)
class Backlog:
    """The open cases of a procedure that left the initial state, by how long ago (`ages`:
    (upper bound in seconds, None for the last, cases)); `over_target`: of them, those whose
    administration's time already exceeds the target; `waiting`: those waiting for the
    applicant now."""

    procedure_id: str
    cases: int
    ages: tuple[tuple[int | None, int], ...]
    over_target: int
    waiting: int


@dataclass(frozen=True)
class Report:
    """What `guichet stats` shows. `by`: the breakdown (month, week, authority, state or a
    reporting dimension's field), `sensitive` when it is a sensitive dimension."""

    generated_at: dt.datetime
    since: dt.datetime | None
    until: dt.datetime | None
    procedures: tuple[Figures, ...]
    states: tuple[StateFigures, ...]
    backlog: tuple[Backlog, ...]
    payments: Mapping[str, PaymentTotal]
    by: str | None = None
    sensitive: bool = False
    breakdown: tuple[Figures, ...] = field(default=())
