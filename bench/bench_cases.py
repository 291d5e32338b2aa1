"""Throughput of whole passport cases: the Guichet engine against a plain-sqlite3 floor.

    python bench/bench_cases.py [--cases N] [--quick] [--synchronous FULL|NORMAL] [--json]
                                [--hooks] [--profile]

Each case runs the passport happy path through the public `engine` API, one transaction per
step (16 steps): start, 7 attach (5 documents + 2 photos), pay, then submit, start_review,
schedule_enrolment, record_enrolment, approve, mark_ready, hand_over.

The floor runs the same 16 steps per case with bare `sqlite3` statements and the same pragmas
(WAL, the chosen synchronous level, busy_timeout, foreign_keys): BEGIN IMMEDIATE, then
INSERT case + INSERT history for the first step, UPDATE case (state, version; version checked)
+ INSERT history for every other one, then COMMIT. That is the least any durable engine with
an audit trail must do, so engine/floor is the price of everything else (validation, rules,
outbox, timers, SQLAlchemy, re-reading the case).

Each system gets a fresh database file in its own temporary directory. The floor runs first,
then the engine. Per-step latency is time.perf_counter() around each call. RSS (from
/proc/self/statm) is sampled before and after 25/50/75/100 % of the cases: it should stay flat.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from engine import Actor, Engine  # noqa: E402

PASSPORT = ROOT / "procedures" / "passport.yaml"
PAGE = os.sysconf("SC_PAGE_SIZE")
BUSY_TIMEOUT_MS = 10_000

PDF = b"%PDF-1.4 benchmark document"
JPEG = b"\xff\xd8\xff\xe0 benchmark photo"
DOCUMENTS = ("nationality_certificate", "birth_certificate", "id_card_copy",
             "emergency_contact_certificate", "proof_of_profession")
DATA = {
    "passport_type": "ordinary", "request_type": "first", "surname": "Amegah",
    "first_names": "Kossi", "sex": "male", "birth_date": "1990-05-01", "birth_place": "Lomé",
    "nin": "1234567890", "marital_status": "single", "profession": "teacher",
    "address": "Rue 1, Lomé", "phone": "90 12 34 56", "emergency_contact_name": "Ama",
    "emergency_contact_phone": "91234567",
}
AGENT = Actor("agent-1", ["agent"])
SUPERVISOR = Actor("sup-1", ["supervisor"])
FEE = 30_000

# (step name, state before, state after) of the 16 steps; the floor writes exactly these
STEPS: list[tuple[str, str | None, str]] = [
    ("@start", None, "draft"),
    *[("@attach", "draft", "draft")] * (len(DOCUMENTS) + 2),
    ("@pay", "draft", "draft"),
    ("submit", "draft", "submitted"),
    ("start_review", "submitted", "under_review"),
    ("schedule_enrolment", "under_review", "enrolment_scheduled"),
    ("record_enrolment", "enrolment_scheduled", "enrolled"),
    ("approve", "enrolled", "in_production"),
    ("mark_ready", "in_production", "ready_for_collection"),
    ("hand_over", "ready_for_collection", "issued"),
]
STEPS_PER_CASE = len(STEPS)
# labels for the per-step table (the two photos get their own rows)
LABELS = ["start", *[f"attach {d}" for d in DOCUMENTS], "attach photo 1", "attach photo 2",
          "pay", *[s[0] for s in STEPS[9:]]]


def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_rss() -> int:
    """High-water mark of the resident set (VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Recorder:
    """Per-step latencies in a preallocated array, wall and CPU time, RSS at 25/50/75/100 %."""

    def __init__(self, cases: int) -> None:
        self.cases = cases
        self.latencies = array("d", bytes(8 * cases * STEPS_PER_CASE))
        self.index = 0
        self.done = 0
        self.elapsed = 0.0  # wall seconds, summed over this system's blocks
        self.cpu = 0.0  # process CPU seconds (user + sys), summed over this system's blocks
        self.marks = {max(1, cases * q // 4): f"{25 * q}%" for q in (1, 2, 3, 4)}
        self.rss: list[tuple[str, int]] = []

    def step(self, call: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        result = call(*args)
        self.latencies[self.index] = time.perf_counter() - t0
        self.index += 1
        return result

    def block(self, run_case: Callable[[int], None], count: int) -> None:
        """Run the next `count` cases, adding their wall and CPU time."""
        if not self.rss:
            self.rss.append(("start", rss()))
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            self.done += 1
            run_case(self.done)
            if self.done in self.marks:  # sampling RSS takes microseconds: left in the timing
                self.rss.append((self.marks[self.done], rss()))
        self.elapsed += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu

    def finish(self) -> None:
        assert self.index == len(self.latencies), (self.index, len(self.latencies))


# --- the floor: plain sqlite3 -------------------------------------------------------------------

FLOOR_SCHEMA = """
CREATE TABLE cases (
    id INTEGER PRIMARY KEY, reference TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
    version INTEGER NOT NULL);
CREATE TABLE history (
    id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL REFERENCES cases(id),
    sequence INTEGER NOT NULL, trigger TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
    actor_id TEXT NOT NULL, at TEXT NOT NULL, UNIQUE (case_id, sequence));
"""
INSERT_HISTORY = ("INSERT INTO history (case_id, sequence, trigger, from_state, to_state,"
                  " actor_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)")


class Floor:
    """The same 16 steps per case with bare sqlite3: 2 statements per transaction."""

    def __init__(self, path: Path, synchronous: str, rec: Recorder) -> None:
        self.rec = rec
        self.db = db = sqlite3.connect(path, isolation_level=None,
                                       timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(FLOOR_SCHEMA)

    def start(self, reference: str, actor: str) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        case_id = db.execute("INSERT INTO cases (reference, state, version) VALUES (?, ?, 1)",
                             (reference, "draft")).lastrowid
        db.execute(INSERT_HISTORY, (case_id, 1, "@start", None, "draft", actor,
                                    dt.datetime.now(dt.UTC).isoformat()))
        db.execute("COMMIT")
        return int(case_id or 0)

    def change(self, case_id: int, version: int, trigger: str, source: str, target: str,
               actor: str) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        updated = db.execute("UPDATE cases SET state = ?, version = ? WHERE id = ? AND version = ?",
                             (target, version + 1, case_id, version)).rowcount
        if updated != 1:
            db.execute("ROLLBACK")
            raise RuntimeError("version conflict")
        db.execute(INSERT_HISTORY, (case_id, version + 1, trigger, source, target, actor,
                                    dt.datetime.now(dt.UTC).isoformat()))
        db.execute("COMMIT")

    def case(self, i: int) -> None:
        step = self.rec.step
        applicant = f"citizen-{i}"
        case_id = step(self.start, f"PAS-2026-{i:06d}", applicant)
        for version, (trigger, source, target) in enumerate(STEPS[1:], start=1):
            actor = applicant if trigger.startswith("@") or trigger == "submit" else "agent-1"
            step(self.change, case_id, version, trigger, source, target, actor)

    def close(self) -> None:
        (count,) = self.db.execute("SELECT count(*) FROM history").fetchone()
        assert count == self.rec.cases * STEPS_PER_CASE, count
        self.db.close()


# --- the engine ---------------------------------------------------------------------------------

def happy_path(engine: Engine, name: str, step: Callable[..., Any]) -> None:
    """One passport case of citizen `name` through its 16 steps, each run as `step(call,
    *args)` (which times it); raises AssertionError unless it ends issued at version 16."""
    appointment = {"appointment_date": (dt.date.today() + dt.timedelta(days=30)).isoformat()}
    enrolment = {"originals_checked": True, "photo_captured": True,
                 "fingerprints_captured": True, "signature_captured": True}
    me = Actor(f"citizen-{name}", ["applicant"])
    ref = step(engine.start, "passport", me, DATA).reference
    for document in DOCUMENTS:
        step(engine.attach, ref, document, document + ".pdf", PDF, me)
    for n, photo in enumerate((JPEG, JPEG + b"2")):
        step(engine.attach, ref, "photos", f"photo{n}.jpg", photo, me)
    step(engine.pay, ref, FEE, "tmoney", f"TM-{name}", me)
    step(engine.fire, ref, "submit", me)
    step(engine.fire, ref, "start_review", AGENT)
    step(engine.fire, ref, "schedule_enrolment", AGENT, appointment)
    step(engine.fire, ref, "record_enrolment", AGENT, enrolment)
    step(engine.fire, ref, "approve", SUPERVISOR)
    step(engine.fire, ref, "mark_ready", AGENT)
    case = step(engine.fire, ref, "hand_over", AGENT,
                {"passport_number": "TG1234567", "holder_verified": True})
    if case.state != "issued" or case.version != STEPS_PER_CASE:
        raise AssertionError(f"{ref} ended in {case.state} v{case.version}")


class Guichet:
    """The passport happy path through the public engine API."""

    def __init__(self, path: Path, synchronous: str, hooks: bool, rec: Recorder) -> None:
        self.rec = rec
        self.engine = engine = Engine(PASSPORT, f"sqlite:///{path}", synchronous=synchronous)
        if hooks:
            for name in ("case_started", "transition", "document_attached", "payment_recorded"):
                engine.on(name, lambda event: None)

    def case(self, i: int) -> None:
        happy_path(self.engine, str(i), self.rec.step)

    def close(self) -> None:
        self.engine.close()


def run(cases: int, synchronous: str, hooks: bool, block: int,
        profile: cProfile.Profile | None) -> tuple[Recorder, Recorder]:
    """Floor and engine on separate fresh files; in alternating blocks of `block` cases
    (floor first), or floor then engine when `block` >= cases."""
    with (tempfile.TemporaryDirectory(prefix="guichet-bench-floor-") as floor_dir,
          tempfile.TemporaryDirectory(prefix="guichet-bench-engine-") as engine_dir):
        floor_rec, engine_rec = Recorder(cases), Recorder(cases)
        floor = Floor(Path(floor_dir) / "floor.db", synchronous, floor_rec)
        guichet = Guichet(Path(engine_dir) / "engine.db", synchronous, hooks, engine_rec)
        while engine_rec.done < cases:
            count = min(block, cases - engine_rec.done)
            floor_rec.block(floor.case, count)
            if profile is not None:
                profile.enable()
            engine_rec.block(guichet.case, count)
            if profile is not None:
                profile.disable()
        floor.close()
        guichet.close()
    floor_rec.finish()
    engine_rec.finish()
    return floor_rec, engine_rec


# --- figures ------------------------------------------------------------------------------------

def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(rec: Recorder) -> dict[str, Any]:
    lat = sorted(rec.latencies)
    per_step = []
    for k, label in enumerate(LABELS):
        column = sorted(rec.latencies[k::STEPS_PER_CASE])
        per_step.append({"step": label, "p50_ms": percentile(column, 0.5) * 1e3,
                         "mean_ms": sum(column) / len(column) * 1e3})
    base = dict(rec.rss)["25%"]
    quarter = len(rec.latencies) // 4
    by_quarter = [percentile(sorted(rec.latencies[q * quarter:(q + 1) * quarter]), 0.5) * 1e3
                  for q in range(4)]
    return {
        "cases": rec.cases, "steps": len(lat), "seconds": rec.elapsed, "cpu_seconds": rec.cpu,
        "cpu_ms_per_step": rec.cpu / len(lat) * 1e3,
        "cases_per_s": rec.cases / rec.elapsed, "steps_per_s": len(lat) / rec.elapsed,
        "p50_ms": percentile(lat, 0.5) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms": lat[-1] * 1e3, "mean_ms": sum(lat) / len(lat) * 1e3,
        "rss_mib": {label: value / 2**20 for label, value in rec.rss},
        "rss_growth_25_to_100_mib": (dict(rec.rss)["100%"] - base) / 2**20,
        "p50_by_quarter_ms": by_quarter, "per_step": per_step,
    }


def show(name: str, s: dict[str, Any]) -> None:
    print(f"{name:7} {s['seconds']:8.2f} s {s['cases_per_s']:9.1f} cases/s "
          f"{s['steps_per_s']:9.1f} steps/s   p50 {s['p50_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms"
          f"  max {s['max_ms']:8.3f} ms   CPU {s['cpu_seconds']:7.2f} s "
          f"({s['cpu_ms_per_step']:.3f} ms/step)")


def show_memory(name: str, s: dict[str, Any]) -> None:
    samples = "  ".join(f"{label} {mib:6.1f}" for label, mib in s["rss_mib"].items())
    quarters = " ".join(f"{ms:.3f}" for ms in s["p50_by_quarter_ms"])
    print(f"{name:7} RSS MiB: {samples}   growth 25%->100%: "
          f"{s['rss_growth_25_to_100_mib']:+.1f} MiB;   p50 ms by quarter of cases: {quarters}")


def report(result: dict[str, Any]) -> None:
    floor, engine = result["floor"], result["engine"]
    cases, block = result["cases"], result["block"]
    order = ("floor, then engine" if block >= cases
             else f"alternating blocks of {block} cases, floor first")
    print(f"Guichet passport happy path: {cases} cases x {STEPS_PER_CASE} steps = "
          f"{cases * STEPS_PER_CASE} transactions each, synchronous={result['synchronous']}, "
          f"hooks={'on' if result['hooks'] else 'off'}, {order}")
    print(f"python {result['python']}, sqlite {result['sqlite']}, {result['cpus']} CPU(s), "
          f"1-min load average {result['loadavg_before'][0]:.2f} before, "
          f"{result['loadavg_after'][0]:.2f} after")
    print()
    show("floor", floor)
    show("engine", engine)
    print()
    print(f"engine/floor time ratio: {result['ratio']:.2f}x   (p50 "
          f"{engine['p50_ms'] / floor['p50_ms']:.2f}x, p99 "
          f"{engine['p99_ms'] / floor['p99_ms']:.2f}x, CPU time {result['cpu_ratio']:.2f}x; "
          "target <= 3x)")
    print()
    if block < cases:
        print("(one process runs both, alternately: each line samples the process's RSS after "
              "that system's share of the cases)")
    show_memory("floor", floor)
    show_memory("engine", engine)
    print(f"peak RSS of the process (VmHWM): {result['peak_rss_mib']:.1f} MiB")
    print()
    print("per step (ms):")
    print(f"{'step':36} {'floor p50':>10} {'engine p50':>11} {'engine mean':>12}")
    for f, e in zip(floor["per_step"], engine["per_step"], strict=True):
        print(f"{e['step']:36} {f['p50_ms']:10.3f} {e['p50_ms']:11.3f} {e['mean_ms']:12.3f}")


def print_profile(profile: cProfile.Profile, steps: int, stream: Any) -> None:
    for key in ("cumulative", "tottime"):
        print(f"\n--- cProfile of the engine run ({steps} steps), top 25 by {key} ---",
              file=stream)
        pstats.Stats(profile, stream=stream).strip_dirs().sort_stats(key).print_stats(25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=None, help="cases to run (default 10000)")
    parser.add_argument("--quick", action="store_true", help="2000 cases")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                        type=str.upper)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--block", type=int, default=None,
                        help="cases per alternating block (default cases/50; "
                             "--block N>=cases runs the floor, then the engine)")
    parser.add_argument("--hooks", action="store_true",
                        help="register no-op hooks (adds the outbox 'delivered' transaction)")
    parser.add_argument("--profile", action="store_true",
                        help="run the engine under cProfile and print the top 25 functions")
    args = parser.parse_args(argv)
    cases = args.cases if args.cases is not None else 2_000 if args.quick else 10_000
    if cases < 4:
        parser.error("--cases must be at least 4")
    block = max(1, args.block if args.block is not None else cases // 50)

    load_before = os.getloadavg()
    profile = cProfile.Profile() if args.profile else None
    floor, engine = run(cases, args.synchronous, args.hooks, block, profile)
    result = {
        "cases": cases, "steps_per_case": STEPS_PER_CASE, "synchronous": args.synchronous,
        "block": min(block, cases), "hooks": args.hooks, "profiled": args.profile,
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "floor": summary(floor), "engine": summary(engine),
        "ratio": engine.elapsed / floor.elapsed, "cpu_ratio": engine.cpu / floor.cpu,
        "peak_rss_mib": peak_rss() / 2**20,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    if profile is not None:
        print_profile(profile, cases * STEPS_PER_CASE, sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
