"""Exhaustive exploration of a procedure: every reachable (state, relevant data) combination.

`explore(procedure)` generates values for the fields that decide a run (form fields and step
`input:` alike: those named in guards, in the `when:` those fields, documents and fees depend
on, and in fee `per`) from their declared domains: options, booleans, the boundary values of
the numeric and date comparisons the expressions make (a number compared with another field
also takes values on each side of that field's bounds and constants), and texts matching a
field's `pattern:`. It then runs a breadth-first search over (state, data, documents and fees)
from the initial state, as every role would, asking the engine's own `Workflow` what each step
does: `Workflow.decide` says whether a trigger fires for an actor with the step data, which
transition it takes and the data the case keeps afterwards (hidden fields as the engine handles
them); `Workflow.timings` says when each deadline of a state falls, and the first one whose
transition the engine lets fire is the one that fires (system transitions fire only through a
deadline). No role name means anything: one person (`APPLICANT_ID`) opens every case, in the
first role the procedure's `start:` names, and is its applicant party; the steps of every role
`start:` names (`Procedure.party_roles`) are theirs, those of the other roles but the
system's (`Procedure.staff_roles`) are staff's. Exploration chooses what to try (actors,
data, documents, payments) and reports:

- `nobody-starts`: no role opens a case as its applicant: the engine refuses every start
  (`Workflow.check_start`), so nothing is explored;
- `unreachable-state`: a state no run reaches, with any data;
- `dead-guard`: a transition whose guard never holds where its source state is reached;
- `deadlock`: a reached non-final state from which nothing can fire, for that data;
- `no-exit-cycle`: states a run can loop through forever, never able to reach a final state.

Each finding but `nobody-starts` and `unreachable-state` carries the shortest counterexample,
twice: as the few steps that show it (`counterexample`: only the data that decides the run) and
as a complete scenario `guichet test` can replay (`scenario()`: sample values for the other
required fields and inputs, documents attached and fees paid before the steps that need them,
expectations).

Exploration supplies what a step needs (missing data is not a logic error): sample values for
the required fields and step inputs that decide nothing, the documents that apply attached and
the fees paid before each step, so that only guards decide; when guards read `documents`,
`fees_paid` or `fees_due`, runs where only what each step requires is attached or paid are
tried too. What nobody may supply any more (a required field in a state the applicant cannot
edit) is the engine's answer like any other. Every run starts on the exploration day (`today`,
by default `TODAY`; `guichet explore --today`) at 09:00, which `today` and `age()` read in
every decision the engine makes, and actors act at once; waiting for a deadline moves the
clock to when it falls. The applicant may change the form when firing from an editable state.
The search is bounded (depth, nodes, combinations) and `ExploreReport.bounds_hit` says when a
bound was reached. With `trace=True`, the report keeps every step tried and the engine's
answer (`Trace`), for replaying on a real Engine.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import InvalidData, NotAllowed
from ..expressions import Expression, Node, called, constant, names_read
from ..forms import Form
from ..graph import cyclic, strongly_connected_components
from ..model import (
    SYSTEM_ROLE,
    AnyDuration,
    Duration,
    Field,
    FieldDuration,
    Procedure,
    Transition,
    resolve_duration,
)
from ..values import SYSTEM, Actor
from ..workflow import ATTACH, PAY, CaseView, Decision, Refusal, Workflow
from .samples import texts_for

#: The fixed date of every exploration (ages and day differences are computed from it).
TODAY = dt.date(2026, 6, 15)
KINDS = ("nobody-starts", "unreachable-state", "dead-guard", "deadlock", "no-exit-cycle")
APPLICANT_ID = "citizen-1"  # the applicant party, in the procedure's first start role
CLOCK_TIME = dt.time(9, 0)  # scenarios start at 09:00 on the exploration day

Data = dict[str, Any]
Step = dict[str, Any]


# --- results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One problem found by exploration, with the shortest run that shows it."""

    kind: str  # one of KINDS
    message: str
    state: str | None = None  # the state concerned (the cycle's entry for no-exit-cycle)
    transition: Transition | None = field(default=None, compare=False)
    states: tuple[str, ...] = ()  # the states of a no-exit cycle
    data: Mapping[str, Any] = field(default_factory=dict)  # deciding data where it happens
    counterexample: tuple[Step, ...] | None = None  # the run, deciding data only
    replay: tuple[Step, ...] | None = None  # the run as complete scenario steps
    note: str = ""
    today: dt.date = TODAY

    @property
    def trigger(self) -> str | None:
        return self.transition.trigger if self.transition else None

    @property
    def slug(self) -> str:
        """A short name for files: deadlock-review, dead-guard-fast_track, ..."""
        subject = self.trigger if self.kind == "dead-guard" else "-".join(self.states) or self.state
        return f"{self.kind}-{subject}"

    @property
    def name(self) -> str:
        if self.kind == "dead-guard":
            return f'dead guard: "{self.trigger}" never fires from "{self.state}"'
        if self.kind == "no-exit-cycle":
            return "no-exit cycle: " + ", ".join(f'"{s}"' for s in self.states)
        return f'{self.kind.replace("-", " ")}: "{self.state}"'

    def scenario(self, procedure_id: str) -> dict[str, Any]:
        """A scenario (procedure, name, clock, steps) for `guichet test` and `yaml.safe_dump`.

        It replays the counterexample with sample values for the fields and inputs that do not
        matter, attaches documents and pays fees before the steps that need them, and ends with
        expectations: the state reached, and (deadlock) that nothing is available or (dead
        guard) that firing the transition is blocked by its guard.
        """
        if self.replay is None:
            raise ValueError(f"a {self.kind} finding has no counterexample")
        steps: list[Step] = json.loads(json.dumps(list(self.replay)))  # no shared nodes
        clock = dt.datetime.combine(self.today, CLOCK_TIME).isoformat()
        return {"procedure": procedure_id, "name": self.name, "clock": clock, "steps": steps}

    def scenario_text(self, procedure_id: str) -> str:
        """The scenario as a YAML file, the finding and its note as leading comments."""
        lines = [f"# {self.kind}: {self.message}", f"# {self.note}"]
        comments = "\n".join(line.replace("\n", " ") for line in lines)
        body = yaml.dump(self.scenario(procedure_id), Dumper=_Dumper, sort_keys=False,
                         allow_unicode=True, width=100)
        return f"{comments}\n{body}"


class _Dumper(yaml.SafeDumper):
    """Quotes every text that YAML 1.1 could read as a number or a boolean."""


_AMBIGUOUS = re.compile(r"[-+.]?[0-9]|(?i:y|n|yes|no|on|off|true|false|null|~)$")


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if _AMBIGUOUS.match(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


@dataclass
class ExploreReport:
    """What `explore` found, and how far it looked."""

    procedure_id: str
    findings: list[Finding]
    states_reached: list[str]
    states: list[str]
    nodes: int
    combinations: int  # starting data combinations explored
    fields: list[str]  # the relevant fields (form fields and inputs)
    bounds_hit: list[str]
    today: dt.date = TODAY
    domains: dict[str, list[Any]] = field(default_factory=dict)  # relevant field -> values
    trace: Trace | None = field(default=None, repr=False, compare=False)  # with trace=True

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def as_json(self) -> dict[str, Any]:
        """The report as JSON values: the day explored (`today`), what was reached, the
        bounds hit and each finding with its counterexample (deciding data only)."""
        return {
            "procedure": self.procedure_id, "today": self.today.isoformat(),
            "states_reached": list(self.states_reached), "states": list(self.states),
            "nodes": self.nodes, "combinations": self.combinations,
            "fields": list(self.fields), "bounds_hit": list(self.bounds_hit),
            "findings": [_finding_json(f) for f in self.findings],
        }

    def lines(self) -> list[str]:
        """The report as text: a summary, the bounds hit, then one paragraph per finding."""
        fields = ", ".join(self.fields) or "none"
        out = [f"explore {self.procedure_id}: {len(self.states_reached)}/{len(self.states)} "
               f"state(s) reached, {self.nodes} node(s), {self.combinations} starting data "
               f"combination(s); relevant fields: {fields}; today = {self.today.isoformat()}"]
        out += [f"bound hit: {bound}" for bound in self.bounds_hit]
        if not self.findings:
            out.append("no findings" + (" within the bounds" if self.bounds_hit else ""))
        for finding in self.findings:
            out += ["", f"{finding.kind}: {finding.message}"]
            if finding.counterexample is not None:
                out.append("  counterexample:")
                out += [f"    {i}. {_describe_step(s)}"
                        for i, s in enumerate(finding.counterexample, 1)]
                out.append(f"  note: {finding.note}")
        return out


def _finding_json(finding: Finding) -> dict[str, Any]:
    steps = finding.counterexample
    found: dict[str, Any] = {
        "kind": finding.kind, "message": finding.message, "state": finding.state,
        "trigger": finding.trigger, "states": list(finding.states),
        "data": dict(finding.data), "note": finding.note,
        "counterexample": None if steps is None else [dict(s) for s in steps],
    }
    copied: dict[str, Any] = json.loads(json.dumps(found, default=str))
    return copied


def _describe_step(step: Mapping[str, Any]) -> str:
    data = step.get("start", step.get("data"))
    values = f" with {_values(data)}" if data else ""
    if "start" in step:
        return f"start as {step['as']}{values}"
    if "wait" in step:
        return f"wait {step['wait']}"
    return f"fire {step['fire']} as {step['as']}{values}"


def _values(data: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in data.items()) or "-"


# --- which data matters -------------------------------------------------------------------------

def _guards(p: Procedure) -> list[Expression]:
    return [t.when for t in p.transitions if t.when is not None]


def _all_fields(p: Procedure) -> dict[str, Field]:
    """Form fields and transition inputs by id (a form field wins over an input of its id)."""
    found: dict[str, Field] = {}
    for f in [*p.fields, *(i for t in p.transitions for i in t.input)]:
        found.setdefault(f.id, f)
    return found


@dataclass(frozen=True)
class Relevance:
    fields: tuple[str, ...]  # in declaration order: form fields, then inputs
    documents: bool  # some relevant expression reads `documents`
    fees: bool  # ... or `fees_paid` / `fees_due`


def relevance(p: Procedure) -> Relevance:
    """The data that can change which transitions fire: the names guards read, then (to a fixed
    point) those in the `when:` of relevant fields, of documents when guards read `documents`,
    and of fees (their `per` and `amount: {from:}`) when guards read `fees_paid` or
    `fees_due`; and the fields a deadline's `after` reads (they decide when it falls)."""
    data_fields = _all_fields(p)
    whens = {i: f.when for i, f in data_fields.items() if f.when is not None}
    document_names = {n for d in p.documents if d.when for n in d.when.names}
    fee_names = {n for fee in p.fees if fee.when for n in fee.when.names}
    fee_names |= {fee.per for fee in p.fees if fee.per}
    fee_names |= {fee.amount_from for fee in p.fees if fee.amount_from}
    names = {n for g in _guards(p) for n in g.names}
    names |= {d.after.field for s in p.states.values() for d in s.deadlines
              if isinstance(d.after, FieldDuration)}  # when a deadline falls
    while True:
        wider = set(names)
        if "documents" in names:
            wider |= document_names
        if names & {"fees_paid", "fees_due"}:
            wider |= fee_names
        for name in names & set(whens):
            wider |= whens[name].names
        if wider == names:
            break
        names = wider
    return Relevance(tuple(i for i in data_fields if i in names), "documents" in names,
                     bool(names & {"fees_paid", "fees_due"}))


# --- the values tried ---------------------------------------------------------------------------

@dataclass
class _Hints:
    """What the expressions compare a field with."""

    numbers: set[float] = field(default_factory=set)  # constants compared with it (or with f(it))
    ages: set[int] = field(default_factory=set)  # constants compared with age(it)
    strings: set[str] = field(default_factory=set)
    expressions: bool = False  # compared with something not constant (today, another field)
    peers: set[str] = field(default_factory=set)  # the fields read by those other sides


def _expressions(p: Procedure) -> Iterator[Expression]:
    yield from _guards(p)
    for f in [*p.fields, *(i for t in p.transitions for i in t.input)]:
        if f.when is not None:
            yield f.when
    for document in p.documents:
        if document.when is not None:
            yield document.when
    for fee in p.fees:
        if fee.when is not None:
            yield fee.when


def _hints(p: Procedure, name: str) -> _Hints:
    hints = _Hints()
    for expression in _expressions(p):
        for left, _op, right in expression.comparisons():
            for side, other in ((left, right), (right, left)):
                if name in names_read(side):
                    _hint(hints, side, other)
    return hints


def _hint(hints: _Hints, side: Node, other: Node) -> None:
    value = constant(other)
    values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
    if not values:
        hints.expressions = True
        hints.peers |= names_read(other)
    aged = "age" in called(side)
    for value in values:
        if isinstance(value, bool):
            continue
        if isinstance(value, str):
            hints.strings.add(value)
        elif isinstance(value, int | float) and aged:
            hints.ages.add(int(value))
        elif isinstance(value, int | float):
            hints.numbers.add(value)


_SAMPLES = {
    "country": ("TG", "FR", "BJ", "GH"),
    "email": ("citizen@example.tg", "other@example.tg"),
    "phone": ("+22890000000", "+22890000001"),
    "nin": ("1234567890", "9876543210"),
}


class _Values:
    """Valid values of fields: the domains explored, and samples for the other fields."""

    def __init__(self, p: Procedure, today: dt.date) -> None:
        self.procedure = p
        self.today = today
        self._forms: dict[str, Form] = {}
        self._hints: dict[str, _Hints] = {}

    def valid(self, f: Field, value: Any, today: dt.date) -> bool:
        form = self._forms.get(f.id)
        if form is None or form.fields[0] is not f:
            form = self._forms[f.id] = Form.of([f])
        return not form.validate({f.id: value}, today)[1]

    def domain(self, f: Field, today: dt.date | None = None) -> list[Any]:
        """Boundary values of `f` (plus None when it is optional), valid for the field on
        `today` (by default the exploration day, from which dates are counted)."""
        day = today or self.today
        hints = self._hints.get(f.id)
        if hints is None:
            hints = self._hints[f.id] = _hints(self.procedure, f.id)
        values = self._candidates(f, hints, day)
        if f.type != "group":
            values = [v for v in values if self.valid(f, v, day)] or values[:1]
        unique = list({json.dumps(v, sort_keys=True): v for v in values}.values())
        if not f.required:
            unique.append(None)
        return unique

    def sample(self, f: Field, today: dt.date) -> Any:
        """One valid value for a field that does not decide anything (used to fill forms)."""
        if f.type == "group":
            rows = max(f.min_rows or 1, 1)
            return [{s.id: self.sample(s, today) for s in f.fields if s.required}
                    for _ in range(rows)]
        candidates = self._candidates(f, _Hints(), today)
        if f.type == "multi_choice":
            candidates = [[o] for o in f.option_values]
        elif f.type == "date":
            adult = _years_before(today, 30).isoformat()
            later = (today + dt.timedelta(days=30)).isoformat()
            candidates = [adult, today.isoformat(), later, *candidates]
        fallback = candidates[0] if candidates else None
        return next((v for v in candidates if self.valid(f, v, today)), fallback)

    def _candidates(self, f: Field, hints: _Hints, today: dt.date) -> list[Any]:
        if f.type == "choice":
            return list(f.option_values)
        if f.type == "multi_choice":
            return _subsets(f.option_values)
        if f.type == "boolean":
            return [True, False]
        if f.type in ("integer", "number"):
            return _numbers(f, hints, self._peer_bounds(hints))
        if f.type == "date":
            return [d.isoformat() for d in self._dates(f, hints, today)]
        if f.type == "group":
            lengths = {0, *(max(0, int(n) + k) for n in hints.numbers for k in (-1, 0, 1))}
            return [[{} for _ in range(n)] for n in sorted(lengths)]
        return self._strings(f, hints, today)

    def _peer_bounds(self, hints: _Hints) -> set[float]:
        """The bounds and compared constants of the numeric fields `hints.peers` names."""
        found: set[float] = set()
        fields = _all_fields(self.procedure)
        for name in sorted(hints.peers):
            peer = fields.get(name)
            if peer is None or peer.type not in ("integer", "number"):
                continue
            found |= {b for b in (peer.minimum, peer.maximum) if isinstance(b, int | float)}
            found |= _hints(self.procedure, name).numbers
        return found

    def _dates(self, f: Field, hints: _Hints, today: dt.date) -> list[dt.date]:
        days = {today}
        for years in hints.ages:
            days |= {_years_before(today, years + k) for k in (-1, 0, 1) if years + k >= 0}
        for number in hints.numbers:
            for k in (-1, 0, 1):
                delta = dt.timedelta(days=int(number) + k)
                days |= {today + delta, today - delta}
        if hints.expressions:
            days |= {today - dt.timedelta(days=1), today + dt.timedelta(days=1)}
        days |= {b for b in (_bound(f.minimum, today), _bound(f.maximum, today)) if b}
        return sorted(days)

    def _strings(self, f: Field, hints: _Hints, today: dt.date) -> list[Any]:
        """The constants compared with `f`, and one other valid value."""
        length = max(f.min_length or 1, 1)
        samples = _SAMPLES.get(f.type, ("x" * length, "X" * length, "0" * length, "0123456789"))
        if f.pattern:  # texts the pattern describes first
            samples = (*texts_for(f.pattern, f.min_length), *samples)
        other = [s for s in samples
                 if s not in hints.strings and self.valid(f, s, today)]
        return [*sorted(hints.strings), *(other[:1] or samples[:1])]


def _subsets(options: Sequence[str]) -> list[Any]:
    if len(options) <= 3:
        sizes = range(len(options) + 1)
        return [list(c) for n in sizes for c in itertools.combinations(options, n)]
    return [[], *([o] for o in options), list(options)]


def _numbers(f: Field, hints: _Hints, peers: Iterable[float] = ()) -> list[Any]:
    """Boundary values: 0, the field's bounds, each side of the constants it is compared
    with and, compared with other fields (`peers`: their bounds and constants), each side
    of those and of its own bounds."""
    values: set[float] = {0}
    values |= {b for b in (f.minimum, f.maximum) if isinstance(b, int | float)}
    if hints.expressions:
        values |= set(peers)
        values |= {b + k for b in values for k in (-1, 1)}
    for c in hints.numbers:
        if f.type == "integer":
            low, high = math.floor(c), math.ceil(c)
            values |= {low - 1, low, high, high + 1}
        else:
            values |= {c - 1, c, c + 1}
    if f.type == "number":
        ordered = sorted(hints.numbers)
        values |= {(a + b) / 2 for a, b in itertools.pairwise(ordered)}
    return [int(v) if f.type == "integer" else v for v in sorted(values)]


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _bound(value: Any, today: dt.date) -> dt.date | None:
    if value == "today":
        return today
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _combinations(domains: Sequence[tuple[str, Sequence[Any]]], limit: int
                  ) -> tuple[list[Data], int]:
    """Data dicts (None values left out) for the product of the domains, and its full size.

    Beyond `limit`, a deterministic sample: first the "diagonal" (every value of every domain
    at least once), then pseudo-random picks.
    """
    sizes = [len(values) for _, values in domains]
    total = math.prod(sizes)
    if total <= limit:
        picks: Iterable[int] = range(total)
    else:
        diagonal = [_index([i % s for s in sizes], sizes) for i in range(max(sizes))]
        chosen = dict.fromkeys(diagonal[:limit])
        rng = random.Random(0)
        while len(chosen) < limit:
            chosen.setdefault(rng.randrange(total))
        picks = sorted(chosen)
    result = []
    for pick in picks:
        digits = _digits(pick, sizes)
        result.append({name: values[d] for (name, values), d in zip(domains, digits, strict=True)
                       if values[d] is not None})
    return result, total


def _index(digits: Sequence[int], sizes: Sequence[int]) -> int:
    index = 0
    for digit, size in zip(digits, sizes, strict=True):
        index = index * size + digit
    return index


def _digits(index: int, sizes: Sequence[int]) -> list[int]:
    digits = []
    for size in reversed(sizes):
        index, digit = divmod(index, size)
        digits.append(digit)
    return digits[::-1]


def _key(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)


def _wait_text(delta: dt.timedelta) -> str:
    """A wait for a scenario (which waits calendar time): whole days, hours or minutes."""
    for unit, size in (("days", dt.timedelta(days=1)), ("hours", dt.timedelta(hours=1))):
        if delta % size == dt.timedelta(0):
            return str(Duration(delta // size, unit))
    return str(Duration(math.ceil(delta / dt.timedelta(minutes=1)), "minutes"))


# --- the search ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Env:
    """Documents and payment before each step: `documents` is "all" (each one that applies
    attached), "none" (only those the step requires) or "max" (each one that applies, as many
    files as allowed); `paid`: all that is due, or only what the step requires."""

    documents: str = "all"
    paid: bool = True

    def describe(self) -> str:
        attached = {"all": "every document attached",
                    "none": "only the documents each step requires attached",
                    "max": "every document attached, as many files as allowed"}[self.documents]
        paid = "fees paid" if self.paid else "only the fees each step requires paid"
        return f"{attached}, {paid}"

    def files(self, minimum: int, maximum: int) -> int:
        return max(1, maximum if self.documents == "max" else minimum)


@dataclass(frozen=True)
class _Supply:
    """What is attached and paid before a step: the scenario steps, and the case after them."""

    steps: tuple[Step, ...]
    documents: dict[str, int]
    fees_paid: int


@dataclass(frozen=True)
class _Move:
    """How a node was reached from its parent: what was done, and what the engine chose."""

    transition: int  # index in procedure.transitions: the one the engine chose
    role: str  # the role the engine says the actor acted in
    actor: str  # the actor's id
    data: Data  # the step data sent (complete: deciding values and samples)
    supply: tuple[Step, ...]  # attach and pay steps before it
    waits: tuple[dt.timedelta, ...] = ()  # a deadline: the clock moves, each followed by a tick
    deadline: Duration | None = None  # a deadline: its `after`, as the counterexample shows it


@dataclass
class _Node:
    """A case as the engine keeps it, and how exploration first reached it."""

    state: str
    data: Data
    documents: dict[str, int]
    fees_paid: int
    actors: dict[str, list[str]]  # trigger -> ids of those who fired it
    clock: dt.datetime  # now; also when the stay in `state` began (actors act at once)
    env: int
    depth: int
    parent: int | None
    move: _Move | None


@dataclass(frozen=True)
class Attempt:
    """One step exploration asked the engine about (kept with `trace=True`), and the answer.

    `steps` are scenario steps: the attach and pay steps, then the fire step, or the waits for
    a state's deadlines (`deadlines`: each one's trigger and "fired" or "refused", in the order
    they fall, up to the one that fires). `outcome` is "fired", "refused" or "blocked" (the
    kind of the engine's Refusal; for deadlines, none fired) or "invalid" (the data was
    refused); `target` is the node reached when it fired, None past the node bound.
    """

    node: int
    trigger: str
    role: str
    steps: tuple[Step, ...]
    outcome: str
    target: int | None = None
    deadlines: tuple[tuple[str, str], ...] = ()


class Trace:
    """Every step exploration tried, with the engine's answers and the cases they lead to."""

    def __init__(self, explorer: _Explorer) -> None:
        self._x = explorer
        self.attempts: list[Attempt] = []

    @property
    def clock(self) -> dt.datetime:
        """When every run starts (the scenarios' `clock`)."""
        return self._x.start_clock

    @property
    def expanded(self) -> list[int]:
        """The nodes whose every way out was tried (not final, within the bounds)."""
        return sorted(self._x.expanded)

    def steps_to(self, node: int) -> list[Step]:
        """The scenario steps that take a new case to `node` (the first run that reached it)."""
        return self._x.scenario_steps(self._x.chain(node))

    def path(self, node: int) -> list[tuple[int, list[Step]]]:
        """The first run that reached `node`, node by node: each node of the run (the start
        first) with the scenario steps that take the case there from the one before."""
        ids: list[int] = []
        current: int | None = node
        while current is not None:
            ids.append(current)
            current = self._x.nodes[current].parent
        ids.reverse()
        steps = self.steps_to(node)
        found, at = [], 0
        for i in ids:
            move = self._x.nodes[i].move
            count = 1 if move is None else len(move.supply) + (
                len(move.waits) if move.deadline is not None else 1)
            found.append((i, steps[at:at + count]))
            at += count
        return found

    def case_at(self, node: int) -> dict[str, Any]:
        """The case at `node` as exploration expects the engine to keep it: state, data,
        documents (id -> files attached) and fees_paid."""
        n = self._x.nodes[node]
        return {"state": n.state, "data": dict(n.data), "documents": dict(n.documents),
                "fees_paid": n.fees_paid}


Exits = list[tuple[str, list[tuple[str, list[int]]]]]  # trigger -> (role, candidates)


class _Explorer:
    """The breadth-first search over cases (state, data, documents and fees) and its graph.

    Every decision is the engine's: `Workflow.decide` for a step, `Workflow.timings` for when
    the deadlines of a state fall, `Workflow.weigh` for which guards hold (dead guards) and
    `Workflow.authorize_change` for who may attach a document or pay.
    """

    def __init__(self, procedure: Procedure, max_depth: int, max_nodes: int,
                 max_combinations: int, today: dt.date, edits: bool, trace: bool) -> None:
        self.p = procedure
        self.workflow = Workflow(procedure)
        self.max_depth, self.max_nodes, self.limit = max_depth, max_nodes, max_combinations
        self.today, self.edits = today, edits
        self.start_clock = dt.datetime.combine(today, CLOCK_TIME)
        self.relevance = relevance(procedure)
        self.fields = _all_fields(procedure)
        self.values = _Values(procedure, today)
        self.domains = {i: self.values.domain(self.fields[i]) for i in self.relevance.fields}
        self._domains: dict[tuple[str, dt.date], list[Any]] = {}
        self.form_ids = [f.id for f in procedure.fields if f.id in self.domains]
        # the applicant party: one person, opening cases in the first start role
        self.party = procedure.start.roles[0] if procedure.start.roles else ""
        self.applicant = f"{self.party}:{APPLICANT_ID}"
        self.staff = [r for r in procedure.roles if r in procedure.staff_roles]
        self.refusal = self._start_refusal()
        self.dated = _dated(procedure)
        self.business_days = any(d.after.unit == "business_days"
                                 for s in procedure.states.values() for d in s.deadlines)
        self.bounds: list[str] = []
        self.envs = self._envs()
        self.combos = [] if self.refusal is not None else self._initial_combinations()
        self.nodes: list[_Node] = []
        self.index: dict[tuple[Any, ...], int] = {}
        self.edges: list[list[int]] = []
        self.expanded: set[int] = set()
        self.truncated: set[int] = set()
        self.held: set[int] = set()  # transitions whose guard held somewhere
        self.tried: dict[int, int] = {}  # transition -> first node where its guard was weighed
        self.escapes: dict[tuple[str, int], Data] = {}  # (state, env) -> form that left it
        self.attachers: dict[str, str | None] = {}
        self.exits = {s: self._exits(s) for s in procedure.states}
        #: final states that transitions leave after the decision (a withdrawal, a revocation)
        self._after_decision = {s: any(procedure.transitions_from(s)) for s in procedure.states}
        self.trace = Trace(self) if trace else None

    # --- setting up -----------------------------------------------------------------------------

    def _start_refusal(self) -> str | None:
        """Why no case can be opened by the applicant exploration plays (the engine's answer,
        `Workflow.check_start`), or None: without a start role, every start is refused."""
        roles = [self.party] if self.party else sorted(self.p.roles) or [SYSTEM_ROLE]
        try:
            self.workflow.check_start(Actor(APPLICANT_ID, roles))
        except NotAllowed as refusal:
            return refusal.message("en")
        return None if self.party else "no role opens a case as its own applicant"

    def _initial_combinations(self) -> list[Data]:
        """The start data tried: each combination of the relevant form fields, sample values
        for the other required fields, as the engine stores it (hidden fields dropped)."""
        domains = [(i, self.domains[i]) for i in self.form_ids]
        combos, total = _combinations(domains, self.limit)
        if total > len(combos):
            self._bound(f"combinations: {total} combinations of the relevant fields, "
                        f"{len(combos)} explored (max_combinations={self.limit})")
        started: dict[str, Data] = {}
        for combo in combos:
            data: Data = {}
            for f in self.p.fields:  # in the order of the form
                if f.id in combo:
                    data[f.id] = combo[f.id]
                elif f.required and f.id not in self.domains:
                    data[f.id] = self.values.sample(f, self.today)
            try:
                kept = self.workflow.start_data(data, self.today)
            except InvalidData:
                continue
            started.setdefault(_key(self.deciding(kept)), kept)
        return list(started.values())

    def _envs(self) -> list[_Env]:
        documents = ["all", "none", "max"] if self.relevance.documents else ["all"]
        paid = [True, False] if self.relevance.fees else [True]
        return [_Env(d, p) for d in documents for p in paid]

    def _exits(self, state: str) -> Exits:
        """Per trigger leaving `state`: each role that can fire it with its candidates (the
        system's only through a deadline of `state`)."""
        deadlines = {d.trigger for d in self.p.states[state].deadlines}
        by_trigger: dict[str, dict[str, list[int]]] = {}
        for i, t in enumerate(self.p.transitions):
            if state not in t.sources:
                continue
            roles = by_trigger.setdefault(t.trigger, {})
            for role in t.roles:
                if role != SYSTEM_ROLE or t.trigger in deadlines:
                    roles.setdefault(role, []).append(i)
        return [(trigger, list(roles.items())) for trigger, roles in by_trigger.items()]

    def _bound(self, message: str) -> None:
        if message not in self.bounds:
            self.bounds.append(message)

    def deciding(self, data: Mapping[str, Any]) -> Data:
        """The values of `data` that decide a run (the relevant fields)."""
        return {k: v for k, v in data.items() if k in self.domains}

    def domain(self, name: str, day: dt.date) -> list[Any]:
        """The values tried for a relevant field on `day` (dates counted from it)."""
        if day == self.today:
            return self.domains[name]
        found = self._domains.get((name, day))
        if found is None:
            found = self._domains[(name, day)] = self.values.domain(self.fields[name], day)
        return found

    # --- the cases ------------------------------------------------------------------------------

    def _key(self, node: _Node) -> tuple[Any, ...]:
        """What the engine's decisions can depend on. The moment counts only where something
        reads it: expressions or date fields (the day), business days (weekday and time; the
        date with a country calendar, whose holidays fall on dates)."""
        if self.dated or (self.business_days and self.workflow.calendar.country):
            moment = node.clock.isoformat()
        elif self.business_days:
            moment = f"{node.clock.weekday()} {node.clock.time()}"
        else:
            moment = ""
        return (node.state, _key(node.data), _key(node.documents), node.fees_paid, node.env,
                moment)

    def view(self, node: _Node, supply: _Supply | None = None) -> CaseView:
        """The case at `node` as `Workflow.decide` reads it (after `supply`, if any)."""
        documents = supply.documents if supply else node.documents
        paid = supply.fees_paid if supply else node.fees_paid
        return CaseView(node.state, APPLICANT_ID, node.data, documents, paid, node.actors)

    def supply(self, node: _Node, data: Data, candidates: Sequence[Transition],
               day: dt.date) -> _Supply:
        """Attach and pay, as the run's environment says, before one of `candidates` fires
        with `data` (the case's data and the step's): who may do it is the engine's answer."""
        env = self.envs[node.env]
        documents = dict(node.documents)
        steps: list[Step] = []
        context = self.workflow.context(data, documents, node.fees_paid, day)
        wanted: dict[str, int] = {}
        if env.documents == "none":
            for c in candidates:
                for d in self.workflow.documents_missing(documents, context,
                                                         c.requires_documents):
                    wanted[d.id] = max(wanted.get(d.id, 0), max(1, d.min_files))
        else:
            wanted = {d.id: min(env.files(d.min_files, d.max_files), d.max_files)
                      for d in self.p.documents if context.applies(d.when)}
        attacher = self._attacher(node)
        for d in self.p.documents:
            have = documents.get(d.id, 0)
            if attacher is None or wanted.get(d.id, 0) <= have:
                continue
            step: Step = {"attach": d.id, "as": attacher}
            if wanted[d.id] - have > 1:
                step["file"] = {"count": wanted[d.id] - have}
            steps.append(step)
            documents[d.id] = wanted[d.id]
        paid = node.fees_paid
        # the engine takes at most what the case's stored data makes due
        room = int(self.workflow.context(node.data, documents, paid, day)["fees_due"]) - paid
        amount = room
        if not env.paid:
            context = self.workflow.context(data, documents, paid, day)
            need = max((self.workflow.fees_required(c.trigger, context, node.actors)
                        for c in candidates), default=0)
            amount = min(room, need - paid)
        if amount > 0 and self._may(node, Actor(APPLICANT_ID, [self.party]), PAY):
            methods = self.p.payment_methods  # a declared list: pay with the first
            steps.append({"pay": amount, "as": self.applicant,
                          **({"method": methods[0].id} if methods else {})})
            paid += amount
        return _Supply(tuple(steps), documents, paid)

    def _attacher(self, node: _Node) -> str | None:
        """Who attaches documents in this state: the applicant, else the first staff role."""
        if node.state not in self.attachers:
            found = None
            for role, actor in [(self.party, APPLICANT_ID),
                                *((r, f"{r}-1") for r in self.staff)]:
                if self._may(node, Actor(actor, [role]), ATTACH):
                    found = f"{role}:{actor}"
                    break
            self.attachers[node.state] = found
        return self.attachers[node.state]

    def _may(self, node: _Node, actor: Actor, step: str) -> bool:
        try:
            self.workflow.authorize_change(self.view(node), actor, step)
        except NotAllowed:
            return False
        return True

    # --- the breadth-first search ---------------------------------------------------------------

    def run(self) -> None:
        if self.refusal is not None:  # the engine opens no case: nothing to explore
            return
        initial = self.p.initial_state.id
        for combo in self.combos:
            for env in range(len(self.envs)):
                self._add(_Node(initial, combo, {}, 0, {}, self.start_clock, env, 0, None, None))
        queue = deque(range(len(self.nodes)))
        while queue:
            node_id = queue.popleft()
            before = len(self.nodes)
            self._expand(node_id)
            queue.extend(range(before, len(self.nodes)))

    def _add(self, node: _Node) -> int | None:
        key = self._key(node)
        found = self.index.get(key)
        if found is not None:
            return found
        if len(self.nodes) >= self.max_nodes:
            self._bound(f"nodes: stopped at {self.max_nodes} explored nodes (max_nodes)")
            return None
        self.index[key] = len(self.nodes)
        self.nodes.append(node)
        self.edges.append([])
        return len(self.nodes) - 1

    def _expand(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if self.p.states[node.state].final and not self._after_decision[node.state]:
            return  # a decided case: over, unless transitions lead on after the decision
        if node.depth >= self.max_depth:
            self._bound(f"depth: runs longer than {self.max_depth} steps were not followed "
                        "(max_depth)")
            return
        self.expanded.add(node_id)
        self._leave(node_id, node, False)
        if not self.edges[node_id] and node.depth == 0:
            # every start is tried anyway: editing the draft only matters if it is stuck
            self._leave(node_id, node, True)

    def _leave(self, node_id: int, node: _Node, edit_start: bool) -> None:
        waited = edit_start  # the deadlines do not depend on the applicant's edits
        for trigger, roles in self.exits[node.state]:
            for role, candidates in roles:
                if role == SYSTEM_ROLE:
                    if not waited:
                        waited = True
                        self._wait(node_id, node)
                    continue
                self._fire(node_id, node, trigger, role, candidates, edit_start)
                if edit_start and self.edges[node_id]:
                    return  # one way out is enough: every start is explored anyway

    def _fire(self, node_id: int, node: _Node, trigger: str, role: str, candidates: list[int],
              edit_start: bool) -> None:
        """Every way `role` can fire `trigger` from `node`, as the engine decides it."""
        day = node.clock.date()
        transitions = [self.p.transitions[i] for i in candidates]
        actor = Actor(_actor(role, transitions, node.actors, self.p.party_roles), [role])
        for data in self.variants(node, role, transitions, edit_start):
            supply = self.supply(node, {**node.data, **data}, transitions, day)
            case = self.view(node, supply)
            self._weigh(node_id, case, trigger, actor, data, day, candidates)
            try:
                outcome = self.workflow.decide(case, trigger, actor, data, day)
            except InvalidData:
                self._attempt(node_id, trigger, role, [*supply.steps, _fire_step(
                    trigger, role, actor.id, data)], "invalid")
                continue
            fire = _fire_step(trigger, role, actor.id, data)
            if isinstance(outcome, Refusal):
                self._attempt(node_id, trigger, role, [*supply.steps, fire], outcome.kind)
                continue
            move = _Move(self._index(outcome.transition), outcome.role, actor.id, data,
                         supply.steps)
            added = self._follow(node_id, node, outcome, actor, supply, node.clock, move)
            self._attempt(node_id, trigger, role, [*supply.steps, fire], "fired", added)
            if edit_start and self.edges[node_id]:  # remember the form that left the start
                merged = {**node.data, **data}
                escape = {k: merged[k] for k in self.form_ids if k in merged}
                self.escapes[(node.state, node.env)] = escape
                return

    def _wait(self, node_id: int, node: _Node) -> None:
        """Wait for the deadlines of the node's state: they fall when `Workflow.timings` says,
        and the first whose transition the engine lets fire takes the case on."""
        timings = self.workflow.timings(node.state, node.clock, node.data)
        triggers = {timing.deadline.trigger for timing in timings}
        transitions = [t for t in self.p.transitions_from(node.state)
                       if SYSTEM_ROLE in t.roles and t.trigger in triggers]
        supply = self.supply(node, node.data, transitions, node.clock.date())
        case = self.view(node, supply)
        clock, waits, answers = node.clock, [], []
        for timing in timings:
            trigger = timing.deadline.trigger
            if timing.due > clock:
                waits.append(timing.due - clock)
                clock = timing.due
            candidates = [self._index(t) for t in transitions if t.trigger == trigger]
            self._weigh(node_id, case, trigger, SYSTEM, {}, clock.date(), candidates)
            try:
                outcome = self.workflow.decide(case, trigger, SYSTEM, {}, clock.date())
            except InvalidData:  # a required input nobody gives
                outcome = None
            if not isinstance(outcome, Decision):
                answers.append((trigger, "refused"))
                continue
            answers.append((trigger, "fired"))
            move = _Move(self._index(outcome.transition), outcome.role, SYSTEM.id, {},
                         supply.steps, tuple(waits), _stated(timing.deadline.after, node.data,
                                                             waits))
            added = self._follow(node_id, node, outcome, SYSTEM, supply, clock, move)
            self._attempt(node_id, trigger, SYSTEM_ROLE, [*supply.steps, *_waits(waits)],
                          "fired", added, answers)
            return
        if timings:
            self._attempt(node_id, timings[-1].deadline.trigger, SYSTEM_ROLE,
                          [*supply.steps, *_waits(waits)], "blocked", None, answers)

    def _follow(self, node_id: int, node: _Node, decision: Decision, actor: Actor,
                supply: _Supply, clock: dt.datetime, move: _Move) -> int | None:
        """The case after a decided step (as the engine stores it), added as an edge."""
        t = decision.transition
        actors = {trigger: list(ids) for trigger, ids in node.actors.items()}
        if actor.id not in actors.setdefault(t.trigger, []):
            actors[t.trigger].append(actor.id)
        added = self._add(_Node(t.target, decision.data, supply.documents, supply.fees_paid,
                                actors, clock, node.env, node.depth + 1, node_id, move))
        if added is None:
            self.truncated.add(node_id)
        elif added not in self.edges[node_id]:
            self.edges[node_id].append(added)
        return added

    def _weigh(self, node_id: int, case: CaseView, trigger: str, actor: Actor, data: Data,
               day: dt.date, candidates: list[int]) -> None:
        """Note which guards of the candidates hold here (`Workflow.weigh`), while some
        guard has never been seen to hold."""
        if all(self.p.transitions[i].when is None or i in self.held for i in candidates):
            return
        try:
            weighed = self.workflow.weigh(case, trigger, actor, data, day)
        except InvalidData:
            return
        for t, reasons in weighed:
            i = self._index(t)
            self.tried.setdefault(i, node_id)
            if t.when is not None and not any(r.code == "guard" for r in reasons):
                self.held.add(i)

    def _index(self, t: Transition) -> int:
        return next(i for i, c in enumerate(self.p.transitions) if c is t)

    def _attempt(self, node_id: int, trigger: str, role: str, steps: list[Step], outcome: str,
                 target: int | None = None, deadlines: Sequence[tuple[str, str]] = ()) -> None:
        if self.trace is not None:
            self.trace.attempts.append(Attempt(node_id, trigger, role, tuple(steps), outcome,
                                               target, tuple(deadlines)))

    def variants(self, node: _Node, role: str, transitions: Sequence[Transition],
                 edit_start: bool) -> Iterator[Data]:
        """The step data tried: relevant inputs (and the form changes the applicant may make),
        with sample values for the other required inputs and for the required fields the form
        then lacks."""
        day = node.clock.date()
        inputs = list(dict.fromkeys(i.id for t in transitions for i in t.input
                                    if i.id in self.domains))
        combos, total = _combinations([(i, self.domain(i, day)) for i in inputs], self.limit)
        if total > len(combos):
            self._bound(f"inputs: {total} input combinations, {len(combos)} explored "
                        f"(max_combinations={self.limit})")
        required = list({i.id: i for t in transitions for i in t.input if i.required}.values())
        fills_form = role in self.p.party_roles and self.p.states[node.state].editable
        for edit in self._edits(node, role, edit_start):
            for combo in combos:
                data = {**edit, **combo}
                for f in required:
                    if f.id not in data:
                        data[f.id] = self.values.sample(f, day)
                if fills_form:
                    context = self.workflow.context({**node.data, **data}, node.documents,
                                                    node.fees_paid, day)
                    for f in self.workflow.form.missing(context, self.workflow.visible(context)):
                        data[f.id] = self.values.sample(f, day)
                yield data

    def _edits(self, node: _Node, role: str, edit_start: bool) -> list[Data]:
        """Form changes the applicant can make when firing from an editable state."""
        state = self.p.states[node.state]
        first = node.depth == 0 and not edit_start  # the start already tries every combination
        if not (self.edits and role in self.p.party_roles and state.editable) or first:
            return [{}]
        edits: dict[str, Data] = {"{}": {}}
        remembered = self.escapes.get((node.state, node.env)) if edit_start else None
        for combo in [remembered, *self.combos] if remembered else self.combos:
            change = {k: v for k, v in self.deciding(combo).items() if node.data.get(k) != v}
            edits.setdefault(_key(change), change)
        return list(edits.values())

    # --- findings -------------------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        if self.refusal is not None:
            return [self._nobody_starts(self.refusal)]
        return [*self._unreachable(), *self._dead_guards(), *self._deadlocks(),
                *self._cycles()]

    def _nobody_starts(self, refusal: str) -> Finding:
        return Finding(
            "nobody-starts",
            f"{refusal}: the engine refuses to open any case, so nothing was explored; say "
            "who may with `start: {roles: [...]}` (exploration plays the applicant in the "
            "first of those roles)", state=self.p.initial_state.id, today=self.today)

    def _unreachable(self) -> Iterator[Finding]:
        reached = {n.state for n in self.nodes}
        within = " within the bounds" if self.bounds else ""
        for state in self.p.states:
            if state not in reached:
                yield Finding("unreachable-state", f'state "{state}" is never reached{within}, '
                                                   "with any data", state=state, today=self.today)

    def _dead_guards(self) -> Iterator[Finding]:
        for i, t in enumerate(self.p.transitions):
            if t.when is None or i in self.held or i not in self.tried:
                continue
            sources = ", ".join(f'"{s}"' for s in t.sources)
            within = " within the bounds" if self.bounds else ""
            yield self._finding(
                "dead-guard", self.tried[i],
                f'the guard of "{t.trigger}" ({" or ".join(t.sources)} -> {t.target}) never '
                f"holds: {t.when.source} (tried in {sources} with every data "
                f"combination{within})", transition=t)

    def _deadlocks(self) -> Iterator[Finding]:
        seen: set[str] = set()
        for node_id in sorted(self.expanded):
            node = self.nodes[node_id]
            if self.edges[node_id] or node_id in self.truncated or node.env != 0 \
                    or node.state in seen:
                continue
            seen.add(node.state)
            yield self._finding(
                "deadlock", node_id,
                f'state "{node.state}" is not final, yet nothing can leave it with '
                f"{_values(self.deciding(node.data))}: {self._why_stuck(node.state)}")

    def _why_stuck(self, state: str) -> str:
        deadlines = {d.trigger for d in self.p.states[state].deadlines}
        reasons = []
        for t in self.p.transitions_from(state):
            if t.roles == (SYSTEM_ROLE,) and t.trigger not in deadlines:
                reasons.append(f"{t.trigger} (system only, and no deadline of this state)")
            elif t.when is not None:
                reasons.append(f"{t.trigger} (when: {t.when.source})")
        return "; ".join(reasons) + " do not hold" if reasons else "no transition leaves it"

    def _cycles(self) -> Iterator[Finding]:
        graph = {n: [m for m in self.edges[n] if m in self.expanded]
                 for n in sorted(self.expanded)}
        seen: set[tuple[str, ...]] = set()
        for component in strongly_connected_components(graph):
            if not cyclic(graph, component) or not self._closed(component):
                continue
            entry = min(component)
            inside = {self.nodes[n].state for n in component}
            states = tuple(s for s in self.p.states if s in inside)
            if states in seen:
                continue
            seen.add(states)
            names = ", ".join(f'"{s}"' for s in states)
            yield self._finding(
                "no-exit-cycle", entry,
                f"runs with {_values(self.deciding(self.nodes[entry].data))} loop forever "
                f"through {names}: no final state can be reached from there", states=states)

    def _closed(self, component: list[int]) -> bool:
        """No way out: every edge stays inside, nothing was cut by a bound, all supplied."""
        members = set(component)
        return all(self.nodes[n].env == 0 and n not in self.truncated
                   and all(m in members for m in self.edges[n]) for n in component)

    def _finding(self, kind: str, node_id: int, message: str, *,
                 transition: Transition | None = None, states: tuple[str, ...] = ()
                 ) -> Finding:
        node = self.nodes[node_id]
        chain = self.chain(node_id)
        replay = self.scenario_steps(chain)
        replay[-1]["expect"] = {"state": node.state}
        if kind == "deadlock":
            replay += self._nothing_available(node)
        elif kind == "dead-guard" and transition is not None:
            replay += self._refused(node, transition)
        return Finding(kind, message, state=node.state, transition=transition, states=states,
                       data=self.deciding(node.data), counterexample=tuple(self._steps(chain)),
                       replay=tuple(replay), note=self._note(node), today=self.today)

    def _note(self, node: _Node) -> str:
        supplied = ("exploration assumes the required fields, documents and fees are supplied; "
                    "the counterexample gives only the data that decides the run")
        if self.relevance.documents or self.relevance.fees:
            supplied += f" ({self.envs[node.env].describe()})"
        return (f"found by exploration on {self.today.isoformat()}: {supplied}; "
                "the scenario fills in the rest with sample values")

    # --- counterexamples ------------------------------------------------------------------------

    def chain(self, node_id: int) -> list[_Node]:
        """The nodes of the first run that reached `node_id`, from its start."""
        chain: list[_Node] = []
        current: int | None = node_id
        while current is not None:
            chain.append(self.nodes[current])
            current = self.nodes[current].parent
        return chain[::-1]

    def _steps(self, chain: list[_Node]) -> list[Step]:
        """The run with the deciding data only."""
        steps: list[Step] = [{"start": self.deciding(chain[0].data), "as": self.applicant}]
        for node in chain[1:]:
            move = node.move
            assert move is not None
            if move.deadline is not None:
                steps.append({"wait": str(move.deadline)})
                continue
            step = _fire_step(self.p.transitions[move.transition].trigger, move.role,
                              move.actor, self.deciding(move.data))
            steps.append(step)
        return steps

    def scenario_steps(self, chain: list[_Node]) -> list[Step]:
        """The run as complete scenario steps: what `guichet test` needs to play it for real
        (start data, documents attached and fees paid before each step, waits)."""
        steps: list[Step] = [{"start": dict(chain[0].data), "as": self.applicant}]
        for node in chain[1:]:
            move = node.move
            assert move is not None
            steps += [dict(step) for step in move.supply]
            if move.deadline is not None:
                steps += _waits(move.waits)
                continue
            steps.append(_fire_step(self.p.transitions[move.transition].trigger, move.role,
                                    move.actor, move.data))
        copied: list[Step] = json.loads(json.dumps(steps))  # no shared objects
        return copied

    def _nothing_available(self, node: _Node) -> list[Step]:
        roles = dict.fromkeys(r for t in self.p.transitions_from(node.state) for r in t.roles
                              if r != SYSTEM_ROLE)
        return [{"expect": {"available": []},
                 "as": f"{role}:{_actor(role, (), {}, self.p.party_roles)}"}
                for role in roles]

    def _refused(self, node: _Node, t: Transition) -> list[Step]:
        """Fire the dead transition where it was tried: the engine blocks it on its guard
        (unless another transition of its trigger fires, then nothing is added)."""
        role = next((r for r in t.roles if r != SYSTEM_ROLE), None)
        if role is None:
            return []
        candidates = [c for c in self.p.transitions_from(node.state, t.trigger)
                      if role in c.roles]
        actor = Actor(_actor(role, candidates, node.actors, self.p.party_roles), [role])
        day = node.clock.date()
        for data in self.variants(node, role, candidates, False):
            supply = self.supply(node, {**node.data, **data}, candidates, day)
            try:
                outcome = self.workflow.decide(self.view(node, supply), t.trigger, actor, data,
                                               day)
            except InvalidData:
                continue
            if not isinstance(outcome, Refusal) or outcome.kind != "blocked" \
                    or not any(r.code == "guard" for r in outcome.reasons):
                return []
            step = _fire_step(t.trigger, role, actor.id, data)
            step["expect"] = {"refused": {"error": "blocked", "reasons": ["guard"]},
                              "state": node.state}
            return [*(dict(s) for s in supply.steps), step]
        return []


def _stated(after: AnyDuration, data: Mapping[str, Any], waits: Sequence[dt.timedelta]
            ) -> Duration:
    """A deadline's `after` as a counterexample shows it: as stated, or as the case's data
    gives it (else the time waited)."""
    resolved = resolve_duration(after, data)
    if resolved is not None:
        return resolved
    return Duration.parse(_wait_text(sum(waits, dt.timedelta())))


def _fire_step(trigger: str, role: str, actor: str, data: Data) -> Step:
    step: Step = {"fire": trigger, "as": f"{role}:{actor}"}
    if data:
        step["data"] = dict(data)
    return step


def _waits(waits: Iterable[dt.timedelta]) -> list[Step]:
    return [{"wait": _wait_text(wait)} for wait in waits]


def _actor(role: str, transitions: Sequence[Transition], actors: Mapping[str, list[str]],
           party_roles: frozenset[str]) -> str:
    """The actor id for `role`: the applicant's for a party role, else a staff member (a new
    one when separation forbids the earlier ones)."""
    if role in party_roles:
        return APPLICANT_ID
    earlier = {a for t in transitions for trigger in t.not_actor_of
               for a in actors.get(trigger, [])}
    number = 1
    while f"{role}-{number}" in earlier:
        number += 1
    return f"{role}-{number}"


def _dated(p: Procedure) -> bool:
    """Whether the day can change a decision: an expression reads `today` or `age`, or a
    field or step input holds a date (validated against the day)."""
    if any(expression.names & {"today", "age"} for expression in _expressions(p)):
        return True
    pending = [*p.fields, *(i for t in p.transitions for i in t.input)]
    while pending:
        f = pending.pop()
        if f.type == "date":
            return True
        pending.extend(f.fields)
    return False


def explore(procedure: Procedure, max_depth: int = 50, max_nodes: int = 100_000, *,
            max_combinations: int = 256, today: dt.date = TODAY, edits: bool = True,
            trace: bool = False) -> ExploreReport:
    """Explore every reachable (state, relevant data) of `procedure`; see the module docstring.

    `max_depth` bounds the steps of a run, `max_nodes` the (state, data) nodes explored and
    `max_combinations` the data combinations tried at the start and at each step. With `edits`,
    the applicant may change the form when firing from an editable state. With `trace`, the
    report keeps every step tried and the engine's answer (`ExploreReport.trace`).
    """
    explorer = _Explorer(procedure, max_depth, max_nodes, max_combinations, today, edits,
                         trace)
    explorer.run()
    reached = {n.state for n in explorer.nodes}
    return ExploreReport(
        procedure_id=procedure.id,
        findings=explorer.findings(),
        states_reached=[s for s in procedure.states if s in reached],
        states=list(procedure.states),
        nodes=len(explorer.nodes),
        combinations=len(explorer.combos),
        fields=list(explorer.relevance.fields),
        bounds_hit=list(explorer.bounds),
        today=today,
        domains={name: list(values) for name, values in explorer.domains.items()},
        trace=explorer.trace,
    )
