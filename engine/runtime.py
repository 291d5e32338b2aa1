"""The Engine: start cases, fire triggers, attach documents, record payments, run deadlines.

Every change of a case is one transaction: the case row (its version counter checked), one
history row and one outbox row, plus timers when a state with deadlines is entered or left.
Hooks registered with `on` are called after commit, from the outbox.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import effects, limits, references, store
from .blobs import BlobStore, DirectoryBlobStore, MemoryBlobStore, sniff
from .clock import Clock, utc_now
from .compiler import load_procedure, procedure_files
from .errors import (
    Blocked,
    ConcurrentUpdate,
    InvalidData,
    UnknownCase,
    UnknownProcedure,
    UnknownTrigger,
)
from .messages import Texts, text
from .model import Procedure, Transition
from .outbox import Hook, Outbox
from .registry import Versions
from .timers import TimerSettled, check_stay, due_text, settle_due, timer_rows
from .values import (
    SYSTEM,
    Actor,
    AttachedDocument,
    Availability,
    Case,
    HistoryEntry,
    frozen_mapping,
)
from .workflow import ATTACH, EDIT, PAY, START, CaseView, Decision, Workflow

log = logging.getLogger("guichet")

#: The key of a history payload that holds the form fields a step changed:
#: {field: {"before": value, "after": value}} (field ids never start with "@").
CHANGES = "@changes"
_ATTEMPTS = 5  # decisions of one fire when the case keeps changing under it

ProcedureSource = str | Path | Procedure


def _load(procedures: ProcedureSource | Iterable[ProcedureSource]) -> list[Procedure]:
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
    """The embedding API. `Engine(procedures="procedures/", database_url="sqlite:///guichet.db")`."""

    def __init__(
        self,
        procedures: ProcedureSource | Iterable[ProcedureSource] = "procedures/",
        database_url: str = "sqlite:///guichet.db",
        *,
        blobs: BlobStore | None = None,
        clock: Clock = utc_now,
        synchronous: str = "FULL",
    ) -> None:
        self.clock = clock
        loaded = _load(procedures)  # refuse bad files before touching the database
        self._store = store.Store(store.connect(database_url, synchronous=synchronous))
        self.blobs = blobs or _default_blobs(database_url)
        self._outbox = Outbox()
        self._local = threading.local()  # .writing: this thread holds a write transaction
        self._versions = Versions(self._store)
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

    def deliver_pending(self) -> int:
        """Hand every undelivered outbox row (e.g. left by a crash or a failing hook) to the
        hooks, oldest first; returns how many were delivered by this call."""
        self.flush()  # rows already handed to hooks are not handed again
        delivered, after = 0, 0
        while rows := self._store.pending_outbox(after_id=after):
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

    def case(self, reference: str) -> Case:
        """The case with this reference (UnknownCase if none, or if its check is wrong)."""
        return self._case_value(self._row(reference))

    def history(self, reference: str) -> list[HistoryEntry]:
        """Every recorded step of a case, oldest first, with the form fields it changed and
        the notifications and documents it sent and issued."""
        canonical = _canonical(reference)
        self._row(reference)
        sent = self._store.step_effects(canonical)
        return [_entry(r, sent.get(r["sequence"], {})) for r in self._store.history(canonical)]

    def cases(self, procedure: str | None = None, state: str | None = None, *,
              applicant: str | None = None, limit: int = 50, after: str | None = None
              ) -> list[Case]:
        """A page of cases (oldest first); pass the last reference as `after` for the next page."""
        for name, value, longest in (("procedure", procedure, limits.MAX_PROCEDURE_ID),
                                     ("state", state, limits.MAX_STATE),
                                     ("applicant", applicant, limits.MAX_ACTOR_ID)):
            if value is not None:
                limits.check_text(name, value, longest)
        after_id = 0
        if after is not None:
            after_id = int(self._row(after)["id"])
        rows = self._store.list_cases(procedure, state, applicant, max(1, min(limit, 1000)),
                                      after_id)
        return [self._case_value(r) for r in rows]

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

    def _case_value(self, row: Mapping[str, Any], fees_due: int | None = None) -> Case:
        """The Case value of a row (`fees_due` when the caller already knows it)."""
        if fees_due is None:
            workflow = self.workflow(row["procedure_hash"])
            fees_due = workflow.context(row["data"], _counts(row["documents"]),
                                        row["fees_paid"], self.clock().date())["fees_due"]
        return Case(
            reference=row["reference"], procedure_id=row["procedure_id"],
            procedure_hash=row["procedure_hash"], state=row["state"], outcome=row["outcome"],
            applicant_id=row["applicant_id"], data=frozen_mapping(row["data"]),
            fees_due=fees_due, fees_paid=row["fees_paid"],
            documents=tuple(AttachedDocument(**d) for d in row["documents"]),
            version=row["version"], created_at=row["created_at"], updated_at=row["updated_at"],
        )

    # --- writing --------------------------------------------------------------------------------

    def start(self, procedure_id: str, actor: Actor, data: Mapping[str, Any] | None = None
              ) -> Case:
        """Open a case of the current version of `procedure_id`, owned by `actor`."""
        limits.check_text("procedure_id", procedure_id, limits.MAX_PROCEDURE_ID)
        limits.check_payload(data or {})
        workflow = self._versions.current(procedure_id)
        if workflow is None:
            raise UnknownProcedure(text("unknown_procedure", procedure_id=procedure_id))
        workflow.check_start(actor)
        procedure = workflow.procedure
        now = self.clock()
        cleaned = workflow.start_data(data or {}, now.date(), actor.language)
        initial = procedure.initial_state
        reference = None
        effects: dict[str, Any] = {"notifications": [], "issued": []}
        if initial.notify:  # rendered outside the write transaction, so numbered first
            with self._write() as c:
                reference = self._next_reference(c, procedure, now)
            context = workflow.context(cleaned, {}, 0, now.date())
            effects = self._effects(workflow, initial.notify, (), context, reference,
                                    initial.id, START)
        with self._write() as c:
            reference = reference or self._next_reference(c, procedure, now)
            case_id = self._store.insert_case(c, {
                "reference": reference, "procedure_id": procedure.id,
                "procedure_hash": procedure.hash, "state": initial.id, "outcome": None,
                "applicant_id": actor.id, "data": cleaned, "documents": [], "actors": {},
                "fees_paid": 0, "version": 1, "created_at": now, "updated_at": now,
                "state_entered_at": now,
            })
            role = workflow.role_of(None, actor)
            self._store.append_history(c, _history(case_id, 1, START, None, initial.id,
                                                    actor.id, role, {"data": cleaned}, now))
            payload = {"trigger": START, "sequence": 1, "from": None, "to": initial.id,
                       "actor": actor.id, **effects}
            outbox_id = self._store.add_outbox(c, _outbox(case_id, "case_started", payload,
                                                           now))
            self._store.add_timers(c, timer_rows(workflow, case_id, initial.id, now))
        self._outbox.deliver(outbox_id, reference, "case_started", payload)
        return self.case(reference)

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
        for attempt in range(1, _ATTEMPTS + 1):
            row = self._row(reference)
            if timer is not None:
                check_stay(timer, row)
            step = self._decide(row, trigger, actor, data, expected_version, now)
            try:
                with self._write() as c:
                    if timer is not None and not self._store.settle_timer(c, timer["id"],
                                                                           "fired", now):
                        raise TimerSettled("already done")
                    outbox_id = self._write_step(c, step, now)
            except store.Conflict:
                if expected_version is not None or attempt == _ATTEMPTS:
                    raise _concurrent() from None
                continue
            self._outbox.deliver(outbox_id, canonical, "transition", step.effects)
            return self._case_value(step.written, step.fees_due)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _decide(self, row: Mapping[str, Any], trigger: str, actor: Actor,
                data: Mapping[str, Any], expected_version: int | None, now: dt.datetime
                ) -> _Step:
        """What firing `trigger` does to the case as read, effects rendered; or the refusal."""
        workflow = self.workflow(row["procedure_hash"])
        if trigger not in workflow.procedure.triggers:
            raise UnknownTrigger(text("unknown_trigger", trigger=trigger))
        if expected_version is not None and row["version"] != expected_version:
            raise _concurrent()
        outcome = workflow.decide(_view(row), trigger, actor, data, now.date())
        if not isinstance(outcome, Decision):
            raise outcome.error()
        return self._step(workflow, row, outcome, actor, now)

    def _step(self, workflow: Workflow, row: Mapping[str, Any], decision: Decision,
              actor: Actor, now: dt.datetime) -> _Step:
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
        recorded = {**step_input, **({CHANGES: changes} if changes else {})}
        rendered = self._effects(workflow, (*t.notify, *target.notify), t.issue,
                                 decision.context, row["reference"], target.id, t.trigger)
        payload = {
            "trigger": t.trigger, "sequence": version, "from": source, "to": target.id,
            "actor": actor.id, "role": decision.role, "outcome": target.outcome,
            "input": step_input, **rendered,
        }
        return _Step(
            row=row, values=values, effects=payload,
            history=_history(row["id"], version, t.trigger, source, target.id, actor.id,
                             decision.role, recorded, now),
            leaves_deadlines=bool(workflow.procedure.states[source].deadlines),
            timers=timer_rows(workflow, row["id"], target.id, now),
            written={**row, **values}, fees_due=decision.context["fees_due"],
        )

    def _write_step(self, c: Any, step: _Step, now: dt.datetime) -> int:
        """Write a decided step (case row at its version, history, timers, outbox)."""
        row = step.row
        self._store.update_case(c, row["id"], row["version"], step.values)
        self._store.append_history(c, step.history)
        if step.leaves_deadlines:
            self._store.cancel_timers(c, row["id"], now)
        self._store.add_timers(c, step.timers)
        return self._store.add_outbox(c, _outbox(row["id"], "transition", step.effects, now))

    def update(self, reference: str, actor: Actor, data: Mapping[str, Any]) -> Case:
        """Save form fields without a transition (a draft): the applicant, in a state that
        lets them edit. The step is recorded in the history with the changed fields."""
        limits.check_payload(data)
        now = self.clock()

        def decide(current: Mapping[str, Any]) -> _Change | None:
            workflow = self.workflow(current["procedure_hash"])
            merged = workflow.edit(_view(current), actor, data, now.date())
            edited = _changes(workflow, current["data"], merged)
            return _Change({"data": merged}, {CHANGES: edited}) if edited else None

        return self._change(reference, actor, EDIT, "case_edited", decide)

    def attach(self, reference: str, document_id: str, filename: str,
               content: bytes | IO[bytes], actor: Actor) -> Case:
        """Attach a file to a case; its type is sniffed from its bytes, never from `filename`.

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
            workflow.accept_file(_view(current), actor, document_id, len(data), media_type)
            attached["sha256"] = self.blobs.put(data)  # before the row that points to it

            def write(c: Any, row: Mapping[str, Any], now: dt.datetime) -> None:
                self._store.insert_document(c, {"case_id": row["id"], **attached,
                                                "actor_id": actor.id, "at": now})

            return _Change({"documents": [*current["documents"], attached]}, attached, write)

        return self._change(reference, actor, ATTACH, "document_attached", decide)

    def pay(self, reference: str, amount: int, provider: str, provider_reference: str,
            actor: Actor) -> Case:
        """Record a payment; paying twice with the same provider reference changes nothing.

        The amount is a whole number of XOF, at most what is still due on the case (fees as
        its current data make them apply); provider and reference are checked before the
        database sees them (engine/limits.py).
        """
        limits.check_amount("amount", amount)
        limits.check_text("provider", provider, limits.MAX_PROVIDER)
        limits.check_text("provider_reference", provider_reference,
                          limits.MAX_PROVIDER_REFERENCE)
        paid = {"amount": amount, "provider": provider, "provider_reference": provider_reference}

        def decide(current: Mapping[str, Any]) -> _Change | None:
            workflow = self.workflow(current["procedure_hash"])
            case = _view(current)
            workflow.check_owner(case, actor)  # before anything about the case is answered
            earlier = self._store.payment(provider, provider_reference)
            if earlier is not None:
                if earlier["case_id"] == current["id"] and earlier["amount"] == amount:
                    return None  # the same payment again: nothing to do
                raise _bad("provider_reference", text("payment_reference_used"))
            workflow.accept_payment(case, actor, amount, self.clock().date())

            def write(c: Any, row: Mapping[str, Any], now: dt.datetime) -> None:
                self._store.insert_payment(c, {"case_id": row["id"], **paid,
                                               "actor_id": actor.id, "at": now})

            return _Change({"fees_paid": current["fees_paid"] + amount}, paid, write)

        try:
            return self._change(reference, actor, PAY, "payment_recorded", decide)
        except store.DuplicatePayment:  # a concurrent twin won the race: answer as a repeat
            return self._change(reference, actor, PAY, "payment_recorded", decide)

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
                return self._case_value(current)
            now = self.clock()
            version = current["version"] + 1
            values = {**change.values, "version": version, "updated_at": now}
            role = self.workflow(current["procedure_hash"]).role_of(_view(current), actor)
            history = _history(current["id"], version, step, current["state"], current["state"],
                               actor.id, role, change.payload, now)
            try:
                with self._write() as c:
                    if change.write is not None:
                        change.write(c, current, now)
                    self._store.update_case(c, current["id"], current["version"], values)
                    self._store.append_history(c, history)
                    outbox_id = self._store.add_outbox(c, _outbox(current["id"], event,
                                                                  change.payload, now))
            except store.Conflict:
                if attempt == _ATTEMPTS:
                    raise _concurrent() from None
                continue
            self._outbox.deliver(outbox_id, canonical, event, change.payload)
            return self._case_value({**current, **values})
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    # --- deadlines ------------------------------------------------------------------------------

    def tick(self, now: dt.datetime | None = None) -> list[tuple[str, str, str]]:
        """Fire every due timer once, as the system actor: [(reference, trigger, result)].

        A timer is claimed in the transaction that fires it, so one that another ticker
        fired, or that was cancelled since it was read (the case left its state), never
        fires; nor does one whose case is no longer in the stay that scheduled it.
        """
        now = now or self.clock()
        return [(timer["reference"], timer["trigger"], self._tick_one(timer, now))
                for timer in self._store.due_timers(now)]

    def _tick_one(self, timer: Mapping[str, Any], now: dt.datetime) -> str:
        def fire() -> str:
            if timer["kind"] == "reminder":
                return self._remind(timer, now)
            self._fire(timer["reference"], timer["trigger"], SYSTEM, {}, None, timer=timer,
                       now=now)
            return "fired"

        return settle_due(timer, fire, lambda status: self._settle(timer, status, now))

    def _settle(self, timer: Mapping[str, Any], status: str, now: dt.datetime) -> None:
        with self._write() as c:
            self._store.settle_timer(c, timer["id"], status, now)

    def _remind(self, timer: Mapping[str, Any], now: dt.datetime) -> str:
        row = self._row(timer["reference"])
        check_stay(timer, row)
        workflow = self.workflow(row["procedure_hash"])
        state = workflow.procedure.states[timer["state"]]
        deadline = state.deadlines[timer["deadline_index"]]
        context = workflow.context(row["data"], _counts(row["documents"]), row["fees_paid"],
                                   now.date())
        notes = [deadline.reminder] if deadline.reminder else []
        rendered = self._effects(workflow, notes, (), context, row["reference"], row["state"],
                                 deadline.trigger)
        due = due_text(workflow, timer["deadline_index"], row)
        payload = {"trigger": deadline.trigger, "due_at": due,
                   "notifications": rendered["notifications"]}
        with self._write() as c:
            if not self._store.settle_timer(c, timer["id"], "fired", now):
                raise TimerSettled("already done")
            outbox_id = self._store.add_outbox(c, _outbox(row["id"], "reminder", payload, now))
        self._outbox.deliver(outbox_id, row["reference"], "reminder", payload)
        return "reminded"

    def timers(self, reference: str) -> list[dict[str, Any]]:
        """The pending deadlines and reminders of a case."""
        return self._store.pending_timers(int(self._row(reference)["id"]))


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


def _view(row: Mapping[str, Any]) -> CaseView:
    return CaseView(row["state"], row["applicant_id"], row["data"], _counts(row["documents"]),
                    row["fees_paid"], row["actors"], row["outcome"])


def _history(case_id: int, sequence: int, trigger: str, source: str | None, target: str,
             actor_id: str, role: str, payload: Mapping[str, Any], now: dt.datetime
             ) -> dict[str, Any]:
    return {"case_id": case_id, "sequence": sequence, "trigger": trigger, "from_state": source,
            "to_state": target, "actor_id": actor_id, "actor_role": role,
            "payload": dict(payload), "at": now}


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


def _entry(row: Mapping[str, Any], sent: Mapping[str, Any]) -> HistoryEntry:
    payload = dict(row["payload"])
    changes = payload.pop(CHANGES, {})
    return HistoryEntry(row["sequence"], row["trigger"], row["from_state"], row["to_state"],
                        row["actor_id"], row["actor_role"], frozen_mapping(payload), row["at"],
                        frozen_mapping(changes),
                        tuple(frozen_mapping(n) for n in sent.get("notifications", ())),
                        tuple(frozen_mapping(i) for i in sent.get("issued", ())))


def _changes(workflow: Workflow, before: Mapping[str, Any], after: Mapping[str, Any]
             ) -> dict[str, dict[str, Any]]:
    """The form fields whose value differs: {field: {"before": ..., "after": ...}}."""
    return {f.id: {"before": before.get(f.id), "after": after.get(f.id)}
            for f in workflow.procedure.fields if before.get(f.id) != after.get(f.id)}
