"""A procedure version ready to run: its state machine, forms, fees and reasons (no I/O).

Everything here is built once per procedure version and shared by every case: the machine,
the form validators and the compiled expressions. `Workflow.decide` says what a trigger does
to a case (or every reason it cannot); the Engine persists the outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any

from . import claims, limits
from .calendars import WEEKDAYS, Calendar
from .errors import Blocked, InvalidData, NotAllowed, Reason
from .expressions import Expression, age
from .forms import Errors, Form
from .machine import StateMachine
from .messages import LANGUAGES, text
from .model import (
    APPLICANT_PARTY,
    SYSTEM_ROLE,
    VALID_UNTIL,
    Deadline,
    Document,
    Duration,
    Fee,
    Field,
    FollowUp,
    Procedure,
    Requirement,
    Text,
    Transition,
    resolve_duration,
)
from .values import Actor, Case, HistoryEntry, frozen_mapping

#: The steps that are not transitions, as the history records them.
START, ATTACH, PAY, EDIT, CLAIM = "@start", "@attach", "@pay", "@edit", "@claim"
#: A document's file(s) removed (by Engine.remove_document, or replaced by Engine.attach).
REMOVE = "@remove"
MEMBERS = "@members"


_MEMO_LIMIT = 50_000

#: The truth of a condition: True, False, or None when it could not be evaluated (it raised,
#: or its value has no truth, such as an undefined name). Callers fail closed on None: a
#: guard refuses, and a `when:` on a field, document or fee makes it apply.
Truth = bool | None


class Results:
    """Truths of a procedure version's expressions, by the values of the names they read.

    Expressions are pure (sandboxed, no side effects), so the same values give the same
    result: most cases share a few combinations (passport type, adult or minor...), and an
    evaluation costs far more than a look-up. Bounded; values that cannot be keys are not
    cached.
    """

    def __init__(self) -> None:
        self._memo: dict[tuple[Any, ...], Truth] = {}

    def truth(self, expression: Expression, context: Mapping[str, Any]) -> Truth:
        """The expression's truth, or None when it cannot be evaluated."""
        try:
            key = (expression, *(_key(name, context) for name in expression.ordered_names))
            hash(key)
        except TypeError:
            return _truth(expression, context)
        found = self._memo.get(key, _MISSING)
        if found is _MISSING:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            found = self._memo[key] = _truth(expression, context)
        return found  # type: ignore[return-value]


_MISSING = object()


def _key(name: str, context: Mapping[str, Any]) -> Any:
    if name == "age":
        return context.get("today")  # age(...) depends on the day only
    value = context.get(name)
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    if isinstance(value, list):
        return tuple(value)
    return value


def _truth(expression: Expression, context: Mapping[str, Any]) -> Truth:
    try:
        return bool(expression.evaluate(context))  # bool() inside: Undefined has no truth
    except Exception:  # noqa: BLE001 - None: the caller fails closed
        return None


class Context(dict[str, Any]):
    """What expressions see: field values (None when unset) and the built-ins."""

    def __init__(self, values: Mapping[str, Any], results: Results) -> None:
        super().__init__(values)
        self.results = results
        self.fees: list[tuple[str, int]] | None = None

    def truth(self, expression: Expression) -> Truth:
        """The expression's truth here, None when it cannot be evaluated."""
        return self.results.truth(expression, self)

    def holds(self, expression: Expression) -> bool:
        """True only when the expression evaluates without error to a true value (guards)."""
        return self.truth(expression) is True

    def applies(self, condition: Expression | None) -> bool:
        """Whether a `when:` makes its field, document or fee apply: no condition, a true
        one, or one that cannot be evaluated (a requirement in doubt is never waived)."""
        return condition is None or self.truth(condition) is not False


@dataclass(frozen=True)
class CaseView:
    """What a decision needs to know of a stored case."""

    state: str
    applicant_id: str
    data: Mapping[str, Any]
    documents: Mapping[str, int]  # document id -> files attached
    fees_paid: int
    actors: Mapping[str, list[str]]  # trigger -> ids of those who fired it
    outcome: str | None = None  # set once the case is closed
    parties: Mapping[str, Any] = field(default_factory=dict)  # see Case.parties in store


@dataclass(frozen=True)
class Timing:
    """When one deadline of a state falls for a stay that began at a given moment."""

    index: int  # the deadline's position in its state
    deadline: Deadline
    due: dt.datetime
    remind_at: dt.datetime | None  # None: no reminder


@dataclass(frozen=True)
class Paused:
    """A deadline whose clock is stopped (`pause_in`): its state, its position there, and
    the time it had left when the case left its state."""

    state: str
    index: int
    left: Duration


@dataclass(frozen=True)
class ClockChange:
    """What a step does to the legal clocks of a case (Workflow.legal_clock): the clocks
    stopped after it (those it stops and those that stay stopped), and the deadlines of the
    state it enters that resume with the time they had left, by index."""

    paused: tuple[Paused, ...] = ()
    resumed: Mapping[int, Duration] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """Why a step cannot happen: `refused` (who may not) or `blocked` (what is missing)."""

    kind: str  # "refused" | "blocked"
    reasons: tuple[Reason, ...]
    trigger: str = ""
    label: Text | None = None  # the step's label, what a citizen reads (else the trigger)

    def error(self) -> NotAllowed | Blocked:
        """The engine error that reports this refusal to a caller."""
        error = NotAllowed if self.kind == "refused" else Blocked
        return error(text("step_impossible", trigger=self.label or self.trigger),
                     self.reasons)


@dataclass(frozen=True)
class _Weighed:
    """What a decision weighs before the machine chooses (see Workflow._weighed)."""

    role: str
    data: dict[str, Any]
    context: Context
    problems: list[tuple[Transition, list[Reason]]]  # each allowed candidate, what it lacks


@dataclass(frozen=True)
class Decision:
    """A transition that may fire, with the data the case will hold after it."""

    transition: Transition
    role: str
    data: dict[str, Any]
    context: Context


class Workflow:
    """One compiled procedure version with everything needed to run its cases."""

    def __init__(self, procedure: Procedure, closures: frozenset[dt.date] = frozenset()
                 ) -> None:
        self.procedure = procedure
        #: the business days of its deadlines: weekends, the holidays of `calendar:` and the
        #: deployment's closure days (those only with a country calendar)
        self.calendar: Calendar = (Calendar(procedure.calendar, frozenset(closures))
                                   if procedure.calendar else WEEKDAYS)
        self.form = Form.of(procedure.fields)
        self._input_forms: dict[tuple[int, ...], Form] = {}
        self.results = Results()
        self.machine = StateMachine(procedure, self._ready, self._check_input, self._decision)
        data_fields = [*procedure.fields, *(i for t in procedure.transitions for i in t.input)]
        self._blank = {f.id: None for f in data_fields}
        self._dates = frozenset(f.id for f in data_fields if f.type == "date")
        self._no_documents = {d.id: 0 for d in procedure.documents}  # documents.<id> is 0
        self.field_ids = frozenset(f.id for f in procedure.fields)
        self._input_ids = frozenset(i.id for t in procedure.transitions for i in t.input)

    # --- context and fees -----------------------------------------------------------------------

    def context(self, data: Mapping[str, Any], documents: Mapping[str, int], fees_paid: int,
                today: dt.date) -> Context:
        """The names an expression sees: every data field (None when unset) and the built-ins."""
        context = Context(self._blank, self.results)
        for key, value in data.items():
            if key in self._dates and isinstance(value, str):
                try:
                    value = dt.date.fromisoformat(value)
                except ValueError:
                    pass
            context[key] = value
        context.update(today=today, age=partial(age, today=today), fees_paid=fees_paid,
                       documents={**self._no_documents, **documents}, fees_due=0)
        context.fees = self.fee_items(context)
        context["fees_due"] = sum(amount for _, amount in context.fees)
        return context

    def fee_items(self, context: Mapping[str, Any]) -> list[tuple[str, int]]:
        """(fee id, amount) of every fee that applies; a `when` that fails counts as applying."""
        if isinstance(context, Context) and context.fees is not None:
            return context.fees
        items = []
        for fee in self.procedure.fees:
            if fee.when is not None and self.results.truth(fee.when, context) is False:
                continue
            amount = self._fee_amount(fee, context)
            if amount is not None:
                items.append((fee.id, amount))
        return items

    def _fee_amount(self, fee: Fee, context: Mapping[str, Any]) -> int | None:
        """A fee's amount for this case; None while a step input it reads is unset (an
        amount set at a step is due once set)."""
        amount: float = fee.amount
        if fee.amount_from is not None:
            value = context.get(fee.amount_from)
            if not isinstance(value, int | float) or isinstance(value, bool):
                return None
            amount = max(value, 0)  # a negative amount never cancels another fee
        if fee.per is not None:
            units = context.get(fee.per)
            if units is None and fee.per in self._input_ids:
                return None
            amount *= max(units, 0) if isinstance(units, int | float) else 0
        return int(amount)

    def fees_required(self, trigger: str, context: Mapping[str, Any],
                      fired: Iterable[str]) -> int:
        """What must have been paid before `trigger` fires: its fees and earlier steps' ones."""
        steps = {trigger, *fired}
        due = {fee.id: fee.due for fee in self.procedure.fees}
        return sum(amount for fee_id, amount in self.fee_items(context) if due[fee_id] in steps)

    def visible(self, context: Context) -> Callable[[Field], bool]:
        """Whether a field applies (shown, required if it says so, kept): see Context.applies."""
        def is_visible(f: Field) -> bool:
            return context.applies(f.when)
        return is_visible

    # --- deadlines ------------------------------------------------------------------------------

    def due(self, duration: Duration, start: dt.datetime) -> dt.datetime:
        """`start` plus `duration` on this procedure's calendar (business days skip weekends,
        its holidays and closure days): how deadlines and the processing-time target count."""
        return duration.add_to(start, self.calendar)

    def timings(self, state_id: str, entered: dt.datetime,
                data: Mapping[str, Any] | None = None,
                resumed: Mapping[int, Duration] | None = None) -> list[Timing]:
        """When each deadline of `state_id` falls for a stay that began at `entered`, the
        earliest first (the one that fires first). The only answer to "when does a deadline
        fall": timers, scenarios and exploration all ask it. A deadline whose `after:` reads
        the case's `data` has none while that value is unset. A deadline in `resumed` (by
        index: its clock was stopped, see legal_clock) falls after the time it had left, and
        its reminder is not sent again if its moment had passed before the clock stopped."""
        found = []
        for index, deadline in enumerate(self.procedure.states[state_id].deadlines):
            left = (resumed or {}).get(index)
            after = left if left is not None else resolve_duration(deadline.after, data or {})
            if after is None:
                continue
            due = self.due(after, entered)
            remind_at = None
            if deadline.remind_before is not None:
                remind_at = due - deadline.remind_before.approximate()
                if remind_at < entered:
                    remind_at = None if left is not None else entered
            found.append(Timing(index, deadline, due, remind_at))
        return sorted(found, key=lambda timing: (timing.due, timing.index))

    # --- the legal clock: deadlines that pause (`pause_in`) ------------------------------------

    def clock_moves(self, source: str, target: str) -> bool:
        """Whether a step from `source` to `target` may stop or restart a legal clock: a
        deadline of `source` pauses in `target`, or `source` is where some clock may be
        stopped. Otherwise a step leaves the clocks alone (and the engine reads no timer)."""
        if source == target:
            return False
        pausing = any(target in d.pause_in for d in self.procedure.states[source].deadlines)
        return pausing or source in self._pause_states

    @cached_property
    def _pause_states(self) -> frozenset[str]:
        return frozenset(name for state in self.procedure.states.values()
                         for d in state.deadlines for name in d.pause_in)

    def legal_clock(self, source: str, target: str, now: dt.datetime,
                    running: Mapping[int, dt.datetime], paused: Iterable[Paused]
                    ) -> ClockChange:
        """What a step from `source` to `target` at `now` does to the clocks: each running
        deadline of `source` (`running`: its index -> when it falls) whose `pause_in` names
        `target` stops with the time it has left; each stopped one (`paused`) resumes if the
        case comes back to its state, stays stopped in another of its `pause_in` states, and
        is dropped anywhere else (the clock then starts again on the next entry)."""
        if source == target:
            return ClockChange(tuple(paused))
        deadlines = self.procedure.states[source].deadlines
        kept: list[Paused] = []
        resumed: dict[int, Duration] = {}
        for clock in paused:
            if clock.state == target:
                resumed[clock.index] = clock.left
            elif target in self._deadline(clock).pause_in:
                kept.append(clock)
        for index, due in sorted(running.items()):
            deadline = deadlines[index]
            if target in deadline.pause_in:
                unit = Duration(1, deadline.after.unit)  # stated or read from data
                kept.append(Paused(source, index, unit.left(now, due, self.calendar)))
        return ClockChange(tuple(kept), resumed)

    def _deadline(self, clock: Paused) -> Deadline:
        state = self.procedure.states.get(clock.state)
        if state is None or clock.index >= len(state.deadlines):
            return Deadline(Duration(1, "days"), "", ())  # a version without it: dropped
        return state.deadlines[clock.index]

    # --- data -----------------------------------------------------------------------------------

    def clean(self, data: Mapping[str, Any], today: dt.date, language: str,
              form: Form | None = None) -> dict[str, Any]:
        """Validate and normalise submitted data; raises InvalidData naming every bad field."""
        form = form or self.form
        cleaned, errors = form.validate(data, today)
        if errors:
            raise _invalid(errors)
        return cleaned

    def start_data(self, data: Mapping[str, Any], today: dt.date, language: str = "fr"
                   ) -> dict[str, Any]:
        """The form data a case opens with, as `Engine.start` keeps it: validated and
        normalised (raises InvalidData naming every bad field), the fields it hides dropped."""
        cleaned = self.clean(data, today, language)
        context = self.context(cleaned, {}, 0, today)
        self.check_options(cleaned, context)
        return self.drop_hidden(cleaned, context)

    def acceptable(self, data: Mapping[str, Any], today: dt.date) -> dict[str, Any]:
        """`data` without the values this procedure's form refuses (and what their removal
        makes refused): what a follow-up keeps of the data carried over to it."""
        kept = dict(data)
        while kept:
            try:
                self.start_data(kept, today)
            except InvalidData as refused:
                if not refused.errors.keys() & kept.keys():
                    return {}  # refused as a whole (should not happen): carry nothing
                kept = {k: v for k, v in kept.items() if k not in refused.errors}
                continue
            break
        return kept

    def check_options(self, data: Mapping[str, Any], context: Context) -> None:
        """InvalidData naming each choice in `data` whose chosen option is not offered (see
        not_offered), so a change that withdraws an option already chosen is refused too."""
        errors = {field_id: text("option_not_offered", value=self._option_labels(field_id,
                                                                                  values))
                  for field_id, values in self.not_offered(data, context).items()}
        if errors:
            raise _invalid(errors)

    def not_offered(self, data: Mapping[str, Any], context: Context) -> dict[str, list[str]]:
        """The values chosen in `data` for each choice whose option is not offered in
        `context`: its `when:` does not hold, or cannot be evaluated (in doubt, not offered)."""
        found = {}
        for f in self._conditional_choices:
            value = data.get(f.id)
            chosen = value if isinstance(value, list) else [value]
            refused = [o.value for o in f.options
                       if o.value in chosen and o.when and not context.holds(o.when)]
            if refused:
                found[f.id] = refused
        return found

    def _option_labels(self, field_id: str, values: list[str]) -> dict[str, str]:
        """The labels of these options of a field, joined, in every language."""
        found = next(f for f in self._conditional_choices if f.id == field_id)
        labels = {o.value: o.label for o in found.options}
        return {language: ", ".join(labels[v].get(language) or v for v in values)
                for language in LANGUAGES}

    @cached_property
    def _conditional_choices(self) -> tuple[Field, ...]:
        return tuple(f for f in self._data_fields if any(o.when for o in f.options))

    def drop_hidden(self, data: dict[str, Any], context: Context) -> dict[str, Any]:
        """Data without the fields whose `when:` does not hold."""
        visible = self.visible(context)
        hidden = {f.id for f in self.procedure.fields if f.id in data and not visible(f)}
        return {k: v for k, v in data.items() if k not in hidden}

    # --- decisions ------------------------------------------------------------------------------

    def state_label(self, state_id: str) -> Text | str:
        """What a citizen reads for a state: its label, else its id."""
        state = self.procedure.states.get(state_id)
        return state.label if state and (state.label.fr or state.label.en) else state_id

    def label(self, trigger: str) -> Text | None:
        """The label of the first transition of `trigger` that has one."""
        return next((t.label for t in self.procedure.transitions
                     if t.trigger == trigger and t.label), None)

    def candidates(self, state: str, trigger: str) -> list[Transition]:
        return list(self.procedure.transitions_from(state, trigger))

    def authorize(self, candidates: list[Transition], case: CaseView, actor: Actor
                  ) -> tuple[list[Transition], str, list[Reason]]:
        """The candidates this actor may fire, the role they act in, or the refusals."""
        reasons: list[Reason] = []
        allowed: list[Transition] = []
        role = ""
        for t in candidates:
            roles = [r for r in t.roles if r in actor.roles] or self._for_applicant(t, case, actor)
            if not roles:
                reasons.append(Reason("role", t.trigger,
                                      text("roles_only", roles=", ".join(t.roles))))
                continue
            acting = roles[0]
            if acting in self.procedure.party_roles and not self.is_applicant(case, actor):
                reasons.append(Reason("ownership", t.trigger, text("not_yours")))
                continue
            if t.not_applicant and self.is_party(case, actor):
                reasons.append(Reason("separation", t.trigger, text("own_case")))
                continue
            earlier = [s for s in t.not_actor_of if actor.id in case.actors.get(s, [])]
            if earlier:
                reasons.append(Reason("separation", t.trigger,
                                      text("step_already_done", step=earlier[0])))
                continue
            allowed.append(t)
            role = role or acting
        return allowed, role, reasons

    def requirements(self, t: Transition, case: CaseView, context: Context
                     ) -> list[Reason]:
        """Every unmet requirement of `t`: fields, documents, payment, guard."""
        reasons: list[Reason] = []
        visible = self.visible(context)
        names = None if t.requires_fields == "all" else t.requires_fields
        if names != ():
            for f in self.form.missing(context, visible, names):
                reasons.append(Reason("field", f.id, text("missing_field", label=f.label)))
        for field_id, values in self.not_offered(context, context).items():
            if names is None or field_id in names:  # a stored choice no longer offered
                reasons.append(Reason("field", field_id, text(
                    "option_not_offered", value=self._option_labels(field_id, values))))
        for d in self.documents_missing(case.documents, context, t.requires_documents):
            reasons.append(Reason("document", d.id, text("missing_document", label=d.label)))
        owed = self.fees_required(t.trigger, context, case.actors) - case.fees_paid
        if owed > 0:
            reasons.append(Reason("payment", t.trigger, text("still_to_pay", owed=owed)))
        if t.when is not None:
            reasons.extend(_guard_refusal(t, context.truth(t.when)))
        return reasons

    def documents_missing(self, attached: Mapping[str, int], context: Context,
                          wanted: Requirement = "all") -> list[Document]:
        """Documents wanted (all required ones, or those listed) that apply and lack files."""
        missing = []
        for d in self.procedure.documents:
            needed = d.required if wanted == "all" else d.id in wanted
            if not needed or not context.applies(d.when):
                continue
            if attached.get(d.id, 0) < max(1, d.min_files):
                missing.append(d)
        return missing

    def decide(self, case: CaseView, trigger: str, actor: Actor, data: Mapping[str, Any],
               today: dt.date, check_input: bool = True) -> Decision | Refusal:
        """The transition `trigger` takes for this actor, or the Refusal saying why not.

        Without `check_input`, the step data the actor must still supply is not required
        (to list what may be fired before asking for it).
        """
        weighed = self._weighed(case, trigger, actor, data, today)
        if isinstance(weighed, Refusal):
            return weighed
        merged = weighed.data
        if any(f.id in data for f in self.procedure.fields):
            # the applicant changed the form: fields it now hides are not kept. Otherwise
            # stored data stays as it was (passing time never erases part of a record).
            merged = self.drop_hidden(merged, weighed.context)
        ready = [t for t, problems in weighed.problems if not problems]
        step = {"ready": ready, "role": weighed.role, "data": merged,
                "context": weighed.context, "input": data if check_input else None}
        decision = self.machine.fire(case.state, trigger, step)
        if decision is None:
            blocked = [reason for _, problems in weighed.problems for reason in problems]
            return Refusal("blocked", _unique(blocked), trigger, self.label(trigger))
        return decision

    def _weighed(self, case: CaseView, trigger: str, actor: Actor, data: Mapping[str, Any],
                 today: dt.date) -> _Weighed | Refusal:
        """Who may fire `trigger`, on what data, and what each candidate still lacks."""
        candidates = self.candidates(case.state, trigger)
        if not candidates:
            return Refusal("blocked", (Reason("state", trigger,
                                              text("not_from_state",
                                                   state=self.state_label(case.state))),),
                           trigger, self.label(trigger))
        allowed, role, refusals = self.authorize(candidates, case, actor)
        if not allowed:
            return Refusal("refused", _unique(refusals), trigger, self.label(trigger))
        merged = self._merge(case, allowed, role, actor, data, today)
        context = self.context(merged, case.documents, case.fees_paid, today)
        if data:  # a form change is checked whole: it may withdraw an option already chosen
            changes_form = any(key in self.field_ids for key in data)
            self.check_options(merged if changes_form else data, context)
        return _Weighed(role, merged, context,
                        [(t, self.requirements(t, case, context)) for t in allowed])

    def _merge(self, case: CaseView, allowed: list[Transition], role: str, actor: Actor,
               data: Mapping[str, Any], today: dt.date) -> dict[str, Any]:
        """Case data with the submitted form fields and step input, each validated."""
        if not data:
            return dict(case.data)
        input_ids = {f.id for t in allowed for f in t.input}
        form_part = {k: v for k, v in data.items() if k not in input_ids}
        input_part = {k: v for k, v in data.items() if k in input_ids}
        editable = (self.editable_fields(case, actor)
                    if role in self.procedure.party_roles else ())
        _check_editable(form_part, editable)
        language = actor.language
        merged = dict(case.data)
        if form_part:
            merged.update(self.clean(form_part, today, language))
        if input_part:
            merged.update(self.clean(input_part, today, language, self.input_form(allowed)))
        return merged

    def input_form(self, allowed: list[Transition]) -> Form:
        """The validator of the step input of these transitions (built once, then reused)."""
        key = tuple(i for i, t in enumerate(self.procedure.transitions)
                    if any(t is a for a in allowed))
        form = self._input_forms.get(key)
        if form is None:
            unique = {f.id: f for t in allowed for f in t.input}
            form = self._input_forms[key] = Form.of(unique.values())
        return form

    def _require_input(self, t: Transition, data: Mapping[str, Any]) -> None:
        missing = [f for f in t.input if f.required and _blank(data.get(f.id))]
        if missing:
            raise _invalid({f.id: text("required") for f in missing})

    def _check_input(self, transition: Transition, step: Mapping[str, Any]) -> None:
        """The machine's before callback: the step input the chosen transition requires
        (not checked when only asking what may be fired)."""
        if step["input"] is not None:
            self._require_input(transition, step["input"])

    def _decision(self, transition: Transition, step: Mapping[str, Any]) -> Decision:
        """The machine's after callback: what firing the chosen transition decides."""
        return Decision(transition, step["role"], step["data"], step["context"])

    def _ready(self, transition: Transition, context: Mapping[str, Any]) -> bool:
        ready: list[Transition] = context["ready"]
        return any(transition is r for r in ready)

    # --- steps that are not transitions: attach, pay, edit -----------------------------------

    def is_applicant(self, case: CaseView, actor: Actor) -> bool:
        """Whether `actor` acts as the case's applicant party: the applicant, in a role that
        opens cases, or an agent at the counter acting for them (see acts_for_applicant)."""
        if actor.roles & self.procedure.party_roles and self.is_party(case, actor):
            return True
        return self.acts_for_applicant(case, actor)

    def is_party(self, case: CaseView, actor: Actor) -> bool:
        """Whether `actor` is the case's applicant, or a member of the organisation that is
        (whatever role they hold: separation of duties asks this)."""
        if actor.id == case.applicant_id and case.applicant_id:
            return True
        return actor.id in _members(case)

    def check_administrator(self, case: CaseView, actor: Actor) -> None:
        """Whether `actor` administers the organisation that applied (NotAllowed if not)."""
        administrator = case.parties.get(APPLICANT_PARTY, {}).get("administrator")
        if administrator is None or actor.id != administrator or case.outcome is not None:
            raise NotAllowed(text("not_administrator"))

    def check_start_as_organisation(self, actor: Actor) -> None:
        """Whether `actor` may open a case for an organisation (NotAllowed if the procedure's
        `start:` does not let organisations apply, or the actor may not open cases)."""
        self.check_start(actor)
        if not self.procedure.start.organisations:
            raise NotAllowed(text("no_organisations"))

    def _for_applicant(self, t: Transition, case: CaseView, actor: Actor) -> list[str]:
        """The party roles of `t` an agent at the counter fires it in, for the applicant."""
        if not self.acts_for_applicant(case, actor):
            return []
        return [r for r in t.roles if r in self.procedure.party_roles]

    def for_party(self, case: CaseView, actor: Actor) -> str | None:
        """The party `actor` acts for on this case: "applicant" for an agent at the counter
        filling a case opened for a person, None when they act for themselves or as staff."""
        if self.acts_for_applicant(case, actor) and not actor.id == case.applicant_id:
            return APPLICANT_PARTY
        return None

    def acts_for_applicant(self, case: CaseView, actor: Actor) -> bool:
        """Whether `actor` fills a case for the person it was opened for at the counter:
        they hold a `start.on_behalf` role and the person has not claimed the case yet."""
        return case.applicant_id == "" and bool(actor.roles & set(self.procedure.start.on_behalf))

    def is_staff(self, actor: Actor) -> bool:
        """Whether `actor` holds a role of this procedure that acts on any of its cases."""
        return bool(actor.roles & self.procedure.staff_roles)

    def check_owner(self, case: CaseView, actor: Actor) -> None:
        """Staff may act on any case; a party role only on its own (NotAllowed otherwise).

        Checked first, before anything about the case is answered."""
        if not self.is_staff(actor) and not self.is_applicant(case, actor):
            raise NotAllowed(text("not_yours"))

    def authorize_change(self, case: CaseView, actor: Actor, step: str) -> None:
        """Whether `actor` may make a non-transition step (ATTACH, PAY or EDIT) on the case:
        its owner or staff, on an open case; an applicant attaches only where the state lets
        them edit; the form is edited by whom the state lets (editable_fields). Raises
        NotAllowed."""
        self.check_owner(case, actor)
        if case.outcome is not None:
            raise NotAllowed(text("case_closed"))
        if step == EDIT:
            if not self.editable_fields(case, actor):
                raise NotAllowed(text("case_not_editable"))
            return
        editable = self.procedure.states[case.state].editable
        if step == ATTACH and not editable and not self.is_staff(actor):
            raise NotAllowed(text("case_not_editable"))

    def role_of(self, case: CaseView | None, actor: Actor) -> str:
        """The role recorded for a step that is not a transition (start, attach, pay, edit):
        the party role of the case's own applicant (of whoever opens it), else the actor's
        first staff role."""
        party = [r for r in self.procedure.start.roles if r in actor.roles]
        if party and (case is None or self.is_party(case, actor)):
            return party[0]
        staff = sorted(actor.roles & self.procedure.staff_roles) or sorted(actor.roles)
        return staff[0]

    def accept_file(self, case: CaseView, actor: Actor, document_id: str, size: int,
                    media_type: str | None, replace: bool = False) -> Document:
        """The document a file may be attached as, or InvalidData / NotAllowed saying why not:
        a document the procedure declares, an actor allowed to attach, a size and type it
        accepts (`media_type` sniffed from the bytes), fewer files than its maximum (with
        `replace`, the document's current files go: the file is then its only one)."""
        spec = self.procedure.document(document_id)
        if spec is None:
            raise _invalid({document_id: text("unknown_document")})
        self.authorize_change(case, actor, ATTACH)
        if size > spec.max_size:
            raise _invalid({spec.id: text("file_too_large", max_size=spec.max_size)})
        if media_type is None or media_type not in spec.media_types:
            accepted = ", ".join(spec.media_types)
            raise _invalid({spec.id: text("file_type_refused", accepted=accepted)})
        if not replace and case.documents.get(document_id, 0) >= spec.max_files:
            raise _invalid({document_id: text("too_many_files", max_files=spec.max_files)})
        return spec

    def accept_removal(self, case: CaseView, actor: Actor, document_id: str) -> Document:
        """The document whose files `actor` may remove: one the procedure declares, that has
        files, removed by whoever may attach it (InvalidData / NotAllowed otherwise)."""
        spec = self.procedure.document(document_id)
        if spec is None:
            raise _invalid({document_id: text("unknown_document")})
        self.authorize_change(case, actor, ATTACH)
        if not case.documents.get(document_id):
            raise _invalid({document_id: text("no_file_attached")})
        return spec

    def document_context(self, context: Context, today: dt.date) -> Mapping[str, Any]:
        """What issued documents' templates see: the case's names and `valid_until`, the
        last day of validity of a document issued today (when `validity:` gives one; months
        and years on the calendar, see Duration.last_day)."""
        validity = resolve_duration(self.procedure.validity, context)
        if validity is None:
            return context
        return {**context, VALID_UNTIL: validity.last_day(today)}

    def fees_due(self, case: CaseView, today: dt.date) -> int:
        """What the case owes in all, as its data and documents make the fees apply."""
        return int(self.context(case.data, case.documents, case.fees_paid, today)["fees_due"])

    def accept_payment(self, case: CaseView, actor: Actor, amount: int, today: dt.date,
                       method: str | None = None) -> None:
        """Whether `actor` may pay `amount` on the case now: allowed to pay, never more than
        is still due, with a method the procedure accepts (check_method). Raises NotAllowed
        or InvalidData."""
        self.authorize_change(case, actor, PAY)
        self.check_method(method)
        limits.check_owed("amount", amount, self.fees_due(case, today), case.fees_paid)

    def check_method(self, method: str | None) -> None:
        """With `payment_methods:` declared, a payment names one of them (InvalidData on
        "method", listing them); without, any method or none is accepted."""
        methods = self.procedure.payment_methods
        if not methods or method in {m.id for m in methods}:
            return
        accepted = {language: ", ".join(f"{m.id} ({m.label.get(language)})" for m in methods)
                    for language in LANGUAGES}
        raise _invalid({"method": text("payment_method_required", accepted=accepted)
                        if method is None else text("payment_method_refused", accepted=accepted)})

    def edit(self, case: CaseView, actor: Actor, data: Mapping[str, Any], today: dt.date
             ) -> dict[str, Any]:
        """The case's form data after `actor` saves `data` without a transition.

        The applicant in a state that lets them edit, or staff correcting the fields a state
        lets their role change (`editable: {roles, fields}`); raises NotAllowed or
        InvalidData (every bad field). Fields the new data hides are dropped.
        """
        self.authorize_change(case, actor, EDIT)
        _check_editable(data, self.editable_fields(case, actor))
        cleaned = self.clean(data, today, actor.language)
        merged = {**case.data, **cleaned}
        context = self.context(merged, case.documents, case.fees_paid, today)
        self.check_options(merged, context)
        return self.drop_hidden(merged, context)

    def editable_fields(self, case: CaseView, actor: Actor) -> Requirement:
        """The form fields `actor` may change on the case in its current state: "all", or
        their ids (none: () ). The applicant party by the state's grants to the applicant,
        staff by the grants to a role they hold."""
        if case.outcome is not None:
            return ()
        applicant = self.is_applicant(case, actor)
        staff = not self.is_party(case, actor)  # nobody corrects their own case as staff
        found: set[str] = set()
        for grant in self.procedure.states[case.state].edits:
            if (grant.applicant and applicant) or (staff and actor.roles & set(grant.roles)):
                if grant.fields == "all":
                    return "all"
                found.update(grant.fields)
        return tuple(sorted(found))

    def check_start_for(self, actor: Actor) -> None:
        """Whether `actor` may open a case at the counter for a person (NotAllowed unless
        they hold a role the procedure's `start.on_behalf` names)."""
        roles = self.procedure.start.on_behalf
        if not actor.roles & set(roles):
            raise NotAllowed(text("on_behalf_roles_only", roles=", ".join(roles) or "-"))

    def accept_claim(self, case: CaseView, actor: Actor, code: str) -> None:
        """Whether `actor` may claim a case opened for them at the counter with `code`:
        they hold a role that opens cases, the case has no applicant yet, the code is the
        one on the receipt. Raises NotAllowed or InvalidData."""
        if not actor.roles & self.procedure.party_roles:
            roles = ", ".join(self.procedure.start.roles)
            raise NotAllowed(text("start_roles_only", roles=roles or "-"))
        sealed = case.parties.get(APPLICANT_PARTY, {}).get("claim")
        if case.applicant_id != "" or not isinstance(sealed, Mapping):
            raise NotAllowed(text("already_claimed"))
        if not claims.matches(code, sealed):
            raise _invalid({"code": text("wrong_claim_code")})

    @cached_property
    def opens_follow_ups(self) -> bool:
        """Whether cases of this version may have follow-ups (`opens:`, `follow_ups:`)."""
        p = self.procedure
        return any(t.opens for t in p.transitions) or any(
            s.follow_ups for s in p.states.values())

    def offered_follow_up(self, case: CaseView, actor: Actor, procedure_id: str,
                          title: Text | str) -> FollowUp:
        """The follow-up of `procedure_id` (named `title` to a citizen) the case's state
        offers (`follow_ups:`); NotAllowed unless `actor` acts as the case's applicant party
        and the state offers it."""
        if not self.is_applicant(case, actor):
            raise NotAllowed(text("not_yours"))
        found = next((f for f in self.procedure.states[case.state].follow_ups
                      if f.procedure == procedure_id), None)
        if found is None:
            raise NotAllowed(text("no_follow_up", procedure=title))
        return found

    def check_start(self, actor: Actor) -> None:
        """Whether `actor` may open a case: only holders of a role the procedure's `start:`
        names (NotAllowed otherwise, and always when it names none)."""
        roles = self.procedure.start.roles
        if not roles:
            raise NotAllowed(text("nobody_starts"))
        if not actor.roles & set(roles):
            raise NotAllowed(text("start_roles_only", roles=", ".join(roles)))

    # --- for analysis (explore) -----------------------------------------------------------------

    def weigh(self, case: CaseView, trigger: str, actor: Actor, data: Mapping[str, Any],
              today: dt.date) -> list[tuple[Transition, tuple[Reason, ...]]]:
        """What `decide` weighs before the machine chooses: each candidate of `trigger` this
        actor may fire, with every requirement it does not meet (none: it is ready), seen on
        the same data (case data, then the step's); [] when the actor may fire none. Raises
        InvalidData as `decide` does. Analysis reads it to tell which guards hold where."""
        weighed = self._weighed(case, trigger, actor, data, today)
        if isinstance(weighed, Refusal):
            return []
        return [(t, tuple(problems)) for t, problems in weighed.problems]

    # --- who may read what ----------------------------------------------------------------------
    # The one answer to "may this actor read this case, and which of its values": Engine.case,
    # history and cases, the Case the write methods return, hook payloads, scenarios and the
    # CLI all ask here (README, "Who may read what").

    def may_read(self, case: CaseView, actor: Actor) -> bool:
        """Whether `actor` may see the case: its applicant party (is_applicant), a role that
        acts on the procedure (acting_roles), a role `read:` names, or the system."""
        return bool(actor.roles & self.reader_roles) or self.is_applicant(case, actor)

    def check_read(self, case: CaseView, actor: Actor) -> None:
        """NotAllowed unless `actor` may read the case (may_read)."""
        if not self.may_read(case, actor):
            raise NotAllowed(text("may_not_read"))

    @cached_property
    def acting_roles(self) -> frozenset[str]:
        """The roles that act on any case of the procedure: named by a transition or by
        `start.on_behalf`, except the party roles (they act on their own cases only)."""
        p = self.procedure
        named = {r for t in p.transitions for r in t.roles} | set(p.start.on_behalf)
        return frozenset(named - p.party_roles)

    @cached_property
    def reader_roles(self) -> frozenset[str]:
        """The roles that may read every case: those that act on it, `read:`, the system."""
        return self.acting_roles | set(self.procedure.read_roles) | {SYSTEM_ROLE}

    def sees(self, item: Field | Document, case: CaseView | None, actor: Actor | None
             ) -> bool:
        """Whether a reader of the case sees a field's value, or a document's files' names and
        hashes (None: a hook, through the outbox). Every reader sees an unmarked one; a marked
        one (`sensitive`, `visible_to`) only the applicant party, the system, and the roles
        `visible_to` names or, without it, the roles that act on the procedure. Hooks never."""
        if not (item.sensitive or item.visible_to):
            return True
        if actor is None or case is None:
            return False
        if SYSTEM_ROLE in actor.roles or self.is_applicant(case, actor):
            return True
        return bool(actor.roles & set(item.visible_to or self.acting_roles))

    def visible_fields(self, case: CaseView, actor: Actor) -> frozenset[str]:
        """Ids of the form fields and step inputs whose whole value `actor` sees."""
        hidden = self.masking(case, actor).fields
        return frozenset(f.id for f in self._data_fields if f.id not in hidden)

    def masking(self, case: CaseView | None, actor: Actor | None) -> Masking:
        """What a reader of the case may not see (None: what hook payloads leave out)."""
        if not self._marked_fields and not self._marked_documents:
            return Masking()
        fields: set[str] = set()
        rows: dict[str, frozenset[str]] = {}
        for f in self._marked_fields:
            if not self.sees(f, case, actor):
                fields.add(f.id)
            hidden = {s.id for s in f.fields if not self.sees(s, case, actor)}
            if hidden:
                rows[f.id] = rows.get(f.id, frozenset()) | hidden
        documents = {d.id for d in self._marked_documents if not self.sees(d, case, actor)}
        return Masking(frozenset(fields), rows, frozenset(documents))

    def masked_case(self, value: Case, case: CaseView, actor: Actor) -> Case:
        """The Case as `actor` may see it: masked values and files' names and hashes."""
        mask = self.masking(case, actor)
        if mask.empty:
            return value
        return replace(value, data=frozen_mapping(mask.data(value.data)),
                       documents=tuple(replace(d, filename=MASKED, sha256=MASKED)
                                       if d.document_id in mask.documents else d
                                       for d in value.documents))

    def masked_entry(self, entry: HistoryEntry, mask: Masking) -> HistoryEntry:
        """A history entry as a reader with `mask` may see it: the values and files' names it
        may not see masked, and the text of a notification or issued document whose template
        reads one of them."""
        if mask.empty:
            return entry
        payload: Mapping[str, Any] = entry.payload
        if entry.trigger == START and isinstance(payload.get("data"), Mapping):
            payload = {**payload, "data": mask.data(payload["data"])}
        elif entry.trigger in (ATTACH, REMOVE):
            payload = mask.file(payload)
        elif entry.trigger == EDIT or not entry.trigger.startswith("@"):
            payload = mask.data(payload)  # a transition's payload is its step input
        hidden = mask.names
        notes = tuple(_masked_text(n, self._template_reads(("notify", n.get("channel"),
                                                                n.get("to"))), hidden)
                      for n in entry.notifications)
        issued = tuple(_masked_text(i, self._template_reads(("issue", i.get("id"))), hidden)
                       for i in entry.issued)
        return replace(entry, payload=frozen_mapping(payload),
                       changes=frozen_mapping(mask.changes(entry.changes)),
                       notifications=notes, issued=issued)

    def hook_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """An outbox payload as hooks receive it: no value of a marked field (step input,
        start data, changed fields), no name or hash of a marked document's file. Rendered
        texts stay: they are the messages the hooks deliver."""
        mask = self._hook_masking
        if mask.empty:
            return payload
        masked = dict(payload)
        for key in ("input", "data"):
            if isinstance(masked.get(key), Mapping):
                masked[key] = mask.data(masked[key])
        if isinstance(masked.get(CHANGES), Mapping):
            masked[CHANGES] = mask.changes(masked[CHANGES])
        return mask.file(masked)

    @cached_property
    def _hook_masking(self) -> Masking:
        return self.masking(None, None)

    @cached_property
    def _data_fields(self) -> tuple[Field, ...]:
        """Form fields and step inputs: everything a case's data may hold."""
        p = self.procedure
        return (*p.fields, *(f for t in p.transitions for f in t.input))

    @cached_property
    def _marked_fields(self) -> tuple[Field, ...]:
        """Data fields that are marked, or whose sub-fields are."""
        return tuple(f for f in self._data_fields
                     if _marked(f) or any(_marked(s) for s in f.fields))

    @cached_property
    def _marked_documents(self) -> tuple[Document, ...]:
        return tuple(d for d in self.procedure.documents if _marked(d))

    @cached_property
    def _reads(self) -> dict[tuple[Any, ...], frozenset[str]]:
        """Names read by the templates of each notification (by channel and addressee) and
        issued document (by id); under ("notify",) and ("issue",), those of all of them."""
        found: dict[tuple[Any, ...], frozenset[str]] = {}

        def add(key: tuple[Any, ...], templates: Mapping[str, Any]) -> None:
            names = frozenset().union(*(t.names for t in templates.values()))
            for k in (key, key[:1]):
                found[k] = found.get(k, frozenset()) | names

        p = self.procedure
        for state in p.states.values():
            for note in (*state.notify, *(d.reminder for d in state.deadlines if d.reminder)):
                add(("notify", note.channel, note.to), note.template)
        for t in p.transitions:
            for note in t.notify:
                add(("notify", note.channel, note.to), note.template)
            for item in t.issue:
                add(("issue", item.id), item.template)
        return found

    def _template_reads(self, key: tuple[Any, ...]) -> frozenset[str]:
        """The names the templates of a sent effect read; when it cannot be told which
        template it came from, those of every template of its kind (fail closed)."""
        reads = self._reads
        return reads.get(key, reads.get(key[:1], frozenset()))


#: What a reader sees instead of a value they may not see (the key stays).
MASKED = "•••"
#: The key of a history or outbox payload holding the form fields a step changed
#: (runtime.CHANGES).
CHANGES = "@changes"


def _marked(item: Field | Document) -> bool:
    return item.sensitive or bool(item.visible_to)


@dataclass(frozen=True)
class Masking:
    """What one reader may not see of a case (Workflow.masking): the fields whose values are
    masked, the sub-fields masked in the rows of a group, the documents whose files' names
    and hashes are masked."""

    fields: frozenset[str] = frozenset()
    rows: Mapping[str, frozenset[str]] = field(default_factory=dict)
    documents: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.fields or self.rows or self.documents)

    @property
    def names(self) -> frozenset[str]:
        """The fields a template must not read for its text to be shown."""
        return self.fields | set(self.rows)

    def value(self, field_id: str, value: Any) -> Any:
        if field_id in self.fields:
            return MASKED
        hidden = self.rows.get(field_id)
        if hidden and isinstance(value, list):
            return [{k: MASKED if k in hidden else v for k, v in row.items()}
                    if isinstance(row, Mapping) else row for row in value]
        return value

    def data(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self.value(k, v) for k, v in data.items()}

    def changes(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """{field: {"before": ..., "after": ...}} with both sides masked."""
        return {k: {side: self.value(k, v) for side, v in change.items()}
                if isinstance(change, Mapping) else change for k, change in changes.items()}

    def file(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """An attachment's (or a removal's) payload with the names and hashes of its files
        masked if its document is: its own, and those of the files it `replaced` or
        `removed`."""
        if payload.get("document_id") not in self.documents:
            return dict(payload)
        masked = {**payload, **{k: MASKED for k in ("filename", "sha256") if k in payload}}
        for key in ("replaced", "removed"):
            if isinstance(payload.get(key), list):
                masked[key] = [{**f, **{k: MASKED for k in ("filename", "sha256") if k in f}}
                               if isinstance(f, Mapping) else f for f in payload[key]]
        return masked


def _masked_text(sent: Mapping[str, Any], reads: frozenset[str], hidden: frozenset[str]
                 ) -> Mapping[str, Any]:
    """A sent notification or issued document, its text masked if its template reads a
    hidden name."""
    if not reads & hidden or not isinstance(sent.get("text"), Mapping):
        return sent
    return frozen_mapping({**sent, "text": {lang: MASKED for lang in sent["text"]}})


def _members(case: CaseView) -> list[str]:
    members = case.parties.get(APPLICANT_PARTY, {}).get("members", [])
    return [str(m) for m in members] if isinstance(members, list) else []


def _check_editable(data: Mapping[str, Any], editable: Requirement) -> None:
    """InvalidData naming each submitted form field `editable` does not let change."""
    refused = [key for key in data if editable != "all" and key not in editable]
    if refused:
        raise _invalid({key: text("not_editable_here") for key in refused})


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def _guard_refusal(t: Transition, truth: Truth) -> list[Reason]:
    """The reason a guard refuses: not met, or not evaluable (which refuses too). A citizen
    reads the transition's `message:` or a text naming its label; the expression is only in
    the reason's `detail` (for authors and agents)."""
    assert t.when is not None
    if truth is True:
        return []
    step = t.label or t.trigger
    if truth is None:
        return [Reason("guard", t.trigger, text("guard_not_evaluable", step=step),
                       detail=t.when.source)]
    said = text("guard_not_met", step=step) if t.message is None else _texts(t.message)
    return [Reason("guard", t.trigger, said, detail=t.when.source)]


def _texts(value: Text) -> dict[str, str]:
    """An author's text in every shipped language (French where one is missing)."""
    return {language: value.get(language) for language in LANGUAGES}


def _unique(reasons: list[Reason]) -> tuple[Reason, ...]:
    seen: set[tuple[str, str, str]] = set()
    result = []
    for reason in reasons:
        key = (reason.code, reason.subject, reason.message("en"))
        if key not in seen:
            seen.add(key)
            result.append(reason)
    return tuple(result)


def _invalid(errors: Errors) -> InvalidData:
    return InvalidData(text("invalid_data"), errors)
