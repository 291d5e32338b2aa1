"""Business days: weekends, a country's public holidays and the deployment's closure days.

The one module that imports the `holidays` package (import-linter keeps it so), and only when
a country calendar is first asked for: validating a procedure without `calendar:` never loads
it. Holidays are computed per (country, year) when a date of that year is first asked about,
and cached, so a duration of many years costs one computation per year it crosses.

`Calendar` is what `Duration.add_to` asks ("is this day a business day?"); `Workflow` holds the
one its procedure names (`calendar: TG`) with the closure days the deployment gives
(`Engine(closures=...)`, `--closures FILE`). A procedure without `calendar:` counts business
days as Monday to Friday, as before.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

#: How many (country, year) holiday tables are kept.
_CACHED_YEARS = 1024
#: The largest closure-days file read (some 5,000 dates): `--closures /dev/zero` or a huge
#: file is refused before it is read.
MAX_CLOSURES_BYTES = 64 * 1024


class ClosuresError(ValueError):
    """A closure-days file that cannot be read, or holds something other than ISO dates."""


def known(country: str) -> bool:
    """Whether the `holidays` package knows the public holidays of `country` (ISO 3166-1
    alpha-2, upper case)."""
    return _holidays_of(country, None) is not None


@lru_cache(maxsize=_CACHED_YEARS)
def holidays_in(country: str, year: int) -> frozenset[dt.date]:
    """The public holidays of `country` in `year` (the moving Christian and Muslim ones
    included, as the `holidays` package computes them); empty for a country it does not
    know or a year it has no data for."""
    table = _holidays_of(country, year)
    return frozenset(table) if table is not None else frozenset()


def _holidays_of(country: str, year: int | None) -> Any:
    import holidays  # noqa: PLC0415 - loaded only when a calendar is used (import cost)

    if not (len(country) == 2 and country.isalpha() and country.isupper()):
        return None
    try:
        return holidays.country_holidays(country, years=year)
    except NotImplementedError:  # a country the package does not know
        return None


@dataclass(frozen=True)
class Calendar:
    """Which days are business days: not a Saturday or Sunday, nor a public holiday of
    `country` (None: no holidays), nor one of the `closures` (offices closed by decree; they
    apply only with a country calendar, see Workflow)."""

    country: str | None = None
    closures: frozenset[dt.date] = field(default_factory=frozenset)

    def is_business_day(self, day: dt.date) -> bool:
        """Whether offices are open on `day`."""
        if day.weekday() >= 5:
            return False
        if self.country is None:
            return True
        return day not in self.closures and day not in holidays_in(self.country, day.year)

    def closed_days(self, first: dt.date, last: dt.date) -> list[dt.date]:
        """The days from `first` to `last` (both included) that are not business days."""
        days = (first + dt.timedelta(days=n) for n in range((last - first).days + 1))
        return [day for day in days if not self.is_business_day(day)]


#: Monday to Friday: what a procedure without `calendar:` counts.
WEEKDAYS = Calendar()


def read_closures(path: str | Path) -> frozenset[dt.date]:
    """The closure days listed in a file: a YAML list of ISO dates, block (`- 2026-03-06`)
    or flow (`[2026-03-06, 2026-04-27]`, over one or more lines), or one ISO date a line
    (blank lines and `#` comments skipped). The file is read as engine.source.read reads a
    procedure file (the same checks: engine.model, which the renderers import, imports this
    module and may not reach engine.source): a regular file only, opened without blocking
    (a FIFO is refused, never waited on), at most MAX_CLOSURES_BYTES, UTF-8 text.
    ClosuresError says what is wrong and where."""
    where = str(path)
    text = _read_text(path, where)
    lines = [(number, line.split("#", 1)[0].strip())
             for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line]
    if lines and lines[0][1].startswith("["):
        return parse_closures(_flow_list(lines, where), where)
    return parse_closures([(number, _unquoted(line.removeprefix("-")))
                           for number, line in lines], where)


def _read_text(path: str | Path, where: str) -> str:
    def refused(reason: str) -> ClosuresError:
        return ClosuresError(f"{where}: cannot read the closure days ({reason})")

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise refused((exc.strerror or str(exc)).lower()) from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a directory" if stat.S_ISDIR(info.st_mode) else "a named pipe (FIFO)"
                    if stat.S_ISFIFO(info.st_mode) else "a device or socket")
            raise refused(f"not a regular file: this is {kind}")
        if info.st_size > MAX_CLOSURES_BYTES:
            raise refused(f"the file is {info.st_size} bytes; the limit is "
                          f"{MAX_CLOSURES_BYTES} bytes")
        with open(descriptor, "rb", closefd=False) as stream:
            raw = stream.read(MAX_CLOSURES_BYTES + 1)
    except OSError as exc:
        raise refused((exc.strerror or str(exc)).lower()) from None
    finally:
        os.close(descriptor)
    if len(raw) > MAX_CLOSURES_BYTES:  # grown since it was measured
        raise refused(f"the limit is {MAX_CLOSURES_BYTES} bytes")
    if b"\x00" in raw:
        raise refused("binary content (NUL bytes), not text")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise refused(f"not UTF-8 text (byte {exc.start + 1})") from None


def _flow_list(lines: list[tuple[int, str]], where: str) -> list[tuple[int, str]]:
    """The items of a YAML flow list `[a, b, ...]` spread over `lines` (comments removed)."""
    items: list[tuple[int, str]] = []
    closed = False
    for number, line in lines:
        if closed:
            raise ClosuresError(f"{where}:{number}: nothing may follow the list's closing ]")
        if number == lines[0][0]:
            line = line[1:]  # the opening [
        if line.endswith("]"):
            line, closed = line[:-1], True
        items += [(number, _unquoted(part)) for part in line.split(",") if part.strip()]
    if not closed:
        raise ClosuresError(f"{where}:{lines[-1][0]}: the list [...] is not closed by ]")
    return items


def _unquoted(item: str) -> str:
    return item.strip().strip("'\"")


def parse_closures(items: Iterable[tuple[int, Any]], where: str = "closures"
                   ) -> frozenset[dt.date]:
    """ISO dates (or dates) with their line numbers as a set; ClosuresError names the first
    that is not one."""
    days = set()
    for number, item in items:
        if isinstance(item, dt.datetime):
            raise ClosuresError(f"{where}:{number}: {item} is not a date (YYYY-MM-DD)")
        if isinstance(item, dt.date):
            days.add(item)
            continue
        try:
            days.add(dt.date.fromisoformat(str(item)))
        except ValueError:
            raise ClosuresError(f"{where}:{number}: {str(item)[:40]!r} is not a date "
                                "(YYYY-MM-DD)") from None
    return frozenset(days)


def closure_days(values: Iterable[dt.date | str]) -> frozenset[dt.date]:
    """Closure days given to the Engine: dates or ISO texts (ClosuresError on another)."""
    return parse_closures(enumerate(values, 1))
