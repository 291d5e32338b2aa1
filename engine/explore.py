"""Exhaustive exploration of a procedure: every reachable (state, relevant data) combination.

`explore(procedure)` generates values for the fields that decide a run (those named in guards,
in the `when:` those fields, documents and fees depend on, and in fee `per`) from their
declared domains: options, booleans, and the boundary values of the numeric and date comparisons
the expressions make. It then runs a breadth-first search over (state, data, documents and fees)
from the initial state, as every role would (system transitions fire only through a deadline of
their source state: time passes), and reports:

- `unreachable-state`: a state no run reaches, with any data;
- `dead-guard`: a transition whose guard never holds where its source state is reached;
- `deadlock`: a reached non-final state from which nothing can fire, for that data;
- `no-exit-cycle`: states a run can loop through forever, never able to reach a final state.

Each finding but `unreachable-state` carries the shortest counterexample, twice: as the few
steps that show it (`counterexample`: only the data that decides the run) and as a complete
scenario `guichet test` can replay (`scenario()`: sample values for the other required fields
and inputs, documents attached and fees paid before the steps that need them, expectations).

Exploration assumes that actors supply the required fields, documents and fees (missing ones are
not logic errors), so only guards decide; guards that read `documents`, `fees_paid` or
`fees_due` are also tried with nothing attached or paid. Dates are those of a fixed day,
`TODAY`, which waiting for a deadline does not move. The applicant may change the form when
firing from an editable state. The search is bounded (depth, nodes, combinations) and
`ExploreReport.bounds_hit` says when a bound was reached.
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
from jinja2 import nodes

from .expressions import Expression, call_name, constant
from .forms import Form
from .model import Duration, Field, Procedure, Transition
from .workflow import APPLICANT, Context, Workflow

#: The fixed date of every exploration (ages and day differences are computed from it).
TODAY = dt.date(2026, 6, 15)
SYSTEM = "system"
KINDS = ("unreachable-state", "dead-guard", "deadlock", "no-exit-cycle")
APPLICANT_ACTOR = "applicant:citizen-1"
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

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

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
    and of fees (and their `per`) when guards read `fees_paid` or `fees_due`."""
    data_fields = _all_fields(p)
    whens = {i: f.when for i, f in data_fields.items() if f.when is not None}
    document_names = {n for d in p.documents if d.when for n in d.when.names}
    fee_names = {n for fee in p.fees if fee.when for n in fee.when.names}
    fee_names |= {fee.per for fee in p.fees if fee.per}
    names = {n for g in _guards(p) for n in g.names}
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


def _mentions(node: nodes.Node, name: str) -> bool:
    if isinstance(node, nodes.Name):
        return bool(node.name == name)
    return any(n.name == name for n in node.find_all(nodes.Name))


def _hints(p: Procedure, name: str) -> _Hints:
    hints = _Hints()
    for expression in _expressions(p):
        for left, _op, right in expression.comparisons():
            for side, other in ((left, right), (right, left)):
                if _mentions(side, name):
                    _hint(hints, side, other)
    return hints


def _hint(hints: _Hints, side: nodes.Node, other: nodes.Node) -> None:
    value = constant(other)
    values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
    if not values:
        hints.expressions = True
    aged = any(call_name(n) == "age" for n in [side, *side.find_all(nodes.Call)])
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
        self._forms: dict[int, Form] = {}

    def valid(self, f: Field, value: Any, today: dt.date) -> bool:
        form = self._forms.get(id(f))
        if form is None:
            form = self._forms[id(f)] = Form.of([f])
        return not form.validate({f.id: value}, today)[1]

    def domain(self, f: Field) -> list[Any]:
        """Boundary values of `f` (plus None when it is optional), valid for the field."""
        hints = _hints(self.procedure, f.id)
        values = self._candidates(f, hints)
        if f.type != "group":
            values = [v for v in values if self.valid(f, v, self.today)] or values[:1]
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
        candidates = self._candidates(f, _Hints())
        if f.type == "multi_choice":
            candidates = [[o] for o in f.option_values]
        elif f.type == "date":
            adult = _years_before(today, 30).isoformat()
            later = (today + dt.timedelta(days=30)).isoformat()
            candidates = [adult, today.isoformat(), later, *candidates]
        fallback = candidates[0] if candidates else None
        return next((v for v in candidates if self.valid(f, v, today)), fallback)

    def _candidates(self, f: Field, hints: _Hints) -> list[Any]:
        if f.type == "choice":
            return list(f.option_values)
        if f.type == "multi_choice":
            return _subsets(f.option_values)
        if f.type == "boolean":
            return [True, False]
        if f.type in ("integer", "number"):
            return _numbers(f, hints)
        if f.type == "date":
            return [d.isoformat() for d in self._dates(f, hints)]
        if f.type == "group":
            lengths = {0, *(max(0, int(n) + k) for n in hints.numbers for k in (-1, 0, 1))}
            return [[{} for _ in range(n)] for n in sorted(lengths)]
        return self._strings(f, hints)

    def _dates(self, f: Field, hints: _Hints) -> list[dt.date]:
        today = self.today
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

    def _strings(self, f: Field, hints: _Hints) -> list[Any]:
        """The constants compared with `f`, and one other valid value."""
        length = max(f.min_length or 1, 1)
        samples = _SAMPLES.get(f.type, ("x" * length, "X" * length, "0" * length, "0123456789"))
        other = [s for s in samples
                 if s not in hints.strings and self.valid(f, s, self.today)]
        return [*sorted(hints.strings), *(other[:1] or samples[:1])]


def _subsets(options: Sequence[str]) -> list[Any]:
    if len(options) <= 3:
        sizes = range(len(options) + 1)
        return [list(c) for n in sizes for c in itertools.combinations(options, n)]
    return [[], *([o] for o in options), list(options)]


def _numbers(f: Field, hints: _Hints) -> list[Any]:
    values: set[float] = {0}
    values |= {b for b in (f.minimum, f.maximum) if isinstance(b, int | float)}
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
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


# --- the search ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Env:
    """Documents and payment: `documents` is "all" (each visible one attached), "none" or "max"."""

    documents: str = "all"
    paid: bool = True

    def describe(self) -> str:
        attached = {"all": "every document attached", "none": "no document attached",
                    "max": "every document attached, as many files as allowed"}[self.documents]
        return f"{attached}, fees {'paid' if self.paid else 'unpaid'}"

    def files(self, minimum: int, maximum: int) -> int:
        return max(1, maximum if self.documents == "max" else minimum)


@dataclass(frozen=True)
class _Move:
    """How a node was reached from its parent."""

    transition: int  # index in procedure.transitions
    role: str
    data: Data  # step data: input values and edited form fields


@dataclass
class _Node:
    state: str
    data: Data
    env: int
    depth: int
    parent: int | None
    move: _Move | None


Exits = list[tuple[str, list[tuple[str, list[int]]]]]  # trigger -> (role, candidates)


class _Explorer:
    """The breadth-first search over (state, deciding data, documents and fees) and its graph."""

    def __init__(self, procedure: Procedure, max_depth: int, max_nodes: int,
                 max_combinations: int, today: dt.date, edits: bool) -> None:
        self.p = procedure
        self.workflow = Workflow(procedure)
        self.max_depth, self.max_nodes, self.limit = max_depth, max_nodes, max_combinations
        self.today, self.edits = today, edits
        self.relevance = relevance(procedure)
        fields = _all_fields(procedure)
        self.values = _Values(procedure, today)
        self.domains = {i: self.values.domain(fields[i]) for i in self.relevance.fields}
        self.form_ids = [f.id for f in procedure.fields if f.id in self.domains]
        self.bounds: list[str] = []
        self.combos = self._initial_combinations()
        self.envs = self._envs()
        self.nodes: list[_Node] = []
        self.index: dict[tuple[str, str, int], int] = {}
        self.edges: list[list[int]] = []
        self.expanded: set[int] = set()
        self.truncated: set[int] = set()
        self.held: set[int] = set()
        self.tried: dict[int, int] = {}  # transition -> first node where its guard was tried
        self.contexts: dict[tuple[str, int], Context] = {}
        self.kept: dict[tuple[str, int], Data] = {}
        self.escapes: dict[tuple[str, int], Data] = {}  # (state, env) -> form that left it
        self.exits = {s: self._exits(s) for s in procedure.states}

    # --- setting up -----------------------------------------------------------------------------

    def _initial_combinations(self) -> list[Data]:
        domains = [(i, self.domains[i]) for i in self.form_ids]
        combos, total = _combinations(domains, self.limit)
        if total > len(combos):
            self._bound(f"combinations: {total} combinations of the relevant fields, "
                        f"{len(combos)} explored (max_combinations={self.limit})")
        visible: dict[str, Data] = {}
        for combo in combos:
            context = self.workflow.context(combo, {}, 0, self.today)
            kept = self.workflow.drop_hidden(combo, context)
            visible.setdefault(_key(kept), kept)
        return list(visible.values())

    def _envs(self) -> list[_Env]:
        documents = ["all", "none", "max"] if self.relevance.documents else ["all"]
        paid = [True, False] if self.relevance.fees else [True]
        return [_Env(d, p) for d in documents for p in paid]

    def _exits(self, state: str) -> Exits:
        """Per trigger leaving `state`: each role that can fire it with its candidates."""
        deadlines = {d.trigger for d in self.p.states[state].deadlines}
        by_trigger: dict[str, dict[str, list[int]]] = {}
        for i, t in enumerate(self.p.transitions):
            if state not in t.sources:
                continue
            roles = by_trigger.setdefault(t.trigger, {})
            for role in t.roles:
                if role != SYSTEM or t.trigger in deadlines:
                    roles.setdefault(role, []).append(i)
        return [(trigger, list(roles.items())) for trigger, roles in by_trigger.items()]

    def _bound(self, message: str) -> None:
        if message not in self.bounds:
            self.bounds.append(message)

    # --- contexts -------------------------------------------------------------------------------

    def context(self, data: Data, env: int) -> Context:
        key = (_key(data), env)
        found = self.contexts.get(key)
        if found is None:
            found = self.contexts[key] = self._context(data, self.envs[env])
        return found

    def _context(self, data: Data, env: _Env) -> Context:
        documents: dict[str, int] = {}
        if self.relevance.documents and env.documents != "none":
            bare = self.workflow.context(data, {}, 0, self.today)
            for d in self.p.documents:
                if d.when is None or d.when.holds(bare):
                    documents[d.id] = env.files(d.min_files, d.max_files)
        context = self.workflow.context(data, documents, 0, self.today)
        if env.paid:
            context["fees_paid"] = context["fees_due"]
        return context

    def _kept(self, data: Data, env: int, context: Context) -> Data:
        """`data` without its hidden fields (as stored after a transition), cached."""
        key = (_key(data), env)
        found = self.kept.get(key)
        if found is None:
            found = self.kept[key] = self.workflow.drop_hidden(data, context)
        return found

    def holds(self, index: int, context: Mapping[str, Any]) -> bool:
        guard = self.p.transitions[index].when
        return guard is None or guard.holds(context)

    # --- the breadth-first search ---------------------------------------------------------------

    def run(self) -> None:
        initial = self.p.initial_state.id
        for combo in self.combos:
            for env in range(len(self.envs)):
                self._add(initial, combo, env, 0, None, None)
        queue = deque(range(len(self.nodes)))
        while queue:
            node_id = queue.popleft()
            before = len(self.nodes)
            self._expand(node_id)
            queue.extend(range(before, len(self.nodes)))

    def _add(self, state: str, data: Data, env: int, depth: int, parent: int | None,
             move: _Move | None) -> int | None:
        key = (state, _key(data), env)
        found = self.index.get(key)
        if found is not None:
            return found
        if len(self.nodes) >= self.max_nodes:
            self._bound(f"nodes: stopped at {self.max_nodes} explored nodes (max_nodes)")
            return None
        self.index[key] = len(self.nodes)
        self.nodes.append(_Node(state, data, env, depth, parent, move))
        self.edges.append([])
        return len(self.nodes) - 1

    def _expand(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if self.p.states[node.state].final:
            return
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
        for trigger, roles in self.exits[node.state]:
            for role, candidates in roles:
                self._fire(node_id, node, trigger, role, candidates, edit_start)
                if edit_start and self.edges[node_id]:
                    return  # one way out is enough: every start is explored anyway

    def _fire(self, node_id: int, node: _Node, trigger: str, role: str, candidates: list[int],
              edit_start: bool) -> None:
        """Every way `role` can fire `trigger` (one of `candidates`) from `node`."""
        for step_data, merged in self._variants(node, role, candidates, edit_start):
            context = self.context(merged, node.env)
            held = [i for i in candidates if self.holds(i, context)]
            for i in candidates:
                self.tried.setdefault(i, node_id)
            self.held.update(held)
            if not held or role == SYSTEM and self._preempted(node.state, trigger, context):
                continue
            chosen = held[0]  # the machine fires the first ready transition
            kept = self._kept(merged, node.env, context)
            target = self.p.transitions[chosen].target
            added = self._add(target, kept, node.env, node.depth + 1, node_id,
                              _Move(chosen, role, step_data))
            if added is None:
                self.truncated.add(node_id)
            elif added not in self.edges[node_id]:
                self.edges[node_id].append(added)
            if edit_start and self.edges[node_id]:  # remember the form that left the start
                escape = {k: merged[k] for k in self.form_ids if k in merged}
                self.escapes[(node.state, node.env)] = escape
                return

    def _preempted(self, state: str, trigger: str, context: Mapping[str, Any]) -> bool:
        """Whether an earlier deadline of `state` fires first (its transition's guard holds)."""
        deadlines = sorted((d.after.approximate(), i, d.trigger)
                           for i, d in enumerate(self.p.states[state].deadlines))
        mine = next(d for d in deadlines if d[2] == trigger)
        system = [i for _, roles in self.exits[state] for role, candidates in roles
                  if role == SYSTEM for i in candidates]
        earlier = {d[2] for d in deadlines if d < mine and d[2] != trigger}
        return any(self.holds(i, context) for i in system
                   if self.p.transitions[i].trigger in earlier)

    def _variants(self, node: _Node, role: str, candidates: list[int], edit_start: bool
                  ) -> Iterator[tuple[Data, Data]]:
        """(step data, data the guards see): relevant inputs, and edits where allowed."""
        if role == SYSTEM:
            yield {}, node.data
            return
        inputs = [i.id for c in candidates for i in self.p.transitions[c].input
                  if i.id in self.domains]
        inputs = list(dict.fromkeys(inputs))
        combos, total = _combinations([(i, self.domains[i]) for i in inputs], self.limit)
        if total > len(combos):
            self._bound(f"inputs: {total} input combinations, {len(combos)} explored "
                        f"(max_combinations={self.limit})")
        for edit in self._edits(node, role, edit_start):
            for combo in combos:
                step = {**edit, **combo}
                yield step, {**node.data, **step}

    def _edits(self, node: _Node, role: str, edit_start: bool) -> list[Data]:
        """Form changes the applicant can make when firing from an editable state."""
        state = self.p.states[node.state]
        first = node.depth == 0 and not edit_start  # the start already tries every combination
        if not (self.edits and role == APPLICANT and state.editable) or first:
            return [{}]
        edits: dict[str, Data] = {"{}": {}}
        remembered = self.escapes.get((node.state, node.env)) if edit_start else None
        for combo in [remembered, *self.combos] if remembered else self.combos:
            change = {k: v for k, v in combo.items() if node.data.get(k) != v}
            edits.setdefault(_key(change), change)
        return list(edits.values())

    # --- findings -------------------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        return [*self._unreachable(), *self._dead_guards(), *self._deadlocks(),
                *self._cycles()]

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
                f"{_values(node.data)}: {self._why_stuck(node.state)}")

    def _why_stuck(self, state: str) -> str:
        deadlines = {d.trigger for d in self.p.states[state].deadlines}
        reasons = []
        for t in self.p.transitions_from(state):
            if t.roles == (SYSTEM,) and t.trigger not in deadlines:
                reasons.append(f"{t.trigger} (system only, and no deadline of this state)")
            elif t.when is not None:
                reasons.append(f"{t.trigger} (when: {t.when.source})")
        return "; ".join(reasons) + " do not hold" if reasons else "no transition leaves it"

    def _cycles(self) -> Iterator[Finding]:
        seen: set[tuple[str, ...]] = set()
        for component in _components(self.edges, self.expanded):
            entry = min(component)
            if not self._closed(component) or (len(component) == 1
                                               and entry not in self.edges[entry]):
                continue
            inside = {self.nodes[n].state for n in component}
            states = tuple(s for s in self.p.states if s in inside)
            if states in seen:
                continue
            seen.add(states)
            names = ", ".join(f'"{s}"' for s in states)
            yield self._finding(
                "no-exit-cycle", entry,
                f"runs with {_values(self.nodes[entry].data)} loop forever through {names}: "
                "no final state can be reached from there", states=states)

    def _closed(self, component: list[int]) -> bool:
        """No way out: every edge stays inside, nothing was cut by a bound, all supplied."""
        members = set(component)
        return all(self.nodes[n].env == 0 and n not in self.truncated
                   and all(m in members for m in self.edges[n]) for n in component)

    def _finding(self, kind: str, node_id: int, message: str, *,
                 transition: Transition | None = None, states: tuple[str, ...] = ()
                 ) -> Finding:
        node = self.nodes[node_id]
        chain = self._chain(node_id)
        return Finding(kind, message, state=node.state, transition=transition, states=states,
                       data=dict(node.data), counterexample=tuple(self._steps(chain)),
                       replay=tuple(_Replay(self, chain).finish(kind, transition)),
                       note=self._note(node), today=self.today)

    def _note(self, node: _Node) -> str:
        supplied = ("exploration assumes the required fields, documents and fees are supplied; "
                    "the counterexample gives only the data that decides the run")
        if self.relevance.documents or self.relevance.fees:
            supplied += f" ({self.envs[node.env].describe()})"
        return (f"found by exploration on {self.today.isoformat()}: {supplied}; "
                "the scenario fills in the rest with sample values")

    # --- counterexamples ------------------------------------------------------------------------

    def _chain(self, node_id: int) -> list[_Node]:
        chain: list[_Node] = []
        current: int | None = node_id
        while current is not None:
            chain.append(self.nodes[current])
            current = self.nodes[current].parent
        return chain[::-1]

    def _steps(self, chain: list[_Node]) -> list[Step]:
        """The run with the deciding data only."""
        steps: list[Step] = [{"start": dict(chain[0].data), "as": APPLICANT_ACTOR}]
        actors: dict[str, list[str]] = {}
        for before, node in itertools.pairwise(chain):
            assert node.move is not None
            t = self.p.transitions[node.move.transition]
            if node.move.role == SYSTEM:
                steps.append({"wait": str(self.deadline(before.state, t.trigger))})
                continue
            actor = _actor(node.move.role, t, actors)
            actors.setdefault(t.trigger, []).append(actor)
            step: Step = {"fire": t.trigger, "as": f"{node.move.role}:{actor}"}
            if node.move.data:
                step["data"] = dict(node.move.data)
            steps.append(step)
        return steps

    def deadline(self, state: str, trigger: str) -> Duration:
        return next(d.after for d in self.p.states[state].deadlines if d.trigger == trigger)


def _actor(role: str, t: Transition, actors: Mapping[str, list[str]]) -> str:
    """The actor id for `role`: a new one when separation forbids the earlier ones."""
    if role == APPLICANT:
        return "citizen-1"
    earlier = {a for trigger in t.not_actor_of for a in actors.get(trigger, [])}
    number = 1
    while f"{role}-{number}" in earlier:
        number += 1
    return f"{role}-{number}"


class _Replay:
    """A run as complete scenario steps: what `guichet test` needs to play it for real."""

    def __init__(self, explorer: _Explorer, chain: list[_Node]) -> None:
        self.x = explorer
        self.p = explorer.p
        self.workflow = explorer.workflow
        self.chain = chain
        self.env = explorer.envs[chain[0].env]
        self.steps: list[Step] = []
        self.data: Data = {}
        self.attached: dict[str, int] = {}
        self.paid = 0
        self.actors: dict[str, list[str]] = {}
        self.clock = dt.datetime.combine(explorer.today, CLOCK_TIME)
        self.state = self.p.initial_state.id

    @property
    def today(self) -> dt.date:
        return self.clock.date()

    def context(self, data: Data) -> Context:
        return self.workflow.context(data, self.attached, self.paid, self.today)

    def finish(self, kind: str, transition: Transition | None) -> list[Step]:
        self._start(self.chain[0].data)
        for node in self.chain[1:]:
            assert node.move is not None
            self._move(node.move)
        self.steps[-1]["expect"] = {"state": self.state}
        if kind == "deadlock":
            self._nothing_available()
        elif kind == "dead-guard" and transition is not None:
            self._refused(transition)
        return self.steps

    def _start(self, deciding: Data) -> None:
        data: Data = {}
        for f in self.p.fields:  # in the order of the form
            if f.id in deciding:
                data[f.id] = deciding[f.id]
            elif f.required and f.id not in self.x.domains:
                data[f.id] = self.x.values.sample(f, self.today)
        self.data = self.workflow.drop_hidden(data, self.context(data))
        self.steps.append({"start": dict(self.data), "as": APPLICANT_ACTOR})

    def _move(self, move: _Move) -> None:
        t = self.p.transitions[move.transition]
        data = self._complete(t, move.role, move.data)
        self._supply(t, data)
        if move.role == SYSTEM:
            self._wait(t)
            self.actors.setdefault(t.trigger, []).append(SYSTEM)
        else:
            actor = _actor(move.role, t, self.actors)
            step: Step = {"fire": t.trigger, "as": f"{move.role}:{actor}"}
            if data:
                step["data"] = data
            self.steps.append(step)
            self.actors.setdefault(t.trigger, []).append(actor)
        merged = {**self.data, **data}
        self.data = self.workflow.drop_hidden(merged, self.context(merged))
        self.state = t.target

    def _complete(self, t: Transition, role: str, deciding: Data) -> Data:
        """Step data: the deciding values, samples for required inputs and missing fields."""
        data = dict(deciding)
        if role == SYSTEM:
            return data
        for f in t.input:
            if f.required and f.id not in data:
                data[f.id] = self.x.values.sample(f, self.today)
        if role == APPLICANT and self.p.states[self.state].editable:
            context = self.context({**self.data, **data})
            for f in self.workflow.form.missing(context, self.workflow.visible(context)):
                data[f.id] = self.x.values.sample(f, self.today)
        return data

    def _supply(self, t: Transition, data: Data) -> None:
        """Attach the documents that apply and pay what is due, as exploration assumed."""
        context = self.context({**self.data, **data})
        if self.env.documents != "none":
            for d in self.p.documents:
                wanted = self.env.files(d.min_files, d.max_files)
                have = self.attached.get(d.id, 0)
                if have < wanted and (d.when is None or d.when.holds(context)):
                    step: Step = {"attach": d.id, "as": self._attacher()}
                    if wanted - have > 1:
                        step["file"] = {"count": wanted - have}
                    self.steps.append(step)
                    self.attached[d.id] = wanted
            context = self.context({**self.data, **data})
        owed = int(context["fees_due"]) - self.paid
        if self.env.paid and owed > 0:
            self.steps.append({"pay": owed, "as": APPLICANT_ACTOR})
            self.paid += owed

    def _attacher(self) -> str:
        if self.p.states[self.state].editable:
            return APPLICANT_ACTOR
        staff = [r for r in self.p.roles if r not in (APPLICANT, SYSTEM)]
        return f"{staff[0]}:{staff[0]}-1" if staff else APPLICANT_ACTOR

    def _wait(self, t: Transition) -> None:
        after = self.x.deadline(self.state, t.trigger)
        wait = str(after)
        if after.unit == "business_days":  # scenarios wait calendar time
            delta = after.add_to(self.clock) - self.clock
            wait = str(Duration(math.ceil(delta / dt.timedelta(days=1)), "days"))
        self.steps.append({"wait": wait})
        self.clock += Duration.parse(wait).approximate()

    def _nothing_available(self) -> None:
        roles = dict.fromkeys(r for t in self.p.transitions_from(self.state) for r in t.roles
                              if r != SYSTEM)
        for role in roles:
            actor = "citizen-1" if role == APPLICANT else f"{role}-1"
            self.steps.append({"expect": {"available": []}, "as": f"{role}:{actor}"})

    def _refused(self, t: Transition) -> None:
        """Fire the dead transition: blocked by its guard (unless the trigger goes elsewhere)."""
        role = next((r for r in t.roles if r != SYSTEM), None)
        if role is None:
            return
        deciding = {i.id: self.x.domains[i.id][0] for i in t.input if i.id in self.x.domains}
        data = self._complete(t, role, {k: v for k, v in deciding.items() if v is not None})
        self._supply(t, data)
        context = self.context({**self.data, **data})
        others = [c for c in self.p.transitions_from(self.state, t.trigger)
                  if c is not t and role in c.roles]
        if any(c.when is None or c.when.holds(context) for c in others):
            return
        actor = _actor(role, t, self.actors)
        step: Step = {"fire": t.trigger, "as": f"{role}:{actor}"}
        if data:
            step["data"] = data
        step["expect"] = {"refused": {"error": "blocked", "reasons": ["guard"]},
                          "state": self.state}
        self.steps.append(step)


def _components(edges: Sequence[Sequence[int]], within: set[int]) -> Iterator[list[int]]:
    """Strongly connected components of the graph restricted to `within` (iterative Tarjan)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    for root in sorted(within):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            successors = [m for m in edges[node] if m in within]
            if position < len(successors):
                work.append((node, position + 1))
                nxt = successors[position]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                yield _pop_component(stack, on_stack, node)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])


def _pop_component(stack: list[int], on_stack: set[int], root: int) -> list[int]:
    component = []
    while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == root:
            return component


def explore(procedure: Procedure, max_depth: int = 50, max_nodes: int = 100_000, *,
            max_combinations: int = 256, today: dt.date = TODAY, edits: bool = True
            ) -> ExploreReport:
    """Explore every reachable (state, relevant data) of `procedure`; see the module docstring.

    `max_depth` bounds the steps of a run, `max_nodes` the (state, data) nodes explored and
    `max_combinations` the data combinations tried at the start and at each step. With `edits`,
    the applicant may change the form when firing from an editable state.
    """
    explorer = _Explorer(procedure, max_depth, max_nodes, max_combinations, today, edits)
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
    )
