"""Workers on PostgreSQL: 1 and N `guichet worker` processes against one `tick`, in one run.

    python bench/bench_worker.py [--url URL] [--cases N] [--workers 1,3] [--json]

Each measure starts from the same state: `--cases` cases (default 1,000) opened two days back
in a procedure whose one state has a deadline (1 day) and its reminder (12 hours before), so
2 x cases timers are due. Then, on fresh tables in a schema of its own (dropped at the end):
- baseline: `Engine.tick()` in this process until nothing is due (every due timer, one after
  the other: what ran before workers existed);
- for each count in `--workers`: that many `guichet worker` processes (the console script's
  own code path), timed from the first timer fired to the last, then stopped with SIGTERM.
It prints timers/s for each, the ratio to the baseline, and how the workers' attempts ended
(fired, reminded, and any "already done"/"retry": attempts another worker made useless).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from engine import Actor, Engine  # noqa: E402
from engine.clock import FakeClock, utc_now  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = f"guichet_bench_worker_{os.getpid()}"
APPLICANT = Actor("citizen-1", ["applicant"])
PROCEDURE = """\
id: waiting
version: "1"
title: {fr: Attente d'une réponse, en: Waiting for an answer}
authority: {ministry: {fr: Ministère des essais, en: Ministry of tests}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
states:
  waiting:
    label: {fr: En attente, en: Waiting}
    initial: true
    deadlines:
      - {after: "1 day", trigger: expire, remind_before: "12 hours"}
  expired: {label: {fr: Expiré, en: Expired}, final: expired}
transitions:
  - {trigger: expire, label: {fr: Expirer, en: Expire}, from: waiting, to: expired,
     roles: [system]}
"""


def in_schema(url: str) -> str:
    """`url` with every connection's search_path set to the benchmark's schema."""
    return make_url(url).update_query_dict(
        {"options": f"-csearch_path={SCHEMA}"}).render_as_string(hide_password=False)


def fresh_schema(url: str, drop_only: bool = False) -> None:
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        if not drop_only:
            conn.execute(f'CREATE SCHEMA "{SCHEMA}"')


def seed(url: str, procedure: Path, cases: int) -> None:
    """Fresh tables, then `cases` cases opened two days back: 2 x cases timers due."""
    fresh_schema(url)
    engine = Engine(procedure, in_schema(url), clock=FakeClock(utc_now() - dt.timedelta(days=2)))
    try:
        for _ in range(cases):
            engine.start("waiting", APPLICANT)
    finally:
        engine.close()


def pending(url: str) -> int:
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{SCHEMA}".timers '
                           "WHERE status = 'pending' AND due_at <= now()").fetchone()
    return int(row[0]) if row else 0


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def baseline(url: str, procedure: Path, timers: int) -> dict[str, Any]:
    engine = Engine(procedure, in_schema(url))
    try:
        start = time.perf_counter()
        results: list[tuple[str, str, str]] = []
        while batch := engine.tick():  # 500 due timers a call
            results += batch
        seconds = time.perf_counter() - start
    finally:
        engine.close()
    if len(results) != timers:
        raise SystemExit(f"tick ran {len(results)} timers, not {timers}")
    return {"seconds": seconds, "timers_per_s": timers / seconds,
            "results": dict(collections.Counter(result for *_, result in results))}


def workers(url: str, procedure: Path, count: int, timers: int, logs: Path
            ) -> dict[str, Any]:
    command = [sys.executable, "-c", "from cli import main; main()", "worker", "--db",
               in_schema(url), "--procedures", str(procedure), "--interval", "0.05",
               "--batch", "100", "--health", "3600"]
    files = [logs / f"worker-{count}-{i}.log" for i in range(count)]
    processes = []
    for file in files:
        with open(file, "wb") as stderr:
            processes.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                              stderr=stderr))
    try:
        while pending(url) == timers:  # the clock starts at the first timer fired
            time.sleep(0.005)
        start = time.perf_counter()
        while pending(url):
            time.sleep(0.005)
        seconds = time.perf_counter() - start
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        statuses = [process.wait(120) for process in processes]
    if any(statuses):
        raise SystemExit(f"a worker exited with {statuses}")
    results: collections.Counter[str] = collections.Counter()
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry["action"] in ("fire", "remind"):
                results[entry["result"]] += 1
    return {"workers": count, "seconds": seconds, "timers_per_s": timers / seconds,
            "results": dict(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("GUICHET_BENCH_DATABASE_URL",
                                                        DEFAULT_URL))
    parser.add_argument("--cases", type=int, default=1000, help="cases (2 due timers each)")
    parser.add_argument("--workers", default="1,3", help="worker counts (default 1,3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    timers = 2 * args.cases
    with tempfile.TemporaryDirectory() as directory:
        procedure = Path(directory) / "waiting.yaml"
        procedure.write_text(PROCEDURE, encoding="utf-8")
        try:
            seed(args.url, procedure, args.cases)
            base = baseline(args.url, procedure, timers)
            runs = []
            for count in (int(n) for n in args.workers.split(",")):
                seed(args.url, procedure, args.cases)
                runs.append(workers(args.url, procedure, count, timers, Path(directory)))
        finally:
            fresh_schema(args.url, drop_only=True)
    for run in runs:
        run["ratio_to_tick"] = run["timers_per_s"] / base["timers_per_s"]
    result = {"cases": args.cases, "timers": timers, "cpus": os.cpu_count(),
              "tick": base, "workers": runs}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{timers} due timers ({args.cases} cases), {os.cpu_count()} CPUs")
    print(f"  one tick (baseline)   {base['timers_per_s']:8.0f} timers/s")
    for run in runs:
        print(f"  {run['workers']} worker(s)           {run['timers_per_s']:8.0f} timers/s  "
              f"{run['ratio_to_tick']:.2f}x the tick  {run['results']}")


if __name__ == "__main__":
    main()
