"""Business days on a country calendar (issue 13, point 2): weekends, the public holidays
the `holidays` package knows (Togo's 27 April, Eid al-Fitr...) and the deployment's closure
days are skipped; a procedure without `calendar:` counts Monday to Friday only."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from engine import compile_source
from engine.calendars import (
    MAX_CLOSURES_BYTES,
    Calendar,
    ClosuresError,
    closure_days,
    holidays_in,
    read_closures,
)
from engine.model import MAX_CLOSED_RUN, Duration, DurationLimit
from engine.workflow import Workflow

NINE = dt.time(9)
TEN_DAYS = Duration(10, "business_days")
ONE_DAY = Duration(1, "business_days")

PROCEDURE = """\
id: clocked
version: "1"
reference_prefix: CLK
title: {fr: Démarche à délai, en: Procedure with a deadline}
authority: {ministry: {fr: Ministère, en: Ministry}}
CALENDAR
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
fields:
  - {id: name, type: string, label: {fr: Nom, en: Name}, required: true}
states:
  review:
    label: {fr: Instruction, en: Review}
    initial: true
    deadlines:
      - {after: "1 business day", trigger: deem_accepted}
  accepted: {label: {fr: Acceptée, en: Accepted}, final: accepted}
transitions:
  - {trigger: deem_accepted, from: review, to: accepted, roles: [system],
     requires: {fields: [name]}}
"""


def at(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime.combine(dt.date(year, month, day), NINE)


def compiled(calendar: str = "") -> Workflow:
    procedure, diagnostics = compile_source(PROCEDURE.replace("CALENDAR", calendar).encode(),
                                            "clocked.yaml")
    assert procedure is not None, [str(d) for d in diagnostics]
    return Workflow(procedure)


def test_togo_independence_day_is_skipped() -> None:
    # Friday 24 April 2026 + 1 business day: Monday 27 April is Independence Day
    togo = Calendar("TG")
    assert dt.date(2026, 4, 27) in holidays_in("TG", 2026)
    assert ONE_DAY.add_to(at(2026, 4, 24), togo) == at(2026, 4, 28)
    assert ONE_DAY.add_to(at(2026, 4, 24)) == at(2026, 4, 27)  # weekends only


def test_eid_al_fitr_a_moving_holiday_is_skipped() -> None:
    togo = Calendar("TG")
    eid = dt.date(2026, 3, 20)  # a Friday in 2026; the date moves every year
    assert eid in holidays_in("TG", 2026) and eid.weekday() == 4
    assert dt.date(2025, 3, 20) not in holidays_in("TG", 2025)
    assert ONE_DAY.add_to(at(2026, 3, 19), togo) == at(2026, 3, 23)
    assert TEN_DAYS.add_to(at(2026, 3, 16), togo) == TEN_DAYS.add_to(at(2026, 3, 16)) + \
        dt.timedelta(days=1)


def test_senegal_has_its_own_calendar() -> None:
    # 4 April, Senegal's Independence Day, is a working day in Togo (a Monday in 2022)
    assert ONE_DAY.add_to(at(2022, 4, 1), Calendar("SN")) == at(2022, 4, 5)
    assert ONE_DAY.add_to(at(2022, 4, 1), Calendar("TG")) == at(2022, 4, 4)


def test_a_closure_day_is_skipped() -> None:
    closed = Calendar("TG", closure_days(["2026-03-10"]))
    assert ONE_DAY.add_to(at(2026, 3, 9), closed) == at(2026, 3, 11)
    assert ONE_DAY.add_to(at(2026, 3, 9), Calendar("TG")) == at(2026, 3, 10)


def test_without_a_calendar_only_weekends_are_skipped(tmp_path: Path) -> None:
    workflow = Workflow(compiled().procedure, closures=frozenset({dt.date(2026, 4, 28)}))
    [timing] = workflow.timings("review", at(2026, 4, 24))
    assert timing.due == at(2026, 4, 27)  # the holiday and the closure day both count


def test_the_workflow_counts_on_the_procedure_calendar_and_the_closures() -> None:
    procedure = compiled("calendar: TG").procedure
    assert procedure.calendar == "TG"
    [timing] = Workflow(procedure).timings("review", at(2026, 4, 24))
    assert timing.due == at(2026, 4, 28)
    closed = Workflow(procedure, closures=frozenset({dt.date(2026, 4, 28)}))
    [timing] = closed.timings("review", at(2026, 4, 24))
    assert timing.due == at(2026, 4, 29)
    assert closed.due(ONE_DAY, at(2026, 4, 24)) == timing.due  # the target counts the same


def test_a_hundred_years_of_business_days_is_bounded() -> None:
    """Holidays are computed once per year crossed; the loop ends (no timeout needed: it
    would hang)."""
    holidays_in.cache_clear()
    longest = Duration(26_000, "business_days")  # about 100 years of business days
    due = longest.add_to(at(2026, 1, 5), Calendar("TG"))
    assert 2126 <= due.year <= 2130
    assert holidays_in.cache_info().misses <= 110


def test_a_calendar_closing_every_day_gives_up() -> None:
    start = dt.date(2026, 1, 5)
    every_day = frozenset(start + dt.timedelta(days=n) for n in range(2 * MAX_CLOSED_RUN))
    with pytest.raises(DurationLimit, match="no business day"):
        ONE_DAY.add_to(at(2026, 1, 5), Calendar("TG", every_day))


def test_an_unknown_country_is_refused_at_validation() -> None:
    raw = PROCEDURE.replace("CALENDAR", "calendar: XX").encode()
    procedure, diagnostics = compile_source(raw, "clocked.yaml")
    found = [(d.rule, d.severity, d.location.line) for d in diagnostics]
    assert found == [("unknown-calendar", "error", 6)]
    assert 'unknown calendar "XX"' in str(diagnostics[0])
    _, lower = compile_source(PROCEDURE.replace("CALENDAR", "calendar: tg").encode(), "c.yaml")
    assert [d.rule for d in lower] == ["invalid-value"]


def test_closure_files_are_read_safely(tmp_path: Path) -> None:
    listed = tmp_path / "closures.yaml"
    listed.write_text("# decree of 2 March\n- 2026-03-06\n- '2026-03-09'\n\n")
    assert read_closures(listed) == {dt.date(2026, 3, 6), dt.date(2026, 3, 9)}
    lines = tmp_path / "closures.txt"
    lines.write_text("2026-03-06\n2026-13-01\n")
    with pytest.raises(ClosuresError, match=r"closures.txt:2: '2026-13-01' is not a date"):
        read_closures(lines)
    with pytest.raises(ClosuresError, match="cannot read"):
        read_closures(tmp_path / "missing.txt")
    with pytest.raises(ClosuresError, match="is not a date"):
        closure_days(["!!python/object:os.system"])


def test_a_flow_list_of_closure_days_is_read(tmp_path: Path) -> None:
    """`--closures` says "a YAML list": the flow form is one too, on one line or several."""
    flow = tmp_path / "closures.yaml"
    flow.write_text("[2026-03-06, '2026-04-27']  # decrees\n")
    assert read_closures(flow) == {dt.date(2026, 3, 6), dt.date(2026, 4, 27)}
    flow.write_text("# decrees of 2026\n[\n  2026-03-06,\n  \"2026-04-28\",\n]\n")
    assert read_closures(flow) == {dt.date(2026, 3, 6), dt.date(2026, 4, 28)}
    flow.write_text("[]\n")
    assert read_closures(flow) == frozenset()
    flow.write_text("[2026-03-06,\n 2026-02-30]\n")
    with pytest.raises(ClosuresError, match=r"closures.yaml:2: '2026-02-30' is not a date"):
        read_closures(flow)
    flow.write_text("[2026-03-06, 2026-04-27\n")
    with pytest.raises(ClosuresError, match=r"closures.yaml:1: the list \[...\] is not closed"):
        read_closures(flow)
    flow.write_text("[2026-03-06]\n- 2026-04-27\n")
    with pytest.raises(ClosuresError, match="closures.yaml:2: nothing may follow"):
        read_closures(flow)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_closures_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path
                                                                       ) -> None:
    """A FIFO with no writer, a device that never ends, a directory or a huge file: refused
    before anything is read (or waited for), as procedure files are."""
    fifo = tmp_path / "closures.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.txt"
    big.write_text("2026-03-06\n" * (MAX_CLOSURES_BYTES // 11 + 1))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"2026-03-06\x00\n")
    for path, reason in [(fifo, r"not a regular file: this is a named pipe \(FIFO\)"),
                         ("/dev/zero", "not a regular file"), (tmp_path, "not a regular file"),
                         (big, "the limit is"), (binary, "binary")]:
        with pytest.raises(ClosuresError, match=f"cannot read the closure days.*{reason}"):
            read_closures(path)
    result = CliRunner().invoke(cli.main, ["tick", "--db", f"sqlite:///{tmp_path}/g.db",
                                           "--closures", str(fifo)])
    assert result.exit_code == 2 and "not a regular file" in result.output


def test_the_cli_refuses_a_bad_closures_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "closures.txt"
    bad.write_text("next monday\n")
    result = CliRunner().invoke(cli.main, ["tick", "--db", f"sqlite:///{tmp_path}/g.db",
                                           "--closures", str(bad)])
    assert result.exit_code == 2
    assert "closures.txt:1: 'next monday' is not a date" in result.output
    assert "Traceback" not in result.output


def test_the_load_simulation_counts_deadlines_on_the_same_calendar() -> None:
    """Day 120 of a run is Tuesday 30 April 2024, the eve of Labour Day (a Togolese holiday):
    a 1-business-day deadline entered then falls 2 days later on Togo's calendar, 1 day on
    weekends only; the simulation asks Workflow.timings for every day of the run."""
    from engine.analysis.loadsim import _deadline_offsets, _period

    togo, weekends = compiled("calendar: TG"), compiled()
    assert (_period(togo, 365), _period(weekends, 365)) == (366, 7)
    assert _deadline_offsets(togo, "review", 366)[120] == [(2 * 86400.0, 0)]
    assert _deadline_offsets(weekends, "review", 7)[120 % 7] == [(86400.0, 0)]
