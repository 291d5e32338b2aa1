"""The worker: a loop that fires due deadlines and reminders and delivers the outbox.

`Worker(engine).run(stop)` runs rounds until `stop` is set; `run_once()` runs one. A round
runs up to `batch` due timers, oldest first, each claimed in the transaction that fires it
(`Engine.run_next_timer`), then hands undelivered outbox rows to the engine's hooks
(`Engine.deliver_pending`), if it has any. Between timers it checks `stop`: a stop asked
for (SIGTERM, SIGINT: `stop_on_signals`) lets the timer in progress finish.

Several workers share one PostgreSQL database: each reserves the oldest due timer no other
worker has reserved (a session advisory lock, so two workers do not decide and render the
same one), decides and renders it outside any transaction, then claims it in the
transaction that fires it (`FOR UPDATE SKIP LOCKED` on the timer and its case, never waiting
for a transition; the case version is the last guard). A worker that dies meanwhile loses
nothing: the server releases its reservation with its connection and its claim with its
transaction, and another worker fires the timer.
On SQLite, where every write takes the whole database, one worker at a time is enforced with
an exclusive lock (flock) on a file beside the database, `<database>-worker.lock`: the
operating system releases it when the worker's process ends, however it ends (no stale
lock to clear after a crash), and it is not the database file itself, whose POSIX locks
SQLite owns (closing another descriptor of that file would drop them).

Every action is one JSON line (`time`, `worker`, `action`, and for a timer `reference`,
`timer`, `trigger`, `result`), and a `health` line comes every `health_interval` seconds and
at the end: rounds, fired, reminded, delivered, errors, and `lag_seconds`, how late the
oldest due timer is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import DatabaseUnavailable

if TYPE_CHECKING:
    from .runtime import Engine

#: What a worker writes its log lines with (one JSON object per call).
LogLine = Callable[[Mapping[str, Any]], None]


class WorkerLocked(Exception):
    """Another worker already runs on this SQLite database (one at a time there)."""


@dataclass
class Health:
    """What a worker has done since it started, as its health line says."""

    rounds: int = 0
    fired: int = 0
    reminded: int = 0
    delivered: int = 0
    errors: int = 0  # rounds or timers that failed (database unavailable, an unexpected error)


def json_lines(stream: IO[str] | None = None) -> LogLine:
    """A LogLine writing compact JSON lines to `stream` (default: stderr), flushed each."""

    def write(line: Mapping[str, Any]) -> None:
        out = stream or sys.stderr
        out.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        out.flush()

    return write


#: Outbox rows younger than this are left to the process that wrote them (it delivers them
#: after its commit and marks them on its next write): a worker replays only older ones.
DELIVERY_GRACE = dt.timedelta(seconds=60)
#: A timer whose run failed unexpectedly rests this long before it is tried again, doubled
#: at each failure up to MAX_REST, so that failing timers do not hold back the others.
FIRST_REST, MAX_REST = 30.0, 3600.0


class _Backoff:
    """The timers that failed lately, and when each may be tried again (bounded in count)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.failures: dict[int, tuple[int, float]] = {}  # id: (failures, rest until)

    def resting(self) -> set[int]:
        now = time.monotonic()
        return {timer for timer, (_, until) in self.failures.items() if until > now}

    def record(self, timer: int, failed: bool) -> None:
        if not failed:
            self.failures.pop(timer, None)
            return
        count = self.failures.pop(timer, (0, 0.0))[0] + 1
        if len(self.failures) >= self.limit:  # forget the oldest: it is tried again sooner
            self.failures.pop(next(iter(self.failures)))
        rest = min(FIRST_REST * 2 ** (count - 1), MAX_REST)
        self.failures[timer] = (count, time.monotonic() + rest)


class Worker:
    """Fires due timers and delivers the outbox of one Engine, round after round."""

    def __init__(self, engine: Engine, *, interval: float = 5.0, batch: int = 100,
                 worker_id: str | None = None, log: LogLine | None = None,
                 health_interval: float = 60.0,
                 delivery_grace: dt.timedelta = DELIVERY_GRACE) -> None:
        if interval < 0 or batch < 1 or health_interval <= 0:
            raise ValueError("interval must be >= 0, batch >= 1 and health_interval > 0")
        self.engine = engine
        self.interval = interval
        self.batch = batch
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.health = Health()
        self._log = log or json_lines()
        self._health_interval = health_interval
        self._grace = delivery_grace
        self._failing = _Backoff()

    # --- running --------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> Health:
        """Run rounds until `stop` is set (a round that found a full batch is followed at
        once by the next; otherwise the worker waits `interval` seconds, or until `stop`).
        WorkerLocked when another worker holds this SQLite database."""
        stop = stop or threading.Event()
        with self._exclusive():
            self._say("start", interval=self.interval, batch=self.batch)
            next_health = time.monotonic() + self._health_interval
            while not stop.is_set():
                busy = self._round(stop)
                if time.monotonic() >= next_health:
                    self._report_health()
                    next_health = time.monotonic() + self._health_interval
                if not busy:
                    stop.wait(self.interval)
            self._report_health()
            self._say("stop")
        return self.health

    def run_once(self) -> Health:
        """One round, then a health line (what `guichet worker --once` does)."""
        with self._exclusive():
            self._round(threading.Event())
            self._report_health()
        return self.health

    def _round(self, stop: threading.Event) -> bool:
        """Run up to `batch` due timers, one claim each, then deliver the outbox; True when
        the batch was full (more may be due). A database that cannot be reached ends the
        round: logged, counted, tried again at the next one."""
        self.health.rounds += 1
        tried: set[int] = set()  # each timer once a round (one left pending is not retried)
        resting = self._failing.resting()  # failed lately: tried again after a pause
        try:
            while len(tried) < self.batch and not stop.is_set():
                ran = self.engine.run_next_timer(skip=tried | resting)
                if ran is None:
                    break
                timer, result = ran
                tried.add(timer["id"])
                self._failing.record(timer["id"], result.startswith("error: "))
                self._count(timer, result)
            if not stop.is_set():
                self._deliver()
            return len(tried) == self.batch
        except DatabaseUnavailable as exc:
            self.health.errors += 1
            self._say("error", result=f"database unavailable: {exc.problem}")
            return False

    def _count(self, timer: Mapping[str, Any], result: str) -> None:
        if result == "fired":
            self.health.fired += 1
        elif result == "reminded":
            self.health.reminded += 1
        elif result.startswith("error: "):
            self.health.errors += 1
        self._say("fire" if timer["kind"] == "deadline" else "remind",
                  reference=timer["reference"], timer=timer["id"], trigger=timer["trigger"],
                  result=result)

    def _deliver(self) -> None:
        if not self.engine.listening:
            return  # no hooks: the rows wait for a host that has some
        delivered = self.engine.deliver_pending(older_than=self._grace)
        if delivered:
            self.health.delivered += delivered
            self._say("deliver", result=f"{delivered} delivered")

    # --- log ------------------------------------------------------------------------------------

    def _say(self, action: str, **fields: Any) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self._log({"time": now, "worker": self.id, "action": action, **fields})

    def _report_health(self) -> None:
        try:
            oldest = self.engine.oldest_due()
        except DatabaseUnavailable:
            oldest = None
        lag = (self.engine.clock() - oldest).total_seconds() if oldest is not None else 0.0
        self._say("health", **asdict(self.health), lag_seconds=round(lag, 3))

    # --- one worker per SQLite database ---------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        path = self.engine.database_file
        if path is None:  # PostgreSQL (claims are per timer), or SQLite in memory
            yield
            return
        with exclusive_lock(Path(f"{path}-worker.lock")):
            yield


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if needed) while the block runs;
    WorkerLocked at once if another process holds it."""
    import fcntl  # Unix only: imported where SQLite needs it

    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkerLocked(f"another worker is running on this SQLite database (it holds "
                               f"{path}); SQLite allows one worker at a time") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (from the main thread): the worker finishes the timer
    in progress and returns. A second signal acts as it would have without this."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: Any) -> None:
        for s, action in previous.items():
            signal.signal(s, signal.SIG_DFL if action is None else action)
        # not stop.set() here: the handler runs in the main thread, which may hold the
        # event's internal lock at that moment (inside stop.wait), and would wait for itself
        threading.Thread(target=stop.set, name="stop", daemon=True).start()

    for s in previous:
        signal.signal(s, handler)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
