"""Differential test: what `guichet explore` reports, replayed on the real Engine (issue 8).

Exploration decides through `Workflow`; this test checks that the Engine, with everything
around the decisions (storage, timers and `tick`, hidden fields, attachments, payments), does
what exploration says. For the shipped procedures, the exploration fixtures and the two
reproductions of issue 8 (tests/fixtures/explore/hidden_by_input.yaml, deadline_order.yaml),
each explored with `trace=True`, cases are played on Engines on SQLite files in a temporary
directory, with a fake clock starting on the exploration day at 09:00:

- every node exploration reached is built on an Engine: each expanded node by its first run,
  the case after each step of that run compared with exploration's node (state, data,
  documents attached, fees paid), and every other node by the step that first reached it;
- at every expanded node, every step exploration found impossible (refused, blocked, invalid
  data) must be refused by the Engine with the same kind of error, leaving the case as it
  was, and the first step that fires there must fire, to the node exploration says;
- every wait for a state's deadlines is played `tick` by `tick`: the deadlines exploration
  says are refused must be refused, in that order, and the one it says fires must fire
  (when none fires, none may);
- beyond that, a seeded sample of EXTRA_EDGES other steps that fire, per procedure (all of
  them for the small ones; passport and the clean fixture try thousands of data variants).

Any disagreement fails, naming the procedure, the node, the steps and both answers. The
findings' scenarios (`Finding.scenario_text`) are also played by `guichet test`'s runner.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine import (
    Actor,
    Blocked,
    Case,
    Engine,
    GuichetError,
    InvalidData,
    NotAllowed,
    Procedure,
    load_procedure,
)
from engine.analysis.explore import Attempt, ExploreReport, Trace, explore
from engine.analysis.scenarios import Runner, load_scenario
from engine.blobs import MemoryBlobStore
from engine.clock import FakeClock
from engine.model import Duration
from engine.values import SYSTEM

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "explore"
FILES = [*sorted((ROOT / "procedures").glob("*.yaml")), *sorted(FIXTURES.glob("*.yaml"))]
SEED = 8
EXTRA_EDGES = 60  # per procedure: more steps that fire (a seeded sample)
BATCH = 100  # cases waiting together on one Engine (a tick handles at most 500 timers)
OUTCOMES: Mapping[type[GuichetError], str] = {
    NotAllowed: "refused", Blocked: "blocked", InvalidData: "invalid"}
SAMPLE_FILES = {"application/pdf": b"%PDF-1.4\n", "image/jpeg": b"\xff\xd8\xff\xe0",
                "image/png": b"\x89PNG\r\n\x1a\n"}

Step = Mapping[str, Any]


@functools.cache
def explored(path: Path) -> tuple[Procedure, ExploreReport]:
    procedure = load_procedure(path)
    return procedure, explore(procedure, trace=True)


def trace_of(report: ExploreReport) -> Trace:
    assert report.trace is not None
    return report.trace


# --- what is replayed ---------------------------------------------------------------------------

@dataclass
class Unit:
    """One case: rebuilt up to `node`, then the attempts, in order (all but the last leave
    the case as it was: refusals without attachments or payments before them)."""

    node: int
    attempts: list[Attempt]

    def waits(self) -> tuple[str, ...]:
        return tuple(str(s["wait"]) for a in self.attempts for s in a.steps if "wait" in s)


def _quiet(attempt: Attempt) -> bool:
    return attempt.outcome != "fired" and len(attempt.steps) == 1 and "fire" in attempt.steps[0]


def plan(report: ExploreReport) -> tuple[list[Unit], int, int]:
    """The units that check every node (each expanded one with every step found impossible
    there and one that fires; every other one by the step that first reached it), every
    deadline, and a seeded sample of EXTRA_EDGES other steps that fire; with the number of
    steps that fire, and how many of them are replayed."""
    trace = trace_of(report)
    at: dict[int, list[Attempt]] = defaultdict(list)
    into: dict[int, Attempt] = {}  # node -> the step that first reached it
    for attempt in trace.attempts:
        at[attempt.node].append(attempt)
        if attempt.target is not None:
            into.setdefault(attempt.target, attempt)
    units: list[Unit] = []
    spare: list[Unit] = []
    for node in trace.expanded:
        attempts = at[node]
        quiet = [a for a in attempts if _quiet(a)]
        fired = [a for a in attempts if a.outcome == "fired" and "fire" in a.steps[-1]]
        others = [a for a in attempts if not _quiet(a) and not (
            a.outcome == "fired" and "fire" in a.steps[-1])]
        units.append(Unit(node, [*quiet, *fired[:1]]))
        units += [Unit(node, [a]) for a in others]
        spare += [Unit(node, [a]) for a in fired[1:]]
    covered = {n for u in units for n, _ in trace.path(u.node)}
    covered |= {a.target for u in units for a in u.attempts if a.target is not None}
    for node, attempt in sorted(into.items()):
        if node not in covered:
            units.append(Unit(attempt.node, [attempt]))
    chosen = {id(a) for u in units for a in u.attempts}
    spare = [u for u in spare if id(u.attempts[0]) not in chosen]
    if len(spare) > EXTRA_EDGES:
        spare = random.Random(SEED).sample(spare, EXTRA_EDGES)
    fires = sum(a.outcome == "fired" for a in trace.attempts)
    replayed = sum(a.outcome == "fired" for u in [*units, *spare] for a in u.attempts)
    return [*units, *spare], fires, replayed


# --- playing on the Engine ----------------------------------------------------------------------

def actor(text: str) -> Actor:
    role, _, actor_id = text.partition(":")
    return Actor(actor_id, [role])


@dataclass
class Table:
    """Engines on SQLite files in one directory, each with its own fake clock."""

    procedure: Procedure
    directory: Path
    start: dt.datetime
    engines: list[Engine] = field(default_factory=list)

    def engine(self) -> tuple[Engine, FakeClock]:
        clock = FakeClock(self.start)
        url = f"sqlite:///{self.directory / str(len(self.engines))}.db"
        # the files' bytes are not what is compared: kept in memory, the database on disk
        engine = Engine([self.procedure], url, clock=clock, blobs=MemoryBlobStore())
        self.engines.append(engine)
        return engine, clock

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


@dataclass
class Replayed:
    """A case being replayed on an Engine."""

    engine: Engine
    clock: FakeClock
    procedure_id: str
    reference: str = ""
    payments: int = 0

    def step(self, step: Step) -> list[tuple[str, str]]:
        """Play one scenario step (a refusal raises); a wait returns this case's tick results
        [(trigger, result)]."""
        who = actor(str(step["as"])) if "as" in step else None
        if "wait" in step:
            self.clock.advance(Duration.parse(str(step["wait"])).approximate())
            return [(trigger, result) for reference, trigger, result in self.engine.tick()
                    if reference == self.reference]
        assert who is not None
        if "start" in step:
            self.reference = self.engine.start(self.procedure_id, who,
                                               dict(step["start"])).reference
        elif "fire" in step:
            self.engine.fire(self.reference, str(step["fire"]), who, dict(step.get("data", {})))
        elif "attach" in step:
            document = self.engine.procedures[self.procedure_id].document(str(step["attach"]))
            assert document is not None
            head = SAMPLE_FILES.get(document.media_types[0], b"")
            for n in range(int(step.get("file", {}).get("count", 1))):
                body = head + f"{document.id}-{n}-{self.reference}".encode() * 8
                self.engine.attach(self.reference, document.id, f"{document.id}-{n}", body, who)
        elif "pay" in step:
            self.payments += 1
            self.engine.pay(self.reference, int(step["pay"]), "tmoney",
                            f"{self.reference}-{self.payments}", who, method=step.get("method"))
        else:  # pragma: no cover - exploration writes no other step
            raise AssertionError(f"unknown step {step}")
        return []

    def case(self) -> Case:
        return self.engine.case(self.reference, SYSTEM)


def seen(case: Case) -> dict[str, Any]:
    documents: dict[str, int] = defaultdict(int)
    for d in case.documents:
        documents[d.document_id] += 1
    return {"state": case.state, "data": dict(case.data), "documents": dict(documents),
            "fees_paid": case.fees_paid}


@dataclass
class Check:
    """Replays units and collects every disagreement."""

    procedure: Procedure
    trace: Trace
    problems: list[str] = field(default_factory=list)

    def fail(self, node: int, what: str, steps: Sequence[Step], expected: Any, actual: Any
             ) -> None:
        self.problems.append(f"{self.procedure.id}, node {node}, {what} {list(steps)}: "
                             f"exploration says {expected!r}, the engine {actual!r}")

    def same_case(self, case: Replayed, node: int, at: int, steps: Sequence[Step]) -> bool:
        expected, actual = self.trace.case_at(node), seen(case.case())
        if expected != actual:
            self.fail(at, f"case after the steps to node {node}:", steps, expected, actual)
            return False
        return True

    def rebuild(self, case: Replayed, unit: Unit) -> bool:
        """Take a new case to `unit.node` along its first run, checking every node on it."""
        for node, steps in self.trace.path(unit.node):
            for step in steps:
                try:
                    case.step(step)
                except GuichetError as exc:
                    self.fail(node, "reaching it:", steps, "fired", repr(exc))
                    return False
            if not self.same_case(case, node, node, steps):
                return False
        return True

    def before_waits(self, case: Replayed, unit: Unit) -> list[Step]:
        """Play the unit's attempts in order, but the waits of the last one: returned, to be
        played afterwards (alone, or together with other cases)."""
        waits: list[Step] = []
        for attempt in unit.attempts:
            waits = self.attempt(case, unit.node, attempt)
        return waits

    def attempt(self, case: Replayed, node: int, attempt: Attempt) -> list[Step]:
        """Play an attempt (attach and pay, then fire) and compare the engine's answer with
        exploration's; for deadlines, play what comes before the waits and return those."""
        waits: list[Step] = [step for step in attempt.steps if "wait" in step]
        before = case.case()
        outcome = "fired"
        for step in attempt.steps:
            if "wait" in step:
                continue
            try:
                case.step(step)
            except GuichetError as exc:
                if "fire" not in step:
                    self.fail(node, "attaching or paying:", attempt.steps, "done", repr(exc))
                    return []
                outcome = OUTCOMES.get(type(exc), type(exc).__name__)
        if waits:
            return waits
        if outcome != attempt.outcome:
            self.fail(node, "step", attempt.steps, attempt.outcome, outcome)
        elif outcome == "fired" and attempt.target is not None:
            self.same_case(case, attempt.target, node, attempt.steps)
        elif outcome != "fired":
            after = case.case()
            if (after.state, dict(after.data)) != (before.state, dict(before.data)):
                self.fail(node, "refused step changed the case:", attempt.steps,
                          (before.state, dict(before.data)), (after.state, dict(after.data)))
        return []

    def ticks(self, node: int, attempt: Attempt, results: list[tuple[str, str]],
              case: Replayed) -> None:
        """Compare the deadlines `tick` fired or refused with what exploration says."""
        answers: list[tuple[str, str]] = []
        for trigger, result in results:
            if result == "fired" or result.startswith("refused"):
                answers.append((trigger, "fired" if result == "fired" else "refused"))
                if result == "fired":
                    break
        if answers != list(attempt.deadlines):
            self.fail(node, "deadlines", attempt.steps, list(attempt.deadlines), answers)
        elif attempt.outcome == "fired" and attempt.target is not None:
            self.same_case(case, attempt.target, node, attempt.steps)


def replay(procedure: Procedure, report: ExploreReport, directory: Path) -> list[str]:
    """Replay the plan of one exploration; every disagreement found."""
    trace = trace_of(report)
    units, _, _ = plan(report)
    check = Check(procedure, trace)
    table = Table(procedure, directory, trace.clock)
    try:
        shared = table.engine()
        waiting: dict[tuple[str, ...], list[Unit]] = defaultdict(list)
        for unit in units:
            path_waits = any("wait" in s for _, steps in trace.path(unit.node) for s in steps)
            if path_waits:
                _play_alone(check, table, unit)
            elif unit.waits():
                waiting[unit.waits()].append(unit)
            else:
                case = Replayed(*shared, procedure.id)
                if check.rebuild(case, unit):
                    check.before_waits(case, unit)
        for units_waiting in waiting.values():
            for batch in _batches(units_waiting, BATCH):
                _play_together(check, table, batch)
    finally:
        table.close()
    return check.problems


def _batches(units: list[Unit], size: int) -> Iterator[list[Unit]]:
    for i in range(0, len(units), size):
        yield units[i:i + size]


def _play_alone(check: Check, table: Table, unit: Unit) -> None:
    case = Replayed(*table.engine(), check.procedure.id)
    if not check.rebuild(case, unit):
        return
    waits = check.before_waits(case, unit)
    results = [r for step in waits for r in case.step(step)]
    if waits:
        check.ticks(unit.node, unit.attempts[-1], results, case)


def _play_together(check: Check, table: Table, batch: list[Unit]) -> None:
    """Cases whose last step waits the same time, on one Engine: built first, then the
    clock moves and `tick` runs once per wait for them all."""
    engine, clock = table.engine()
    ready: list[tuple[Unit, Replayed]] = []
    for unit in batch:
        case = Replayed(engine, clock, check.procedure.id)
        if check.rebuild(case, unit):
            check.before_waits(case, unit)
            ready.append((unit, case))
    results: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for wait in batch[0].waits():
        clock.advance(Duration.parse(wait).approximate())
        for reference, trigger, result in engine.tick():
            results[reference].append((trigger, result))
    for unit, case in ready:
        check.ticks(unit.node, unit.attempts[-1], results[case.reference], case)


# --- the tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_engine_does_what_exploration_reports(path: Path, tmp_path: Path) -> None:
    procedure, report = explored(path)
    assert report.bounds_hit == []
    problems = replay(procedure, report, tmp_path)
    assert problems == [], "\n".join(problems[:20])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_saved_counterexample_passes_under_guichet_test(path: Path,
                                                              tmp_path: Path) -> None:
    procedure, report = explored(path)
    for finding in report.findings:
        if finding.counterexample is None:
            continue
        file = tmp_path / f"{finding.slug}.yaml"
        file.write_text(finding.scenario_text(procedure.id), encoding="utf-8")
        scenario, diagnostics = load_scenario(file, {procedure.id: procedure})
        assert [str(d) for d in diagnostics] == []
        assert scenario is not None
        assert Runner([procedure]).run(scenario).failures == [], finding.message


def test_the_plan_covers_every_node_every_refusal_and_every_deadline() -> None:
    for path in FILES:
        _, report = explored(path)
        trace = trace_of(report)
        units, fires, replayed = plan(report)
        covered = {n for u in units for n, _ in trace.path(u.node)}
        covered |= {a.target for u in units for a in u.attempts if a.target is not None}
        assert covered == set(range(report.nodes))
        assert set(trace.expanded) <= {u.node for u in units}
        checked = {id(a) for u in units for a in u.attempts}
        assert all(id(a) in checked for a in trace.attempts if a.outcome != "fired")
        assert all(id(a) in checked for a in trace.attempts if a.deadlines)
        assert 0 < replayed <= fires


# --- the two reproductions of issue 8 ------------------------------------------------------------

def test_a_field_hidden_by_a_step_input_is_kept_and_the_guard_on_it_fires() -> None:
    procedure, report = explored(FIXTURES / "hidden_by_input.yaml")
    assert report.findings == []
    trace = trace_of(report)
    finished = [a for a in trace.attempts if a.trigger == "finish" and a.outcome == "fired"
                and trace.case_at(a.node)["data"].get("verdict") == "no"]
    assert finished  # the engine keeps `extra` after `decide` with verdict "no"
    assert trace.case_at(finished[0].node)["data"]["extra"]


def test_the_six_day_deadline_falls_before_five_business_days() -> None:
    procedure, report = explored(FIXTURES / "deadline_order.yaml")
    assert report.findings == []
    assert report.states_reached == report.states
    trace = trace_of(report)
    fired = {(a.trigger, a.deadlines) for a in trace.attempts if a.deadlines}
    assert fired == {("lapse", (("lapse", "fired"),)),
                     ("escalate", (("lapse", "refused"), ("escalate", "fired")))}
    waits = {tuple(s["wait"] for s in a.steps if "wait" in s) for a in trace.attempts
             if a.deadlines}
    assert waits == {("6 days",), ("6 days", "1 day")}  # a Monday: 5 business days are 7 days
