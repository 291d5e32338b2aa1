"""Load simulation: a seeded discrete-event run of many cases of one procedure (no database).

`simulate_load(procedure, LoadParameters.from_procedure(procedure, days=90))` answers "with
this many people per role, how long do cases take and where do they pile up?".

The model (state-level flow; guards, requirements, fields, fees and documents are ignored,
see "What the model approximates" below):

* Time is in seconds from day 0, a Monday at 00:00. Cases arrive as a Poisson process
  (exponential inter-arrival times) every day of the week, `arrivals_per_day` on average:
  online requests do not stop at the weekend, the offices do.
* A case enters the initial state on arrival. In every non-final state it picks its next
  transition at random among the transitions leaving the state, by weight (see `routes`).
  Deadline transitions are not picked: each deadline of the state is armed on entry and, if it
  elapses before the picked transition happened, it fires and moves the case (it "forces" the
  outcome of its target). A case already in a staff member's hands is not interrupted.
* Who acts is decided by the transition's roles: the applicant if one of them is a party
  role (a role the procedure's `start:` names, `Procedure.party_roles`: no role name means
  anything), else the first listed staff role (`Procedure.staff_roles`), else the system.
  - applicant: the transition happens after an exponential delay of mean `delays[state]`
    (default 1 day);
  - staff role: in a state the applicant has no transition out of, the case first waits
    `delays[state]` if declared (the applicant coming to collect, for instance, which counts
    as waiting for the applicant until the office opens); then it joins the role's FIFO
    queue; one of `staff[role]` people takes it during working hours (08:00-16:00,
    Monday-Friday by default) and spends an exponential working time of mean
    `handling[trigger]` (default 15 minutes) on it, carried over to the next working day if
    the office closes;
  - system (not a deadline): likewise after `delays[state]` if declared, else at once;
  - a step with a lead time (`lead_times[trigger]`, calendar time, e.g. a quote arriving 15
    days after the visit) happens, or for staff joins the queue, no earlier than its lead
    time after the case entered the state: the lead time counts in the processing time
    (administration time too: nobody waits for the applicant) but is no staff work.
* Processing time runs from arrival to the final state; its statistics cover the cases
  decided during the run (final outcome `accepted` or `rejected`: withdrawn, expired and
  cancelled cases end because of the applicant or a deadline). The "administration time" is
  the processing time minus the time spent waiting for the applicant (applicant delays and
  the waits before staff transitions above); the share past `procedure.processing_time` is
  given for both. Cases still open at the end are not in these statistics.
* Same procedure, same parameters (seed included): same report.

What the model approximates, and why:

* No case data, so no guards: a load model follows thousands of anonymous cases, not the
  answers of one applicant. The next transition is drawn by weight (`routes`); guarded
  alternatives share their trigger's weight; a deadline leads to the target of the first
  transition with its trigger. The graph walks (distances to acceptance) are those of
  engine/graph.py, on the transitions a case picks (`graph.leaving(..., deadlines=False)`).
* Mean durations in seconds: handling times and delays are means of random (exponential)
  times, so they are turned into seconds by ONE function, `approximate_seconds`, which
  counts a business day as a calendar day and a month as 30 days (`Duration.approximate`).
  Nothing else in the model is approximated that way.
* Deadlines are not approximated: they fall where the engine's timers put them, as
  `Workflow.timings` says (business days skip weekends), and when several are due at the
  same moment the first in that order fires. The simulation asks it once per state and
  day of entry (`_deadline_offsets`): the simulated calendar is the engine's (day 0 is
  1 January 2024): without `calendar:` it knows weekends only, so how long after entry a
  deadline falls depends only on the weekday of entry; with one, on the date (its
  holidays). No time zones. The processing-time target is counted the same way
  (`Duration.add_to`, the function `Workflow.timings` uses).

Defaults when the procedure's `simulation:` section and the caller say nothing (listed in
`LoadParameters.defaults` and in the summary): 100 arrivals a day, 365 days, 15 minutes of
handling per staff trigger, 1 day of applicant delay, and for each staff role the smallest
head count that keeps its expected utilisation at or under 80 % (from the routing below).
"""

from __future__ import annotations

import csv
import datetime as dt
import heapq
import io
import itertools
import math
import random
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from heapq import heappush
from xml.sax.saxutils import escape, quoteattr

from .. import graph
from ..model import SYSTEM_ROLE, Duration, Field, FieldDuration, Procedure, State, Transition
from ..workflow import Workflow

DAY = 86400.0
HOUR = 3600.0
ACCEPTED = "accepted"
DECIDED = ("accepted", "rejected")

DEFAULT_DAYS = 365
DEFAULT_ARRIVALS_PER_DAY = 100.0
DEFAULT_HANDLING = 15 * 60.0
DEFAULT_APPLICANT_DELAY = DAY
TARGET_UTILISATION = 0.8

# Default weights of transitions whose trigger has no declared weight (see `routes`).
WEIGHT_FORWARD = 1.0
WEIGHT_LOOP = 0.1
WEIGHT_OTHER_OUTCOME = 0.02

DurationLike = Duration | dt.timedelta | float | int | str
Progress = Callable[[float], None]
_UNITS = ("minutes", "hours", "days", "business_days", "weeks", "months", "years")
_MONDAY = dt.datetime(2024, 1, 1)  # day 0 of a simulation is a Monday


def approximate_seconds(value: DurationLike) -> float:
    """Seconds in a Duration, a timedelta, a number of seconds or a text like "20 minutes":
    the model's one approximation of a duration, used for mean handling times and delays.

    A Duration counts as `Duration.approximate` says (a business day as a calendar day, a
    month as 30 days, a year as 365): these figures are means of random times, for which
    the calendar does not matter. Deadlines are not counted this way (see the module
    docstring). Raises ValueError on a text that is not a duration.
    """
    if isinstance(value, str):
        text = value
        try:
            value = Duration.parse(text.strip())
        except ValueError:
            value = Duration(0, "")
        if value.unit not in _UNITS or value.amount < 0:
            raise ValueError(f'invalid duration "{text}" (e.g. "20 minutes")')
    if isinstance(value, Duration):
        return value.approximate().total_seconds()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


@dataclass(frozen=True)
class LoadParameters:
    """Everything a load simulation depends on. Times are in seconds.

    `staff`: people per role (a role missing here has nobody: its queue only grows).
    `handling`: mean working time per staff trigger. `delays`: mean time before the
    applicant acts, per state (in a state the applicant cannot leave, the wait before the
    staff's transition, e.g. until the applicant comes to collect). `weights`: declared
    weights per trigger (the others follow the rule of `routes`). `lead_times`: per
    trigger, the calendar time after entering the step's source state before the step can
    happen (a staff step joins its queue no earlier), e.g. a quote arriving after a visit.
    Working time: `workdays` days a week from Monday, `workday_hours` hours from
    `workday_start` (an hour of the day). `defaults` names the figures `from_procedure`
    filled in by default, e.g. ("arrivals_per_day", "staff.clerk").
    """

    days: int = DEFAULT_DAYS
    arrivals_per_day: float = DEFAULT_ARRIVALS_PER_DAY
    staff: Mapping[str, int] = field(default_factory=dict)
    handling: Mapping[str, float] = field(default_factory=dict)
    delays: Mapping[str, float] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    lead_times: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    workday_start: float = 8.0
    workday_hours: float = 8.0
    workdays: int = 5
    defaults: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.days < 1:
            problems.append("days must be at least 1")
        if not self.arrivals_per_day >= 0:
            problems.append("arrivals_per_day must not be negative")
        if not (0 <= self.workday_start and 0 < self.workday_hours
                and self.workday_start + self.workday_hours <= 24):
            problems.append("working hours must lie within a day")
        if not 1 <= self.workdays <= 7:
            problems.append("workdays must be between 1 and 7")
        for name, values in (("staff", self.staff), ("handling", self.handling),
                             ("delays", self.delays), ("weights", self.weights),
                             ("lead_times", self.lead_times)):
            problems += [f"{name}.{key} must not be negative"
                         for key, value in values.items() if not value >= 0]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_procedure(
        cls,
        procedure: Procedure,
        *,
        days: int | None = None,
        arrivals_per_day: float | None = None,
        staff: Mapping[str, int] | None = None,
        handling: Mapping[str, DurationLike] | None = None,
        delays: Mapping[str, DurationLike] | None = None,
        weights: Mapping[str, float] | None = None,
        seed: int | None = None,
        lead_times: Mapping[str, DurationLike] | None = None,
        workday_start: float | None = None,
        workday_hours: float | None = None,
        workdays: int | None = None,
    ) -> LoadParameters:
        """The procedure's `simulation:` figures, overridden key by key by the arguments.

        Durations may be given as Duration, timedelta, seconds or text ("20 minutes").
        Unknown roles, triggers or states raise ValueError; missing figures get the
        module's defaults (see the module docstring), named in `defaults`.
        """
        sim = procedure.simulation
        _check_names(procedure, staff, handling, delays, weights)
        _check_names(procedure, None, lead_times, None, None)
        filled: list[str] = []
        if arrivals_per_day is None and sim.arrivals_per_day is None:
            filled.append("arrivals_per_day")
        merged_weights = {**sim.weights, **(weights or {})}
        merged_handling = {k: approximate_seconds(v)
                           for k, v in {**sim.handling, **(handling or {})}.items()}
        merged_delays = {k: approximate_seconds(v)
                         for k, v in {**sim.delays, **(delays or {})}.items()}
        table = routes(procedure, merged_weights)
        for steps in table.values():
            for step in steps:
                if step.party:
                    if step.source not in merged_delays:
                        merged_delays[step.source] = DEFAULT_APPLICANT_DELAY
                        filled.append(f"delays.{step.source}")
                elif step.actor != SYSTEM_ROLE and step.trigger not in merged_handling:
                    merged_handling[step.trigger] = DEFAULT_HANDLING
                    filled.append(f"handling.{step.trigger}")
        params = cls(
            days=DEFAULT_DAYS if days is None else days,
            arrivals_per_day=_first(arrivals_per_day, sim.arrivals_per_day,
                                    DEFAULT_ARRIVALS_PER_DAY),
            staff={**sim.staff, **(staff or {})}, handling=merged_handling,
            delays=merged_delays, weights=merged_weights,
            lead_times={k: approximate_seconds(v)
                        for k, v in {**sim.lead_times, **(lead_times or {})}.items()},
            seed=0 if seed is None else seed,
            workday_start=_first(workday_start, 8.0), workday_hours=_first(workday_hours, 8.0),
            workdays=5 if workdays is None else workdays,
        )
        needed = sufficient_staff(procedure, params)
        missing = {role: n for role, n in needed.items() if role not in params.staff}
        filled += [f"staff.{role}" for role in missing]
        return replace(params, staff={**params.staff, **missing},
                       defaults=tuple(dict.fromkeys(filled)))


def _first(*values: float | None) -> float:
    return next(float(v) for v in values if v is not None)


def _check_names(
    procedure: Procedure,
    staff: Mapping[str, object] | None,
    handling: Mapping[str, object] | None,
    delays: Mapping[str, object] | None,
    weights: Mapping[str, object] | None,
) -> None:
    checks = (("role", staff, procedure.roles), ("trigger", handling, procedure.triggers),
              ("state", delays, procedure.states), ("trigger", weights, procedure.triggers))
    for kind, given, known in checks:
        for name in given or {}:
            if name not in known:
                raise ValueError(f'unknown {kind} "{name}" (known: {", ".join(known)})')


# --- routing -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One way out of a state in the load model, with its probability of being picked."""

    trigger: str
    source: str
    target: str
    actor: str  # the role acting: a party role (the applicant's), a staff role or "system"
    weight: float
    probability: float
    party: bool = False  # the applicant acts (`actor` is a party role): a delay, not a queue


def actor_of(procedure: Procedure, transition: Transition) -> str:
    """Who performs `transition` in the load model: the first of its roles that is a party
    role (the applicant), else its first staff role, else the system."""
    roles = transition.roles
    return next((r for r in roles if r in procedure.party_roles),
                next((r for r in roles if r in procedure.staff_roles), SYSTEM_ROLE))


def routes(procedure: Procedure, weights: Mapping[str, float]) -> dict[str, tuple[Step, ...]]:
    """For each non-final state, the transitions a case may pick, deadlines excluded.

    A trigger's weight is `weights[trigger]` if declared, otherwise set by the transition's
    target, with "distance" the fewest transitions from a state to an `accepted` final state:
    1 for an `accepted` final state, or a non-final state no farther from acceptance than the
    source (the main path and its alternatives); 0.1 for the same state or a state farther
    from acceptance (a detour: a request for information, a rescheduling); 0.02 for any other
    final state or a state from which acceptance cannot be reached (reject, withdraw...).
    Guarded alternatives (several transitions with the same trigger from one state) share
    their trigger's weight equally: the case picks one of them by weight, guards ignored.
    """
    distance = _distances(procedure)
    table: dict[str, tuple[Step, ...]] = {}
    for state in procedure.states.values():
        if state.final:
            continue
        leaving = _leaving(procedure, state.id)
        alternatives = {t.trigger: 0 for t in leaving}
        for t in leaving:
            alternatives[t.trigger] += 1
        raw = []
        for t in leaving:
            base = weights.get(t.trigger)
            if base is None:
                base = _default_weight(procedure, state.id, t.target, distance)
            raw.append((t, base / alternatives[t.trigger]))
        total = sum(w for _, w in raw)
        actors = [actor_of(procedure, t) for t, _ in raw]
        table[state.id] = tuple(
            Step(t.trigger, state.id, t.target, actor, w, w / total if total else 0.0,
                 actor in procedure.party_roles)
            for (t, w), actor in zip(raw, actors, strict=True)
        )
    return table


def _leaving(procedure: Procedure, state: str) -> list[Transition]:
    """The transitions out of `state` that are not fired by one of its deadlines."""
    return graph.leaving(procedure, state, deadlines=False)


def _default_weight(procedure: Procedure, source: str, target: str,
                    distance: Mapping[str, float]) -> float:
    state = procedure.states.get(target)
    if state is None or state.final:
        return WEIGHT_FORWARD if state and state.outcome == ACCEPTED else WEIGHT_OTHER_OUTCOME
    if math.isinf(distance[target]):
        return WEIGHT_OTHER_OUTCOME
    if target == source or distance[target] > distance[source]:
        return WEIGHT_LOOP
    return WEIGHT_FORWARD


def _distances(procedure: Procedure) -> dict[str, float]:
    """Fewest transitions (deadlines excluded) from each state to an `accepted` final state
    (math.inf when there is no way)."""
    backwards = graph.reverse(graph.transition_graph(procedure, deadlines=False))
    accepted = [s.id for s in procedure.states.values() if s.outcome == ACCEPTED]
    found = graph.distances(backwards, *accepted)
    return {state: float(found.get(state, math.inf)) for state in procedure.states}


def expected_visits(procedure: Procedure, weights: Mapping[str, float]) -> dict[str, float]:
    """Mean number of times a case enters each state (deadlines ignored)."""
    table = routes(procedure, weights)
    initial = procedure.initial_state.id
    visits = {s: 0.0 for s in procedure.states}
    for _ in range(1000):
        new = {s: float(s == initial) for s in procedure.states}
        for source, steps in table.items():
            for step in steps:
                new[step.target] += visits[source] * step.probability
        done = max(abs(new[s] - visits[s]) for s in visits) < 1e-9
        visits = new
        if done:
            break
    return visits


def sufficient_staff(procedure: Procedure, params: LoadParameters) -> dict[str, int]:
    """Per staff role, the fewest people keeping expected utilisation at or under 80 %."""
    visits = expected_visits(procedure, params.weights)
    work: dict[str, float] = {}
    for source, steps in routes(procedure, params.weights).items():
        for step in steps:
            if step.actor in procedure.staff_roles:
                mean = params.handling.get(step.trigger, DEFAULT_HANDLING)
                work[step.actor] = (work.get(step.actor, 0.0)
                                    + visits[source] * step.probability * mean)
    per_person = params.workday_hours * HOUR * params.workdays / 7 * TARGET_UTILISATION
    return {role: max(1, math.ceil(params.arrivals_per_day * w / per_person - 1e-9))
            for role, w in work.items()}


# --- the report ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadReport:
    """What a load simulation measured. Times in seconds; days numbered from 1.

    `arrived`, `finished`: cases created, cases in a final state at the end (`in_progress`:
    the others). `outcomes`, `final_states`: finished cases per outcome and per final state.
    `forced`: per outcome, the cases a deadline sent to a final state; `deadlines_fired`:
    deadline transitions per trigger. `backlog[i]`: (day, {state: cases}) at the end of that
    day for every non-final state (`states`, in declaration order); `arrivals_daily`,
    `finished_daily`: cases per day. `decided`: cases finished `accepted` or `rejected`, which
    `p50`/`p90` (arrival to final state) and `admin_p50`/`admin_p90` (the same minus waits
    for the applicant) describe. `target`: the procedure's processing time as text;
    `past_target_share`, `admin_past_target_share`: the share of decided cases beyond it
    (None without target or decided case). `utilisation`: per staff role, working time spent
    on cases over working time available. `events`: events processed.
    """

    procedure_id: str
    parameters: LoadParameters
    states: tuple[str, ...]
    arrived: int
    finished: int
    outcomes: Mapping[str, int]
    final_states: Mapping[str, int]
    forced: Mapping[str, int]
    deadlines_fired: Mapping[str, int]
    backlog: tuple[tuple[int, Mapping[str, int]], ...]
    arrivals_daily: tuple[int, ...]
    finished_daily: tuple[int, ...]
    decided: int
    p50: float | None
    p90: float | None
    admin_p50: float | None
    admin_p90: float | None
    target: str | None
    past_target_share: float | None
    admin_past_target_share: float | None
    utilisation: Mapping[str, float]
    events: int

    @property
    def throughput_per_day(self) -> float:
        """Cases reaching a final state, per day on average."""
        return self.finished / self.parameters.days

    @property
    def backlog_end(self) -> Mapping[str, int]:
        """Cases in each non-final state at the end."""
        return self.backlog[-1][1] if self.backlog else {s: 0 for s in self.states}

    @property
    def in_progress(self) -> int:
        return sum(self.backlog_end.values())

    def to_csv(self) -> str:
        """One row a day: backlog per state at the end of the day, total, arrivals, finished."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["day", *self.states, "total", "arrived", "finished"])
        for (day, counts), arrived, finished in zip(
                self.backlog, self.arrivals_daily, self.finished_daily, strict=True):
            row = [counts[s] for s in self.states]
            writer.writerow([day, *row, sum(row), arrived, finished])
        return out.getvalue()

    def to_svg(self, width: int = 900, height: int = 460) -> str:
        """A self-contained SVG line chart of the backlog of each state over time."""
        return _svg(self, width, height)

    def summary_lines(self) -> list[str]:
        """The report as lines of text."""
        return _summary(self)


# --- the simulator -------------------------------------------------------------------------------

_APPLICANT, _STAFF, _SYSTEM = 0, 1, 2
_ARRIVE, _FIRE, _JOIN, _DONE, _DEADLINE, _OPEN = range(6)


def _period(workflow: Workflow, days: int) -> int:
    """How many days of entry deadlines are computed for: the 7 weekdays (Monday first) with
    weekends only, every day of the run (from day 0, 1 January 2024) with a country calendar,
    whose holidays fall on dates."""
    return 7 if workflow.calendar.country is None else days + 1


def _weekday_offsets(workflow: Workflow, duration: Duration, period: int = 7
                     ) -> tuple[float, ...]:
    """Seconds `duration` adds to a moment, for each day of entry of the period, as
    `Workflow.due` counts them (business days skip weekends and the calendar's holidays):
    the processing-time target."""
    starts = [_MONDAY + dt.timedelta(days=d) for d in range(period)]
    return tuple((workflow.due(duration, s) - s).total_seconds() for s in starts)


def _deadline_offsets(workflow: Workflow, state: str, period: int = 7
                      ) -> list[list[tuple[float, int]]]:
    """For a case entering `state` on each day of the period (`_period`): when each deadline
    of the state falls, in seconds after entry, with its index in the state, in the order of
    `Workflow.timings` (the earliest first: it fires first). Any moment of a day gives the
    same seconds as its midnight (see the module docstring)."""
    found = []
    for day in range(period):
        entered = _MONDAY + dt.timedelta(days=day)
        found.append([((timing.due - entered).total_seconds(), timing.index)
                      for timing in workflow.timings(state, entered,
                                                     _typical(workflow.procedure))])
    return found


def _typical(procedure: Procedure) -> dict[str, int]:
    """A typical value of each integer field a deadline reads its duration from (`after:
    {field, unit}`): the middle of its min and max, else the bound it has; the load model
    has no form data, and a field with neither bound gives no deadline."""
    found = {}
    for state in procedure.states.values():
        for deadline in state.deadlines:
            read = deadline.after
            f = _data_field(procedure, read.field) if isinstance(read, FieldDuration) else None
            bounds = [b for b in (f.minimum, f.maximum) if isinstance(b, int)] if f else []
            if f is not None and bounds:
                found[f.id] = sum(bounds) // len(bounds)
    return found


def _data_field(procedure: Procedure, field_id: str) -> Field | None:
    return procedure.field(field_id) or next(
        (i for t in procedure.transitions for i in t.input if i.id == field_id), None)


class _Simulator:
    """The event loop. Cases are integers indexing parallel lists; states and roles too."""

    def __init__(self, procedure: Procedure, params: LoadParameters,
                 progress: Progress | None) -> None:
        self.params, self.progress = params, progress
        self.rng = random.Random(params.seed)
        self.end = params.days * DAY
        self.open = params.workday_start * HOUR
        self.close = self.open + params.workday_hours * HOUR
        states = list(procedure.states.values())
        self.state_ids = [s.id for s in states]
        index = {s.id: i for i, s in enumerate(states)}
        self.outcome = [s.outcome for s in states]
        self.initial = index[procedure.initial_state.id]
        table = routes(procedure, params.weights)
        actors = {s.actor for steps in table.values() for s in steps
                  if not s.party and s.actor != SYSTEM_ROLE}
        self.roles = sorted(set(params.staff) | actors)
        role_index = {r: i for i, r in enumerate(self.roles)}
        self.free = [params.staff.get(r, 0) for r in self.roles]
        self.queues: list[deque[tuple[int, int, int]]] = [deque() for _ in self.roles]
        self.work = [0.0] * len(self.roles)
        self._compile_steps(states, table, index, role_index)
        # per state, per weekday of entry: (seconds after entry, deadline number), in order
        self.deadlines: list[list[list[tuple[float, int]]]] = []
        self.deadline_triggers: list[str] = []
        self.deadline_target: list[int] = []
        workflow = Workflow(procedure)
        self.period = _period(workflow, params.days)
        self._compile_deadlines(workflow, states, index)
        limit = procedure.processing_time
        self.target = _weekday_offsets(workflow, limit, self.period) if limit else None
        # per case
        self.case_state: list[int] = []
        self.token: list[int] = []
        self.arrived_at: list[float] = []
        self.waited: list[float] = []
        self.pending: list[float] = []
        self.busy = bytearray()
        # measures
        self.counts = [0] * len(states)
        self.fired = [0] * len(self.deadline_triggers)
        self.forced: dict[str, int] = {}
        self.times: list[float] = []
        self.admin_times: list[float] = []
        self.past = self.admin_past = 0
        self.arrivals_daily = [0] * params.days
        self.finished_daily = [0] * params.days
        self.heap: list[tuple[float, int, int, int, int, int]] = []
        self.seq = itertools.count()
        self.events = 0

    def _compile_steps(self, states: list[State], table: Mapping[str, tuple[Step, ...]],
                       index: Mapping[str, int], role_index: Mapping[str, int]) -> None:
        self.first: list[int] = []
        self.cumulative: list[list[float]] = []
        self.step_target: list[int] = []
        self.step_kind: list[int] = []
        self.step_role: list[int] = []
        self.step_rate: list[float] = []  # 1 / mean handling time, 0 for none
        self.step_delay: list[float] = []  # 1 / mean delay before acting, 0 for none
        self.step_lead: list[float] = []  # seconds after entry before the step may happen
        for state in states:
            self.first.append(len(self.step_target))
            cumulative: list[float] = []
            steps = table.get(state.id, ())
            declared = self.params.delays.get(state.id)
            # a declared delay also holds staff and system steps when the applicant has no
            # transition here: the state waits for the applicant (e.g. to come and collect)
            waits = declared if not any(s.party for s in steps) else None
            for step in steps:
                if step.weight <= 0:
                    continue
                cumulative.append((cumulative[-1] if cumulative else 0.0) + step.weight)
                kind = (_APPLICANT if step.party
                        else _SYSTEM if step.actor == SYSTEM_ROLE else _STAFF)
                if kind == _APPLICANT:
                    delay = DEFAULT_APPLICANT_DELAY if declared is None else declared
                else:
                    delay = waits or 0.0
                handling = self.params.handling.get(step.trigger, DEFAULT_HANDLING)
                self.step_target.append(index[step.target])
                self.step_kind.append(kind)
                self.step_role.append(role_index.get(step.actor, -1))
                self.step_rate.append(1 / handling if handling > 0 else 0.0)
                self.step_delay.append(1 / delay if delay > 0 else 0.0)
                self.step_lead.append(self.params.lead_times.get(step.trigger, 0.0))
            self.cumulative.append(cumulative)

    def _compile_deadlines(self, workflow: Workflow, states: list[State],
                           index: Mapping[str, int]) -> None:
        """Number the deadlines that lead somewhere (to the target of the first transition
        with their trigger: no guards) and learn when they fall from `Workflow.timings`."""
        procedure = workflow.procedure
        for state in states:
            numbers: dict[int, int] = {}  # index in the state -> deadline number
            for i, deadline in enumerate(state.deadlines):
                target = next((t.target for t in procedure.transitions_from(
                    state.id, deadline.trigger)), None)
                if target is not None:
                    numbers[i] = len(self.deadline_triggers)
                    self.deadline_triggers.append(deadline.trigger)
                    self.deadline_target.append(index[target])
            self.deadlines.append([
                [(offset, numbers[i]) for offset, i in day if i in numbers]
                for day in _deadline_offsets(workflow, state.id, self.period)
            ] if numbers else [])

    # --- helpers

    def push(self, t: float, kind: int, case: int, token: int, arg: int) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, case, token, arg))

    def working(self, t: float) -> bool:
        day = t // DAY
        return day % 7 < self.params.workdays and self.open <= t - day * DAY < self.close

    def add_work(self, t: float, work: float) -> float:
        """The moment `work` seconds of working time started at `t` are done."""
        while True:
            day = t // DAY
            start = max(t - day * DAY, self.open)
            if day % 7 < self.params.workdays and start < self.close:
                if work <= self.close - start:
                    return day * DAY + start + work
                work -= self.close - start
            t = (day + 1) * DAY

    # --- state changes

    def enter(self, case: int, state: int, t: float) -> None:
        self.counts[self.case_state[case]] -= 1
        self.counts[state] += 1
        self.case_state[case] = state
        token = self.token[case] = self.token[case] + 1  # what was scheduled before is void
        outcome = self.outcome[state]
        if outcome is not None:
            self.finish(case, outcome, t)
            return
        cumulative = self.cumulative[state]
        if not cumulative:
            self.arm(case, state, token, t, math.inf)
            return  # only a deadline (or nothing) gets the case out
        step = self.first[state]
        if len(cumulative) > 1:
            pick = bisect_right(cumulative, self.rng.random() * cumulative[-1])
            step += min(pick, len(cumulative) - 1)
        rate = self.step_delay[step]
        wait = self.rng.expovariate(rate) if rate else 0.0
        kind = self.step_kind[step]
        if kind != _SYSTEM:
            self.pending[case] = wait
        ready = t + max(wait, self.step_lead[step])  # not before its lead time has passed
        if kind != _STAFF:
            self.arm(case, state, token, t, ready)
            heappush(self.heap, (ready, next(self.seq), _FIRE, case, token, step))
            return
        self.arm(case, state, token, t, math.inf)
        if ready > t:
            heappush(self.heap, (ready, next(self.seq), _JOIN, case, token, step))
        else:
            self.join(t, case, token, step)

    def arm(self, case: int, state: int, token: int, t: float, leaves: float) -> None:
        """Schedule the deadlines of `state` that may elapse before the case `leaves` it."""
        deadlines = self.deadlines[state]
        if deadlines:
            # in Workflow.timings' order
            for offset, number in deadlines[int(t // DAY) % self.period]:
                due = t + offset
                if due <= leaves:  # a deadline wins a tie
                    heappush(self.heap, (due, next(self.seq), _DEADLINE, case, token, number))

    def finish(self, case: int, outcome: str, t: float) -> None:
        day = min(int(t // DAY), self.params.days - 1)
        self.finished_daily[day] += 1
        if outcome not in DECIDED:
            return
        total = t - self.arrived_at[case]
        admin = total - self.waited[case]
        self.times.append(total)
        self.admin_times.append(admin)
        if self.target is not None:
            limit = self.target[int(self.arrived_at[case] // DAY) % self.period]
            self.past += total > limit
            self.admin_past += admin > limit

    def dispatch(self, role: int, t: float) -> None:
        queue = self.queues[role]
        if not queue or not self.free[role] or not self.working(t):
            return
        rng, token = self.rng, self.token
        while self.free[role] and queue:
            case, ticket, step = queue.popleft()
            if token[case] != ticket:
                continue  # a deadline moved the case while it waited
            self.free[role] -= 1
            self.busy[case] = 1
            rate = self.step_rate[step]
            work = rng.expovariate(rate) if rate else 0.0
            self.work[role] += work
            ends = self.add_work(t, work)
            heappush(self.heap, (ends, next(self.seq), _DONE, case, ticket, step))

    # --- events: handler(t, case, token, arg)

    def arrive(self, t: float, case: int, token: int, arg: int) -> None:
        case = len(self.case_state)
        self.case_state.append(self.initial)
        self.token.append(0)
        self.arrived_at.append(t)
        self.waited.append(0.0)
        self.pending.append(0.0)
        self.busy.append(0)
        self.counts[self.initial] += 1
        self.arrivals_daily[int(t // DAY)] += 1
        self.enter(case, self.initial, t)
        self.schedule_arrival(t)

    def schedule_arrival(self, t: float) -> None:
        if self.params.arrivals_per_day > 0:
            t += self.rng.expovariate(self.params.arrivals_per_day / DAY)
            if t < self.end:
                self.push(t, _ARRIVE, -1, 0, 0)

    def fire(self, t: float, case: int, token: int, step: int) -> None:
        if self.token[case] == token:
            if self.step_kind[step] == _APPLICANT:
                self.waited[case] += self.pending[case]
            self.enter(case, self.step_target[step], t)

    def join(self, t: float, case: int, token: int, step: int) -> None:
        if self.token[case] == token:
            pending = self.pending[case]
            if pending:  # the applicant came: the counter opens later if closed
                held = pending >= self.step_lead[step]  # the applicant, not the lead time
                self.waited[case] += pending + (self.add_work(t, 0.0) - t if held else 0.0)
            role = self.step_role[step]
            self.queues[role].append((case, token, step))
            self.dispatch(role, t)

    def done(self, t: float, case: int, token: int, step: int) -> None:
        role = self.step_role[step]
        self.free[role] += 1
        self.busy[case] = 0
        self.enter(case, self.step_target[step], t)
        self.dispatch(role, t)

    def deadline(self, t: float, case: int, token: int, number: int) -> None:
        if self.token[case] != token or self.busy[case]:
            return
        target = self.deadline_target[number]
        self.fired[number] += 1
        outcome = self.outcome[target]
        if outcome is not None:
            self.forced[outcome] = self.forced.get(outcome, 0) + 1
        self.enter(case, target, t)

    def opening(self, t: float, case: int, token: int, arg: int) -> None:
        for role in range(len(self.roles)):
            self.dispatch(role, t)

    # --- the run

    def run(self) -> list[list[int]]:
        """Process every event before the end; the per-state counts at the end of each day."""
        for day in range(self.params.days):
            if day % 7 < self.params.workdays:
                self.push(day * DAY + self.open, _OPEN, -1, 0, 0)
        self.schedule_arrival(0.0)
        handlers = (self.arrive, self.fire, self.join, self.done, self.deadline, self.opening)
        heap, pop, end = self.heap, heapq.heappop, self.end
        samples: list[list[int]] = []
        next_sample = DAY
        events = 0
        while heap and heap[0][0] < end:
            t, _, kind, case, token, arg = pop(heap)
            while t >= next_sample:
                samples.append(list(self.counts))
                next_sample += DAY
                self.report_progress(len(samples))
            events += 1
            handlers[kind](t, case, token, arg)
        while len(samples) < self.params.days:
            samples.append(list(self.counts))
            self.report_progress(len(samples))
        self.events = events
        return samples

    def report_progress(self, days_done: int) -> None:
        days = self.params.days
        if self.progress and (days_done * 100 // days > (days_done - 1) * 100 // days
                              or days_done == days):
            self.progress(days_done / days)


def simulate_load(procedure: Procedure, params: LoadParameters,
                  progress: Progress | None = None) -> LoadReport:
    """Run the load simulation of `procedure` (see the module docstring for the model).

    `progress`, if given, is called with the fraction of simulated days done (0 to 1), at
    most about 100 times, the last time with 1.0.
    """
    sim = _Simulator(procedure, params, progress)
    samples = sim.run()
    live = [i for i, outcome in enumerate(sim.outcome) if outcome is None]
    states = tuple(sim.state_ids[i] for i in live)
    final = {sim.state_ids[i]: samples[-1][i] for i, o in enumerate(sim.outcome) if o}
    outcomes: dict[str, int] = {}
    for i, outcome in enumerate(sim.outcome):
        if outcome is not None:
            outcomes[outcome] = outcomes.get(outcome, 0) + samples[-1][i]
    fired: dict[str, int] = {}
    for number, trigger in enumerate(sim.deadline_triggers):
        fired[trigger] = fired.get(trigger, 0) + sim.fired[number]
    decided = len(sim.times)
    times, admin = sorted(sim.times), sorted(sim.admin_times)
    capacity = _working_seconds(params)
    return LoadReport(
        procedure_id=procedure.id, parameters=params, states=states,
        arrived=len(sim.case_state), finished=sum(final.values()),
        outcomes=outcomes, final_states=final, forced=dict(sorted(sim.forced.items())),
        deadlines_fired=fired,
        backlog=tuple((day + 1, {sim.state_ids[i]: counts[i] for i in live})
                      for day, counts in enumerate(samples)),
        arrivals_daily=tuple(sim.arrivals_daily), finished_daily=tuple(sim.finished_daily),
        decided=decided,
        p50=_percentile(times, 0.5), p90=_percentile(times, 0.9),
        admin_p50=_percentile(admin, 0.5), admin_p90=_percentile(admin, 0.9),
        target=str(procedure.processing_time) if procedure.processing_time else None,
        past_target_share=sim.past / decided if sim.target and decided else None,
        admin_past_target_share=sim.admin_past / decided if sim.target and decided else None,
        utilisation={
            role: min(1.0, sim.work[i] / (capacity * params.staff[role]))
            if params.staff.get(role) else 0.0
            for i, role in enumerate(sim.roles)
        },
        events=sim.events,
    )


def _working_seconds(params: LoadParameters) -> float:
    days = sum(1 for d in range(params.days) if d % 7 < params.workdays)
    return days * params.workday_hours * HOUR


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- text ----------------------------------------------------------------------------------------

def human_duration(value: float) -> str:
    """Seconds as minutes, hours or days, e.g. "45 minutes", "5.5 hours", "2.3 days"."""
    if value < 2 * HOUR:
        return f"{value / 60:.0f} minutes"
    if value < 2 * DAY:
        return f"{value / HOUR:.1f} hours"
    return f"{value / DAY:.1f} days"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _hours(params: LoadParameters) -> str:
    start = params.workday_start
    end = start + params.workday_hours
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    return (f"{int(start):02d}:{round(start % 1 * 60):02d}-{int(end):02d}:"
            f"{round(end % 1 * 60):02d}, {days[0]}-{days[params.workdays - 1]}")


def _summary(r: LoadReport) -> list[str]:
    p = r.parameters
    staff = ", ".join(f"{role} {n}" for role, n in sorted(p.staff.items())) or "none"
    lines = [
        f"Load simulation of {r.procedure_id} over {_count(p.days, 'day')} (seed {p.seed})",
        f"Arrivals: {p.arrivals_per_day:g} a day; staff: {staff}; "
        f"working hours {_hours(p)}",
        f"Cases: {r.arrived:,} arrived, {r.finished:,} finished "
        f"({r.throughput_per_day:.1f} a day), {r.in_progress:,} in progress at the end",
    ]
    outcomes = ", ".join(f"{o} {n:,} ({_share(n, r.finished)})"
                         for o, n in sorted(r.outcomes.items(), key=lambda i: -i[1]))
    lines.append(f"Outcomes: {outcomes or 'none'}")
    if r.forced:
        forced = ", ".join(f"{o} {n:,}" for o, n in r.forced.items())
        lines.append(f"Forced by a deadline: {forced}")
    if r.p50 is not None and r.p90 is not None:
        decided = _count(r.decided, "case")
        lines.append(f"Processing time, arrival to decision ({decided} accepted or rejected): "
                     f"p50 {human_duration(r.p50)}, p90 {human_duration(r.p90)}")
    if r.admin_p50 is not None and r.admin_p90 is not None:
        lines.append(f"  without waiting for the applicant: p50 {human_duration(r.admin_p50)}, "
                     f"p90 {human_duration(r.admin_p90)}")
    if r.past_target_share is not None and r.admin_past_target_share is not None:
        lines.append(f"Past the target processing time ({r.target}): "
                     f"{100 * r.past_target_share:.1f} % of decided cases "
                     f"({100 * r.admin_past_target_share:.1f} % without waiting for the applicant)")
    backlog = ", ".join(f"{s} {n:,}" for s, n in r.backlog_end.items() if n) or "none"
    lines.append(f"Backlog at the end: {backlog}")
    peak_day, peak = max(((day, sum(c.values())) for day, c in r.backlog),
                         key=lambda i: i[1], default=(0, 0))
    lines.append(f"Peak backlog: {peak:,} cases on day {peak_day}")
    if r.utilisation:
        lines.append("Staff utilisation: " + ", ".join(
            f"{role} {100 * u:.0f} %" for role, u in sorted(r.utilisation.items())))
    if p.defaults:
        lines.append("Defaults used: " + _defaults_text(p.defaults))
    return lines


def _defaults_text(defaults: Iterable[str]) -> str:
    groups: dict[str, list[str]] = {}
    for name in defaults:
        section, _, key = name.partition(".")
        groups.setdefault(section, []).append(key)
    return "; ".join(f"{section} ({', '.join(keys)})" if any(keys) else section
                     for section, keys in groups.items())


# --- SVG -----------------------------------------------------------------------------------------

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = max(span, 1) / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw)


def _svg(r: LoadReport, width: int, height: int) -> str:
    left, right, top, bottom = 70, 200, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    days = r.parameters.days
    peak = max((n for _, counts in r.backlog for n in counts.values()), default=0)
    y_step = max(1.0, _nice_step(peak))  # whole cases and days on the axes
    y_max = max(y_step, math.ceil(peak / y_step) * y_step)
    x_step = max(1.0, _nice_step(days, 8))

    def x(day: float) -> float:
        return left + plot_w * day / days

    def y(value: float) -> float:
        return top + plot_h * (1 - value / y_max)

    title = escape(f"Backlog per state - {r.procedure_id} ({_count(days, 'day')}, "
                   f"{r.parameters.arrivals_per_day:g} arrivals a day)")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{title}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="{top - 15}" font-size="14">{title}</text>',
    ]
    tick = 0.0
    while tick <= y_max + 1e-9:
        out.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" '
                   f'y2="{y(tick):.1f}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                   f"{tick:,.0f}</text>")
        tick += y_step
    tick = 0.0
    while tick <= days + 1e-9:
        out.append(f'<line x1="{x(tick):.1f}" y1="{top + plot_h}" x2="{x(tick):.1f}" '
                   f'y2="{top + plot_h + 5}" stroke="black"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{top + plot_h + 18}" '
                   f'text-anchor="middle">{tick:.0f}</text>')
        tick += x_step
    out += [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">day</text>',
        f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">cases in the state (end of day)</text>',
    ]
    for i, state in enumerate(r.states):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join([f"{x(0):.1f},{y(0):.1f}"] + [
            f"{x(day):.1f},{y(counts[state]):.1f}" for day, counts in r.backlog])
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                   f'points="{points}"><title>{escape(state)}</title></polyline>')
        legend_y = top + 10 + 18 * i
        out.append(f'<rect x="{left + plot_w + 15}" y="{legend_y - 9}" width="12" height="12" '
                   f'fill="{colour}"/>')
        out.append(f'<text x="{left + plot_w + 32}" y="{legend_y + 1}" '
                   f"data-state={quoteattr(state)}>{escape(state)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
