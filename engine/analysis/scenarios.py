"""Scenario tests written by authors: a list of steps played on an in-memory engine.

A scenario file (e.g. procedures/tests/passport/issued.yaml) names a procedure and lists
steps: `start`, `fire`, `edit` (save form fields: the applicant, or staff correcting),
`attach` (`replace: true`: instead of its files), `remove` (a document's files), `pay`
(`method:` one of `payment_methods`), `wait` (advance the fake clock, then run due
deadlines), `read` (`case` or `history`, as the step's actor: what they may see, or their
refusal), `follow_up` (go on with a follow-up case: the one a transition opened, else one
opened now, with `data:`; later steps act on it) and `expect` (state, outcome, fees,
documents still missing, a refusal and its reasons, notifications sent, documents issued,
history length, data, available triggers, the procedures of the follow-ups opened).
Expectations read the case as the system, or after a `read: case`, as that reader saw it.
Files are read with the strict loader, so a scenario that names an unknown trigger, field,
document or state is reported with its file:line like a procedure error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import links, source
from ..clock import FakeClock
from ..errors import Diagnostic, GuichetError
from ..model import Duration, Procedure
from ..rules import unknown
from ..values import SYSTEM, Actor, Case, Event

ACTIONS = ("start", "fire", "attach", "remove", "pay", "wait", "read", "claim", "members",
           "purge", "edit", "follow_up")
READS = ("case", "history")  # what a `read` step reads
STEP_KEYS = {*ACTIONS, "expect", "as", "data", "file", "replace", "provider", "method",
             "provider_reference",
             "on_behalf", "organisation"}
EXPECT_KEYS = {"state", "outcome", "fees_due", "fees_paid", "documents_missing",
               "history_length", "data", "refused", "notifications", "issued", "available",
               "follow_ups"}
ERROR_KINDS = {"not_allowed": "NotAllowed", "blocked": "Blocked", "invalid_data": "InvalidData",
               "concurrent_update": "ConcurrentUpdate", "unknown_case": "UnknownCase",
               "unknown_trigger": "UnknownTrigger"}
DEFAULT_CLOCK = dt.datetime(2026, 1, 5, 9, 0)  # a Monday morning
_SAMPLES = {"application/pdf": b"%PDF-1.4\n", "image/jpeg": b"\xff\xd8\xff\xe0",
            "image/png": b"\x89PNG\r\n\x1a\n"}


@dataclass(frozen=True)
class Step:
    index: int
    line: int
    spec: Mapping[str, Any]

    @property
    def action(self) -> str | None:
        return next((a for a in ACTIONS if a in self.spec), None)

    def describe(self) -> str:
        action = self.action
        if action is None:
            return "expect"
        value = self.spec[action]
        return action if action == "start" else f"{action} {value}"


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    procedure_id: str
    steps: tuple[Step, ...]
    clock: dt.datetime = DEFAULT_CLOCK

    @property
    def id(self) -> str:
        return f"{self.path}::{self.name}"


@dataclass
class Result:
    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    fired: list[tuple[str, str | None, str]] = field(default_factory=list)  # trigger, from, to
    #: transitions fired in follow-up cases (`follow_up:` steps), by their procedure's id
    followed: dict[str, list[tuple[str, str | None, str]]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


# --- loading ------------------------------------------------------------------------------------

def scenario_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Scenario files under `paths`: files as given; directories searched recursively."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            yield path


def load_scenario(path: str | Path, procedures: Mapping[str, Procedure]
                  ) -> tuple[Scenario | None, list[Diagnostic]]:
    """Read and check one scenario file against the procedures it may name."""
    name = str(path)
    raw, unread = source.read(path)
    if raw is None:
        return None, unread
    document, diagnostics = source.load(raw, name)
    if document is None or diagnostics:
        return None, diagnostics
    checker = _Checker(document, procedures)
    scenario = checker.scenario()
    return (None if checker.diagnostics else scenario), checker.diagnostics


class _Checker:
    def __init__(self, document: source.Document, procedures: Mapping[str, Procedure]) -> None:
        self.document = document
        self.procedures = procedures
        self.diagnostics: list[Diagnostic] = []

    def error(self, path: tuple[str | int, ...], rule: str, message: str, key: bool = False
              ) -> None:
        where = self.document.key_at(path) if key else self.document.at(path)
        self.diagnostics.append(Diagnostic(where, "error", rule, message))

    def scenario(self) -> Scenario | None:
        data = self.document.data
        for key in data:
            if key not in ("procedure", "name", "clock", "steps"):
                self.error((key,), "unknown-key", f'unknown key "{key}"', key=True)
        procedure = self.procedures.get(str(data.get("procedure")))
        if procedure is None:
            known = ", ".join(sorted(self.procedures)) or "none loaded"
            self.error(("procedure",), "undefined-procedure",
                       f'unknown procedure "{data.get("procedure")}" (known: {known})')
            return None
        clock = self._clock(data.get("clock"))
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            self.error(("steps",), "missing-key", "a scenario needs a list of steps")
            return None
        checked = []
        for i, spec in enumerate(steps):  # steps after `follow_up: X` act on a case of X
            if isinstance(spec, dict) and "follow_up" in spec:
                procedure = self._follow_up(procedure, i, spec["follow_up"])
            checked.append(self._step(procedure, i, spec))
        name = data.get("name") or Path(self.document.path).stem
        return Scenario(self.document.path, str(name), str(data.get("procedure")),
                        tuple(checked), clock)

    def _follow_up(self, p: Procedure, index: int, name: Any) -> Procedure:
        """The procedure a `follow_up:` step moves to (p itself when it is not one of p's)."""
        offered = {f.procedure for f in links.follow_ups(p)}
        if name not in offered or name not in self.procedures:
            self.error(("steps", index, "follow_up"), "undefined-procedure",
                       unknown("follow-up procedure", str(name), sorted(offered)))
            return p
        return self.procedures[str(name)]

    def _clock(self, value: Any) -> dt.datetime:
        if value is None:
            return DEFAULT_CLOCK
        try:
            return dt.datetime.fromisoformat(str(value)).replace(tzinfo=None)
        except ValueError:
            self.error(("clock",), "invalid-value", f'"{value}" is not a date and time like '
                                                   '"2026-01-05T09:00:00"')
            return DEFAULT_CLOCK

    def _step(self, p: Procedure, index: int, spec: Any) -> Step:
        path: tuple[str | int, ...] = ("steps", index)
        line = self.document.at(path).line
        if not isinstance(spec, dict):
            self.error(path, "type", "a step must be a mapping, e.g. {fire: submit, as: ...}")
            return Step(index, line, {})
        for key in spec:
            if key not in STEP_KEYS:
                self.error((*path, key), "unknown-key", f'unknown step key "{key}"', key=True)
        actions = [a for a in ACTIONS if a in spec]
        if len(actions) > 1:
            self.error(path, "invalid-value", f"one action per step, found {', '.join(actions)}")
        if not actions and "expect" not in spec:
            self.error(path, "missing-key", f"a step needs one of {', '.join(ACTIONS)} or expect")
        self._references(p, path, spec)
        return Step(index, line, spec)

    def _references(self, p: Procedure, path: tuple[str | int, ...], spec: dict[str, Any]
                    ) -> None:
        fields = {f.id for f in p.fields} | {i.id for t in p.transitions for i in t.input}
        if "fire" in spec and spec["fire"] not in p.triggers:
            self.error((*path, "fire"), "undefined-trigger",
                       unknown("trigger", str(spec["fire"]), p.triggers))
        for key in ("attach", "remove"):
            if key in spec and p.document(str(spec[key])) is None:
                self.error((*path, key), "undefined-document",
                           unknown("document", str(spec[key]), [d.id for d in p.documents]))
        expect = spec.get("expect")
        refusal = isinstance(expect, dict) and "refused" in expect  # may try a wrong method
        if "method" in spec and p.payment_methods and not refusal and spec["method"] not in {
                m.id for m in p.payment_methods}:
            self.error((*path, "method"), "invalid-value",
                       unknown("payment method", str(spec["method"]),
                               [m.id for m in p.payment_methods]))
        if "read" in spec and spec["read"] not in READS:
            self.error((*path, "read"), "invalid-value",
                       f'"{spec["read"]}" is not one of {", ".join(READS)}')
        if "wait" in spec:
            try:
                Duration.parse(str(spec["wait"])).approximate()
            except (ValueError, KeyError):
                self.error((*path, "wait"), "invalid-value",
                           f'"{spec["wait"]}" is not a duration like "3 days"')
        given = next((k for k in ("start", "edit") if k in spec), "data")
        data = spec.get(given)
        for key in data if isinstance(data, dict) else {}:
            if key not in fields:
                self.error((*path, given, key), "undefined-field", unknown("field", key, fields),
                           key=True)
        if "as" in spec and ":" not in str(spec["as"]):
            self.error((*path, "as"), "invalid-value", f'"{spec["as"]}" is not ROLE:ID, '
                                                       'e.g. "agent:agent-7"')
        self._expectations(p, path, spec.get("expect") or {})

    def _expectations(self, p: Procedure, path: tuple[str | int, ...], expect: Any) -> None:
        if not isinstance(expect, dict):
            self.error((*path, "expect"), "type", "expect must be a mapping")
            return
        for key in expect:
            if key not in EXPECT_KEYS:
                self.error((*path, "expect", key), "unknown-key",
                           unknown("expectation", key, EXPECT_KEYS), key=True)
        if "state" in expect and expect["state"] not in p.states:
            self.error((*path, "expect", "state"), "undefined-state",
                       unknown("state", str(expect["state"]), p.states))
        for i, name in enumerate(expect.get("documents_missing") or []):
            if p.document(str(name)) is None:
                self.error((*path, "expect", "documents_missing", i), "undefined-document",
                           unknown("document", str(name), [d.id for d in p.documents]))


# --- running ------------------------------------------------------------------------------------

def actor_of(text: str) -> Actor:
    """`ROLE[,ROLE]:ID` -> Actor."""
    roles, _, actor_id = str(text).partition(":")
    return Actor(actor_id, roles.split(","))


class Session:
    """One case on a fresh in-memory engine with a fake clock: what scenarios and the
    interactive simulator drive. Every action is also kept as a scenario step."""

    def __init__(self, procedure: Procedure, clock: dt.datetime = DEFAULT_CLOCK,
                 others: Iterable[Procedure] = (),
                 closures: frozenset[dt.date] = frozenset()) -> None:
        """`others`: procedures its follow-ups may open (those it links to are loaded);
        `closures`: the deployment's closure days (Engine(closures=...))."""
        self.procedure = procedure
        self.clock = FakeClock(clock)
        from ..runtime import Engine  # here, so that importing this module stays light

        self.engine = Engine(_linked(procedure, others), "sqlite://", clock=self.clock,
                             closures=closures)
        self.events: list[Event] = []
        self.engine.on("notification", self.events.append)
        self.engine.on("document_issued", self.events.append)
        self.reference: str | None = None
        self.references: list[str] = []  # every case started, in order (for coverage)
        self.claim_code: str | None = None  # of the last start on behalf
        self.steps: list[dict[str, Any]] = []
        self._payments = 0

    def close(self) -> None:
        self.engine.close()

    def case(self) -> Case:
        """The case as it is (read as the system: the whole truth, for checks and traces)."""
        assert self.reference is not None, "no case started"
        return self.engine.case(self.reference, SYSTEM)

    def read(self, what: str, actor: Actor) -> Case | None:
        """Read the case (`what` "case": returned) or its history as `actor` may see it;
        NotAllowed when they may not read it."""
        assert self.reference is not None, "no case started"
        seen = None
        if what == "history":
            self.engine.history(self.reference, actor)
        else:
            seen = self.engine.case(self.reference, actor)
        self._record({"read": what}, actor)
        return seen

    def _record(self, step: dict[str, Any], actor: Actor) -> None:
        step["as"] = f"{','.join(sorted(actor.roles))}:{actor.id}"
        self.steps.append(step)

    def start(self, actor: Actor, data: Mapping[str, Any] | None = None, *,
              on_behalf: bool = False, organisation: str | None = None) -> Case:
        case = self.engine.start(self.procedure.id, actor, data or {}, on_behalf=on_behalf,
                                 organisation=organisation)
        self.reference, self.claim_code = case.reference, case.claim_code
        self.references.append(case.reference)
        options: dict[str, Any] = {"on_behalf": True} if on_behalf else {}
        if organisation:
            options["organisation"] = organisation
        self._record({"start": dict(data or {}), **options}, actor)
        return case

    def edit(self, data: Mapping[str, Any], actor: Actor) -> Case:
        """Save form fields without a transition (the applicant, or staff correcting)."""
        case = self.engine.update(self.reference or "", actor, data)
        self._record({"edit": dict(data)}, actor)
        return case

    def follow_up(self, procedure_id: str, actor: Actor, data: Mapping[str, Any] | None = None
                  ) -> Case:
        """Go on with a follow-up case of the current one: the one a transition opened (the
        latest of `procedure_id` not followed yet), else one `actor` opens now, as its
        state offers. Later steps act on it."""
        parent = self.reference or ""
        opened = [r for r in self.engine.case(parent, SYSTEM).follow_ups
                  if r not in self.references
                  and self.engine.case(r, SYSTEM).procedure_id == procedure_id]
        if opened:
            case = self.engine.case(opened[-1], SYSTEM)
        else:
            case = self.engine.start(procedure_id, actor, data or {}, parent=parent)
        self.reference = case.reference
        self.references.append(case.reference)
        self._record({"follow_up": procedure_id, **({"data": dict(data)} if data else {})},
                     actor)
        return case

    def claim(self, code: str, actor: Actor) -> Case:
        """Claim the case; `receipt` stands for the code its on-behalf start printed."""
        given = (self.claim_code or "") if code == "receipt" else code
        case = self.engine.claim(self.reference or "", actor, given)
        self._record({"claim": code}, actor)
        return case

    def purge(self) -> None:
        """Run the retention purge now (the fake clock's now), as a nightly job would."""
        self.engine.purge(self.clock())
        self.steps.append({"purge": True})

    def members(self, members: list[str], actor: Actor) -> Case:
        case = self.engine.set_members(self.reference or "", actor, members)
        self._record({"members": list(members)}, actor)
        return case

    def fire(self, trigger: str, actor: Actor, data: Mapping[str, Any] | None = None) -> Case:
        case = self.engine.fire(self.reference or "", trigger, actor, data)
        self._record({"fire": trigger, **({"data": dict(data)} if data else {})}, actor)
        return case

    def attach(self, document_id: str, actor: Actor, media_type: str | None = None,
               size: int = 1024, count: int = 1, replace: bool = False) -> Case:
        """Attach `count` generated placeholder files of `media_type` and about `size` bytes
        (with `replace`: instead of the document's current files)."""
        case = self.case()  # of this procedure, or of a follow-up the scenario went on with
        document = self.engine.workflow(case.procedure_hash).procedure.document(document_id)
        if document is None:
            raise KeyError(document_id)
        media_type = media_type or document.media_types[0]
        for n in range(count):
            head = _SAMPLES.get(media_type, b"plain text, not a known type\n")
            body = head + f"{document.id}-{n}-{self.clock.now.isoformat()}".encode()
            content = (body * (size // len(body) + 1))[:max(size, len(body))]
            case = self.engine.attach(case.reference, document.id, f"{document.id}-{n}",
                                      content, actor, replace=replace and n == 0)
        file = {"type": media_type, "size": size, "count": count}
        self._record({"attach": document_id, "file": file,
                      **({"replace": True} if replace else {})}, actor)
        return case

    def remove(self, document_id: str, actor: Actor) -> Case:
        """Remove every file of a document."""
        case = self.engine.remove_document(self.reference or "", document_id, actor)
        self._record({"remove": document_id}, actor)
        return case

    def pay(self, amount: int | str, actor: Actor, provider: str = "tmoney",
            provider_reference: str | None = None, method: str | None = None) -> Case:
        """Pay `amount` (or "due": what is still owed), with `method` if given."""
        case = self.case()
        value = case.fees_outstanding if amount == "due" else int(amount)
        self._payments += 1
        reference = provider_reference or f"SIM-{case.reference}-{self._payments}"
        case = self.engine.pay(case.reference, value, provider, reference, actor, method=method)
        self._record({"pay": amount, "provider": provider,
                      **({"method": method} if method else {})}, actor)
        return case

    def wait(self, duration: str) -> list[tuple[str, str, str]]:
        """Advance the clock, then fire the deadlines now due."""
        self.clock.advance(Duration.parse(duration).approximate())
        self.steps.append({"wait": duration})
        return self.engine.tick()

    def scenario(self, name: str) -> dict[str, Any]:
        """The session so far as a scenario file's content."""
        return {"procedure": self.procedure.id, "name": name,
                "clock": DEFAULT_CLOCK.isoformat(), "steps": list(self.steps)}


class Runner:
    """Plays scenarios, each on a fresh in-memory database with a fake clock."""

    def __init__(self, procedures: Iterable[Procedure],
                 closures: frozenset[dt.date] = frozenset()) -> None:
        self.procedures = {p.id: p for p in procedures}
        self.closures = closures

    def run(self, scenario: Scenario, trace: list[str] | None = None,
            language: str = "fr") -> Result:
        """Play `scenario`; with `trace`, append a line per step (state, fees, messages,
        refusals in `language`)."""
        session = Session(self.procedures[scenario.procedure_id], scenario.clock,
                          self.procedures.values(), self.closures)
        result = Result(scenario)
        play = _Play(session, result, trace, language)
        try:
            for step in scenario.steps:
                try:
                    if not play.step(step):
                        break
                except Exception as exc:  # noqa: BLE001 - an engine fault fails the scenario
                    play.fail(step, f"the engine failed: {type(exc).__name__}: {exc}")
                    break
        finally:
            fired = _fired(session)
            result.fired = fired.pop(scenario.procedure_id, [])
            result.followed = fired
            session.close()
        return result


def _fired(session: Session) -> dict[str, list[tuple[str, str | None, str]]]:
    """The transitions fired in every case the scenario started or followed (trigger, from,
    to), by procedure id."""
    fired: dict[str, list[tuple[str, str | None, str]]] = {}
    for reference in session.references:
        procedure_id = session.engine.case(reference, SYSTEM).procedure_id
        fired.setdefault(procedure_id, []).extend(
            (h.trigger, h.from_state, h.to_state)
            for h in session.engine.history(reference, SYSTEM) if not h.trigger.startswith("@"))
    return fired


def _linked(procedure: Procedure, others: Iterable[Procedure]) -> list[Procedure]:
    """`procedure` and the procedures its follow-ups link to, directly or not."""
    known = {p.id: p for p in others}
    found = {procedure.id: procedure}
    waiting = [procedure]
    while waiting:
        for link in links.follow_ups(waiting.pop()):
            if link.procedure in known and link.procedure not in found:
                found[link.procedure] = known[link.procedure]
                waiting.append(known[link.procedure])
    return list(found.values())


def default_actor(procedure: Procedure) -> str:
    """Who a step without `as:` is done by: `ROLE:citizen-1`, ROLE the first role the
    procedure's `start:` names (the applicant side), else its first declared role."""
    roles = procedure.start.roles or tuple(procedure.roles)
    return f"{roles[0] if roles else 'applicant'}:citizen-1"


class _Play:
    def __init__(self, session: Session, result: Result, trace: list[str] | None,
                 language: str = "fr") -> None:
        self.session, self.result, self.trace = session, result, trace
        self.language = language  # of the trace
        self.engine, self.events = session.engine, session.events
        self.default_actor = default_actor(session.procedure)
        self.current = actor_of(self.default_actor)
        self.seen: Case | None = None  # the case as this step's `read: case` showed it

    @property
    def reference(self) -> str | None:
        return self.session.reference

    def fail(self, step: Step, message: str) -> bool:
        where = f"{self.result.scenario.path}:{step.line}"
        self.result.failures.append(f"{where}: step {step.index + 1} ({step.describe()}): "
                                    f"{message}")
        return False

    def step(self, step: Step) -> bool:
        spec = step.spec
        expect = spec.get("expect") or {}
        self.events.clear()
        self.seen = None
        self.current = actor_of(spec.get("as", self.default_actor))
        action = step.action
        if action is not None and action != "start" and self.reference is None:
            return self.fail(step, "the scenario must start a case first")
        try:
            if action is not None:
                self.act(action, spec)
        except GuichetError as error:
            self.note(step, f"refused: {error.message(self.language)}")
            return self.refused(step, error, expect)
        self.note(step)
        if "refused" in expect:
            return self.fail(step, f"expected a refusal ({_describe_refusal(expect['refused'])}), "
                                   "but the step succeeded")
        return self.check(step, expect)

    def act(self, action: str, spec: Mapping[str, Any]) -> None:
        session, actor = self.session, self.current
        if action == "start":
            session.start(actor, spec.get("start") or {}, on_behalf=spec.get("on_behalf") is True,
                          organisation=spec.get("organisation"))
        elif action == "claim":
            session.claim(str(spec["claim"]), actor)
        elif action == "purge":
            session.purge()
        elif action == "members":
            session.members([str(m) for m in spec["members"] or []], actor)
        elif action == "fire":
            session.fire(str(spec["fire"]), actor, spec.get("data"))
        elif action == "attach":
            file = spec.get("file") or {}
            session.attach(str(spec["attach"]), actor, file.get("type"),
                           _size(file.get("size", "1 KB")), int(file.get("count", 1)),
                           spec.get("replace") is True)
        elif action == "remove":
            session.remove(str(spec["remove"]), actor)
        elif action == "pay":
            method = spec.get("method")
            session.pay(spec["pay"], actor, str(spec.get("provider", "tmoney")),
                        spec.get("provider_reference"), None if method is None else str(method))
        elif action == "read":
            self.seen = session.read(str(spec["read"]), actor)
        elif action == "edit":
            session.edit(dict(spec["edit"] or {}), actor)
        elif action == "follow_up":
            session.follow_up(str(spec["follow_up"]), actor, spec.get("data"))
        else:
            session.wait(str(spec["wait"]))

    def note(self, step: Step, outcome: str | None = None) -> None:
        if self.trace is None:
            return
        line = f"{step.index + 1:>3}. {step.describe()}"
        if self.reference is not None:
            case = self.session.case()
            line += (f"  ->  {case.state}  (fees {case.fees_paid}/{case.fees_due} XOF, "
                     f"version {case.version})")
        self.trace.append(line)
        if outcome:
            self.trace.append(f"       {outcome}")
        for event in self.events:
            text = event.payload.get("text", {})
            shown = text.get(self.language) if isinstance(text, dict) else text
            self.trace.append(f"       {event.name} {event.payload.get('channel', '')}: {shown}")

    def refused(self, step: Step, error: GuichetError, expect: Mapping[str, Any]) -> bool:
        actual = f"{type(error).__name__}: {error.message('en')}"
        wanted = expect.get("refused")
        if wanted is None:
            return self.fail(step, f"unexpected refusal: {actual}")
        wanted = wanted if isinstance(wanted, dict) else {"error": wanted}
        kind = ERROR_KINDS.get(str(wanted.get("error", "")), wanted.get("error"))
        if kind and type(error).__name__ != kind:
            return self.fail(step, f"expected refusal {kind}, got {actual}")
        subjects = {r.subject for r in error.reasons} | {r.code for r in error.reasons}
        subjects |= set(getattr(error, "errors", {}))
        missing = [r for r in wanted.get("reasons", []) if r not in subjects]
        if missing:
            return self.fail(step, f"expected reasons {missing} in {actual}")
        said = [error.message("en"), error.message("fr"), *(r.detail for r in error.reasons)]
        if "contains" in wanted and not any(str(wanted["contains"]) in t for t in said):
            return self.fail(step, f'expected the message to contain "{wanted["contains"]}", '
                                   f"got {actual}")
        return self.check(step, {k: v for k, v in expect.items() if k != "refused"})

    def check(self, step: Step, expect: Mapping[str, Any]) -> bool:
        if not expect:
            return True
        if self.reference is None:
            return self.fail(step, "nothing to check: no case was started")
        case = self.seen if self.seen is not None else self.session.case()
        problems = [p for p in (self._compare(key, value, case) for key, value in expect.items())
                    if p]
        for problem in problems:
            self.fail(step, problem)
        return not problems

    def _compare(self, key: str, wanted: Any, case: Case) -> str | None:
        actual = self._actual(key, wanted, case)
        if key == "data":
            differ = {k: v for k, v in wanted.items() if case.data.get(k) != v}
            if differ:
                return "\n".join(f"data.{k}: expected {v!r}, actual {case.data.get(k)!r}"
                                 for k, v in differ.items())
            return None
        if key in ("notifications", "issued"):
            kind = "notification" if key == "notifications" else "document_issued"
            return _missing_events(key, wanted, [e for e in self.events if e.name == kind])
        if key in ("documents_missing", "available"):
            actual, wanted = sorted(actual), sorted(wanted)
        if actual != wanted:
            return f"{key}: expected {wanted!r}, actual {actual!r}"
        return None

    def _actual(self, key: str, wanted: Any, case: Case) -> Any:
        assert self.reference is not None
        if key == "history_length":
            return len(self.engine.history(self.reference, SYSTEM))
        if key == "documents_missing":
            return self.engine.documents_missing(self.reference)
        if key == "available":
            return [a.trigger for a in self.engine.available(self.reference, self.current)
                    if a.allowed]
        if key == "follow_ups":
            return [self.engine.case(r, SYSTEM).procedure_id
                    for r in self.engine.case(self.reference, SYSTEM).follow_ups]
        return getattr(case, key, None)


def _describe_refusal(wanted: Any) -> str:
    return str(wanted.get("error", wanted)) if isinstance(wanted, dict) else str(wanted)


def _missing_events(key: str, wanted: list[Mapping[str, Any]], events: list[Event]
                    ) -> str | None:
    problems = []
    for expected in wanted:
        if not any(_matches(expected, e) for e in events):
            sent = [f"{e.payload.get('id') or e.payload.get('channel')}→"
                    f"{e.payload.get('to', '')}: {e.payload.get('text', {}).get('fr', '')!r}"
                    for e in events] or ["none"]
            problems.append(f"{key}: expected {dict(expected)!r}, sent {sent}")
    return "\n".join(problems) or None


def _matches(expected: Mapping[str, Any], event: Event) -> bool:
    payload = event.payload
    texts = " ".join(payload.get("text", {}).values())
    contact = payload.get("contact") or {}
    return all(expected.get(key, payload.get(key)) == payload.get(key)
               for key in ("channel", "to", "id")) and all(
        expected[kind] == contact.get(kind) for kind in ("phone", "email") if kind in expected
    ) and str(expected.get("contains", "")) in texts


def _size(value: Any) -> int:
    if isinstance(value, int):
        return value
    number, _, unit = str(value).partition(" ")
    return int(number) * {"KB": 1024, "MB": 1024 * 1024}.get(unit, 1)


# --- coverage -----------------------------------------------------------------------------------

@dataclass
class Coverage:
    """Which states and transitions of a procedure the scenarios exercised."""

    procedure: Procedure
    states: set[str] = field(default_factory=set)
    transitions: set[int] = field(default_factory=set)  # indexes into procedure.transitions

    def __post_init__(self) -> None:
        self.states.add(self.procedure.initial_state.id)

    def add(self, fired: Iterable[tuple[str, str | None, str]]) -> None:
        for trigger, source_state, target in fired:
            self.states.add(target)
            for index, t in enumerate(self.procedure.transitions):
                if t.trigger == trigger and source_state in t.sources and t.target == target:
                    self.transitions.add(index)

    def missed_states(self) -> list[str]:
        return [s for s in self.procedure.states if s not in self.states]

    def missed_transitions(self) -> list[str]:
        return [f"{t.trigger} ({', '.join(t.sources)} -> {t.target})"
                for i, t in enumerate(self.procedure.transitions) if i not in self.transitions]

    def percent(self) -> tuple[float, float]:
        states = 100 * len(self.states) / max(1, len(self.procedure.states))
        transitions = 100 * len(self.transitions) / max(1, len(self.procedure.transitions))
        return states, transitions


# --- a whole run: `guichet test` -----------------------------------------------------------------

@dataclass
class Suite:
    """Everything `guichet test` found: file problems, scenario results, coverage."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    coverage: dict[str, Coverage] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        """Failed scenarios, plus each file (procedure or scenario) refused with errors."""
        refused = {d.location.path for d in self.diagnostics if d.severity == "error"}
        return len(self.results) - self.passed + len(refused)

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


def run_suite(paths: Iterable[str | Path], extra_procedures: Iterable[str | Path] = (),
              closures: frozenset[dt.date] = frozenset()) -> Suite:
    """Validate the procedures under `paths` and play every scenario found there.

    A directory contributes its procedure files and the scenarios under its `tests/`
    folder; a file is a procedure, or a scenario when it has `steps`. Scenarios may also name
    procedures from `extra_procedures` (files or directories). `closures`: the
    deployment's closure days, as `--closures` gives them.
    """
    from ..compiler import compile_source, procedure_files

    suite = Suite()
    procedure_paths: list[Path] = []
    scenario_paths: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            for found in procedure_files([path]):
                (scenario_paths if _is_scenario(found) else procedure_paths).append(found)
            tests = path / "tests"
            if tests.is_dir():
                scenario_paths.extend(scenario_files([tests]))
        elif _is_scenario(path):
            scenario_paths.append(path)
        else:
            procedure_paths.append(path)
    known = set(procedure_paths)
    procedure_paths += [p for p in procedure_files(extra_procedures) if p not in known]
    procedures: dict[str, Procedure] = {}
    for path in procedure_paths:
        raw, unread = source.read(path)
        if raw is None:
            suite.diagnostics.extend(unread)
            continue
        procedure, diagnostics = compile_source(raw, str(path))
        suite.diagnostics.extend(d for d in diagnostics if d.severity == "error")
        if procedure is not None:
            procedures[procedure.id] = procedure
            suite.coverage[procedure.id] = Coverage(procedure)
    runner = Runner(procedures.values(), closures)
    for path in scenario_paths:
        scenario, diagnostics = load_scenario(path, procedures)
        suite.diagnostics.extend(diagnostics)
        if scenario is None:
            continue
        result = runner.run(scenario)
        suite.results.append(result)
        suite.coverage[scenario.procedure_id].add(result.fired)
        for procedure_id, fired in result.followed.items():
            suite.coverage[procedure_id].add(fired)
    return suite


def _is_scenario(path: Path) -> bool:
    raw, _ = source.read(path)
    document, _ = source.load(raw, str(path)) if raw is not None else (None, [])
    return document is not None and "steps" in document.data
