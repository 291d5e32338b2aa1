"""The Engine: start cases, fire triggers, attach documents, record payments, run deadlines.

Every change of a case is one transaction: the case row (its version counter checked), one
history row and one outbox row, plus timers when a state with deadlines is entered or left.
Hooks registered with `on` are called after commit, from the outbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, Any

from . import claims, effects, limits, links, references, store
from .blobs import BlobStore, DirectoryBlobStore, MemoryBlobStore, sniff
from .calendars import closure_days
from .clock import Clock, utc_now
from .compiler import load_procedure, procedure_files
from .errors import (
    Blocked,
    ConcurrentUpdate,
    DatabaseUnavailable,
    InvalidData,
    NotAllowed,
    ProcedureError,
    UnknownCase,
    UnknownProcedure,
    UnknownTrigger,
)
from .messages import Texts, text
from .model import APPLICANT_PARTY, SYSTEM_ROLE, Duration, Procedure, Transition
from .outbox import Hook, Outbox
from .registry import Versions
from .timers import (
    ClockStep,
    TimerSettled,
    check_stay,
    clock_step,
    deadline_due,
    settle_due,
    timer_rows,
)
from .values import (
    SYSTEM,
    Actor,
    AttachedDocument,
    Availability,
    Case,
    HistoryEntry,
    PaymentTotal,
    PurgeResult,
    frozen_mapping,
)
from .workflow import (
    ATTACH,
    CLAIM,
    EDIT,
    MEMBERS,
    PAY,
    REMOVE,
    START,
    CaseView,
    Decision,
    Workflow,
)

log = logging.getLogger("guichet")

#: The key of a history payload that holds the form fields a step changed:
#: {field: {"before": value, "after": value}} (field ids never start with "@").
CHANGES = "@changes"
#: The key of a transition's history payload naming the follow-up case it opened.
FOLLOW_UP = "@follow_up"
_ATTEMPTS = 5  # decisions of one fire when the case keeps changing under it

ProcedureSource = str | Path | Procedure


def load_procedures(procedures: ProcedureSource | Iterable[ProcedureSource]) -> list[Procedure]:
    """Procedures given as directories, files or compiled `Procedure` objects, compiled
    (ProcedureError on a refused file): what `Engine(procedures=...)` loads."""
    items: Iterable[ProcedureSource]
    if isinstance(procedures, str | Path | Procedure):
        items = [procedures]
    else:
        items = procedures
    loaded = []
    for item in items:
        if isinstance(item, Procedure):
            loaded.append(item)
        else:
            loaded.extend(load_procedure(p) for p in procedure_files([item]))
    return loaded


class Engine:
    """The embedding API. `Engine(procedures="procedures/", database_url="sqlite:///guichet.db")`.

    `closures`: days the offices are closed by decree (dates or ISO texts), skipped with the
    weekends and public holidays by business-day deadlines of procedures naming a
    `calendar:`."""

    def __init__(
        self,
        procedures: ProcedureSource | Iterable[ProcedureSource] = "procedures/",
        database_url: str = "sqlite:///guichet.db",
        *,
        blobs: BlobStore | None = None,
        clock: Clock = utc_now,
        synchronous: str = "FULL",
        closures: Iterable[dt.date | str] = (),
    ) -> None:
        self.clock = clock
        closed = closure_days(closures)  # ClosuresError (a ValueError) on a bad one
        loaded = load_procedures(procedures)  # refuse bad files before touching the database
        broken = links.check(((p, None) for p in loaded), "error")
        if broken:  # a follow-up the engine could not open
            raise ProcedureError(broken)
        self._store = store.Store(store.connect(database_url, synchronous=synchronous))
        self.blobs = blobs or _default_blobs(database_url)
        self._outbox = Outbox()
        self._local = threading.local()  # .writing: this thread holds a write transaction
        self._versions = Versions(self._store, closed)
        try:
            store.create_schema(self._store.engine)
            for procedure in loaded:
                self._versions.register(procedure, self.clock())
        except BaseException:
            self.close()
            raise

    @property
    def procedures(self) -> Mapping[str, Procedure]:
        """The current version of every loaded procedure, by id."""
        return self._versions.procedures

    def close(self) -> None:
        """Write what is pending and release the database connections."""
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - closing must release the pool whatever happens
            log.warning("could not mark %d delivered outbox row(s); they will be delivered "
                        "again", len(self._outbox.to_mark()), exc_info=True)
        finally:
            self._store.close()

    # --- hooks ----------------------------------------------------------------------------------

    def on(self, event: str, callback: Hook) -> None:
        """Call `callback(Event)` after commit each time `event` happens (see EVENTS)."""
        self._outbox.on(event, callback)

    @property
    def listening(self) -> bool:
        """Whether any hook is registered (without one, outbox rows wait undelivered)."""
        return self._outbox.listening

    @property
    def database_file(self) -> Path | None:
        """The SQLite database file; None for PostgreSQL or an in-memory database."""
        return self._store.database_file

    def deliver_pending(self, older_than: dt.timedelta | None = None) -> int:
        """Hand every undelivered outbox row (e.g. left by a crash or a failing hook) to the
        hooks, oldest first; returns how many were delivered by this call.

        `older_than`: only rows written at least that long ago, so that the rows the process
        that wrote them is delivering right now (marked on its next write) are not handed
        again. On PostgreSQL one process replays at a time: another one doing it meanwhile
        makes this call return 0 at once."""
        with self._store.alone(_REPLAY_TASK) as alone:
            return self._replay(older_than) if alone else 0

    def _replay(self, older_than: dt.timedelta | None) -> int:
        self.flush()  # rows already handed to hooks are not handed again
        before = self.clock() - older_than if older_than is not None else None
        delivered, after = 0, 0
        while rows := self._store.pending_outbox(after_id=after, before=before):
            for row in rows:
                delivered += self._outbox.deliver(row["id"], row["reference"], row["event"],
                                                  row["payload"])
            after = rows[-1]["id"]
            self.flush()  # page by page: a large backlog never piles up in memory
        return delivered

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """A write transaction that also marks the outbox rows delivered since the last one.

        Marking rides on the next transaction instead of costing one (and an fsync) per
        delivery; a crash before it only means those rows are delivered again (at least once).
        Effects are rendered before it, never inside.
        """
        delivered = self._outbox.to_mark()
        self._local.writing = True
        try:
            with self._store.transaction() as c:
                self._store.mark_delivered(c, delivered, self.clock())
                yield c
        finally:
            self._local.writing = False
        self._outbox.marked(delivered)

    def flush(self) -> None:
        """Write what is pending (outbox rows delivered since the last transaction)."""
        if self._outbox.to_mark():
            with self._write():
                pass

    # --- reading --------------------------------------------------------------------------------

    def workflow(self, procedure_hash: str) -> Workflow:
        """The compiled version a case is pinned to (loaded from its stored snapshot if needed)."""
        return self._versions.pinned(procedure_hash)

    def case(self, reference: str, actor: Actor) -> Case:
        """The case with this reference as `actor` may see it: UnknownCase if none (or if its
        check is wrong), NotAllowed if they may not read it, values and files they may not
        see masked (Workflow, "who may read what"). A host reading for no person passes
        SYSTEM."""
        row = self._row(reference)
        workflow = self.workflow(row["procedure_hash"])
        workflow.check_read(_view(row), actor)
        value = self._case_value(row, actor)
        if workflow.opens_follow_ups:  # only then can a case have some
            value = replace(value, follow_ups=self._follow_ups(row["reference"], actor))
        return value

    def _follow_ups(self, reference: str, actor: Actor) -> tuple[str, ...]:
        """The follow-ups of a case that `actor` may read."""
        found = []
        for child in self._store.follow_ups(reference):
            row = self._row(child)
            if self.workflow(row["procedure_hash"]).may_read(_view(row), actor):
                found.append(child)
        return tuple(found)

    def history(self, reference: str, actor: Actor) -> list[HistoryEntry]:
        """Every recorded step of a case, oldest first, with the form fields it changed and
        the notifications and documents it sent and issued, as `actor` may see them
        (NotAllowed, masking: as `case`)."""
        canonical = _canonical(reference)
        row = self._row(reference)
        workflow, view = self.workflow(row["procedure_hash"]), _view(row)
        workflow.check_read(view, actor)
        mask = workflow.masking(view, actor)
        sent = self._store.step_effects(canonical)
        return [workflow.masked_entry(_entry(r, sent.get(r["sequence"], {})), mask)
                for r in self._store.history(canonical)]

    def cases(self, procedure: str | None = None, state: str | None = None, *,
              actor: Actor, applicant: str | None = None, limit: int = 50,
              after: str | None = None) -> list[Case]:
        """A page of the cases `actor` may read (oldest first), masked as `case` masks them;
        pass the last reference as `after` for the next page ([]: no more). Cases they may
        not read are passed over: a party role should also name itself as `applicant`."""
        for name, value, longest in (("procedure", procedure, limits.MAX_PROCEDURE_ID),
                                     ("state", state, limits.MAX_STATE),
                                     ("applicant", applicant, limits.MAX_ACTOR_ID)):
            if value is not None:
                limits.check_text(name, value, longest)
        after_id = 0
        if after is not None:
            after_id = int(self._row(after)["id"])
        size = max(1, min(limit, 1000))
        found: list[Case] = []
        while len(found) < size:
            rows = self._store.list_cases(procedure, state, applicant, size, after_id)
            for r in rows:
                if self.workflow(r["procedure_hash"]).may_read(_view(r), actor):
                    found.append(self._case_value(r, actor))
                    if len(found) == size:
                        break
            if len(rows) < size:
                break
            after_id = int(rows[-1]["id"])
        return found

    def available(self, reference: str, actor: Actor) -> list[Availability]:
        """Each trigger of the current state: whether `actor` may fire it now, and every reason."""
        row = self._row(reference)
        workflow = self.workflow(row["procedure_hash"])
        view = _view(row)
        today = self.clock().date()
        result = []
        for trigger in dict.fromkeys(t.trigger for t in workflow.procedure.transitions
                                     if row["state"] in t.sources):
            outcome = workflow.decide(view, trigger, actor, {}, today, check_input=False)
            candidates = workflow.candidates(row["state"], trigger)
            label = (candidates[0].label.get(actor.language) if candidates[0].label else trigger)
            inputs = tuple(f.id for t in candidates for f in t.input)
            if isinstance(outcome, Decision):
                result.append(Availability(trigger, label, True, (), inputs))
            else:
                result.append(Availability(trigger, label, False, outcome.reasons, inputs))
        return result

    def documents_missing(self, reference: str) -> list[str]:
        """Ids of the required documents that apply to the case and still lack files."""
        row = self._row(reference)
        workflow = self.workflow(row["procedure_hash"])
        attached = _counts(row["documents"])
        context = workflow.context(row["data"], attached, row["fees_paid"], self.clock().date())
        return [d.id for d in workflow.documents_missing(attached, context)]

    def _row(self, reference: str) -> dict[str, Any]:
        row = self._store.read_case(_canonical(reference))
        if row is None:
            raise _unknown_case(reference)
        return row

    def _case_value(self, row: Mapping[str, Any], actor: Actor, fees_due: int | None = None
                    ) -> Case:
        """The Case value of a row as `actor` may see it, who may read it (Workflow.masking;
        `fees_due` when the caller already knows it)."""
        workflow = self.workflow(row["procedure_hash"])
        if fees_due is None:
            fees_due = workflow.context(row["data"], _counts(row["documents"]),
                                        row["fees_paid"], self.clock().date())["fees_due"]
        value = Case(
            reference=row["reference"], procedure_id=row["procedure_id"],
            procedure_hash=row["procedure_hash"], state=row["state"], outcome=row["outcome"],
            applicant_id=row["applicant_id"], data=frozen_mapping(row["data"]),
            fees_due=fees_due, fees_paid=row["fees_paid"],
            documents=tuple(AttachedDocument(**d) for d in row["documents"]),
            version=row["version"], created_at=row["created_at"], updated_at=row["updated_at"],
            opened_for_by=None if row["applicant_id"] else
            row["parties"].get(APPLICANT_PARTY, {}).get("opened_by"),
            parent=row.get("parent_reference"),
        )
        return workflow.masked_case(value, _view(row), actor)

    # --- writing --------------------------------------------------------------------------------

    def start(self, procedure_id: str, actor: Actor, data: Mapping[str, Any] | None = None,
              *, on_behalf: bool = False, organisation: str | None = None,
              parent: str | None = None) -> Case:
        """Open a case of the current version of `procedure_id`, owned by `actor`.

        With `on_behalf`, an agent (a `start.on_behalf` role) opens it at the counter for a
        person: the case has no applicant until that person claims it (`claim`) with the
        code the returned Case carries once (`claim_code`, for the receipt).

        With `organisation` (an id), `actor` opens it as that organisation's administrator
        (where the procedure's `start:` lets organisations apply); the organisation is the
        applicant, and the members the administrator names act for it (`set_members`).

        With `parent` (a reference), the parent case's applicant opens a follow-up its state
        offers (`follow_ups:`): it belongs to the same applicant, starts with the data the
        follow-up carries over (`data` given wins), and both cases show the link."""
        limits.check_text("procedure_id", procedure_id, limits.MAX_PROCEDURE_ID)
        limits.check_payload(data or {})
        workflow = self._current(procedure_id)
        now = self.clock()
        if parent is None:
            applicant, parties, code = self._applicant(workflow, actor, on_behalf, organisation)
            given, linked = data or {}, None
        elif on_behalf or organisation is not None:  # it is the parent's applicant's
            raise NotAllowed(text("follow_up_alone"))
        else:
            applicant, parties, carried, linked = self._follow_up_of(parent, workflow, actor)
            given, code = {**carried, **(data or {})}, None
        opening = self._opening(workflow, actor, given, applicant, parties, now,
                                APPLICANT_PARTY if on_behalf else None, linked)
        with self._write() as c:
            outbox_id, reference = self._insert_opening(c, opening)
        self._outbox.deliver(outbox_id, reference, "case_started", opening.payload)
        row = {**opening.row, "reference": reference}  # as written: not read again
        workflow.check_read(_view(row), actor)  # as `case` would (a new case has no follow-up)
        return replace(self._case_value(row, actor), claim_code=code)

    def _current(self, procedure_id: str) -> Workflow:
        workflow = self._versions.current(procedure_id)
        if workflow is None:
            raise UnknownProcedure(text("unknown_procedure", procedure_id=procedure_id))
        return workflow

    def _follow_up_of(self, parent: str, workflow: Workflow, actor: Actor
                      ) -> tuple[str, dict[str, Any], dict[str, Any], str]:
        """Who a follow-up opened by `actor` from case `parent` belongs to (the parent's
        applicant), the data carried over and the parent's reference; NotAllowed unless the
        parent's state offers this procedure to its applicant and `actor` is them."""
        row = self._row(parent)
        parent_workflow = self.workflow(row["procedure_hash"])
        self._check_not_purged(row)
        follow_up = parent_workflow.offered_follow_up(_view(row), actor, workflow.procedure.id,
                                                      workflow.procedure.title)
        if not parent_workflow.acts_for_applicant(_view(row), actor):
            workflow.check_start(actor)
        carried = workflow.acceptable(follow_up.data(row["data"]), self.clock().date())
        return row["applicant_id"], dict(row["parties"]), carried, row["reference"]

    def _opening(self, workflow: Workflow, actor: Actor, data: Mapping[str, Any],
                 applicant: str, parties: Mapping[str, Any], now: dt.datetime,
                 for_party: str | None, parent: str | None,
                 numbered: dict[str, str] | None = None) -> _Opening:
        """A case about to be opened, decided and rendered outside any write transaction:
        its data validated, its reference taken first when its initial state notifies or it
        is linked (kept in `numbered`, by procedure, for when it is decided again)."""
        procedure = workflow.procedure
        cleaned = workflow.start_data(data, now.date(), actor.language)
        initial = procedure.initial_state
        reference = (numbered or {}).get(procedure.id)
        effects: dict[str, Any] = {"notifications": [], "issued": []}
        if reference is None and (initial.notify or parent is not None):  # numbered first
            with self._write() as c:
                reference = self._next_reference(c, procedure, now)
            if numbered is not None:
                numbered[procedure.id] = reference
        if initial.notify:
            assert reference is not None
            context = workflow.context(cleaned, {}, 0, now.date())
            effects = self._effects(workflow, initial.notify, (), context, reference,
                                    initial.id, START)
        recorded = {"data": cleaned, **({"parent": parent} if parent else {})}
        return _Opening(workflow, reference, {
            "procedure_id": procedure.id, "procedure_hash": procedure.hash,
            "state": initial.id, "outcome": None, "applicant_id": applicant,
            "parties": dict(parties), "data": cleaned, "documents": [], "actors": {},
            "fees_paid": 0, "version": 1, "created_at": now, "updated_at": now,
            "state_entered_at": now, "parent_reference": parent,
        }, _history(0, 1, START, None, initial.id, actor.id, workflow.role_of(None, actor)
                    if actor is not SYSTEM else SYSTEM_ROLE, recorded, now, for_party),
            {"trigger": START, "sequence": 1, "from": None, "to": initial.id,
             "actor": actor.id, **({"parent": parent} if parent else {}), **effects})

    def _insert_opening(self, c: Any, opening: _Opening) -> tuple[int, str]:
        """Write an opened case (row, first history entry, timers, outbox); its outbox id
        and reference."""
        workflow, now = opening.workflow, opening.row["created_at"]
        reference = opening.reference or self._next_reference(c, workflow.procedure, now)
        _, outbox_id = self._store.write_opening(
            c, {"reference": reference, **opening.row}, opening.history,
            lambda case_id: timer_rows(workflow, case_id, opening.row["state"], now,
                                       opening.row["data"]),
            _outbox(0, "case_started", opening.payload, now))
        return outbox_id, reference

    def _next_reference(self, c: Any, procedure: Procedure, now: dt.datetime) -> str:
        key = f"{procedure.reference_prefix}-{now.year}"
        reference = None
        while reference is None:  # 1 number in 37 has no check character: skipped
            reference = references.make(procedure.reference_prefix, now.year,
                                        self._store.next_sequence(c, key))
        return reference

    def _effects(self, workflow: Workflow, notifications: Iterable[Any], issued: Iterable[Any],
                 context: Mapping[str, Any], reference: str, state: str, trigger: str
                 ) -> effects.Effects:
        """Render a step's effects (never inside a write transaction: see engine/effects.py)."""
        if getattr(self._local, "writing", False):
            raise RuntimeError("effects must be rendered outside a write transaction")
        return effects.render(workflow, notifications, issued, context, reference, state,
                              trigger)

    def fire(self, reference: str, trigger: str, actor: Actor,
             data: Mapping[str, Any] | None = None, expected_version: int | None = None, *,
             keep_data: bool = False) -> Case:
        """Fire `trigger` on a case as `actor`, with step data; one transaction or nothing.

        With `keep_data`, form fields sent with a step that is blocked are saved as a draft
        (as `update` would) before Blocked is raised, so the applicant does not lose them.
        """
        limits.check_text("trigger", trigger, limits.MAX_TRIGGER)
        limits.check_payload(data or {})
        try:
            return self._fire(reference, trigger, actor, data or {}, expected_version)
        except Blocked:
            form = self._form_part(reference, data or {})
            if keep_data and form:
                self.update(reference, actor, form)
            raise

    def _form_part(self, reference: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The form fields among step data (step input belongs to its step alone)."""
        if not data:
            return {}
        fields = self.workflow(self._row(reference)["procedure_hash"]).field_ids
        return {k: v for k, v in data.items() if k in fields}

    def _fire(self, reference: str, trigger: str, actor: Actor, data: Mapping[str, Any],
              expected_version: int | None, timer: Mapping[str, Any] | None = None,
              now: dt.datetime | None = None) -> Case:
        """Decide and render outside the write transaction, then write if the case is still
        at the version decided on; a case changed meanwhile is decided again (a few times),
        unless the caller named the version it expects."""
        canonical = _canonical(reference)
        now = now or self.clock()
        numbered: dict[str, str] = {}  # a follow-up's reference, kept when decided again
        for attempt in range(1, _ATTEMPTS + 1):
            row = self._row(reference)
            if timer is not None:
                check_stay(timer, row)
            step = self._decide(row, trigger, actor, data, expected_version, now, numbered)
            try:
                with self._write() as c:
                    if timer is not None:
                        self._claim(c, timer, row["version"], now)
                    outbox_id = self._write_step(c, step, now)
                    opened = (self._insert_opening(c, step.opening)
                              if step.opening is not None else None)
            except store.Conflict:
                if expected_version is not None or attempt == _ATTEMPTS:
                    raise _concurrent() from None
                continue
            self._outbox.deliver(outbox_id, canonical, "transition", step.effects)
            value = self._case_value(step.written, actor, step.fees_due)
            if step.opening is not None and opened is not None:
                self._outbox.deliver(*opened, "case_started", step.opening.payload)
                value = replace(value, follow_ups=self._follow_ups(canonical, actor))
            return value
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _decide(self, row: Mapping[str, Any], trigger: str, actor: Actor,
                data: Mapping[str, Any], expected_version: int | None, now: dt.datetime,
                numbered: dict[str, str]) -> _Step:
        """What firing `trigger` does to the case as read, effects rendered; or the refusal."""
        workflow = self.workflow(row["procedure_hash"])
        if trigger not in workflow.procedure.triggers:
            raise UnknownTrigger(text("unknown_trigger", trigger=trigger))
        if expected_version is not None and row["version"] != expected_version:
            raise _concurrent()
        self._check_not_purged(row)
        outcome = workflow.decide(_view(row), trigger, actor, data, now.date())
        if not isinstance(outcome, Decision):
            raise outcome.error()
        return self._step(workflow, row, outcome, actor, now, numbered)

    def _check_not_purged(self, row: Mapping[str, Any]) -> None:
        """NotAllowed on a purged case (only a closed case can be: asked only then)."""
        if row["outcome"] is not None and self._store.is_purged(row["id"]):
            raise NotAllowed(text("case_purged"))

    def _step(self, workflow: Workflow, row: Mapping[str, Any], decision: Decision,
              actor: Actor, now: dt.datetime, numbered: dict[str, str]) -> _Step:
        """The rows a decided transition writes, and its effects (rendered here)."""
        t: Transition = decision.transition
        target = workflow.procedure.states[t.target]
        source = row["state"]
        version = row["version"] + 1
        actors = {k: list(v) for k, v in row["actors"].items()}
        if actor.id not in actors.setdefault(t.trigger, []):
            actors[t.trigger].append(actor.id)
        values: dict[str, Any] = {
            "state": target.id, "actors": actors, "version": version, "updated_at": now,
            "outcome": target.outcome,
        }
        if decision.data != row["data"]:
            values["data"] = decision.data  # most steps leave the form as it was
        if target.id != source or target.deadlines:
            values["state_entered_at"] = now
        step_input = {f.id: decision.data.get(f.id) for f in t.input}
        changes = _changes(workflow, row["data"], decision.data) if "data" in values else {}
        opening = self._opened_by(t, row, decision.data, now, numbered) if t.opens else None
        linked = {FOLLOW_UP: opening.reference} if opening else {}
        recorded = {**step_input, **({CHANGES: changes} if changes else {}), **linked}
        # an agent fills in for the applicant only in the applicant's own steps; in a staff
        # step (a clerk verifying the file) they act for themselves
        for_party = (workflow.for_party(_view(row), actor)
                     if decision.role in workflow.procedure.party_roles else None)
        recorded_role = workflow.role_of(_view(row), actor) if for_party else decision.role
        context = (workflow.document_context(decision.context, now.date()) if t.issue
                   else decision.context)
        rendered = self._effects(workflow, (*t.notify, *target.notify), t.issue, context,
                                 row["reference"], target.id, t.trigger)
        payload = {
            "trigger": t.trigger, "sequence": version, "from": source, "to": target.id,
            "actor": actor.id, "role": decision.role, "outcome": target.outcome,
            "input": step_input, **rendered, **linked,
        }
        clock = (clock_step(workflow, row, target.id, now,
                            self._store.clock_timers(row["id"]))
                 if workflow.clock_moves(source, target.id) else None)
        return _Step(
            row=row, values=values, effects=workflow.hook_payload(payload),
            history=_history(row["id"], version, t.trigger, source, target.id, actor.id,
                             recorded_role, recorded, now, for_party),
            leaves_deadlines=bool(workflow.procedure.states[source].deadlines),
            timers=timer_rows(workflow, row["id"], target.id, now, decision.data,
                              clock.change.resumed if clock else None),
            clock=clock,
            written={**row, **values}, fees_due=decision.context["fees_due"],
            opening=opening,
        )

    def _opened_by(self, t: Transition, row: Mapping[str, Any], data: Mapping[str, Any],
                   now: dt.datetime, numbered: dict[str, str]) -> _Opening:
        """The follow-up case firing `t` opens (`opens:`), by the engine, for the case's
        applicant, with the data it carries over (what its form refuses is left for the
        applicant to fill in); numbered now, once per fire, so both cases record the link."""
        assert t.opens is not None
        child = self._current(t.opens.procedure)
        carried = child.acceptable(t.opens.data(data), now.date())
        return self._opening(child, SYSTEM, carried, row["applicant_id"], row["parties"], now,
                             None, row["reference"], numbered)

    def _write_step(self, c: Any, step: _Step, now: dt.datetime) -> int:
        """Write a decided step (case row at its version, history, timers, outbox): one
        round trip on PostgreSQL (Store.write_step), and no timer statement when the state
        left has no deadline and the one entered schedules nothing."""
        row = step.row
        outbox_id = self._store.write_step(
            c, row["id"], row["version"], step.values, step.history,
            _outbox(row["id"], "transition", step.effects, now),
            cancel_timers_at=now if step.leaves_deadlines else None, timers=step.timers)
        if step.clock is not None:  # a legal clock stops or runs again (`pause_in`)
            self._store.add_timers(c, step.clock.insert)
            self._store.end_paused(c, step.clock.resumed, "resumed", now)
            self._store.end_paused(c, step.clock.dropped, "cancelled", now)
        return outbox_id

    def update(self, reference: str, actor: Actor, data: Mapping[str, Any]) -> Case:
        """Save form fields without a transition: the applicant's draft, in a state that lets
        them edit, or staff correcting the fields a state lets their role change (never on
        their own case). The step is recorded in the history with each changed field's
        value before and after."""
        limits.check_payload(data)
        now = self.clock()

        def decide(current: Mapping[str, Any]) -> _Change | None:
            workflow = self.workflow(current["procedure_hash"])
            merged = workflow.edit(_view(current), actor, data, now.date())
            edited = _changes(workflow, current["data"], merged)
            return _Change({"data": merged}, {CHANGES: edited}) if edited else None

        return self._change(reference, actor, EDIT, "case_edited", decide)

    @staticmethod
    def _applicant(workflow: Workflow, actor: Actor, on_behalf: bool, organisation: str | None
                   ) -> tuple[str, dict[str, Any], str | None]:
        """Who a new case belongs to: (applicant id, parties, claim code). Refuses an actor
        who may not open it so (NotAllowed)."""
        if on_behalf:
            workflow.check_start_for(actor)
            code = claims.new_code()
            return "", {APPLICANT_PARTY: {"opened_by": actor.id, "claim": claims.seal(code)}}, code
        if organisation is not None:
            limits.check_text("organisation", organisation, limits.MAX_ACTOR_ID)
            workflow.check_start_as_organisation(actor)
            return organisation, {APPLICANT_PARTY: {
                "kind": "organisation", "administrator": actor.id, "members": [actor.id]}}, None
        workflow.check_start(actor)
        return actor.id, {}, None

    def set_members(self, reference: str, actor: Actor, members: Iterable[str]) -> Case:
        """Name the members of the applicant organisation who may act for it on this case
        (its administrator, who stays a member); recorded as a step with who was added and
        removed."""
        wanted = [limits.check_text("member", m, limits.MAX_ACTOR_ID) for m in members]

        def decide(current: Mapping[str, Any]) -> _Change | None:
            workflow, case = self.workflow(current["procedure_hash"]), _view(current)
            workflow.check_administrator(case, actor)
            applicant = dict(current["parties"][APPLICANT_PARTY])
            now_members = list(dict.fromkeys([actor.id, *wanted]))
            before = applicant.get("members", [])
            if now_members == before:
                return None
            applicant["members"] = now_members
            return _Change({"parties": {**current["parties"], APPLICANT_PARTY: applicant}},
                           {"added": [m for m in now_members if m not in before],
                            "removed": [m for m in before if m not in now_members]})

        return self._change(reference, actor, MEMBERS, "members_changed", decide)

    def claim(self, reference: str, actor: Actor, code: str) -> Case:
        """Make a case opened at the counter for a person theirs: `actor` (a role that opens
        cases) gives the code printed on the receipt and becomes its applicant."""
        limits.check_text("code", code, 64)

        def decide(current: Mapping[str, Any]) -> _Change:
            workflow, case = self.workflow(current["procedure_hash"]), _view(current)
            workflow.accept_claim(case, actor, code)
            applicant = {k: v for k, v in current["parties"].get(APPLICANT_PARTY, {}).items()
                         if k != "claim"}
            parties = {**current["parties"], APPLICANT_PARTY: {**applicant,
                                                               "claimed_by": actor.id}}
            return _Change({"applicant_id": actor.id, "parties": parties},
                           {"opened_by": applicant.get("opened_by")})

        return self._change(reference, actor, CLAIM, "case_claimed", decide)

    def attach(self, reference: str, document_id: str, filename: str,
               content: bytes | IO[bytes], actor: Actor, *, replace: bool = False) -> Case:
        """Attach a file to a case; its type is sniffed from its bytes, never from `filename`.

        With `replace`, the document's current files are removed in the same step (the
        history's @attach payload lists them under `replaced`; their rows and blobs stay).
        `document_id` and `filename` (at most 255 characters, never truncated) are checked
        before anything is read: see engine/limits.py.
        """
        limits.check_text("document_id", document_id, limits.MAX_DOCUMENT_ID)
        limits.check_text("filename", filename, limits.MAX_FILENAME)
        if isinstance(content, bytes):
            data = content
        else:  # read at most one byte past the limit of the version the case is pinned to
            row = self._row(reference)
            spec = self.workflow(row["procedure_hash"]).procedure.document(document_id)
            data = _read_at_most(content, (spec.max_size if spec else 0) + 1)
        media_type = sniff(data)
        attached: dict[str, Any] = {"document_id": document_id, "filename": filename,
                                    "media_type": media_type, "size": len(data)}

        def decide(current: Mapping[str, Any]) -> _Change:
            workflow = self.workflow(current["procedure_hash"])
            workflow.accept_file(_view(current), actor, document_id, len(data), media_type,
                                 replace)
            attached["sha256"] = self.blobs.put(data)  # before the row that points to it
            kept, gone = _split(current["documents"], document_id) if replace else (
                list(current["documents"]), [])
            payload = {**attached, "replaced": [_file(d) for d in gone]} if replace else attached

            def write(c: Any, row: Mapping[str, Any], now: dt.datetime) -> None:
                self._store.insert_document(c, {"case_id": row["id"], **attached,
                                                "actor_id": actor.id, "at": now})

            return _Change({"documents": [*kept, attached]}, payload, write)

        return self._change(reference, actor, ATTACH, "document_attached", decide)

    def remove_document(self, reference: str, document_id: str, actor: Actor,
                        sha256: str | None = None) -> Case:
        """Remove the file of `document_id` whose SHA-256 is `sha256`, or (None) all its
        files, where `actor` may attach it: history step @remove (its payload lists the
        files), event `document_removed`. The files stay in the blob store and in the record
        (the `documents` table); a document the procedure requires is missing again.

        An undeclared document, one without files, or a hash none of its files has:
        InvalidData; an actor who may not attach it now: NotAllowed.
        """
        limits.check_text("document_id", document_id, limits.MAX_DOCUMENT_ID)
        digest = None if sha256 is None else limits.check_text("sha256", sha256, 64).lower()

        def decide(current: Mapping[str, Any]) -> _Change:
            self.workflow(current["procedure_hash"]).accept_removal(_view(current), actor,
                                                                    document_id)
            kept, gone = _split(current["documents"], document_id, digest)
            if not gone:
                raise _bad("sha256", text("no_file_with_hash"))
            return _Change({"documents": kept},
                           {"document_id": document_id, "removed": [_file(d) for d in gone]})

        return self._change(reference, actor, REMOVE, "document_removed", decide)

    def pay(self, reference: str, amount: int, provider: str, provider_reference: str,
            actor: Actor, *, method: str | None = None) -> Case:
        """Record a payment; paying twice with the same provider reference changes nothing.

        The amount is a whole number of XOF, at most what is still due on the case (fees as
        its current data make them apply); provider, reference and method are checked before
        the database sees them (engine/limits.py). Where the procedure declares
        `payment_methods`, `method` must be one of their ids (InvalidData on "method");
        without, any method, or none, is recorded.
        """
        limits.check_amount("amount", amount)
        limits.check_text("provider", provider, limits.MAX_PROVIDER)
        limits.check_text("provider_reference", provider_reference,
                          limits.MAX_PROVIDER_REFERENCE)
        if method is not None:
            limits.check_text("method", method, limits.MAX_PAYMENT_METHOD)
        paid = {"amount": amount, "provider": provider, "provider_reference": provider_reference,
                **({} if method is None else {"method": method})}

        def decide(current: Mapping[str, Any]) -> _Change | None:
            workflow = self.workflow(current["procedure_hash"])
            case = _view(current)
            workflow.check_owner(case, actor)  # before anything about the case is answered
            workflow.check_method(method)
            earlier = self._store.payment(provider, provider_reference)
            if earlier is not None:
                if (earlier["case_id"], earlier["amount"], earlier["method"]) == (
                        current["id"], amount, method):
                    return None  # the same payment again: nothing to do
                raise _bad("provider_reference", text("payment_reference_used"))
            workflow.accept_payment(case, actor, amount, self.clock().date(), method)

            def write(c: Any, row: Mapping[str, Any], now: dt.datetime) -> None:
                self._store.insert_payment(c, {"case_id": row["id"], **paid,
                                               "actor_id": actor.id, "at": now})

            return _Change({"fees_paid": current["fees_paid"] + amount}, paid, write)

        try:
            return self._change(reference, actor, PAY, "payment_recorded", decide)
        except store.DuplicatePayment:  # a concurrent twin won the race: answer as a repeat
            return self._change(reference, actor, PAY, "payment_recorded", decide)

    def payment_statistics(self, procedure_id: str | None = None, *, actor: Actor = SYSTEM
                           ) -> dict[str, PaymentTotal]:
        """{method ("" where none was recorded): PaymentTotal(count, amount)} of the payments
        recorded on the cases of `procedure_id` (None: of every procedure), summed by the
        database. Only readers of every case of a procedure see its payments: the system,
        or a role that acts on it or `read:` names; for another `actor`, None means the
        procedures they read, and a `procedure_id` they do not read is NotAllowed."""
        if procedure_id is not None:
            limits.check_text("procedure_id", procedure_id, limits.MAX_PROCEDURE_ID)
        procedures = self._statistics_scope(procedure_id, actor)
        totals = self._store.payment_totals(procedures)
        return {method or "": PaymentTotal(count, amount)
                for method, (count, amount) in sorted(totals.items(), key=lambda t: t[0] or "")}

    def _statistics_scope(self, procedure_id: str | None, actor: Actor) -> list[str] | None:
        """The procedures whose payments `actor` may count (None: every one)."""
        if SYSTEM_ROLE in actor.roles:
            return None if procedure_id is None else [procedure_id]
        readable = [pid for pid in self.procedures
                    if actor.roles & self.workflow(self.procedures[pid].hash).reader_roles]
        if procedure_id is None:
            return readable
        if procedure_id not in readable:
            raise NotAllowed(text("may_not_see_payments"))
        return [procedure_id]

    def _change(self, reference: str, actor: Actor, step: str, event: str,
                decide: Callable[[Mapping[str, Any]], _Change | None]) -> Case:
        """A step that is not a transition (attach, pay, edit): decided on the case as read,
        outside the write transaction, then written with its history row if the case is
        still at that version (decided again, a few times, when it changed meanwhile)."""
        canonical = _canonical(reference)
        for attempt in range(1, _ATTEMPTS + 1):
            current = self._row(reference)
            change = decide(current)
            if change is None:
                return self._case_value(current, actor)
            now = self.clock()
            version = current["version"] + 1
            values = {**change.values, "version": version, "updated_at": now}
            workflow, case = self.workflow(current["procedure_hash"]), _view(current)
            history = _history(current["id"], version, step, current["state"], current["state"],
                               actor.id, workflow.role_of(case, actor), change.payload, now,
                               workflow.for_party(case, actor))
            sent = workflow.hook_payload(change.payload)  # no marked value for hooks
            try:
                with self._write() as c:
                    write = change.write
                    outbox_id = self._store.write_step(
                        c, current["id"], current["version"], values, history,
                        _outbox(current["id"], event, sent, now),
                        before=None if write is None else partial(write, c, current, now))
            except store.Conflict:
                if attempt == _ATTEMPTS:
                    raise _concurrent() from None
                continue
            self._outbox.deliver(outbox_id, canonical, event, sent)
            return self._case_value({**current, **values}, actor)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    # --- deadlines ------------------------------------------------------------------------------

    def tick(self, now: dt.datetime | None = None) -> list[tuple[str, str, str]]:
        """Fire every due timer once, as the system actor: [(reference, trigger, result)].

        Each timer is claimed in the transaction that fires it (see `run_timer`), so one that
        another ticker or worker fired, or that was cancelled since it was read (the case left
        its state), never fires; nor does one whose case is no longer in the stay that
        scheduled it.
        """
        now = now or self.clock()
        return [(timer["reference"], timer["trigger"], self.run_timer(timer, now))
                for timer in self.due_timers(now)]

    def due_timers(self, now: dt.datetime | None = None, limit: int = 500
                   ) -> list[dict[str, Any]]:
        """The pending timers due at `now` (default: the clock), oldest first, at most
        `limit`, each with its case's `reference`: what `run_timer` takes. Read without a
        lock: several workers may read the same ones, only one fires each."""
        return self._store.due_timers(now or self.clock(), limit)

    def oldest_due(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """When the oldest pending timer due at `now` fell (None: none is due): the lag of
        the workers is `now` minus it."""
        return self._store.oldest_due(now or self.clock())

    def run_timer(self, timer: Mapping[str, Any], now: dt.datetime | None = None) -> str:
        """Fire one timer read by `due_timers` (a deadline's trigger, as the system actor) or
        send its reminder; say how it went: fired, reminded, already done (another worker
        was first), stale (its case left the stay that scheduled it: cancelled), retry (its
        case or the timer is busy in another transaction, or kept changing: it stays
        pending) or refused: <why>. DatabaseUnavailable propagates.

        The claim is the first statement of the transaction that fires the timer: on
        PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` of the timer and its case row (a
        worker that dies mid-claim loses its locks with its transaction, and the timer
        stays pending); on SQLite the write lock of BEGIN IMMEDIATE. Deciding and rendering
        happen before, on the case as read; the case version is checked under the claim.
        """
        now = now or self.clock()

        def fire() -> str:
            if timer["kind"] == "reminder":
                return self._remind(timer, now)
            self._fire(timer["reference"], timer["trigger"], SYSTEM, {}, None, timer=timer,
                       now=now)
            return "fired"

        return settle_due(timer, fire, lambda status: self._settle(timer, status, now))

    def run_next_timer(self, now: dt.datetime | None = None, skip: Collection[int] = ()
                       ) -> tuple[dict[str, Any], str] | None:
        """Run the oldest timer due at `now` whose id is not in `skip`, and no other worker
        has reserved: (the timer, its result as `run_timer` says, or "error: <what>" for an
        unexpected failure, logged); None when there is none. What `Worker` runs.

        On PostgreSQL the timer is first reserved for this worker (`Store.reserved_timer`: a
        session lock the server releases if the worker dies), so several workers do not
        decide and render the same one; then `run_timer` runs it: decided and rendered before
        any transaction, claimed with `SELECT ... FOR UPDATE SKIP LOCKED` in the one that
        fires it, the case version as the last guard. On SQLite (one worker at a time) it is
        read, then run the same way.
        """
        now = now or self.clock()
        with self._store.reserved_timer(now, skip) as timer:
            if timer is None:
                return None
            return timer, _guarded(lambda: self.run_timer(timer, now))

    def _claim(self, c: Any, timer: Mapping[str, Any], version: int | None,
               now: dt.datetime) -> None:
        """Claim a due timer in the write transaction `c` and mark it fired there, or raise:
        TimerSettled("retry") when another transaction holds it or its case (PostgreSQL:
        skipped, never waited for, so a worker never deadlocks with a transition);
        TimerSettled("already done") when it is no longer pending; store.Conflict when the
        case is no longer at `version` (the step is decided again)."""
        claimed = self._store.claim_timer(c, timer["id"])
        if claimed is None:
            raise TimerSettled("retry")
        if claimed["status"] != "pending":
            raise TimerSettled("already done")
        if version is not None and claimed["version"] != version:
            raise store.Conflict()
        self._store.settle_timer(c, timer["id"], "fired", now)

    def _settle(self, timer: Mapping[str, Any], status: str, now: dt.datetime) -> None:
        with self._write() as c:
            self._store.settle_timer(c, timer["id"], status, now)

    def _remind(self, timer: Mapping[str, Any], now: dt.datetime) -> str:
        """Send a due reminder: rendered first, then claimed and recorded in its own
        transaction, then delivered."""
        row = self._row(timer["reference"])
        check_stay(timer, row)
        workflow = self.workflow(row["procedure_hash"])
        state = workflow.procedure.states[timer["state"]]
        deadline = state.deadlines[timer["deadline_index"]]
        context = workflow.context(row["data"], _counts(row["documents"]), row["fees_paid"],
                                   now.date())
        notes = [deadline.reminder] if deadline.reminder else []
        due_at = deadline_due(timer, self._store.pending_timers(row["id"]))
        due = due_at.isoformat()
        seen = {**context, "due_date": due_at.date()}
        rendered = self._effects(workflow, notes, (), seen, row["reference"], row["state"],
                                 deadline.trigger)
        payload = {"trigger": deadline.trigger, "due_at": due,
                   "notifications": rendered["notifications"]}
        with self._write() as c:
            # no version check: leaving or re-entering the state cancels the reminder, which
            # the claim sees; the reminder says what the case held when it was read
            self._claim(c, timer, None, now)
            outbox_id = self._store.add_outbox(c, _outbox(row["id"], "reminder", payload, now))
        self._outbox.deliver(outbox_id, row["reference"], "reminder", payload)
        return "reminded"

    def timers(self, reference: str) -> list[dict[str, Any]]:
        """The pending deadlines and reminders of a case."""
        return self._store.pending_timers(int(self._row(reference)["id"]))

    # --- retention ------------------------------------------------------------------------------

    def purge(self, now: dt.datetime | None = None, *, dry_run: bool = False
              ) -> list[PurgeResult]:
        """Erase the personal data of every closed case whose retention has passed.

        A case is due when the `retention:` of the procedure version it is pinned to, counted
        from when it entered its final state, has ended at `now`; a version without
        `retention:` is never purged, nor is an open case. Each case is purged in one
        transaction (see `_purge_plan` for what is erased and kept), recorded by a `@purge`
        history row (actor SYSTEM) and a `case_purged` event; its files are then deleted from
        the blob store, but those a case not purged also has. Cases already purged are passed
        over. With `dry_run` nothing changes: the results say what would be erased.
        """
        now = now or self.clock()
        results: list[PurgeResult] = []
        for procedure_hash in self._store.closed_versions():
            retention = self.workflow(procedure_hash).procedure.retention
            if retention is None:
                continue
            # closed_at + retention <= now implies closed_at <= now - approximate(retention)
            closed_before = now - retention.approximate()
            after = 0
            while rows := self._store.purge_candidates(procedure_hash, closed_before, after):
                for row in rows:
                    if retention.add_to(row["closed_at"]) <= now:
                        result = self._purge_one(row, retention, now, dry_run)
                        if result is not None:
                            results.append(result)
                after = int(rows[-1]["id"])
        return results

    def _purge_one(self, candidate: Mapping[str, Any], retention: Duration, now: dt.datetime,
                   dry_run: bool) -> PurgeResult | None:
        """Purge one case, decided on the case and its record as read, written only if the
        case is still at that version (decided again when it changed); None when another
        purge came first."""
        closed_at = candidate["closed_at"]
        for attempt in range(1, _ATTEMPTS + 1):
            current = self._store.read_case(candidate["reference"])
            if current is None or self._store.is_purged(current["id"]):
                return None
            plan = _purge_plan(current, self._store.case_record(current["id"]))
            files = sorted({d["sha256"] for d in plan.documents})
            if dry_run:
                kept = self._store.blobs_in_use(files, current["id"])
                return plan.result(closed_at, retention, [f for f in files if f not in kept],
                                   sorted(kept), dry_run=True)
            version = current["version"] + 1
            payload = {"trigger": PURGE, "sequence": version, "from": current["state"],
                       "to": current["state"], "actor": SYSTEM.id,
                       "closed_at": closed_at.isoformat(), "retention": str(retention)}
            history = _history(current["id"], version, PURGE, current["state"],
                               current["state"], SYSTEM.id, SYSTEM_ROLE,
                               {"closed_at": payload["closed_at"],
                                "retention": payload["retention"]}, now)
            try:
                with self._write() as c:
                    self._store.update_case(c, current["id"], current["version"],
                                            {**plan.case, "version": version})
                    self._store.insert_purge(c, {"case_id": current["id"],
                                                 "pseudonym": plan.pseudonym,
                                                 "purged_by": SYSTEM.id, "purged_at": now})
                    for table, rows in plan.rewrites.items():
                        self._store.rewrite(c, table, rows)
                    self._store.append_history(c, history)
                    outbox_id = self._store.add_outbox(c, _outbox(current["id"], "case_purged",
                                                                  payload, now))
            except store.Conflict:
                if attempt == _ATTEMPTS:
                    raise _concurrent() from None
                continue
            self._outbox.deliver(outbox_id, current["reference"], "case_purged", payload)
            kept = self._store.blobs_in_use(files, current["id"])  # after commit: never lost
            return plan.result(closed_at, retention,
                               self._delete_files([f for f in files if f not in kept]),
                               sorted(kept))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _delete_files(self, files: Sequence[str]) -> list[str]:
        """Delete files of a purged case from the blob store (one already gone counts as
        deleted); one that cannot be deleted is logged, and left for the operator."""
        deleted = []
        for sha256 in files:
            try:
                self.blobs.delete(sha256)
            except KeyError:
                pass
            except OSError:
                log.exception("purge: could not delete file %s from the blob store", sha256)
                continue
            deleted.append(sha256)
        return deleted


# --- helpers ------------------------------------------------------------------------------------

def _default_blobs(url: str) -> BlobStore:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or path == ":memory:" or "mode=memory" in url:
            return MemoryBlobStore()
        return DirectoryBlobStore(path.split("?", 1)[0] + ".blobs")
    return DirectoryBlobStore("guichet-blobs")


def _read_at_most(stream: IO[bytes], limit: int) -> bytes:
    """Read a stream whole, stopping past `limit` bytes (raw streams return short reads)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = stream.read(min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


#: `Store.alone` task of replaying undelivered outbox rows (`deliver_pending`).
_REPLAY_TASK = 1


def _guarded(run: Callable[[], str]) -> str:
    """`run()`, or "error: <what>" for an unexpected failure (logged with its traceback):
    one timer that cannot run must not stop a worker. DatabaseUnavailable propagates."""
    try:
        return run()
    except DatabaseUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as the timer's result
        log.exception("a due timer could not run; it stays pending")
        text = str(exc).strip()
        return f"error: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _canonical(reference: str) -> str:
    canonical = references.normalise(reference)
    if canonical is None:
        raise _unknown_case(reference)
    return canonical


def _unknown_case(reference: str) -> UnknownCase:
    return UnknownCase(text("unknown_case", reference=reference))


def _concurrent() -> ConcurrentUpdate:
    return ConcurrentUpdate(text("case_changed_meanwhile"))


def _bad(name: str, problem: Texts) -> InvalidData:
    return InvalidData(text("invalid_data"), {name: problem})


def _counts(documents: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for d in documents:
        counts[d["document_id"]] += 1
    return dict(counts)


def _file(document: Mapping[str, Any]) -> dict[str, Any]:
    """What a history payload says of a file replaced or removed."""
    return {k: document[k] for k in ("filename", "sha256", "size", "media_type")}


def _split(documents: Sequence[Mapping[str, Any]], document_id: str, sha256: str | None = None
           ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """A case's files: (those kept, those of `document_id` removed: each, or those with
    `sha256`)."""
    kept: list[Mapping[str, Any]] = []
    gone: list[Mapping[str, Any]] = []
    for d in documents:
        match = d["document_id"] == document_id and sha256 in (None, d["sha256"])
        (gone if match else kept).append(d)
    return kept, gone


def _view(row: Mapping[str, Any]) -> CaseView:
    return CaseView(row["state"], row["applicant_id"], row["data"], _counts(row["documents"]),
                    row["fees_paid"], row["actors"], row["outcome"], row["parties"])


def _history(case_id: int, sequence: int, trigger: str, source: str | None, target: str,
             actor_id: str, role: str, payload: Mapping[str, Any], now: dt.datetime,
             for_party: str | None = None) -> dict[str, Any]:
    return {"case_id": case_id, "sequence": sequence, "trigger": trigger, "from_state": source,
            "to_state": target, "actor_id": actor_id, "actor_role": role,
            "for_party": for_party, "payload": dict(payload), "at": now}


def _outbox(case_id: int, event: str, payload: Mapping[str, Any], now: dt.datetime
            ) -> dict[str, Any]:
    return {"case_id": case_id, "event": event, "payload": dict(payload), "created_at": now}


@dataclass(frozen=True)
class _Change:
    """A decided step that is not a transition: the case columns it sets, what its history
    and outbox rows say, and what else it writes in its transaction (a document, a payment)."""

    values: dict[str, Any]
    payload: dict[str, Any]
    write: Callable[[Any, Mapping[str, Any], dt.datetime], None] | None = None


@dataclass(frozen=True)
class _Opening:
    """A case about to be opened (Engine._opening): its row without its reference, which
    is taken inside the write transaction unless it was needed first (None until then)."""

    workflow: Workflow
    reference: str | None
    row: dict[str, Any]
    history: dict[str, Any]  # its case_id set when written
    payload: dict[str, Any]  # the outbox payload of case_started


@dataclass(frozen=True)
class _Step:
    """A decided transition: the rows it writes and its rendered effects."""

    row: Mapping[str, Any]  # the case as decided on
    values: dict[str, Any]  # the case columns it changes
    history: dict[str, Any]
    leaves_deadlines: bool
    timers: list[dict[str, Any]]
    effects: dict[str, Any]  # the outbox payload
    written: dict[str, Any]  # the case row after it
    fees_due: int  # as decided
    opening: _Opening | None = None  # the follow-up case it opens (`opens:`)
    clock: ClockStep | None = None  # what it does to stopped legal clocks (`pause_in`)


def _entry(row: Mapping[str, Any], sent: Mapping[str, Any]) -> HistoryEntry:
    payload = dict(row["payload"])
    changes = payload.pop(CHANGES, {})
    return HistoryEntry(row["sequence"], row["trigger"], row["from_state"], row["to_state"],
                        row["actor_id"], row["actor_role"], frozen_mapping(payload), row["at"],
                        frozen_mapping(changes),
                        tuple(frozen_mapping(n) for n in sent.get("notifications", ())),
                        tuple(frozen_mapping(i) for i in sent.get("issued", ())),
                        row.get("for_party"))


def _changes(workflow: Workflow, before: Mapping[str, Any], after: Mapping[str, Any]
             ) -> dict[str, dict[str, Any]]:
    """The form fields whose value differs: {field: {"before": ..., "after": ...}}."""
    return {f.id: {"before": before.get(f.id), "after": after.get(f.id)}
            for f in workflow.procedure.fields if before.get(f.id) != after.get(f.id)}


# --- retention: what purging erases and keeps ---------------------------------------------------

#: The history step recording a purge (actor SYSTEM).
PURGE = "@purge"
_FILE = frozenset({"document_id", "media_type", "size", "sha256"})
_PAYMENT = frozenset({"amount", "provider", "provider_reference", "method"})  # financial
_STEP = frozenset({"trigger", "sequence", "from", "to", "role", "outcome", "due_at"})
_OPENED_BY = frozenset({"opened_by"})  # the agent who opened a case at a counter: staff
#: The keys of a payload purging keeps (their values being texts, numbers or null), by history
#: step and by outbox event; every other value is erased. Step input and form fields are
#: erased whatever their name: a field may well be called `amount` or `to`.
_KEPT_BY_STEP = {ATTACH: _FILE, REMOVE: _FILE, PAY: _PAYMENT, CLAIM: _OPENED_BY}
_KEPT_BY_EVENT = {"case_started": _STEP, "transition": _STEP, "reminder": _STEP,
                  "document_attached": _FILE, "document_removed": _FILE,
                  "payment_recorded": _PAYMENT,
                  "case_claimed": _OPENED_BY}
#: What is kept of each notification and issued document: its channel, recipient (a role or
#: party name), id, and the procedure's own title and subject (never rendered from data).
_EFFECT_KEPT = frozenset({"channel", "to", "id"})
_PROCEDURE_TEXTS = frozenset({"title", "subject"})
#: What is kept of a case's parties but their members' ids (pseudonymised): what kind of
#: party it is, who opened the case at a counter (staff).
_PARTY_KEPT = frozenset({"kind", "opened_by"})


@dataclass(frozen=True)
class _PurgePlan:
    """What purging a case writes: the case columns, and the record rows it rewrites by table
    (each with its id and the columns it changes); plus what the result reports."""

    pseudonym: str
    case: dict[str, Any]
    rewrites: dict[str, list[dict[str, Any]]]
    reference: str
    procedure_id: str
    fields: tuple[str, ...]
    documents: Sequence[Mapping[str, Any]]  # document rows

    def result(self, closed_at: dt.datetime, retention: Duration, deleted: Sequence[str],
               kept: Sequence[str], dry_run: bool = False) -> PurgeResult:
        return PurgeResult(
            reference=self.reference, procedure_id=self.procedure_id, closed_at=closed_at,
            retention=str(retention), fields=self.fields,
            file_names=sum(1 for d in self.documents if d["filename"] != store.PURGED),
            files_deleted=tuple(deleted), files_kept=tuple(kept),
            history_rows=len(self.rewrites["history"]),
            outbox_rows=len(self.rewrites["outbox"]), dry_run=dry_run)


def pseudonym(reference: str) -> str:
    """What the applicant's id becomes in a purged case's record: stable for the case,
    different for each case, and saying nothing about the person."""
    return "purged:" + hashlib.sha256(reference.encode()).hexdigest()[:12]


def _purge_plan(row: Mapping[str, Any], record: Mapping[str, list[dict[str, Any]]]
                ) -> _PurgePlan:
    """What purging erases of a closed case, and what it keeps.

    Erased: the form data (`{}`); every value of step input, form changes (`@changes`:
    which fields changed is kept), `@start` data, rendered notification and issued-document
    texts, and parties' contacts (each replaced by PURGED, keys and list lengths kept); file
    names. The applicant's id (and those of an applicant organisation's members) becomes the
    case's pseudonym wherever it is an actor. Kept: the skeleton of the audit trail (sequence,
    trigger, states, times, roles, the party acted for, staff actor ids), documents' ids,
    types, sizes and digests, payments' amounts, providers and provider references.
    """
    alias = pseudonym(row["reference"])
    persons = _applicant_side(row)

    def actor(value: Any) -> Any:
        return alias if isinstance(value, str) and value in persons else value

    def party(value: Any) -> Any:  # a party's ids pseudonymised, its contacts erased
        if isinstance(value, Mapping):
            return {k: v if k in _PARTY_KEPT and _scalar(v) else party(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [party(v) for v in value]
        return alias if actor(value) == alias else _erased(value)

    rewrites = {table: [changed for r in rows if (changed := _rewritten(table, r, actor))]
                for table, rows in record.items()}
    case: dict[str, Any] = {
        "data": {}, "applicant_id": actor(row["applicant_id"]),
        "documents": [{**d, "filename": store.PURGED} for d in row["documents"]],
        "actors": {trigger: list(dict.fromkeys(actor(a) for a in ids))
                   for trigger, ids in row["actors"].items()},
    }
    if "parties" in row:
        case["parties"] = party(row["parties"])
    return _PurgePlan(alias, case, rewrites, row["reference"], row["procedure_id"],
                      tuple(sorted(row["data"])), record.get("documents", []))


def _rewritten(table: str, row: Mapping[str, Any], actor: Callable[[Any], Any]
               ) -> dict[str, Any] | None:
    """What purging changes in one record row: its id and the new values (None: nothing)."""
    new: dict[str, Any] = {}
    if "actor_id" in row:
        new["actor_id"] = actor(row["actor_id"])
    if table == "documents":
        new["filename"] = store.PURGED
    if table == "history" and row["trigger"] != PURGE:
        new["payload"] = _scrubbed(row["payload"], _KEPT_BY_STEP.get(row["trigger"],
                                                                      frozenset()), actor)
    if table == "outbox" and row["event"] != "case_purged":
        new["payload"] = _scrubbed(row["payload"], _KEPT_BY_EVENT.get(row["event"],
                                                                      frozenset()), actor)
    changed = {k: v for k, v in new.items() if v != row[k]}
    return {"id": row["id"], **changed} if changed else None


def _applicant_side(row: Mapping[str, Any]) -> frozenset[str]:
    """The ids of the applicant: the person (or organisation) and, for an organisation, its
    administrator and members; a person who claimed a case opened for them."""
    party = row.get("parties", {}).get(APPLICANT_PARTY, {})
    ids = {row["applicant_id"], party.get("administrator"), party.get("claimed_by"),
           *party.get("members", ())}
    return frozenset(i for i in ids if isinstance(i, str) and i)


def _scrubbed(payload: Any, kept: frozenset[str], actor: Callable[[Any], Any]) -> Any:
    """A payload with its personal data erased: `kept` keys (scalars) and the procedure's own
    texts stay, an `actor` becomes the pseudonym if it is the applicant, notifications and
    issued documents keep their skeleton; every other value is erased."""
    if not isinstance(payload, Mapping):
        return _erased(payload)
    result: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "actor":
            result[key] = actor(value)
        elif key in kept and _scalar(value):
            result[key] = value
        elif key in ("notifications", "issued") and isinstance(value, list):
            result[key] = [_scrubbed(e, _EFFECT_KEPT, actor) for e in value]
        elif key in ("replaced", "removed") and kept is _FILE and isinstance(value, list):
            result[key] = [_scrubbed(e, _FILE, actor) for e in value]  # files: as an attach
        elif key in _PROCEDURE_TEXTS and kept is _EFFECT_KEPT:
            result[key] = value
        else:
            result[key] = _erased(value)
    return result


def _erased(value: Any) -> Any:
    """`value` with every text, number and boolean replaced by PURGED (null stays null; the
    keys of objects and the lengths of lists stay, as the guards require)."""
    if isinstance(value, Mapping):
        return {k: _erased(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_erased(v) for v in value]
    return None if value is None else store.PURGED


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
