"""Throughput on PostgreSQL: the Guichet engine against a bare-psycopg floor, 1 and N processes.

    python bench/bench_postgres.py [--url URL] [--cases N] [--quick] [--processes 1,4] [--json]

Each case is the passport happy path of bench/bench_cases.py through the public `engine` API
(16 steps, one transaction each: start, 7 attach, pay, 7 fire). The floor does the same 16
steps per case with bare psycopg (the driver the engine uses) and nothing else: INSERT case +
INSERT history for the first step, then UPDATE case (state, version; version checked) + INSERT
history for every other, each step one transaction (plain psycopg: commit() after the two
statements). engine/floor is the price of everything else.

For each process count (default 1, then 4) the floor runs first, then the engine; each system
gets fresh tables in its own schema (dropped afterwards). Every process runs `--cases` cases
(default 1000; --quick 200) after all of them are ready (engine start-up is not timed):
steps/s per process is a process's steps over its own time (median over the processes); total
steps/s is every step over the wall time from the start signal to the last finish.

Round trips are counted apart, in the same run, on a few cases (--count-cases, default 5)
through a local TCP relay between the client and PostgreSQL: one round trip each time the
server answers after the client sent something (a turn of the conversation), whatever sent it
(statements, BEGIN, COMMIT, ROLLBACK, pool pings). The relay adds latency, so the timed runs
connect directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

import engine as engine_package  # noqa: E402
from engine import Engine  # noqa: E402
from engine.blobs import DirectoryBlobStore  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))  # bench_cases, beside this script
PASSPORT = ROOT / "procedures" / "passport.yaml"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# the passport happy path of bench_cases.py: the same data, documents and 16 steps
from bench_cases import (  # noqa: E402
    DOCUMENTS,
    STEPS,
    STEPS_PER_CASE,
    happy_path,
)

#: the kind of each step, for round trips per kind (start, attach, pay, fire)
KINDS = ["start", *["attach"] * (len(DOCUMENTS) + 2), "pay", *["fire"] * 7]


# --- connections ---------------------------------------------------------------------------------

def libpq_url(url: str) -> str:
    """The psycopg (libpq) form of an SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def in_schema(url: str, schema: str) -> str:
    """`url` with every connection's search_path set to `schema` (libpq `options`)."""
    return make_url(url).update_query_dict(
        {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def via(url: str, port: int) -> str:
    """`url` pointing at the relay on 127.0.0.1:`port`."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def fresh_schema(url: str, schema: str, drop_only: bool = False) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if not drop_only:
            conn.execute(f'CREATE SCHEMA "{schema}"')


class Relay:
    """A TCP relay to PostgreSQL counting round trips: one each time the server answers
    after the client sent something (see the module docstring)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.round_trips = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        asked = False  # the client sent something the server has not answered yet
        while True:
            ready, _, _ = select.select([client, server], [], [])
            for s in ready:
                data = s.recv(1 << 16)
                if not data:
                    client.close()
                    server.close()
                    return
                if s is client:
                    asked = True
                    server.sendall(data)
                else:
                    if asked:
                        with self.lock:
                            self.round_trips += 1
                        asked = False
                    client.sendall(data)

    def close(self) -> None:
        self.listener.close()


# --- the floor: bare psycopg ---------------------------------------------------------------------

FLOOR_SCHEMA = """
CREATE TABLE cases (
    id BIGSERIAL PRIMARY KEY, reference TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
    version INTEGER NOT NULL);
CREATE TABLE history (
    id BIGSERIAL PRIMARY KEY, case_id BIGINT NOT NULL REFERENCES cases(id),
    sequence INTEGER NOT NULL, trigger TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
    actor_id TEXT NOT NULL, at TIMESTAMP NOT NULL, UNIQUE (case_id, sequence));
"""
INSERT_HISTORY = ("INSERT INTO history (case_id, sequence, trigger, from_state, to_state,"
                  " actor_id, at) VALUES (%s, %s, %s, %s, %s, %s, %s)")


def floor_setup(url: str) -> None:
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(FLOOR_SCHEMA)


class Floor:
    """The same 16 steps per case with bare psycopg: 2 statements per transaction."""

    def __init__(self, url: str, proc: int) -> None:
        self.conn = psycopg.connect(libpq_url(url))
        self.proc = proc

    def start(self, reference: str, actor: str) -> int:
        conn = self.conn
        (case_id,) = conn.execute(
            "INSERT INTO cases (reference, state, version) VALUES (%s, %s, 1) RETURNING id",
            (reference, "draft")).fetchone() or (0,)
        conn.execute(INSERT_HISTORY, (case_id, 1, "@start", None, "draft", actor, now()))
        conn.commit()
        return int(case_id)

    def change(self, case_id: int, version: int, trigger: str, source: str, target: str,
               actor: str) -> None:
        conn = self.conn
        updated = conn.execute(
            "UPDATE cases SET state = %s, version = %s WHERE id = %s AND version = %s",
            (target, version + 1, case_id, version)).rowcount
        if updated != 1:
            conn.rollback()
            raise RuntimeError("version conflict")
        conn.execute(INSERT_HISTORY, (case_id, version + 1, trigger, source, target, actor,
                                      now()))
        conn.commit()

    def case(self, i: int, step: Callable[..., Any]) -> None:
        applicant = f"citizen-{self.proc}-{i}"
        case_id = step(self.start, f"PAS-2026-{self.proc:02d}{i:06d}", applicant)
        for version, (trigger, source, target) in enumerate(STEPS[1:], start=1):
            actor = applicant if trigger.startswith("@") or trigger == "submit" else "agent-1"
            step(self.change, case_id, version, trigger, source, target, actor)

    def close(self) -> None:
        self.conn.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# --- the engine ----------------------------------------------------------------------------------

class Guichet:
    """The passport happy path through the public engine API."""

    def __init__(self, url: str, proc: int, blobs: str) -> None:
        self.engine = Engine(PASSPORT, url, blobs=DirectoryBlobStore(blobs))
        self.proc = proc

    def case(self, i: int, step: Callable[..., Any]) -> None:
        happy_path(self.engine, f"{self.proc}-{i}", step)

    def close(self) -> None:
        self.engine.close()


def make_system(system: str, url: str, proc: int, blobs: str) -> Floor | Guichet:
    return Floor(url, proc) if system == "floor" else Guichet(url, proc, blobs)


# --- timed runs ----------------------------------------------------------------------------------

def worker(system: str, url: str, proc: int, cases: int, blobs: str, ready: Any, go: Any,
           results: Any) -> None:
    """One process: set up, wait for the start signal, run `cases` cases, report."""
    runner = make_system(system, url, proc, blobs)
    latencies: list[float] = []

    def step(call: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        result = call(*args)
        latencies.append(time.perf_counter() - t0)
        return result

    ready.wait()
    go.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(1, cases + 1):
        runner.case(i, step)
    elapsed, cpu = time.perf_counter() - wall, time.process_time() - cpu
    runner.close()
    results.put({"proc": proc, "seconds": elapsed, "cpu_seconds": cpu, "end": time.time(),
                 "steps": len(latencies), "p50_ms": statistics.median(latencies) * 1e3})


def timed(system: str, url: str, processes: int, cases: int, blobs: str) -> dict[str, Any]:
    """`processes` processes of `system` on fresh tables, started together."""
    schema = f"guichet_bench_{system}_{os.getpid()}"
    fresh_schema(url, schema)
    target = in_schema(url, schema)
    try:
        if system == "floor":
            floor_setup(target)
        else:  # the schema is created once, before the processes race for it
            Guichet(target, 0, blobs).close()
        ctx = mp.get_context("spawn")  # no connection or import state shared with the parent
        ready, go, results = ctx.Barrier(processes + 1), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(system, target, n + 1, cases, blobs, ready, go,
                                                  results)) for n in range(processes)]
        for p in procs:
            p.start()
        ready.wait()
        start = time.time()
        go.set()
        reports = [results.get() for _ in procs]
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise RuntimeError(f"a {system} process failed (exit code {p.exitcode})")
    finally:
        fresh_schema(url, schema, drop_only=True)
    wall = max(r["end"] for r in reports) - start
    steps = sum(r["steps"] for r in reports)
    per_process = [r["steps"] / r["seconds"] for r in reports]
    return {
        "processes": processes, "cases_per_process": cases, "steps": steps,
        "wall_seconds": wall, "total_steps_per_s": steps / wall,
        "steps_per_s_per_process": statistics.median(per_process),
        "p50_ms": statistics.median(r["p50_ms"] for r in reports),
        "client_cpu_share": sum(r["cpu_seconds"] for r in reports)
        / sum(r["seconds"] for r in reports),
    }


# --- round trips ---------------------------------------------------------------------------------

def count_round_trips(system: str, url: str, cases: int, blobs: str) -> dict[str, float]:
    """Round trips per step (and per kind of step) of `cases` cases, through the relay."""
    schema = f"guichet_bench_rt_{system}_{os.getpid()}"
    fresh_schema(url, schema)
    parsed = make_url(url)
    relay = Relay(parsed.host or "127.0.0.1", parsed.port or 5432)
    try:
        target = in_schema(via(url, relay.port), schema)
        if system == "floor":
            floor_setup(target)
        runner = make_system(system, target, 99, blobs)
        runner.case(0, lambda call, *args: call(*args))  # warm: caches, pool, statements
        per_step: list[int] = []

        def step(call: Callable[..., Any], *args: Any) -> Any:
            before = relay.round_trips
            result = call(*args)
            time.sleep(0.002)  # let the relay count the last answer
            per_step.append(relay.round_trips - before)
            return result

        for i in range(1, cases + 1):
            runner.case(i, step)
        runner.close()
    finally:
        relay.close()
        fresh_schema(url, schema, drop_only=True)
    counts: dict[str, float] = {"step": sum(per_step) / len(per_step)}
    for kind in ("start", "attach", "pay", "fire"):
        mine = [n for n, k in zip(per_step, KINDS * cases, strict=True) if k == kind]
        counts[kind] = sum(mine) / len(mine)
    return counts


# --- figures -------------------------------------------------------------------------------------

def report(result: dict[str, Any]) -> None:
    print(f"Guichet passport happy path on PostgreSQL {result['server']}: {STEPS_PER_CASE} "
          f"steps per case, {result['cases']} cases per process, floor first, then engine")
    print(f"engine from {result['engine_path']}; python {result['python']}, psycopg "
          f"{result['psycopg']}, {result['cpus']} CPU(s), 1-min load average "
          f"{result['loadavg_before'][0]:.2f} before, {result['loadavg_after'][0]:.2f} after")
    rt = result["round_trips"]
    print("\nround trips (TCP relay, per step; start / attach / pay / fire):")
    for system in ("floor", "engine"):
        r = rt[system]
        print(f"  {system:7} {r['step']:5.2f}   ({r['start']:.2f} / {r['attach']:.2f} / "
              f"{r['pay']:.2f} / {r['fire']:.2f})")
    print(f"\n{'processes':>9} {'system':7} {'steps/s/proc':>12} {'total steps/s':>13} "
          f"{'p50 ms':>7} {'client CPU':>10}")
    for run in result["runs"]:
        for system in ("floor", "engine"):
            s = run[system]
            print(f"{s['processes']:9} {system:7} {s['steps_per_s_per_process']:12.0f} "
                  f"{s['total_steps_per_s']:13.0f} {s['p50_ms']:7.3f} "
                  f"{s['client_cpu_share']:10.0%}")
        print(f"{'':9} engine/floor time ratio: {run['ratio']:.2f}x (target <= 2x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("GUICHET_BENCH_DATABASE_URL",
                                                        DEFAULT_URL),
                        help="PostgreSQL URL (SQLAlchemy form; default: $GUICHET_BENCH_"
                             f"DATABASE_URL or {DEFAULT_URL}); the bench works in its own "
                             "schemas, dropped afterwards")
    parser.add_argument("--cases", type=int, default=None,
                        help="cases per process (default 1000)")
    parser.add_argument("--quick", action="store_true", help="200 cases per process")
    parser.add_argument("--processes", default="1,4", help="process counts (default 1,4)")
    parser.add_argument("--count-cases", type=int, default=5,
                        help="cases whose round trips are counted (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    cases = args.cases if args.cases is not None else 200 if args.quick else 1000
    counts = [int(n) for n in args.processes.split(",")]

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="guichet-bench-pg-blobs-") as blobs:
        round_trips = {system: count_round_trips(system, args.url, args.count_cases, blobs)
                       for system in ("floor", "engine")}
        runs = []
        for processes in counts:
            floor = timed("floor", args.url, processes, cases, blobs)
            engine = timed("engine", args.url, processes, cases, blobs)
            runs.append({"floor": floor, "engine": engine,
                         "ratio": floor["steps_per_s_per_process"]
                         / engine["steps_per_s_per_process"]})
    with psycopg.connect(libpq_url(args.url)) as conn:
        server = conn.info.parameter_status("server_version") or "?"
    result = {
        "cases": cases, "steps_per_case": STEPS_PER_CASE, "server": server,
        "engine_path": str(Path(engine_package.__file__).parent),
        "python": platform.python_version(), "psycopg": psycopg.__version__,
        "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "round_trips": round_trips, "runs": runs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
