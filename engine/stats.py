"""The figures a ministry publishes (`guichet stats`): requests per procedure and outcome,
processing times against the target, the backlog, breakdowns, payments by method.

`report(engine, actor=SYSTEM, ...)` returns a `Report` (engine/stats_values.py). The database
computes every aggregate (engine/store.py, "statistics"); this module says which cases, which
states count as whose time, and applies the rules of sensitive breakdowns.

The administration's clock of a case starts when it leaves its procedure's initial state (the
applicant submits: the draft is the applicant's time) and stops when it enters a final state.
Between the two, time in a state declared `waiting: applicant` is the applicant's; the rest is
the administration's time, compared with the procedure's `processing_time` (its target;
business days counted as calendar days). Each case is measured against the version of the
procedure it is pinned to.

Access follows `Engine.payment_statistics`: the system, or a role that acts on a procedure
or reads it (`read:`), sees its statistics. A breakdown by a reporting dimension declared
sensitive, or by a field some readers may not see (`sensitive:` or `visible_to:` on the field,
in any stored version), is sensitive; it is refused (NotAllowed) to an actor who may not read
that field on every case (the system may). It only ever counts, and nothing is listed case
by case: every count under SMALL_GROUP is suppressed (None), and so are as many others as it
takes for no suppressed count to be worked out from the published ones and totals
(`protect`); a group whose requests are suppressed shows nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import InvalidData, NotAllowed, UnknownProcedure
from .messages import text
from .model import OUTCOMES, SYSTEM_ROLE, Procedure, State
from .stats_values import (
    DECIDED,
    OPEN,
    SMALL_GROUP,
    Backlog,
    Figures,
    Percentiles,
    Report,
    StateFigures,
)
from .store import StatsScope
from .values import SYSTEM, Actor, PaymentTotal

if TYPE_CHECKING:
    from .runtime import Engine

#: Breakdowns by what every case has (besides the reporting dimensions' fields).
CASE_BREAKDOWNS = ("month", "week", "authority", "state")
#: Upper bounds of the backlog's age buckets: 1, 7, 30 and 90 days (then older).
BACKLOG_BOUNDS = tuple(days * 86_400 for days in (1, 7, 30, 90))

_Key = tuple[str, str | None]
#: One count of a sensitive breakdown's table: (procedure, group), measure.
_Cell = tuple[_Key, str]
#: The counts a group of a sensitive breakdown publishes, besides one per outcome.
_REQUESTS, _DECIDED, _WITH, _WITHIN = "requests", "decided", "with_target", "within_target"
#: The counts they give away, never shown: decided cases over the target (with_target -
#: within_target) and decided cases not measured against one (decided - with_target).
_OVER, _UNTIMED = "over_target", "without_target"


def report(engine: Engine, *, actor: Actor = SYSTEM, procedure: str | None = None,
           since: dt.datetime | None = None, until: dt.datetime | None = None,
           by: str | None = None) -> Report:
    """The statistics of the cases opened at or after `since` and before `until` (naive UTC;
    None: no bound) of `procedure` (None: every procedure `actor` may see), broken down `by`
    one of CASE_BREAKDOWNS or a reporting dimension's field (None: no breakdown).

    UnknownProcedure for a procedure not loaded; NotAllowed for one `actor` may not see;
    InvalidData ("by") for a breakdown no procedure in scope declares; NotAllowed for a
    breakdown by a field `actor` may not read (its `visible_to:`, or `sensitive:`)."""
    ids = _readable(engine, procedure, actor)
    versions, kinds, state_kinds = _versions(engine, ids)
    now = engine.clock()
    base = StatsScope(tuple(ids), versions, kinds, now, since, until, decided=DECIDED,
                      buckets=BACKLOG_BOUNDS)
    db = engine._store  # noqa: SLF001 - the engine's own database, read-only here
    totals = db.stats_cases(base)
    procedures = _figures(engine, db.stats_requests(base), totals, group=False)
    breakdown: list[Figures] = []
    sensitive = False
    if by is not None:
        scope, sensitive = _breakdown(engine, base, by, actor)
        breakdown = _figures(engine, db.stats_requests(scope), db.stats_cases(scope), group=True)
        if sensitive:
            breakdown = protect(breakdown, procedures)
    payments = db.payment_totals(ids, since, until)
    return Report(
        generated_at=now, since=since, until=until, procedures=tuple(procedures),
        states=tuple(_states(engine, db.stats_stays(base), state_kinds)),
        backlog=tuple(_backlog(row) for row in sorted(totals, key=_row_key)),
        payments={method or "": PaymentTotal(count, amount) for method, (count, amount)
                  in sorted(payments.items(), key=lambda item: item[0] or "")},
        by=by, sensitive=sensitive, breakdown=tuple(breakdown))


def _readable(engine: Engine, procedure: str | None, actor: Actor) -> list[str]:
    """The procedures whose statistics `actor` sees (Engine.payment_statistics' rule)."""
    if procedure is not None and procedure not in engine.procedures:
        raise UnknownProcedure(text("unknown_procedure", procedure_id=procedure))
    try:
        scope = engine._statistics_scope(procedure, actor)  # noqa: SLF001 - the one rule
    except NotAllowed:
        raise NotAllowed(text("statistics_not_allowed")) from None
    return sorted(engine.procedures if scope is None else scope)


def kind(state: State) -> str:
    """What time in `state` is: initial, final, waiting (the applicant's) or work."""
    if state.initial:
        return "initial"
    if state.final:
        return "final"
    return "waiting" if state.waiting else "work"


def _versions(engine: Engine, ids: Sequence[str]) -> tuple[
        tuple[tuple[str, int | None, str], ...], tuple[tuple[str, str, str], ...],
        dict[tuple[str, str], str]]:
    """Every stored version of `ids`: (hash, target seconds, authority), (hash, state, kind),
    and the kind of each (procedure, state), the current version's last."""
    stored = engine._store.procedure_hashes(ids)  # noqa: SLF001
    current = [(p, engine.procedures[p].hash) for p in ids]
    versions, kinds, state_kinds = [], [], {}
    for procedure_id, hash_ in [*stored, *current]:  # the current version's kinds last
        compiled = engine.workflow(hash_).procedure
        versions.append((hash_, _target(compiled), _authority(compiled)))
        for state in compiled.states.values():
            kinds.append((hash_, state.id, kind(state)))
            state_kinds[(procedure_id, state.id)] = kind(state)
    return tuple(dict.fromkeys(versions)), tuple(dict.fromkeys(kinds)), state_kinds


def _target(procedure: Procedure) -> int | None:
    time = procedure.processing_time
    return None if time is None else int(time.approximate().total_seconds())


def _authority(procedure: Procedure) -> str:
    """The authority a procedure's cases are grouped under: its ministry, or directorate."""
    name = procedure.ministry or procedure.directorate
    return name.get("fr") if name else ""


def _breakdown(engine: Engine, base: StatsScope, by: str, actor: Actor
               ) -> tuple[StatsScope, bool]:
    """The scope grouped `by`, and whether its values are sensitive: a dimension declared
    sensitive, or a field marked (`sensitive`, `visible_to`) in any version of a procedure
    that declares it, whose values `actor` must then be allowed to read (NotAllowed)."""
    if by in CASE_BREAKDOWNS:
        return replace(base, group=by), False
    declaring = []
    sensitive = False
    for procedure_id in base.procedures:
        compiled = engine.procedures[procedure_id]
        for dimension in compiled.reporting:
            if dimension.field_id == by:
                declaring.append(procedure_id)
                sensitive |= dimension.sensitive
    if not declaring:
        known = sorted({d.field_id for p in base.procedures
                        for d in engine.procedures[p].reporting} | set(CASE_BREAKDOWNS))
        message = text("unknown_breakdown", by=by, known=", ".join(known))
        raise InvalidData(text("invalid_data"), {"by": message})
    stored = engine._store.procedure_hashes(declaring)  # noqa: SLF001 - read-only
    hashes = [*(h for _, h in stored), *(engine.procedures[p].hash for p in declaring)]
    for hash_ in dict.fromkeys(hashes):
        workflow = engine.workflow(hash_)
        declared = workflow.procedure.field(by)
        if declared is None or not (declared.sensitive or declared.visible_to):
            continue
        sensitive = True
        readers = set(declared.visible_to or workflow.acting_roles) | {SYSTEM_ROLE}
        if not actor.roles & readers:
            raise NotAllowed(text("breakdown_not_allowed", by=by))
    return replace(base, procedures=tuple(declaring), group="field", field=by), sensitive


def _row_key(row: Mapping[str, Any]) -> tuple[str, str]:
    return str(row["procedure_id"]), "" if row["grp"] is None else str(row["grp"])


def _figures(engine: Engine, requests: Iterable[Mapping[str, Any]],
             cases: Iterable[Mapping[str, Any]], *, group: bool) -> list[Figures]:
    """One Figures per (procedure, group), from the database's rows."""
    outcomes: dict[_Key, dict[str, int]] = {}
    for row in requests:
        key = (str(row["procedure_id"]), _group(row["grp"]))
        outcomes.setdefault(key, {})[row["outcome"] or OPEN] = int(row["cases"])
    by_key = {(str(r["procedure_id"]), _group(r["grp"])): r for r in cases}
    found = []
    for key in sorted(outcomes, key=lambda k: (k[0], k[1] is None, k[1] or "")):
        counts = outcomes[key]
        order = [*OUTCOMES, OPEN]
        counts = dict(sorted(counts.items(), key=lambda i: order.index(i[0])
                             if i[0] in order else len(order)))
        target = _target(engine.procedures[key[0]])
        found.append(_one(key, counts, by_key.get(key, {}), target, group))
    return found


def _group(value: Any) -> str | None:
    return None if value is None else str(value)


def _one(key: _Key, counts: dict[str, int], row: Mapping[str, Any], target: int | None,
         group: bool) -> Figures:
    procedure_id, value = key
    decided = int(row.get("decided") or 0)
    return Figures(
        procedure_id, value if group else None, sum(counts.values()), counts,
        _percentiles(row, "admin", decided), _percentiles(row, "total", decided), target,
        with_target=int(row.get("with_target") or 0),
        within_target=int(row.get("within_target") or 0))


# --- sensitive breakdowns: primary and secondary suppression ----------------------------------

def protect(breakdown: Sequence[Figures], totals: Sequence[Figures]) -> list[Figures]:
    """`breakdown` (a sensitive dimension's groups) as it may be published, next to `totals`
    (each procedure's own figures, published in full).

    Each procedure's groups make a table of counts: per group its requests, its cases per
    outcome, its decided cases and, of them, those measured against the target and those
    within it. Every line of that table adds up to a published figure: a measure over the
    groups to the procedure's figure, a group's outcomes to its requests, its accepted and
    rejected cases to its decided ones, its decided and other cases to its requests; and the
    counts those published figures give away without showing them (never shown, but
    suppressed like the others: hiding one hides what it is worked out from): its cases
    within and over the target to those measured against it, those and the decided cases
    not measured to its decided ones, each over the groups to the procedure's. A count
    from 1 to SMALL_GROUP - 1 is suppressed (primary); then, until nothing changes, in every
    line where the suppressed counts could be worked out (one alone, or together fewer than
    SMALL_GROUP) the smallest other count (non-zero ones first; else the line's total) is
    suppressed too (secondary); a line whose counts are all 0, or all suppressed beside the
    procedure's own figure, tells nothing more than that figure. A group whose requests are
    suppressed shows nothing; `with_target` goes with `decided` (they are equal when every
    version has a target); times are shown only beside a published `decided`."""
    by_procedure: dict[str, list[Figures]] = {}
    for figures in breakdown:
        by_procedure.setdefault(figures.procedure_id, []).append(figures)
    totals_of = {f.procedure_id: f for f in totals}
    values: dict[_Cell, int] = {}
    lines: list[tuple[list[_Cell], _Cell | None]] = []
    order: dict[str, list[str]] = {}
    for procedure_id, groups in by_procedure.items():
        total = totals_of.get(procedure_id)
        outcomes = list(dict.fromkeys([*(o for f in groups for o in f.outcomes),
                                       *(total.outcomes if total else ()), *DECIDED]))
        order[procedure_id] = outcomes
        measures = [_REQUESTS, *(f"outcome:{o}" for o in outcomes), _DECIDED, _WITH, _WITHIN,
                    _OVER, _UNTIMED]
        for f in groups:
            key = (f.procedure_id, f.group)
            values.update({
                (key, _REQUESTS): f.requests or 0,
                **{(key, f"outcome:{o}"): f.outcomes.get(o) or 0 for o in outcomes},
                (key, _DECIDED): f.administration.count or 0,
                (key, _WITH): f.with_target or 0, (key, _WITHIN): f.within_target or 0,
                (key, _OVER): (f.with_target or 0) - (f.within_target or 0),
                (key, _UNTIMED): (f.administration.count or 0) - (f.with_target or 0)})
            lines.append(([(key, f"outcome:{o}") for o in outcomes], (key, _REQUESTS)))
            lines.append(([(key, f"outcome:{o}") for o in DECIDED], (key, _DECIDED)))
            lines.append(([(key, _DECIDED), *((key, f"outcome:{o}") for o in outcomes
                                              if o not in DECIDED)], (key, _REQUESTS)))
            lines.append(([(key, _WITHIN), (key, _OVER)], (key, _WITH)))
            lines.append(([(key, _WITH), (key, _UNTIMED)], (key, _DECIDED)))
        lines += [([((f.procedure_id, f.group), m) for f in groups], None) for m in measures]
    hidden = _suppressed(values, lines)
    return [_published(f, hidden, order[f.procedure_id]) for f in breakdown]


def _suppressed(values: Mapping[_Cell, int], lines: Sequence[tuple[list[_Cell], _Cell | None]]
                ) -> set[_Cell]:
    """The cells to suppress: primary, then secondary until no line gives any away."""
    hidden: set[_Cell] = set()
    for cell, n in values.items():
        if 0 < n < SMALL_GROUP:
            _hide(values, hidden, cell)
    changed = True
    while changed:  # one cell at a time, so that no more is hidden than needed
        changed = False
        for parts, total in lines:
            found = _next(values, hidden, parts, total)
            if found is not None:
                _hide(values, hidden, found)
                changed = True
    return hidden


def _hide(values: Mapping[_Cell, int], hidden: set[_Cell], cell: _Cell) -> None:
    """Hide `cell`, and what goes with it: all of a group with its requests; `decided` and
    `with_target` together."""
    key, measure = cell
    hidden.add(cell)
    if measure == _REQUESTS:
        hidden.update(c for c in values if c[0] == key)
    elif measure in (_DECIDED, _WITH):
        hidden.update(((key, _DECIDED), (key, _WITH)))


def _next(values: Mapping[_Cell, int], hidden: set[_Cell], parts: Sequence[_Cell],
          total: _Cell | None) -> _Cell | None:
    """The count to suppress next in the line `parts` = `total` (None: the procedure's own
    figure, published), if the line gives a suppressed count away."""
    if not any(values[c] for c in parts):
        return None  # every part is 0, which the published total says anyway
    secret = [c for c in parts if c in hidden]
    if total is not None and total in hidden:
        exposed = not secret  # a hidden total is the sum of its parts
    else:
        exposed = bool(secret) and (
            len(secret) == 1 or sum(values[c] for c in secret) < SMALL_GROUP)
    if not exposed:
        return None
    # hide the smallest other part (a 0 when no other is left: the parts it adds up with are
    # no longer known), else the line's total; when every part is hidden and the total is the
    # procedure's own figure, the hidden parts only add up to that published figure
    shown = [c for c in parts if c not in hidden]
    found = min(shown, key=lambda c: (values[c] == 0, values[c], c[1], c[0][1] or ""),
                default=None)
    if found is None and total is not None and total not in hidden:
        return total
    return found


def _published(f: Figures, hidden: set[_Cell], order: Sequence[str]) -> Figures:
    """`f` with its hidden counts None (an outcome it has none of, too, when hidden)."""
    key = (f.procedure_id, f.group)
    if (key, _REQUESTS) in hidden:
        return Figures(f.procedure_id, f.group, None, {}, Percentiles(None), Percentiles(None),
                       f.target, with_target=None, within_target=None, suppressed=True)
    timed = (key, _DECIDED) not in hidden
    outcomes = [o for o in order if o in f.outcomes or (key, f"outcome:{o}") in hidden]
    return replace(
        f, outcomes={o: None if (key, f"outcome:{o}") in hidden else f.outcomes[o]
                     for o in outcomes},
        administration=f.administration if timed else Percentiles(None),
        total=f.total if timed else Percentiles(None),
        with_target=None if (key, _WITH) in hidden else f.with_target,
        within_target=None if (key, _WITHIN) in hidden else f.within_target)


def _percentiles(row: Mapping[str, Any], name: str, count: int) -> Percentiles:
    values = [row.get(f"{name}_p{p}") for p in (50, 90, 99)]
    p50, p90, p99 = (None if v is None else int(v) for v in values)
    return Percentiles(count, p50, p90, p99)


def _states(engine: Engine, rows: Iterable[Mapping[str, Any]],
            kinds: Mapping[tuple[str, str], str]) -> list[StateFigures]:
    """Per state, in the order of the procedure's current version (others after)."""
    def order(row: Mapping[str, Any]) -> tuple[str, int, str]:
        states = list(engine.procedures[row["procedure_id"]].states)
        state = str(row["state"])
        return (str(row["procedure_id"]),
                states.index(state) if state in states else len(states), state)

    return [StateFigures(str(r["procedure_id"]), str(r["state"]),
                         kinds.get((str(r["procedure_id"]), str(r["state"])), "work"),
                         _percentiles(r, "stay", int(r["stays"])))
            for r in sorted(rows, key=order)]


def _backlog(row: Mapping[str, Any]) -> Backlog:
    bounds: list[int | None] = [*BACKLOG_BOUNDS, None]
    return Backlog(str(row["procedure_id"]), int(row["backlog"] or 0),
                   tuple((bound, int(row[f"age_{i}"] or 0)) for i, bound in enumerate(bounds)),
                   int(row["over_target"] or 0), int(row["waiting"] or 0))
