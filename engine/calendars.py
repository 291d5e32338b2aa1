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
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

#: How many (country, year) holiday tables are kept.
_CACHED_YEARS = 1024


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
    """The closure days listed in a file: a YAML list of ISO dates (`- 2026-03-06`), or one
    ISO date a line (blank lines and `#` comments skipped). ClosuresError says what is wrong
    and where."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClosuresError(f"{path}: cannot read the closure days ({exc})") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    items = [(number, line.removeprefix("-").strip().strip("'\""))
             for number, line in enumerate(lines, 1) if line]
    return parse_closures(items, str(path))


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
