"""Speed of the load simulation: a year of criminal record requests against a bare heapq floor.

    python bench/bench_loadsim.py [--days N] [--arrivals N] [--seed N] [--quick] [--json]
                                  [--profile]

Simulates `--days` (365) days of procedures/criminal_record.yaml at `--arrivals` (640) new
requests a day, about 233,600 cases, with the figures of FIGURES below (the `simulation:`
section proposed for the procedure, passed as overrides). Prints the wall time, the cases and
events simulated per second, and the simulation's own summary.

The floor, in the same run, is a bare heapq event loop doing nothing but scheduling and popping
the same number of events, shaped like the simulator's (time, seq, kind, case, token, arg)
with an exponential delay drawn per event, on a heap holding as many pending events as the
simulation had cases in progress on average. simulation/floor is the price of the model
(routing, queues, working hours, measures) per event and does not depend on the machine much;
on a busy machine, the CPU-time ratio is the steadier one.
Target: the full year in under a minute on one core.
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import itertools
import json
import os
import platform
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from engine import load_procedure  # noqa: E402
from engine.analysis.loadsim import LoadParameters, LoadReport, simulate_load  # noqa: E402

CRIMINAL_RECORD = ROOT / "procedures" / "criminal_record.yaml"
TARGET_SECONDS = 60.0

# The simulation section proposed for criminal_record.yaml (see the report): assumptions.
FIGURES: dict[str, Any] = {
    "arrivals_per_day": 640,
    "staff": {"clerk": 64, "magistrate": 6},
    "handling": {
        "start_verification": "2 minutes", "verify": "10 minutes",
        "request_information": "5 minutes", "reject": "10 minutes", "sign": "2 minutes",
        "make_available": "2 minutes", "dispatch": "5 minutes", "hand_over": "5 minutes",
    },
    "delays": {"draft": "2 hours", "info_requested": "3 days", "ready_for_collection": "5 days"},
    "weights": {"request_information": 0.08, "reject": 0.01, "withdraw": 0.005,
                "make_available": 0.85, "dispatch": 0.15},
}


def floor(events: int, pending: int, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds to pop and push `events` events on a heap of `pending` events."""
    rng = random.Random(seed)
    seq = itertools.count()
    rate = 1 / 3600.0
    heap = [(rng.expovariate(rate), next(seq), 1, i, 0, 0) for i in range(max(1, pending))]
    heapq.heapify(heap)
    pop, push, expovariate = heapq.heappop, heapq.heappush, rng.expovariate
    start_cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(events):
        t, _, kind, case, token, arg = pop(heap)
        push(heap, (t + expovariate(rate), next(seq), kind, case, token, arg))
    return time.perf_counter() - start, time.process_time() - start_cpu


def run(days: int, arrivals: float, seed: int,
        profile: cProfile.Profile | None) -> tuple[LoadReport, float, float]:
    procedure = load_procedure(CRIMINAL_RECORD)
    params = LoadParameters.from_procedure(
        procedure, **{**FIGURES, "arrivals_per_day": arrivals}, days=days, seed=seed)
    calls = 0

    def progress(_: float) -> None:
        nonlocal calls
        calls += 1

    start_cpu = time.process_time()
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    report = simulate_load(procedure, params, progress)
    if profile is not None:
        profile.disable()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    assert 0 < calls <= 101, calls
    return report, elapsed, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--days", type=int, default=None, help="days to simulate (365)")
    parser.add_argument("--arrivals", type=float, default=640.0, help="new cases a day (640)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="30 days")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--profile", action="store_true",
                        help="run under cProfile and print the top 25 functions")
    args = parser.parse_args(argv)
    days = args.days if args.days is not None else 30 if args.quick else 365
    profile = cProfile.Profile() if args.profile else None

    report, elapsed, cpu = run(days, args.arrivals, args.seed, profile)
    pending = round(sum(sum(c.values()) for _, c in report.backlog) / len(report.backlog))
    floor_elapsed, floor_cpu = floor(report.events, pending, args.seed)
    result = {
        "days": days, "arrivals_per_day": args.arrivals, "seed": args.seed,
        "cases": report.arrived, "events": report.events, "seconds": elapsed,
        "cpu_seconds": cpu, "cases_per_s": report.arrived / elapsed,
        "events_per_s": report.events / elapsed, "floor_seconds": floor_elapsed,
        "floor_cpu_seconds": floor_cpu, "floor_pending_events": pending,
        "ratio": elapsed / floor_elapsed, "cpu_ratio": cpu / floor_cpu,
        "under_target": elapsed < TARGET_SECONDS * days / 365,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "summary": report.summary_lines(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"Load simulation of criminal_record: {days} days at {args.arrivals:g} a day, "
              f"python {result['python']}")
        print(f"simulation {elapsed:8.2f} s ({cpu:.2f} s CPU)  {report.arrived:,} cases "
              f"({result['cases_per_s']:,.0f}/s), {report.events:,} events "
              f"({result['events_per_s']:,.0f}/s)")
        print(f"floor      {floor_elapsed:8.2f} s ({floor_cpu:.2f} s CPU)  bare heapq pop+push of "
              f"the same events on {pending:,} pending")
        verdict = "met" if result["under_target"] else "MISSED"
        print(f"simulation/floor ratio: {result['ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x "
              f"CPU; target {TARGET_SECONDS * days / 365:.0f} s: {verdict}")
        print()
        print("\n".join(report.summary_lines()))
    if profile is not None:
        print("\n--- cProfile of the simulation, top 25 by own time ---", file=sys.stderr)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
