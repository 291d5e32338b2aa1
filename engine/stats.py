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
or reads it (`read:`), sees its statistics. A breakdown by a sensitive reporting dimension
(or a field declared sensitive) only ever counts: every count under SMALL_GROUP shows as
"< 5" (None), a group that small shows nothing else, and nothing is listed case by case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import InvalidData, NotAllowed, UnknownProcedure
from .messages import text
from .model import OUTCOMES, Procedure, State
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
_NOT_ALLOWED = {"fr": "vous n'avez pas accès aux statistiques de cette procédure",
                "en": "you may not see the statistics of this procedure"}

_Key = tuple[str, str | None]


def report(engine: Engine, *, actor: Actor = SYSTEM, procedure: str | None = None,
           since: dt.datetime | None = None, until: dt.datetime | None = None,
           by: str | None = None) -> Report:
    """The statistics of the cases opened at or after `since` and before `until` (naive UTC;
    None: no bound) of `procedure` (None: every procedure `actor` may see), broken down `by`
    one of CASE_BREAKDOWNS or a reporting dimension's field (None: no breakdown).

    UnknownProcedure for a procedure not loaded; NotAllowed for one `actor` may not see;
    InvalidData ("by") for a breakdown no procedure in scope declares."""
    ids = _readable(engine, procedure, actor)
    versions, kinds, state_kinds = _versions(engine, ids)
    now = engine.clock()
    base = StatsScope(tuple(ids), versions, kinds, now, since, until, decided=DECIDED,
                      buckets=BACKLOG_BOUNDS)
    db = engine._store  # noqa: SLF001 - the engine's own database, read-only here
    totals = db.stats_cases(base)
    procedures = _figures(engine, db.stats_requests(base), totals, sensitive=False, group=False)
    breakdown: list[Figures] = []
    sensitive = False
    if by is not None:
        scope, sensitive = _breakdown(engine, base, by)
        breakdown = _figures(engine, db.stats_requests(scope), db.stats_cases(scope),
                             sensitive=sensitive, group=True)
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
        raise NotAllowed(_NOT_ALLOWED) from None
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


def _breakdown(engine: Engine, base: StatsScope, by: str) -> tuple[StatsScope, bool]:
    """The scope grouped `by`, and whether its values are sensitive."""
    if by in CASE_BREAKDOWNS:
        return replace(base, group=by), False
    declaring = []
    sensitive = False
    for procedure_id in base.procedures:
        compiled = engine.procedures[procedure_id]
        for dimension in compiled.reporting:
            if dimension.field_id == by:
                declared = compiled.field(by)
                declaring.append(procedure_id)
                sensitive |= dimension.sensitive or bool(declared and declared.sensitive)
    if not declaring:
        known = sorted({d.field_id for p in base.procedures
                        for d in engine.procedures[p].reporting} | set(CASE_BREAKDOWNS))
        message = {"fr": f"« {by} » n'est pas une ventilation possible : "
                         f"{', '.join(known)}",
                   "en": f'"{by}" is not a breakdown of these procedures: {", ".join(known)}'}
        raise InvalidData(message, {"by": message})
    return replace(base, procedures=tuple(declaring), group="field", field=by), sensitive


def _row_key(row: Mapping[str, Any]) -> tuple[str, str]:
    return str(row["procedure_id"]), "" if row["grp"] is None else str(row["grp"])


def _figures(engine: Engine, requests: Iterable[Mapping[str, Any]],
             cases: Iterable[Mapping[str, Any]], *, sensitive: bool, group: bool
             ) -> list[Figures]:
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
        found.append(_one(key, counts, by_key.get(key, {}), target, sensitive, group))
    return found


def _group(value: Any) -> str | None:
    return None if value is None else str(value)


def _one(key: _Key, counts: dict[str, int], row: Mapping[str, Any], target: int | None,
         sensitive: bool, group: bool) -> Figures:
    requests = sum(counts.values())
    procedure_id, value = key
    if sensitive and requests < SMALL_GROUP:
        return Figures(procedure_id, value, None, {}, Percentiles(None), Percentiles(None),
                       target, suppressed=True)

    def count(n: int) -> int | None:
        return None if sensitive and n < SMALL_GROUP else n

    decided = int(row.get("decided") or 0)
    shown = not sensitive or decided >= SMALL_GROUP
    return Figures(
        procedure_id, value if group else None, requests,
        {outcome: count(n) for outcome, n in counts.items()},
        _percentiles(row, "admin", decided, shown), _percentiles(row, "total", decided, shown),
        target, with_target=int(row.get("with_target") or 0) if shown else 0,
        within_target=int(row.get("within_target") or 0) if shown else 0)


def _percentiles(row: Mapping[str, Any], name: str, count: int, shown: bool = True
                 ) -> Percentiles:
    if not shown:
        return Percentiles(None)
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
