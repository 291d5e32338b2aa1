"""Semantic rules beyond the schema. Each rule is named and yields every problem it finds.

A rule is a function `(RuleInput) -> Iterator[Problem]` registered with `@rule(name)`; README.md
lists them all. Rules read the leniently-built model, so they never assume the schema passed.
A name that is not declared is an `undeclared` problem; a conclusion drawn from what the
model lacks (a state never reached, a field never used) `assumes` the names of its kind are
all declared, and `check` leaves it out when one is not: one mistake, one error.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import calendars, form_subset, graph, links
from . import expressions as ex
from .errors import Diagnostic, Location, Severity
from .model import (
    APPLICANT_PARTY,
    COMPATIBLE_START_ROLE,
    DIMENSION_TYPES,
    NUMERIC_TYPES,
    SYSTEM_ROLE,
    VALID_UNTIL,
    Document,
    Fee,
    Field,
    FieldDuration,
    Notification,
    Path,
    PaymentMethod,
    Procedure,
    Text,
    Transition,
)
from .sample_data import sample_context
from .sms import sms_length
from .source import Document as SourceDocument


@dataclass(frozen=True)
class Problem:
    """One problem a rule found at `path` of the source document (at its key if `at_key`);
    `check` turns it into a Diagnostic named after the rule.

    `undeclared`: (kind, name) when the problem is a name of that kind (state, role, field,
    document, trigger) that is not declared. `assumes`: the kinds of names the problem's
    conclusion needs all declared; it is left out when one is not (see `check`).
    """

    path: Path
    message: str
    severity: Severity = "error"
    at_key: bool = False
    undeclared: tuple[str, str] | None = None
    assumes: frozenset[str] = frozenset()


@dataclass
class RuleInput:
    """What every rule reads: the leniently-built procedure and the document it came from."""

    procedure: Procedure
    document: SourceDocument


Rule = Callable[[RuleInput], Iterator[Problem]]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        RULES[name] = function
        return function
    return register


#: What the graph rules assume: every state a transition names is declared.
STATES = frozenset({"state"})


def check(procedure: Procedure, document: SourceDocument) -> list[Diagnostic]:
    """Run every rule; return the diagnostics of the problems that are root causes.

    One mistake, one error: a name that is not declared is reported once, at its first use
    (the message lists the lines of the others), and the problems that assume every name of
    its kind declared are left out: the unreachable states behind a misspelled `to:`, the
    field "never used" because its one use is misspelled. They are what the undeclared name
    may have meant; once it is corrected, a new check reports any that remain.
    """
    given = RuleInput(procedure, document)
    found = [(name, problem) for name, function in RULES.items() for problem in function(given)]
    missing = {p.undeclared[0] for _, p in found if p.undeclared} | _missing_states(procedure)
    kept = [(name, p) for name, p in found if not p.assumes & missing]
    return _once_per_name([(name, p, _location(document, p)) for name, p in kept])


def _location(document: SourceDocument, problem: Problem) -> Location:
    return document.key_at(problem.path) if problem.at_key else document.at(problem.path)


def _missing_states(p: Procedure) -> frozenset[str]:
    """{"state"} when a transition lacks its `from:` or `to:` (the schema reports it): the
    graph rules cannot tell what it meant either."""
    return STATES if any(not t.sources or not t.target for t in p.transitions) else frozenset()


def _once_per_name(found: list[tuple[str, Problem, Location]]) -> list[Diagnostic]:
    """The diagnostics of `found`, each undeclared name once: at its first use, saying the
    lines of the others."""
    uses: dict[tuple[str, str], list[Location]] = {}
    for _, problem, where in found:
        if problem.undeclared:
            uses.setdefault(problem.undeclared, []).append(where)
    diagnostics = []
    for name, problem, where in found:
        message = problem.message
        if problem.undeclared:
            first, *others = sorted(uses[problem.undeclared])
            if where != first:
                continue
            message += _also_on({o.line for o in others} - {first.line})
        diagnostics.append(Diagnostic(where, problem.severity, name, message))
    return diagnostics


def _also_on(lines: set[int]) -> str:
    """" (also on line 7)", " (also on lines 7, 9 and 12)" or "" for no line."""
    shown = [str(n) for n in sorted(lines)]
    if len(shown) < 2:
        return f" (also on line {shown[0]})" if shown else ""
    return f" (also on lines {', '.join(shown[:-1])} and {shown[-1]})"


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    """`unknown <kind> "<name>"`, with a "did you mean" hint when one is close."""
    return f'unknown {kind} "{name}"{_suggest(name, known)}'


def undeclared(path: Path, kind: str, name: str, known: Iterable[str], *, at_key: bool = False,
               noun: str = "", then: str = "") -> Problem:
    """The problem of a `kind` name used at `path` but not declared: `unknown <noun>
    "<name>"` (noun: the kind unless given), a "did you mean" hint, then `then`."""
    return Problem(path, unknown(noun or kind, name, known) + then, at_key=at_key,
                   undeclared=(kind, name))


def _source_paths(given: RuleInput, transition: Transition) -> Iterator[tuple[str, Path]]:
    """Each source state with the path of its mention (`from` is a name or a list)."""
    listed = (*transition.path, "from", 0) in given.document.values
    for i, name in enumerate(transition.sources):
        yield name, (*transition.path, "from", i) if listed else (*transition.path, "from")


# --- identifiers and references -----------------------------------------------------------------

@rule("duplicate-id")
def duplicate_ids(given: RuleInput) -> Iterator[Problem]:
    p = given.procedure
    groups: list[tuple[str, Iterable[Any]]] = [
        ("field", p.fields), ("document", p.documents), ("fee", p.fees),
        ("payment method", p.payment_methods),
    ]
    groups += [("sub-field", f.fields) for f in p.fields if f.type == "group"]
    groups += [("input field", t.input) for t in p.transitions]
    for kind, items in groups:
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                yield Problem((*item.path, "id"), f'duplicate {kind} id "{item.id}"')
            seen.add(item.id)
    field_ids = {f.id for f in p.fields}
    for t in p.transitions:
        for item in t.input:
            if item.id in field_ids:
                yield Problem((*item.path, "id"), f'input "{item.id}" has the id of a form field; '
                                                  "give it its own id")
    for party in p.parties:
        if party in p.roles:
            yield Problem(("parties", party), f'party "{party}" has the id of a role: a '
                                              "notification's `to:` could not tell them apart",
                          at_key=True)


@rule("initial-state")
def initial_state(given: RuleInput) -> Iterator[Problem]:
    initial = [s for s in given.procedure.states.values() if s.initial]
    if not initial and given.procedure.states:
        yield Problem(("states",), "no initial state; mark exactly one state with initial: true")
    for extra in initial[1:]:
        yield Problem((*extra.path, "initial"), f'state "{extra.id}" is a second initial state; '
                                                f'"{initial[0].id}" is already initial')
    for state in initial:
        if state.final:
            yield Problem((*state.path, "final"), f'initial state "{state.id}" cannot be final')


@rule("undefined-state")
def undefined_states(given: RuleInput) -> Iterator[Problem]:
    states = given.procedure.states
    for t in given.procedure.transitions:
        for name, path in _source_paths(given, t):
            if name not in states:
                yield undeclared(path, "state", name, states)
        if t.target and t.target not in states:
            yield undeclared((*t.path, "to"), "state", t.target, states)
    for name in given.procedure.simulation.delays:
        if name not in states:
            yield undeclared(("simulation", "delays", name), "state", name, states, at_key=True)
    for state in states.values():
        for deadline in state.deadlines:
            for i, name in enumerate(deadline.pause_in):
                if name not in states:
                    yield undeclared((*deadline.path, "pause_in", i), "state", name, states)


@rule("unknown-calendar")
def unknown_calendar(given: RuleInput) -> Iterator[Problem]:
    """`calendar:` naming a country whose public holidays are not known (engine.calendars)."""
    country = given.procedure.calendar
    if country is not None and not calendars.known(country):
        yield Problem(("calendar",), f'unknown calendar "{country}": no public holidays are '
                                     'known for this country code (ISO 3166-1 alpha-2, e.g. '
                                     'TG, SN)')


def _notifications(p: Procedure) -> Iterator[Notification]:
    for state in p.states.values():
        yield from state.notify
        yield from (d.reminder for d in state.deadlines if d.reminder)
    for t in p.transitions:
        yield from t.notify


@rule("undefined-role")
def undefined_roles(given: RuleInput) -> Iterator[Problem]:
    roles = given.procedure.roles
    for t in given.procedure.transitions:
        for i, role in enumerate(t.roles):
            if role not in roles:
                yield undeclared((*t.path, "roles", i), "role", role, roles)
    for name in given.procedure.simulation.staff:
        if name not in roles:
            yield undeclared(("simulation", "staff", name), "role", name, roles, at_key=True)
    for note in _notifications(given.procedure):
        if note.to not in roles and note.to != APPLICANT_PARTY and \
                note.to not in given.procedure.parties:
            known = [*roles, *given.procedure.parties, APPLICANT_PARTY]
            yield undeclared((*note.path, "to"), "role", note.to, known, noun="role or party")
    yield from _undefined_start_roles(given)
    yield from _undefined_reader_roles(given)
    yield from _unknown_names(given, "roles", "role", roles)
    start = given.procedure.start
    used = {r for t in given.procedure.transitions for r in t.roles}
    used |= {r for names, _ in _edit_grants(given, "roles") for r in names}
    used |= {*start.roles, *start.on_behalf, *given.procedure.read_roles}
    for declared in roles.values():
        if declared.id not in used:
            yield Problem(declared.path, f'role "{declared.id}" is never allowed to fire a '
                                         "transition", "warning", at_key=True,
                          assumes=frozenset({"role"}))


def _undefined_start_roles(given: RuleInput) -> Iterator[Problem]:
    roles, start = given.procedure.roles, given.procedure.start
    for key, named in (("roles", start.roles), ("on_behalf", start.on_behalf)):
        for i, role in enumerate(named):
            if role not in roles:
                yield undeclared(("start", key, i), "role", role, roles)


def _undefined_reader_roles(given: RuleInput) -> Iterator[Problem]:
    """Roles named by `read:` and by the `visible_to:` of fields (sub-fields and step input
    included) and documents."""
    p = given.procedure
    roles = p.roles
    for i, role in enumerate(p.read_roles):
        if role not in roles:
            yield undeclared(("read", i), "role", role, roles)
    items: list[Field | Document] = [*_all_fields(p), *p.documents]
    for item in items:
        for i, role in enumerate(item.visible_to):
            if role not in roles:
                yield undeclared((*item.path, "visible_to", i), "role", role, roles)


@rule("who-may-start")
def who_may_start(given: RuleInput) -> Iterator[Problem]:
    """Who may open a case is declared (`start:`), never implied by a role's name, and the
    system role (reserved for deadlines) is not among them."""
    start = given.procedure.start
    if start.implied:
        yield Problem(("roles", COMPATIBLE_START_ROLE),
                      f'no "start:": the role "{COMPATIBLE_START_ROLE}" may open cases and '
                      "owns the cases it opens; say so with `start: {roles: "
                      f"[{COMPATIBLE_START_ROLE}]}}`", "warning", at_key=True)
    elif not start.roles and not start.on_behalf:
        yield Problem(("roles",), "no one may open a case: add `start: {roles: [...]}` "
                                  "naming the roles that may", "warning", at_key=True)
    for key, named in (("roles", start.roles), ("on_behalf", start.on_behalf)):
        for i, role in enumerate(named):
            if role == SYSTEM_ROLE:
                yield Problem(("start", key, i), f'the role "{SYSTEM_ROLE}" is reserved for '
                                                 "deadlines: it cannot open cases")


@rule("undefined-field")
def undefined_fields(given: RuleInput) -> Iterator[Problem]:
    fields = {f.id for f in given.procedure.fields}
    for t in given.procedure.transitions:
        if isinstance(t.requires_fields, tuple):
            for i, name in enumerate(t.requires_fields):
                if name not in fields:
                    yield undeclared((*t.path, "requires", "fields", i), "field", name, fields)
    for party in given.procedure.parties.values():
        for kind, name in party.contact_fields.items():
            if name not in fields:
                yield undeclared((*party.path, kind), "field", name, fields)
    yield from _unknown_names(given, "fields", "field", fields)
    data = _data_fields(given.procedure)
    for follow_up in links.follow_ups(given.procedure):
        for child, source in follow_up.carry:
            if source not in data:
                yield undeclared((*follow_up.path, "carry", child), "field", source, data)


def _unknown_names(given: RuleInput, key: str, kind: str, known: Iterable[str]
                   ) -> Iterator[Problem]:
    """Names in the `roles` or `fields` of `editable:` grants that are not declared."""
    for names, path in _edit_grants(given, key):
        for i, name in enumerate(names):
            if name not in known:
                yield undeclared((*path, i), kind, name, known)


def _edit_grants(given: RuleInput, key: str) -> Iterator[tuple[list[str], Path]]:
    """The `roles` or `fields` lists of each state's `editable:` grants, with their paths."""
    for state in given.procedure.states.values():
        declared = _raw(given.document.data, (*state.path, "editable"))
        grants = declared if isinstance(declared, list) else [declared]
        for i, grant in enumerate(grants):
            names = grant.get(key) if isinstance(grant, dict) else None
            if isinstance(names, list):
                where = (*state.path, "editable", *((i,) if declared is grants else ()), key)
                yield [n for n in names if isinstance(n, str)], where




@rule("undefined-document")
def undefined_documents(given: RuleInput) -> Iterator[Problem]:
    documents = {d.id for d in given.procedure.documents}
    for t in given.procedure.transitions:
        if isinstance(t.requires_documents, tuple):
            for i, name in enumerate(t.requires_documents):
                if name not in documents:
                    yield undeclared((*t.path, "requires", "documents", i), "document", name,
                                     documents)


@rule("undefined-trigger")
def undefined_triggers(given: RuleInput) -> Iterator[Problem]:
    p = given.procedure
    triggers = p.triggers
    for fee in p.fees:
        if fee.due and fee.due not in triggers:
            yield undeclared((*fee.path, "due"), "trigger", fee.due, triggers)
    for t in p.transitions:
        for i, name in enumerate(t.not_actor_of):
            if name not in triggers:
                yield undeclared((*t.path, "separation", "not_actor_of", i), "trigger", name,
                                 triggers)
    for key in ("handling", "weights", "lead_times"):
        for name in getattr(p.simulation, key):
            if name not in triggers:
                yield undeclared(("simulation", key, name), "trigger", name, triggers, at_key=True)
    yield from _deadline_triggers(p)


def _deadline_triggers(p: Procedure) -> Iterator[Problem]:
    triggers = p.triggers
    for state in p.states.values():
        for deadline in state.deadlines:
            where = (*deadline.path, "trigger")
            if deadline.trigger not in triggers:
                yield undeclared(where, "trigger", deadline.trigger, triggers)
                continue
            leaving = list(p.transitions_from(state.id, deadline.trigger))
            if not leaving:
                yield Problem(where, f'deadline trigger "{deadline.trigger}" has no transition '
                                     f'from state "{state.id}"', assumes=STATES)
            elif not any(SYSTEM_ROLE in t.roles for t in leaving):
                yield Problem(where, f'deadline trigger "{deadline.trigger}" is fired by the '
                                     'system; add "system" to the roles of its transition',
                              assumes=frozenset({"role"}))


# --- the graph ----------------------------------------------------------------------------------

@rule("unreachable-state")
def unreachable_states(given: RuleInput) -> Iterator[Problem]:
    p = given.procedure
    initial = [s.id for s in p.states.values() if s.initial]
    if not initial:
        return
    reached = graph.reachable(graph.transition_graph(p), *initial)
    for state in p.states.values():
        if state.id not in reached:
            yield Problem(state.path, f'state "{state.id}" can never be reached from the initial '
                                      f'state "{initial[0]}"', at_key=True, assumes=STATES)


@rule("dead-end-state")
def dead_end_states(given: RuleInput) -> Iterator[Problem]:
    edges = graph.transition_graph(given.procedure)
    for state in given.procedure.states.values():
        if not state.final and not edges[state.id]:
            yield Problem(state.path, f'state "{state.id}" is not final and no transition leaves '
                                      "it; add a transition or mark it final", at_key=True,
                          assumes=STATES)


@rule("no-final-reachable")
def no_final_reachable(given: RuleInput) -> Iterator[Problem]:
    p = given.procedure
    edges = graph.transition_graph(p)
    finals = [s.id for s in p.states.values() if s.final]
    can_finish = graph.reachable(graph.reverse(edges), *finals)
    for state in p.states.values():
        if state.id not in can_finish and edges[state.id]:
            yield Problem(state.path, f'no final state can be reached from state "{state.id}"',
                          at_key=True, assumes=STATES)


@rule("final-state-exit")
def final_state_exits(given: RuleInput) -> Iterator[Problem]:
    """A final state ends the case; after an acceptance only, a transition may lead to
    another final state that is not an acceptance (a withdrawal, a revocation)."""
    states = given.procedure.states
    for t in given.procedure.transitions:
        for name, path in _source_paths(given, t):
            if name in states and states[name].final and not _after_decision(given, t, name):
                yield Problem(path, f'transition "{t.trigger}" leaves final state "{name}"; a '
                                    "final state ends the case (after an acceptance, a "
                                    "transition may lead to a final state with another "
                                    "outcome: a withdrawal, a revocation)")


def _after_decision(given: RuleInput, t: Transition, source: str) -> bool:
    """A transition after the decision: from an accepted case to another final state, which
    is not an acceptance (so a refusal is never turned into one, nor an acceptance
    repeated)."""
    target = given.procedure.states.get(t.target)
    return (given.procedure.states[source].outcome == "accepted" and target is not None
            and target.final and target.outcome != "accepted")


@rule("ambiguous-trigger")
def ambiguous_triggers(given: RuleInput) -> Iterator[Problem]:
    seen: dict[tuple[str, str], list[Transition]] = {}
    for t in given.procedure.transitions:
        for source in t.sources:
            for earlier in seen.get((source, t.trigger), []):
                if not _exclusive(earlier, t):
                    why = ("both guards can hold" if earlier.when and t.when
                           else "one of them has no guard")
                    yield Problem(t.path, f'trigger "{t.trigger}" from state "{source}" is also '
                                          f"defined at line {given.document.at(earlier.path).line},"
                                          f" and {why}; make the guards exclusive", "warning")
            seen.setdefault((source, t.trigger), []).append(t)


_OPPOSITE = {"lt": "gteq", "gteq": "lt", "gt": "lteq", "lteq": "gt", "eq": "ne", "ne": "eq"}


def _exclusive(a: Transition, b: Transition) -> bool:
    """True when the two guards can be shown never to hold together."""
    if a.when is None or b.when is None:
        return False
    ta, tb = a.when.tree, b.when.tree
    for one, other in ((ta, tb), (tb, ta)):
        inner = ex.negated(one)
        if inner is not None and ex.same_tree(inner, other):
            return True
    ca, cb = _simple_compare(ta), _simple_compare(tb)
    if ca and cb and ex.same_tree(ca[0], cb[0]):
        (_, op_a, va), (_, op_b, vb) = ca, cb
        if op_a == "eq" and op_b == "eq":
            return bool(va != vb)
        return _OPPOSITE.get(op_a) == op_b and va == vb
    return False


def _simple_compare(tree: ex.Node) -> tuple[ex.Node, str, Any] | None:
    """(left, operator, value) for a guard that is one comparison with a literal value."""
    found = ex.comparison(tree)
    if found is not None and ex.is_scalar(found[2]):
        return found[0], found[1], ex.constant(found[2])
    return None


# --- expressions, templates and types -----------------------------------------------------------

_KIND = {
    "integer": "number", "number": "number", "boolean": "boolean", "date": "date",
    "multi_choice": "list", "group": "list",
}
_BUILTIN_KIND = {"today": "date", "fees_due": "number", "fees_paid": "number",
                 "documents": "mapping"}


@dataclass(frozen=True)
class _Scope:
    fields: Mapping[str, Field]
    extra: frozenset[str] = frozenset()

    def names(self) -> set[str]:
        return set(self.fields) | set(ex.BUILTINS) | set(self.extra)


def _data_fields(p: Procedure) -> dict[str, Field]:
    """Names a case's data can hold: form fields and every transition's input."""
    inputs = {i.id: i for t in p.transitions for i in t.input}
    return {**inputs, **{f.id: f for f in p.fields}}


def _expressions(p: Procedure) -> Iterator[tuple[ex.Expression, Path, _Scope]]:
    top = _Scope(_data_fields(p))
    for f in [*p.fields, *(i for t in p.transitions for i in t.input)]:
        if f.when:
            yield f.when, (*f.path, "when"), top
        inner = _Scope({**top.fields, **{s.id: s for s in f.fields}})
        for sub in f.fields:
            if sub.when:
                yield sub.when, (*sub.path, "when"), inner
    conditional: list[Document | Fee] = [*p.documents, *p.fees]
    for item in conditional:
        if item.when:
            yield item.when, (*item.path, "when"), top
    for t in p.transitions:
        if t.when:
            yield t.when, (*t.path, "when"), top
    for f in _all_fields(p):
        for i, option in enumerate(f.options):
            if option.when:
                yield option.when, (*f.path, "options", i, "when"), top


def _templates(p: Procedure) -> Iterator[tuple[ex.Template, Path, _Scope]]:
    top = _Scope(_data_fields(p), frozenset(ex.TEMPLATE_NAMES))
    reminder = _Scope(top.fields, top.extra | frozenset(ex.REMINDER_NAMES))
    dated = frozenset({VALID_UNTIL}) if p.validity is not None else frozenset()
    issued = _Scope(top.fields, top.extra | dated)  # see Workflow.document_context
    for path, templates in _template_sets(p):
        scope = (reminder if path[-2:-1] == ("reminder",)
                 else issued if "issue" in path else top)
        for language, template in templates.items():
            yield template, (*path, language), scope


@rule("undeclared-name")
def undeclared_names(given: RuleInput) -> Iterator[Problem]:
    for expression, path, scope in _expressions(given.procedure):
        known = scope.names()
        for name in sorted(expression.names - known):
            yield undeclared(path, "field", name, known, noun="name",
                             then=f" in: {expression.source}")
    for template, path, scope in _templates(given.procedure):
        known = scope.names()
        for name in sorted(template.names - known):
            yield undeclared(path, "field", name, known, noun="name", then=" in template")


def _kind(node: ex.Node, scope: _Scope) -> str | None:
    name = ex.name_of(node)
    if name is not None:
        if name in scope.fields:
            return _KIND.get(scope.fields[name].type, "string")
        return _BUILTIN_KIND.get(name)
    if ex.call_name(node) == "age":
        return "number"
    return ex.literal_type(node)


def _describe(node: ex.Node, scope: _Scope) -> str:
    name = ex.name_of(node)
    if name is not None and name in scope.fields:
        return f'field "{name}" ({scope.fields[name].type})'
    if name is not None:
        return f'"{name}"'
    if ex.call_name(node):
        return f"{ex.call_name(node)}(...) (number)"
    return f"{_literal(ex.constant(node))} ({ex.literal_type(node)})"


def _literal(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


@rule("type-mismatch")
def type_mismatches(given: RuleInput) -> Iterator[Problem]:
    for expression, path, scope in _expressions(given.procedure):
        for left, op, right in expression.comparisons():
            problem = _compare_problem(left, op, right, scope)
            if problem:
                yield Problem(path, f"{problem} in: {expression.source}")


def _compare_problem(left: ex.Node, op: str, right: ex.Node, scope: _Scope) -> str | None:
    if op in ("in", "notin"):
        return _membership_problem(left, right, scope)
    kind_l, kind_r = _kind(left, scope), _kind(right, scope)
    if kind_l and kind_r and kind_l != kind_r:
        return f"comparison of {_describe(left, scope)} with {_describe(right, scope)}"
    for a, b in ((left, right), (right, left)):
        problem = _option_problem(a, b, scope)
        if problem:
            return problem
    return None


def _membership_problem(item: ex.Node, container: ex.Node, scope: _Scope) -> str | None:
    name = ex.name_of(container)
    if name is not None and name in scope.fields and scope.fields[name].type == "multi_choice":
        return _option_problem(container, item, scope)
    elements = ex.literal_items(container)
    if elements is not None:
        kind = _kind(item, scope)
        for element in elements:
            other = _kind(element, scope)
            if kind and other and kind != other:
                return f"comparison of {_describe(item, scope)} with {_describe(element, scope)}"
            problem = _option_problem(item, element, scope)
            if problem:
                return problem
    return None


def _option_problem(named: ex.Node, value: ex.Node, scope: _Scope) -> str | None:
    name = ex.name_of(named)
    if name is None or name not in scope.fields or not ex.is_scalar(value):
        return None
    field = scope.fields[name]
    options = field.option_values
    text = ex.constant(value)
    if field.type in ("choice", "multi_choice") and options and isinstance(text, str) \
            and text not in options:
        return (f'"{text}" is not an option of field "{name}" ({", ".join(options)})'
                f"{_suggest(text, options)}")
    return None


def _form_conditions(p: Procedure) -> Iterator[tuple[str, ex.Expression, Path]]:
    """The `when:` a form shows and hides something with: fields (sub-fields and step
    inputs included), documents, fees and options, with what each one is."""
    for f in _all_fields(p):
        if f.when:
            yield f'field "{f.id}"', f.when, (*f.path, "when")
        for i, option in enumerate(f.options):
            if option.when:
                yield (f'option "{option.value}" of field "{f.id}"', option.when,
                       (*f.path, "options", i, "when"))
    for document in p.documents:
        if document.when:
            yield f'document "{document.id}"', document.when, (*document.path, "when")
    for fee in p.fees:
        if fee.when:
            yield f'fee "{fee.id}"', fee.when, (*fee.path, "when")


@rule("form-expression")
def form_expressions(given: RuleInput) -> Iterator[Problem]:
    """A condition the citizen's form cannot evaluate as they type: the form then always
    shows the element, and the server decides (see engine/form_subset.py)."""
    for what, expression, path in _form_conditions(given.procedure):
        reason = form_subset.outside_reason(expression)
        if reason is not None:
            yield Problem(path, f"the form cannot follow this condition as the citizen types "
                                f"({reason}): {what} is always shown and the server decides: "
                                f"{expression.source}", "warning")


@rule("field-constraint")
def field_constraints(given: RuleInput) -> Iterator[Problem]:
    for f in _all_fields(given.procedure):
        yield from _field_problems(f)


def _all_fields(p: Procedure) -> list[Field]:
    """Form fields, group sub-fields and transition inputs."""
    return [*p.fields, *(s for f in p.fields for s in f.fields),
            *(i for t in p.transitions for i in t.input)]


def _field_problems(f: Field) -> Iterator[Problem]:
    # A key that does not fit the field type, a choice without options and a group without
    # fields are refused by the schema (`field`'s if/then on `type`), as field-constraint too.
    yield from _bound_problems(f)
    if f.pattern is not None:
        problem = _pattern_problem(f.pattern)
        if problem:
            yield Problem((*f.path, "pattern"), f'invalid pattern "{_short(f.pattern)}": {problem}')


#: The longest `pattern:` a field may have, in characters.
MAX_PATTERN_LENGTH = 1000


def _short(text: str, length: int = 60) -> str:
    return text if len(text) <= length else text[:length - 3] + "..."


def _pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be used (too long, invalid), or None."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"{len(pattern):,} characters; the limit is {MAX_PATTERN_LENGTH:,}"
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    except RecursionError:
        return "groups nested too deeply"
    return None


# --- patterns that backtrack catastrophically ---------------------------------------------------

_sre: Any = importlib.import_module("re._parser")  # the parser behind re (no public API)
_BACKTRACKING_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT)
_REPEATS = (*_BACKTRACKING_REPEATS, _sre.POSSESSIVE_REPEAT)
_GROUPS = (_sre.SUBPATTERN, _sre.ATOMIC_GROUP)
_ZERO_WIDTH = (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT)
_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W",
    "CATEGORY_LINEBREAK": "\n", "CATEGORY_NOT_LINEBREAK": "[^\n]",
}
#: Characters tried when checking whether two character sets overlap (besides the ones the
#: pattern names): ASCII and Latin-1 with its extensions.
_SAMPLE = [chr(c) for c in range(0x250)]
_ANY = (_sre.ANY, None)  # a character set that may hold anything


@rule("pattern-backtracking")
def backtracking_patterns(given: RuleInput) -> Iterator[Problem]:
    for f in _all_fields(given.procedure):
        if f.pattern is None or _pattern_problem(f.pattern):
            continue  # field-constraint reports it
        try:
            ambiguous = _Backtracking(f.pattern).found()
        except RecursionError:
            ambiguous = True
        if ambiguous:
            yield Problem((*f.path, "pattern"), f'pattern "{_short(f.pattern)}" can take '
                          "exponential time: inside a repeated group, a repetition or an "
                          "optional part can also match what follows it, as in (a+)+, "
                          r"(\w+\s?)*, (a|aa)* or (.*a){9}; write it so that each character "
                          "can be matched in one way only")


class _Backtracking:
    """Finds the repetitions that make Python's backtracking matcher take exponential time.

    Inside a repeated group (`+`, `*`, `{m,n}` with n > 1), a repetition of variable length
    (`+`, `*`, `?`, `{m,n}`) or an alternative with an empty branch must not be able to match
    what follows it, the start of the group's next round included: otherwise the matcher tries
    every way of cutting the text between them, round after round. Conservative: a few
    harmless patterns are refused too; the message says how to rewrite them.
    """

    def __init__(self, pattern: str) -> None:
        self.tree = _sre.parse(pattern)
        sample = [*_SAMPLE, *_named_characters(list(_atoms(list(self.tree))))]
        self.fold = bool(re.compile(pattern).flags & re.IGNORECASE)
        if self.fold:  # then sets are compared on lower-case characters
            sample += [c.swapcase() for c in sample if len(c.swapcase()) == 1]
        self.sample = sample
        self.accepted: dict[tuple[Any, int], frozenset[str]] = {}

    def found(self) -> bool:
        return self._walk(list(self.tree))

    def _walk(self, items: list[Any]) -> bool:
        """True when a repeated group somewhere in `items` is ambiguous."""
        for op, av in items:
            if op in _BACKTRACKING_REPEATS and av[1] > 1:
                body = list(av[2])
                if self._ambiguous(body, self._first(body)[0]):
                    return True
            if any(self._walk(child) for child in _children(op, av)):
                return True
        return False

    def _ambiguous(self, items: list[Any], after: list[Any]) -> bool:
        """True when some optional part of `items` can match what follows it (`after`: the
        character sets that may come after `items`)."""
        for index, (op, av) in enumerate(items):
            rest, rest_nullable = self._first(items[index + 1:])
            follow = rest + after if rest_nullable else rest
            children = _children(op, av)
            if op in _REPEATS and av[0] != av[1]:
                if self._overlap(self._first(children[0])[0], follow):
                    return True
                follow = follow + self._first(children[0])[0]  # another round may follow
            elif op is _sre.BRANCH and any(self._first(child)[1] for child in children):
                starts = [s for child in children for s in self._first(child)[0]]
                if self._overlap(starts, follow):
                    return True
            if any(self._ambiguous(child, follow) for child in children):
                return True
        return False

    def _first(self, items: list[Any]) -> tuple[list[Any], bool]:
        """The character sets a match of `items` may start with, and whether it may be empty."""
        found: list[Any] = []
        for op, av in items:
            if op in _ZERO_WIDTH:
                continue
            nullable = False
            if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN):
                found.append((op, av))
            elif op in _REPEATS or op in _GROUPS or op is _sre.BRANCH:
                for child in _children(op, av):
                    child_first, child_nullable = self._first(child)
                    found += child_first
                    nullable = nullable or child_nullable
                if op in _REPEATS and av[0] == 0:
                    nullable = True
            else:  # back-references and the like: could be anything
                found.append(_ANY)
                nullable = True
            if not nullable:
                return found, False
        return found, True

    def _overlap(self, sets: list[Any], others: list[Any]) -> bool:
        """Whether one character may be accepted by one of `sets` and one of `others`."""
        if not sets or not others:
            return False
        return bool(self._characters(sets) & self._characters(others))

    def _characters(self, sets: list[Any]) -> frozenset[str]:
        """The characters of the sample that one of `sets` accepts."""
        found: frozenset[str] = frozenset()
        for item in sets:
            key = (item[0], id(item[1]))  # the parsed pattern keeps every item alive
            if key not in self.accepted:
                self.accepted[key] = frozenset(c.lower() if self.fold else c
                                               for c in self.sample if _accepts(item, c))
            found |= self.accepted[key]
        return found


def _children(op: Any, av: Any) -> list[list[Any]]:
    """The sub-sequences of one parsed item."""
    if op in _REPEATS:
        return [list(av[2])]
    if op is _sre.SUBPATTERN:
        return [list(av[3])]
    if op is _sre.ATOMIC_GROUP:
        return [list(av)]
    if op is _sre.BRANCH:
        return [list(branch) for branch in av[1]]
    if op in (_sre.ASSERT, _sre.ASSERT_NOT):
        return [list(av[1])]
    if op is _sre.GROUPREF_EXISTS:
        return [list(branch) for branch in av[1:] if branch is not None]
    return []


def _atoms(items: list[Any]) -> Iterator[Any]:
    """Every character set of a parsed pattern."""
    for op, av in items:
        if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.IN):
            yield op, av
        for child in _children(op, av):
            yield from _atoms(child)


def _named_characters(sets: list[Any]) -> list[str]:
    """The characters a pattern names (literals, range ends), to test overlaps with."""
    found = []
    for op, av in sets:
        if op in (_sre.LITERAL, _sre.NOT_LITERAL):
            found.append(chr(av))
        elif op is _sre.IN:
            for inner, value in av:
                if inner is _sre.LITERAL:
                    found.append(chr(value))
                elif inner is _sre.RANGE:
                    found += [chr(value[0]), chr(value[1])]
    return found


def _accepts(item: Any, character: str) -> bool:
    """Whether one character set of a parsed pattern accepts `character`."""
    op, av = item
    if op is _sre.ANY:
        return av is None or character != "\n"
    if op is _sre.LITERAL:
        return bool(ord(character) == av)
    if op is _sre.NOT_LITERAL:
        return bool(ord(character) != av)
    if op is _sre.RANGE:
        return bool(av[0] <= ord(character) <= av[1])
    if op is _sre.CATEGORY:
        return re.fullmatch(_CATEGORIES.get(str(av), "(?s:.)"), character) is not None
    if op is _sre.IN:
        negated = bool(av) and av[0][0] is _sre.NEGATE
        return any(_accepts(i, character) for i in av if i[0] is not _sre.NEGATE) != negated
    return True


def _bound_problems(f: Field) -> Iterator[Problem]:
    for key, bound in (("min", f.minimum), ("max", f.maximum)):
        if bound is None:
            continue
        where = (*f.path, key)
        if f.type in NUMERIC_TYPES:
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                yield Problem(where, f'{key} of {f.type} field "{f.id}" must be a number')
        elif f.type == "date":
            if not _is_date_bound(bound):
                yield Problem(where, f'{key} of date field "{f.id}" must be a date like '
                                     '"2000-01-31" or "today"')


def _is_date_bound(value: Any) -> bool:
    if value == "today":
        return True
    try:
        dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


@rule("fee-field")
def fee_fields(given: RuleInput) -> Iterator[Problem]:
    """`per:` and `amount: {from:}` name a numeric form field or step input."""
    fields = _data_fields(given.procedure)
    for fee in given.procedure.fees:
        read = [(name, where, why) for name, where, why in (
            (fee.per, (*fee.path, "per"), "is counted per"),
            (fee.amount_from, (*fee.path, "amount", "from"), "takes its amount from"))
            if name is not None]
        for name, where, why in read:
            if name not in fields:
                yield undeclared(where, "field", name, fields)
            elif fields[name].type not in NUMERIC_TYPES:
                yield Problem(where, f'fee "{fee.id}" {why} field "{name}", which is '
                                     f"{fields[name].type}, not a number")
            elif not _at_least_zero(fields[name].minimum):
                yield Problem(where, f'fee "{fee.id}" {why} field "{name}", which may be '
                                     "negative (counted as 0); give it `min: 0`", "warning")


def _at_least_zero(minimum: Any) -> bool:
    return isinstance(minimum, int | float) and not isinstance(minimum, bool) and minimum >= 0


@rule("duration-field")
def duration_fields(given: RuleInput) -> Iterator[Problem]:
    """A duration read from data (`{field, unit}`) names an integer form field or step
    input; one that may be unset gives no deadline (or no validity): said as a warning."""
    p = given.procedure
    fields = _data_fields(p)
    read: list[tuple[Any, Path]] = [(p.validity, ("validity",))]
    read += [(d.after, (*d.path, "after")) for s in p.states.values() for d in s.deadlines]
    for duration, path in read:
        if not isinstance(duration, FieldDuration):
            continue
        found = fields.get(duration.field)
        if found is None:
            yield undeclared((*path, "field"), "field", duration.field, fields)
        elif found.type != "integer":
            yield Problem((*path, "field"), f'duration read from field "{found.id}", which is '
                                            f"{found.type}, not an integer")
        elif not found.required:
            yield Problem((*path, "field"), f'field "{found.id}" is not required: while it is '
                                            "unset there is no duration (no deadline, no "
                                            "validity)", "warning")


# --- SMS length ---------------------------------------------------------------------------------

def _sms_notifications(p: Procedure) -> Iterator[tuple[Notification, str]]:
    """Every SMS notification with the state its text is rendered in (entered, or reminded)."""
    for state_id, state in p.states.items():
        yield from ((n, state_id) for n in state.notify if n.channel == "sms")
        yield from ((d.reminder, state_id) for d in state.deadlines
                    if d.reminder and d.reminder.channel == "sms")
    for t in p.transitions:
        yield from ((n, t.target) for n in t.notify if n.channel == "sms")


@rule("sms-length")
def sms_lengths(given: RuleInput) -> Iterator[Problem]:
    """SMS texts rendered with sample data (engine/sample_data.py) that do not fit in one
    message: 160 GSM-7 characters, or 70 when a character is outside GSM-7."""
    p = given.procedure
    names = {"fr": "French", "en": "English"}
    for note, state in _sms_notifications(p):
        for language, template in note.template.items():
            try:
                text = template.render(sample_context(p, state, language))
            except Exception:  # noqa: BLE001 - a template failing on samples is not this rule's
                continue
            counted = sms_length(text)
            if counted.fits:
                continue
            where = f"the {names.get(language, language)} SMS text"
            if counted.outside_gsm7:
                shown = " ".join(f'"{c}"' for c in counted.outside_gsm7[:5])
                message = (f"{where} has characters outside GSM-7 ({shown}): one SMS holds "
                           f"{counted.limit} characters (UCS-2), and it is {counted.length} "
                           "with sample data")
            else:
                message = (f"{where} is {counted.length} GSM-7 characters with sample data, "
                           f"over the {counted.limit} of one SMS")
            yield Problem((*note.path, "template", language), message, "warning")


# --- completeness -------------------------------------------------------------------------------

def _texts(p: Procedure) -> Iterator[tuple[Text | None, Path]]:
    yield p.title, ("title",)
    yield p.description, ("description",)
    for role in p.roles.values():
        yield role.label, (*role.path, "label")
        yield role.description, (*role.path, "description")
    for item in _all_fields(p):
        yield item.label, (*item.path, "label")
        yield item.hint, (*item.path, "hint")
        yield from ((o.label, (*item.path, "options", i, "label"))
                    for i, o in enumerate(item.options))
    labelled: list[Document | Fee | PaymentMethod] = [*p.documents, *p.fees,
                                                      *p.payment_methods]
    for entry in labelled:
        yield entry.label, (*entry.path, "label")
    for d in p.documents:
        yield d.hint, (*d.path, "hint")
    for state in p.states.values():
        yield state.label, (*state.path, "label")
        yield state.description, (*state.path, "description")
    for t in p.transitions:
        yield t.label, (*t.path, "label")
        yield t.message, (*t.path, "message")
        yield from ((item.title, (*item.path, "title")) for item in t.issue)
    for note in _notifications(p):
        yield note.subject, (*note.path, "subject")


@rule("missing-translation")
def missing_translations(given: RuleInput) -> Iterator[Problem]:
    for value, path in _texts(given.procedure):
        if value is None or (value.fr is None and value.en is None):
            continue  # absent or invalid: the schema reports it
        if value.fr is None or value.en is None:
            missing = "French" if value.fr is None else "English"
            yield Problem(path, f"missing {missing} text", "warning")
    for note_path, _ in _template_sets(given.procedure):
        declared = _raw(given.document.data, note_path)
        languages = {"fr"} if isinstance(declared, str) else set(declared or {})
        if not isinstance(declared, str | dict) or not languages & {"fr", "en"} \
                or "all" in languages:
            continue  # absent, invalid (the schema says why) or one text for every language
        for language, name in (("fr", "French"), ("en", "English")):
            if language not in languages:
                yield Problem(note_path, f"missing {name} template", "warning")


def _raw(data: Any, path: Path) -> Any:
    """The source value at `path`, or None."""
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _template_sets(p: Procedure) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    for note in _notifications(p):
        yield (*note.path, "template"), note.template
    for t in p.transitions:
        for item in t.issue:
            yield (*item.path, "template"), item.template


def _used_names(p: Procedure) -> set[str]:
    used: set[str] = set()
    for expression, _, _ in _expressions(p):
        used |= expression.names
    for template, _, _ in _templates(p):
        used |= template.names
    used |= {fee.per for fee in p.fees if fee.per}
    used |= {fee.amount_from for fee in p.fees if fee.amount_from}
    durations = [p.validity, *(d.after for s in p.states.values() for d in s.deadlines)]
    used |= {d.field for d in durations if isinstance(d, FieldDuration)}
    used |= {source for f in links.follow_ups(p) for _, source in f.carry}
    used |= {d.field_id for d in p.reporting}
    return used


@rule("unused-field")
def unused_fields(given: RuleInput) -> Iterator[Problem]:
    p = given.procedure
    if any(t.requires_fields == "all" for t in p.transitions):
        return
    used = _used_names(p) | {n for t in p.transitions for n in t.requires_fields}
    for f in p.fields:
        if f.id not in used:
            yield Problem(f.path, f'field "{f.id}" is never required by a transition nor used '
                                  "by an expression, fee or template", "warning",
                          assumes=frozenset({"field"}))


@rule("unused-document")
def unused_documents(given: RuleInput) -> Iterator[Problem]:
    p = given.procedure
    if any(t.requires_documents == "all" for t in p.transitions):
        return
    used = _used_names(p) | {n for t in p.transitions for n in t.requires_documents}
    for d in p.documents:
        if d.id not in used:
            yield Problem(d.path, f'document "{d.id}" is never required by a transition',
                          "warning", assumes=frozenset({"document", "field"}))


@rule("reporting-dimension")
def reporting_dimensions(given: RuleInput) -> Iterator[Problem]:
    """`reporting:` names top-level choice or country fields, each once; one whose field some
    readers may not see (`visible_to:`) says `sensitive: true` (a warning: it is treated as
    sensitive anyway)."""
    fields = {f.id: f for f in given.procedure.fields}
    seen: set[str] = set()
    for dimension in given.procedure.reporting:
        where = (*dimension.path, "field")
        found = fields.get(dimension.field_id)
        if found is None:
            yield undeclared(where, "field", dimension.field_id, fields)
        elif found.type not in DIMENSION_TYPES:
            yield Problem(where, f'field "{dimension.field_id}" is of type {found.type}: a '
                                 f"reporting dimension must be a {' or '.join(DIMENSION_TYPES)} "
                                 "field (values from a closed list)")
        elif dimension.field_id in seen:
            yield Problem(where, f'field "{dimension.field_id}" is already a reporting dimension')
        elif found.visible_to and not (dimension.sensitive or found.sensitive):
            yield Problem(dimension.path, f'field "{dimension.field_id}" is visible only to '
                          f"{', '.join(found.visible_to)}: its breakdown is sensitive (only "
                          "counted, small counts suppressed, refused to roles that may not "
                          "read the field); write `sensitive: true` on this dimension to say "
                          "so", "warning")
        seen.add(dimension.field_id)


@rule("waiting-state")
def waiting_states(given: RuleInput) -> Iterator[Problem]:
    """A final state waits for nobody: `waiting:` there would say nothing."""
    for state in given.procedure.states.values():
        if state.waiting and state.final:
            yield Problem((*state.path, "waiting"), f'state "{state.id}" is final: a case '
                          "there waits for nobody; remove `waiting:`", at_key=True)
