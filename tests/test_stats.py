"""Statistics (issue 13, points 4-6): `engine.stats.report` and `guichet stats`.

A small procedure (target 3 days, `info_requested` waiting for the applicant, `sex` a
sensitive reporting dimension, `region` a plain one) runs cases on the fake clock with known
times; the expected figures are computed here from those times (nearest-rank percentiles),
never copied from an output. On SQLite, and on PostgreSQL when GUICHET_TEST_DATABASE_URL is
set (the `database_url` fixture drops the tables after each test).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import MakeEngine

from cli import main
from engine import Actor, Engine, InvalidData, NotAllowed, UnknownProcedure, compile_source
from engine.clock import FakeClock
from engine.model import Text
from engine.stats import BACKLOG_BOUNDS, protect, report
from engine.stats_values import OPEN, SMALL_GROUP, Figures, Percentiles, Report
from engine.values import SYSTEM
from renderers import stats as render_stats

TRACK = """\
id: track
version: "1"
reference_prefix: TRK
title: {fr: Suivi des délais, en: Time tracking}
authority: {ministry: {fr: Ministère de l'Exemple, en: Ministry of Examples}}
processing_time: "3 days"
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Agent}}
  auditor: {label: {fr: Auditeur, en: Auditor}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
read: [auditor]
fields:
  - {id: name, type: string, label: {fr: Nom, en: Name}, required: true}
  - id: sex
    type: choice
    label: {fr: Sexe, en: Sex}
    options:
      - {value: female, label: {fr: Féminin, en: Female}}
      - {value: male, label: {fr: Masculin, en: Male}}
  - id: region
    type: choice
    label: {fr: Région, en: Region}
    options:
      - {value: maritime, label: {fr: Maritime, en: Maritime}}
      - {value: plateaux, label: {fr: Plateaux, en: Plateaux}}
reporting:
  - {field: sex, sensitive: true}
  - {field: region}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true, editable: true}
  submitted: {label: {fr: Soumise, en: Submitted}}
  under_review: {label: {fr: En instruction, en: Under review}}
  info_requested:
    label: {fr: Compléments demandés, en: Information requested}
    waiting: applicant
    editable: true
  approved: {label: {fr: Accordée, en: Approved}, final: accepted}
  rejected: {label: {fr: Rejetée, en: Rejected}, final: rejected}
  withdrawn: {label: {fr: Retirée, en: Withdrawn}, final: withdrawn}
transitions:
  - {trigger: submit, from: draft, to: submitted, roles: [applicant], requires: {fields: [name]}}
  - {trigger: review, from: submitted, to: under_review, roles: [agent]}
  - {trigger: ask, from: under_review, to: info_requested, roles: [agent]}
  - {trigger: answer, from: info_requested, to: under_review, roles: [applicant]}
  - {trigger: approve, from: under_review, to: approved, roles: [agent]}
  - {trigger: reject, from: under_review, to: rejected, roles: [agent]}
  - trigger: withdraw
    from: [draft, submitted, under_review, info_requested]
    to: withdrawn
    roles: [applicant]
"""

APPLICANT = Actor("citizen-1", ["applicant"])
AGENT = Actor("agent-1", ["agent"])
AUDITOR = Actor("audit-1", ["auditor"])
STRANGER = Actor("someone-1", ["clerk"])
HOUR = 3600
TARGET = 3 * 24 * HOUR
#: Who fires each trigger.
BY = {"submit": APPLICANT, "answer": APPLICANT, "withdraw": APPLICANT}
#: A step that edits the form (a history row that changes no state).
EDIT = "@edit"


@dataclass
class Planned:
    """A case: (hours spent before each trigger), the data it is opened with."""

    steps: list[tuple[float, str]]
    sex: str = "female"
    region: str = "maritime"

    def stays(self) -> list[tuple[str, int]]:
        """(state, seconds) of each stay that ended, as the engine should record them."""
        targets = {"submit": "submitted", "review": "under_review", "ask": "info_requested",
                   "answer": "under_review", "approve": "approved", "reject": "rejected",
                   "withdraw": "withdrawn"}
        state, stays, spent = "draft", [], 0.0
        for hours, trigger in self.steps:
            spent += hours
            if trigger != EDIT:  # an edit is recorded, but the case stays where it is
                stays.append((state, round(spent * HOUR)))
                state, spent = targets[trigger], 0.0
        return stays

    @property
    def last(self) -> str | None:
        return self.steps[-1][1] if self.steps else None

    @property
    def decided(self) -> bool:
        return self.last in ("approve", "reject")

    def administration(self) -> int:
        """Seconds after submitting in states neither waiting nor final."""
        return sum(s for state, s in self.stays() if state in ("submitted", "under_review"))

    def total(self) -> int:
        return sum(s for state, s in self.stays() if state != "draft")


def decided_case(review_hours: float, sex: str = "female", region: str = "maritime",
                 outcome: str = "approve") -> Planned:
    return Planned([(1, "submit"), (2, "review"), (review_hours, outcome)], sex, region)


#: Nine decided cases whose administration's time straddles the 72-hour target; one more with
#: an information loop (40 hours waiting for the applicant): ten decided, so that p50 and p90
#: fall on exact ranks; a withdrawn one, an open one under review, one waiting for the
#: applicant, and a draft never submitted.
REVIEW_HOURS = [10, 22, 34, 46, 58, 70, 82, 94, 106]
DECIDED = [decided_case(h, sex="female" if i < 7 else "male",
                        region="maritime" if i % 2 else "plateaux",
                        outcome="reject" if i == 3 else "approve")
           for i, h in enumerate(REVIEW_HOURS)]
LOOP = Planned([(1, "submit"), (2, "review"), (5, "ask"), (15, EDIT), (25, "answer"),
                (3, "approve")])
WITHDRAWN = Planned([(1, "submit"), (4, "withdraw")], sex="male")
OPEN_REVIEW = Planned([(1, "submit"), (2, "review")])
OPEN_WAITING = Planned([(1, "submit"), (2, "review"), (1, "ask")])
DRAFT = Planned([])
ALL = [*DECIDED, LOOP, WITHDRAWN, OPEN_REVIEW, OPEN_WAITING, DRAFT]


def nearest_rank(values: list[int], p: int) -> int:
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered) / 100) - 1]


def track_file(tmp_path: Path) -> Path:
    path = tmp_path / "procedures" / "track.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(TRACK, encoding="utf-8")
    return path


def run(engine: Engine, clock: FakeClock, planned: Planned) -> str:
    reference = engine.start("track", APPLICANT, {"name": "Ama", "sex": planned.sex,
                                                  "region": planned.region}).reference
    for hours, trigger in planned.steps:
        clock.advance(dt.timedelta(hours=hours))
        if trigger == EDIT:
            engine.update(reference, APPLICANT, {"name": "Ama Kossiwa"})
        else:
            engine.fire(reference, trigger, BY.get(trigger, AGENT))
    clock.advance(dt.timedelta(minutes=7))  # the next case starts a little later
    return reference


@pytest.fixture
def tracked(make_engine: MakeEngine, database_url: str, tmp_path: Path, clock: FakeClock
            ) -> tuple[Engine, list[str]]:
    engine = make_engine(database_url, procedures=[track_file(tmp_path)])
    return engine, [run(engine, clock, p) for p in ALL]


def figures(found: Report, procedure: str = "track") -> Any:
    return next(f for f in found.procedures if f.procedure_id == procedure)


# --- the figures ------------------------------------------------------------------------------

def test_requests_per_outcome(tracked: tuple[Engine, list[str]]) -> None:
    track = figures(report(tracked[0]))
    assert track.requests == len(ALL)
    rejected = sum(p.last == "reject" for p in ALL)
    assert dict(track.outcomes) == {
        "accepted": sum(p.decided for p in ALL) - rejected, "rejected": rejected,
        "withdrawn": 1, "open": 3}


def test_percentiles_and_share_within_target_are_exact(tracked: tuple[Engine, list[str]]
                                                       ) -> None:
    track = figures(report(tracked[0]))
    decided = [p for p in ALL if p.decided]
    admin = [p.administration() for p in decided]
    total = [p.total() for p in decided]
    assert track.administration.count == len(decided) == 10
    assert (track.administration.p50, track.administration.p90, track.administration.p99) \
        == tuple(nearest_rank(admin, p) for p in (50, 90, 99))
    assert (track.total.p50, track.total.p90, track.total.p99) \
        == tuple(nearest_rank(total, p) for p in (50, 90, 99))
    within = sum(a <= TARGET for a in admin)
    assert 0 < within < len(admin)
    assert (track.target, track.with_target, track.within_target) == (TARGET, 10, within)
    assert track.share_within_target == within / len(admin)


def test_waiting_for_the_applicant_is_not_the_administrations_time(
        tracked: tuple[Engine, list[str]], make_engine: MakeEngine, database_url: str,
        tmp_path: Path, clock: FakeClock) -> None:
    """The loop case spends 40 hours waiting (editing its form on the way): its total has
    them, its administration's time does not; where the state is not declared `waiting:`,
    they count."""
    assert LOOP.administration() == 10 * HOUR and LOOP.total() == 50 * HOUR
    engine = tracked[0]
    only_loop = report(engine, since=_opened(engine, tracked[1][len(DECIDED)]))
    assert figures(only_loop).administration.p50 is not None
    loop_alone = [f for f in only_loop.procedures][0]
    assert loop_alone.requests == len(ALL) - len(DECIDED)  # the loop case and the later ones
    assert loop_alone.administration.count == 1
    assert loop_alone.administration.p50 == LOOP.administration()
    assert loop_alone.total.p50 == LOOP.total()
    kinds = {s.state: s.kind for s in only_loop.states}
    assert kinds["info_requested"] == "waiting" and kinds["under_review"] == "work"
    # the same case where nobody declared that the information request waits for the applicant
    undeclared = tmp_path / "undeclared" / "track.yaml"
    undeclared.parent.mkdir()
    undeclared.write_text(TRACK.replace("    waiting: applicant\n", ""), encoding="utf-8")
    other = make_engine(f"sqlite:///{tmp_path / 'undeclared.db'}", procedures=[undeclared])
    run(other, clock, LOOP)
    counted = figures(report(other))
    assert counted.administration.p50 == counted.total.p50 == LOOP.total()


def _opened(engine: Engine, reference: str) -> dt.datetime:
    return engine.case(reference, SYSTEM).created_at


def test_time_per_state_counts_stays_that_ended(tracked: tuple[Engine, list[str]]) -> None:
    found = {s.state: s.stays for s in report(tracked[0]).states}
    for state in ("draft", "submitted", "under_review", "info_requested"):
        stays = [s for p in ALL for name, s in p.stays() if name == state]
        assert found[state].count == len(stays), state
        assert (found[state].p50, found[state].p90, found[state].p99) == tuple(
            nearest_rank(stays, p) for p in (50, 90, 99)), state
    assert "approved" not in found  # a final state's stay never ends


def test_backlog_by_age(tracked: tuple[Engine, list[str]], clock: FakeClock) -> None:
    engine = tracked[0]
    clock.advance(dt.timedelta(days=10))
    backlog = report(engine).backlog[0]
    assert backlog.cases == 2  # the draft never left the initial state: not the backlog's
    assert backlog.waiting == 1
    assert [bound for bound, _ in backlog.ages] == [*BACKLOG_BOUNDS, None]
    assert dict(backlog.ages)[30 * 86_400] == 2  # both submitted 10 to 30 days ago
    assert backlog.over_target == 1  # under review for more than 72 hours; the other waits


# --- breakdowns ---------------------------------------------------------------------------------

#: The counts the published ones give away: (minuend, subtrahend).
DERIVED = {"over_target": ("with_target", "within_target"),
           "without_target": ("decided", "with_target")}


def _figure(f: dict[str, Any], measure: str) -> Any:
    """A measure of published Figures (JSON), or SUPPRESSED."""
    if measure in DERIVED:  # not shown, but worked out from two shown figures
        shown = [_figure(f, m) for m in DERIVED[measure]]
        return render_stats.SUPPRESSED if render_stats.SUPPRESSED in shown else (
            shown[0] - shown[1])
    return f["administration"]["count"] if measure == "decided" else (
        f["outcomes"].get(measure[8:], 0) if measure.startswith("outcome:") else f[measure])


def _given_away(published: dict[str, Any]) -> list[str]:
    """Every line of a sensitive breakdown's published table (JSON, as `data` gives it) that
    lets suppressed counts be worked out: one suppressed count alone in a line adding up to a
    published figure, or suppressed counts adding up to fewer than SMALL_GROUP (unless they
    are the whole of a published total), or a count worked out from two published ones
    (DERIVED) from 1 to SMALL_GROUP - 1. Lines: each measure, shown or DERIVED, over the
    groups (adding up to the procedure's figure), each published group's outcomes (to its
    requests), its accepted and rejected cases (to its decided ones), its decided and other
    cases (to its requests), its cases within and over the target (to those measured against
    it), those and its decided cases not measured (to its decided ones)."""
    mark = render_stats.SUPPRESSED
    found = []
    for total in published["procedures"]:
        groups = [g for g in published["breakdown"] if g["procedure"] == total["procedure"]]

        def cell(g: dict[str, Any], measure: str) -> Any:
            return mark if g["requests"] == mark else _figure(g, measure)

        figure = _figure
        outcomes = {o for f in [total, *groups] for o in f["outcomes"]}
        measures = ["requests", *(f"outcome:{o}" for o in outcomes), "decided",
                    "with_target", "within_target", *DERIVED]
        lines = [(f"{m} over the groups", [cell(g, m) for g in groups], figure(total, m))
                 for m in measures]
        for g in groups:
            for measure in DERIVED:
                if cell(g, measure) != mark and 0 < cell(g, measure) < SMALL_GROUP:
                    found.append(f"{g['group']}: {cell(g, measure)} {measure}")
            if g["requests"] != mark:
                lines.append((f"{g['group']}: within and over target", [
                    cell(g, "within_target"), cell(g, "over_target")], g["with_target"]))
                lines.append((f"{g['group']}: decided with and without target", [
                    cell(g, "with_target"), cell(g, "without_target")], cell(g, "decided")))
                lines.append((f"{g['group']}: outcomes", [cell(g, f"outcome:{o}")
                                                          for o in outcomes], g["requests"]))
                lines.append((f"{g['group']}: decided", [cell(g, "outcome:accepted"),
                                                         cell(g, "outcome:rejected")],
                              cell(g, "decided")))
                lines.append((f"{g['group']}: decided and others", [
                    cell(g, "decided"), *(cell(g, f"outcome:{o}") for o in outcomes
                                          if o not in ("accepted", "rejected"))],
                    g["requests"]))
        for name, cells, whole in lines:
            secret = [c for c in cells if c == mark]
            known = [c for c in cells if c != mark]
            if whole == mark:
                if not secret:
                    found.append(f"{name}: the suppressed total is {sum(known)}")
                continue
            rest = whole - sum(known)
            if secret and (len(secret) == 1 or rest < SMALL_GROUP) and sum(known):
                found.append(f"{name}: {len(secret)} suppressed, {rest} in all")
    return found


def test_a_small_group_cannot_be_worked_out_from_the_others(tracked: tuple[Engine, list[str]]
                                                            ) -> None:
    """14 requests, 11 from women and 3 from men: "< 5" for the men beside 11 for the women
    would give 14 - 11 = 3 away; the women's count is suppressed too (secondary
    suppression), and so is everything else the two groups show, in every output."""
    engine = tracked[0]
    found = report(engine, by="sex")
    assert found.sensitive
    women = sum(p.sex == "female" for p in ALL)
    men = sum(p.sex == "male" for p in ALL)
    assert (women, men, figures(found).requests) == (11, 3, 14)
    for group in found.breakdown:
        assert group.suppressed and group.requests is None and not group.outcomes
        assert group.administration == group.total == Percentiles(None)
        assert group.share_within_target is None
    published = render_stats.data(found)
    assert figures(found).requests == published["procedures"][0]["requests"] == 14
    assert {g["group"]: g["requests"] for g in published["breakdown"]} == {
        "female": render_stats.SUPPRESSED, "male": render_stats.SUPPRESSED}
    assert _given_away(published) == []
    rows = list(csv.DictReader(io.StringIO(render_stats.csv_text(found))))
    shown = {r["value"] for r in rows if r["section"] == "breakdown"}
    assert shown <= {render_stats.SUPPRESSED, "", str(TARGET), "False", "True"}
    for language in ("fr", "en"):
        title, table = render_stats.sections(found, engine.procedures, language)[-2]
        assert title.startswith(("Ventilation", "Breakdown"))
        counts = {row[1]: row[2] for row in table[1:]}
        mark = "masqué" if language == "fr" else "suppressed"
        assert set(counts.values()) == {mark}, counts
        assert not any(re.search(r"\d", cell) for row in table[1:] for cell in row[2:]
                       if not cell.endswith(("j", "d", "h"))), table  # the target: a duration
    page = render_stats.html(found, engine.procedures)
    bars = [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", page, re.DOTALL)]
    breakdown = next(svg for svg in bars if svg.findtext("title") == "Ventilation : sex")
    assert [r.get("data-value") for r in breakdown.findall("rect")] == ["", ""]


def _group(name: str, outcomes: dict[str, int], within: int) -> Figures:
    decided = outcomes.get("accepted", 0) + outcomes.get("rejected", 0)
    times = Percentiles(decided, 3600, 7200, 9000)
    return Figures("p", name, sum(outcomes.values()), outcomes, times, times, TARGET,
                   with_target=decided, within_target=within)


def _whole(groups: list[Figures]) -> Figures:
    outcomes: dict[str, int] = {}
    for g in groups:
        for outcome, n in g.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + (n or 0)
    whole = _group("", outcomes, sum(g.within_target or 0 for g in groups))
    return replace(whole, group=None)


def _published(groups: list[Figures]) -> dict[str, Any]:
    found = Report(dt.datetime(2026, 3, 1), None, None, (_whole(groups),), (), (), {},
                   by="sex", sensitive=True, breakdown=tuple(protect(groups, [_whole(groups)])))
    return render_stats.data(found)


def test_a_large_group_stays_visible_beside_suppressed_ones() -> None:
    """Three groups, 20, 3 and 6 cases: the 3 is suppressed, and the 6 with it (3 alone
    would be 29 - 20 - 6); the 20 stays, with its times. Its 5 rejections are hidden (with
    its accepted cases): the other two groups have none, which 5 beside the procedure's 5
    would tell; so is its within_target: its 10 over the target (20 - 10) beside the
    procedure's 10 (29 - 19) would tell that every case of the other two was within it."""
    groups = [_group("a", {"accepted": 15, "rejected": 5}, within=10),
              _group("b", {"accepted": 3}, within=3), _group("c", {"accepted": 6}, within=6)]
    published = _published(groups)
    shown = {g["group"]: g for g in published["breakdown"]}
    assert [shown[g]["suppressed"] for g in "abc"] == [False, True, True]
    assert shown["a"]["requests"] == shown["a"]["administration"]["count"] == 20
    assert shown["a"]["administration"]["p50"] == 3600 and shown["a"]["with_target"] == 20
    assert shown["a"]["within_target"] == render_stats.SUPPRESSED
    assert set(shown["a"]["outcomes"].values()) == {render_stats.SUPPRESSED}
    assert _given_away(published) == []


def test_secondary_suppression_reaches_outcomes_and_times() -> None:
    """Two groups large enough to show, one with 2 rejections: the 2 is suppressed, and so is
    what would give it away: its other outcomes (its requests minus the rest), the other
    group's rejections (the procedure's minus the rest), and so on until no line gives a
    count away; the decided counts go, and the times with them. The requests stay."""
    groups = [_group("a", {"accepted": 9, "rejected": 2, OPEN: 6}, within=8),
              _group("b", {"accepted": 12, "rejected": 7}, within=12)]
    published = _published(groups)
    shown = {g["group"]: g for g in published["breakdown"]}
    mark = render_stats.SUPPRESSED
    assert (shown["a"]["requests"], shown["b"]["requests"]) == (17, 19)
    assert shown["a"]["outcomes"]["rejected"] == shown["b"]["outcomes"]["rejected"] == mark
    assert shown["a"]["administration"] == {"count": mark, "p50": None, "p90": None, "p99": None}
    assert shown["a"]["share_within_target"] is None
    assert _given_away(published) == []
    assert f": \"{mark}\"" not in json.dumps(_published([groups[1]]))  # alone: nothing hidden


def test_cases_over_the_target_cannot_be_worked_out() -> None:
    """10 women's cases measured against the target, 8 within it: 2 over it, which nothing
    shows but 10 - 8 gives away. The women's within_target goes, and the men's with it (else
    23 - 15); their cases measured against the target and decided stay."""
    groups = [_group("female", {"accepted": 5, "rejected": 5}, within=8),
              _group("male", {"accepted": 10, "rejected": 10}, within=15)]
    unprotected = render_stats.data(Report(
        dt.datetime(2026, 3, 1), None, None, (_whole(groups),), (), (), {}, by="sex",
        sensitive=True, breakdown=tuple(groups)))
    assert "female: 2 over_target" in _given_away(unprotected)  # the helper sees it
    published = _published(groups)
    shown = {g["group"]: g for g in published["breakdown"]}
    mark = render_stats.SUPPRESSED
    assert [shown[g]["within_target"] for g in ("female", "male")] == [mark, mark]
    assert [shown[g]["with_target"] for g in ("female", "male")] == [10, 20]
    assert shown["female"]["share_within_target"] is None
    assert _given_away(published) == []


def test_decided_cases_without_a_target_cannot_be_worked_out() -> None:
    """3 of a group's 12 decided cases were decided under a version without a target: its
    decided and measured counts (12 and 9) would give that 3 away; they go together (and
    what would give them away in turn); the requests stay."""
    groups = [replace(_group("a", {"accepted": 6, "rejected": 6, OPEN: 5}, within=5),
                      with_target=9),
              _group("b", {"accepted": 12, "rejected": 7}, within=12)]
    unprotected = render_stats.data(Report(
        dt.datetime(2026, 3, 1), None, None, (_whole(groups),), (), (), {}, by="sex",
        sensitive=True, breakdown=tuple(groups)))
    assert "a: 3 without_target" in _given_away(unprotected)
    published = _published(groups)
    shown = {g["group"]: g for g in published["breakdown"]}
    mark = render_stats.SUPPRESSED
    assert shown["a"]["with_target"] == shown["a"]["administration"]["count"] == mark
    assert (shown["a"]["requests"], shown["b"]["requests"]) == (17, 19)
    assert _given_away(published) == []


#: The line after which a mark on the `region` field goes.
REGION_LABEL = "    label: {fr: Région, en: Region}\n"


@pytest.mark.parametrize("mark", ["visible_to: [agent]", "sensitive: true"])
def test_a_field_some_readers_may_not_see_is_a_sensitive_dimension_for_them_only(
        make_engine: MakeEngine, database_url: str, tmp_path: Path, clock: FakeClock,
        mark: str) -> None:
    """`region`, a plain reporting dimension, on a field the auditor (`read:`) sees masked:
    its breakdown is sensitive for whoever may read the field (the agent, the system), and
    refused to the auditor, who still sees the other breakdowns. The validator says so."""
    marked = TRACK.replace(REGION_LABEL, f"{REGION_LABEL}    {mark}\n")
    path = track_file(tmp_path)
    path.write_text(marked, encoding="utf-8")
    engine = make_engine(database_url, procedures=[path])
    references = [run(engine, clock, p) for p in ALL]
    assert engine.case(references[0], AUDITOR).data["region"] != ALL[0].region
    for reader in (SYSTEM, AGENT):
        found = report(engine, actor=reader, by="region")
        assert found.sensitive and {f.group for f in found.breakdown} == {"maritime",
                                                                          "plateaux"}
        assert _given_away(render_stats.data(found)) == []
    with pytest.raises(NotAllowed) as refused:
        report(engine, actor=AUDITOR, by="region")
    assert refused.value.message("en") == ('you may not read the values of the field '
                                           '"region": no breakdown by it')
    assert report(engine, actor=AUDITOR, by="sex").sensitive
    assert figures(report(engine, actor=AUDITOR)).requests == len(ALL)
    warnings = [d for d in compile_source(marked, "track.yaml")[1]
                if d.rule == "reporting-dimension"]
    if mark.startswith("visible_to"):
        assert [d.severity for d in warnings] == ["warning"]
        assert "write `sensitive: true`" in warnings[0].message
        said = marked.replace("{field: region}", "{field: region, sensitive: true}")
        assert not [d for d in compile_source(said, "track.yaml")[1]
                    if d.rule == "reporting-dimension"]
    else:
        assert warnings == []  # the field says it


def test_a_field_marked_in_an_earlier_version_stays_sensitive(
        make_engine: MakeEngine, database_url: str, tmp_path: Path, clock: FakeClock) -> None:
    """Cases pinned to a version where `region` was visible to the agent only: a version
    that no longer marks it does not open their values to the auditor."""
    path = track_file(tmp_path)
    path.write_text(TRACK.replace(REGION_LABEL, f"{REGION_LABEL}    visible_to: [agent]\n"),
                    encoding="utf-8")
    engine = make_engine(database_url, procedures=[path])
    for planned in DECIDED:
        run(engine, clock, planned)
    path.write_text(TRACK.replace('version: "1"', 'version: "2"'), encoding="utf-8")
    later = make_engine(database_url, procedures=[path])
    assert later.procedures["track"].hash != engine.procedures["track"].hash
    assert report(later, by="region").sensitive
    with pytest.raises(NotAllowed):
        report(later, actor=AUDITOR, by="region")


def test_a_sensitive_group_of_five_or_more_shows_everything(
        make_engine: MakeEngine, database_url: str, tmp_path: Path, clock: FakeClock) -> None:
    engine = make_engine(database_url, procedures=[track_file(tmp_path)])
    for sex in ("female", "male"):
        for _ in range(SMALL_GROUP):
            run(engine, clock, decided_case(10, sex=sex))
    found = report(engine, by="sex")
    assert found.sensitive
    for group in found.breakdown:
        assert not group.suppressed
        assert group.requests == group.outcomes["accepted"] == SMALL_GROUP
        assert group.administration.count == group.with_target == SMALL_GROUP
        assert group.administration.p50 == 12 * HOUR and group.share_within_target == 1.0
    published = render_stats.data(found)
    assert f": \"{render_stats.SUPPRESSED}\"" not in json.dumps(published)
    assert _given_away(published) == []


def test_a_plain_dimension_shows_every_group(tracked: tuple[Engine, list[str]]) -> None:
    found = report(tracked[0], by="region")
    assert not found.sensitive
    groups = {f.group: f.requests for f in found.breakdown}
    assert groups == {r: sum(p.region == r for p in ALL) for r in ("maritime", "plateaux")}


def test_sensitive_values_are_never_listed_case_by_case(tracked: tuple[Engine, list[str]]
                                                        ) -> None:
    engine, references = tracked
    found = report(engine, by="sex")
    rendered = [json.dumps(render_stats.data(found)), render_stats.csv_text(found),
                render_stats.html(found, engine.procedures)]
    for output in rendered:
        assert not any(reference in output for reference in references)
        assert "Ama" not in output


@pytest.mark.parametrize("by", ["month", "week", "authority", "state"])
def test_breakdowns_by_what_every_case_has(tracked: tuple[Engine, list[str]], by: str) -> None:
    engine, references = tracked
    cases = [engine.case(r, SYSTEM) for r in references]
    group = {"month": lambda c: c.created_at.strftime("%Y-%m"),
             "week": lambda c: (c.created_at.date()
                                - dt.timedelta(days=c.created_at.weekday())).isoformat(),
             "authority": lambda c: "Ministère de l'Exemple",
             "state": lambda c: c.state}[by]
    expected: dict[str, int] = {}
    for case in cases:
        expected[group(case)] = expected.get(group(case), 0) + 1
    assert len(expected) > (by in ("week", "state"))  # several groups where cases differ
    assert {f.group: f.requests for f in report(engine, by=by).breakdown} == expected


def test_an_unknown_breakdown_is_refused(tracked: tuple[Engine, list[str]]) -> None:
    with pytest.raises(InvalidData) as refused:
        report(tracked[0], by="name")
    assert "region" in refused.value.message("en") and "sex" in refused.value.message("en")


# --- access -----------------------------------------------------------------------------------

def test_who_may_see_statistics(tracked: tuple[Engine, list[str]]) -> None:
    engine = tracked[0]
    assert figures(report(engine, actor=AUDITOR)).requests == len(ALL)
    assert figures(report(engine, actor=AGENT, procedure="track")).requests == len(ALL)
    assert report(engine, actor=STRANGER).procedures == ()
    with pytest.raises(NotAllowed):
        report(engine, actor=STRANGER, procedure="track")
    with pytest.raises(UnknownProcedure):
        report(engine, procedure="nothing")


# --- the command --------------------------------------------------------------------------------

def stats_cli(database_url: str, tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["stats", "--db", database_url, "--procedures",
                                     str(tmp_path / "procedures"), *args])


def test_cli_json_and_csv(tracked: tuple[Engine, list[str]], database_url: str,
                          tmp_path: Path) -> None:
    as_json = stats_cli(database_url, tmp_path, "--json", "--by", "sex")
    assert as_json.exit_code == 0, as_json.output
    loaded = json.loads(as_json.stdout)
    assert loaded["procedures"][0]["requests"] == len(ALL)
    groups = {g["group"]: g["requests"] for g in loaded["breakdown"]}
    assert groups == {"female": render_stats.SUPPRESSED, "male": render_stats.SUPPRESSED}
    as_csv = stats_cli(database_url, tmp_path, "--csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {(r["section"], r["measure"]): r["value"] for r in rows
            if r["procedure"] == "track"}[("procedures", "requests")] == str(len(ALL))
    text = stats_cli(database_url, tmp_path, "--from", "2026-03-01", "--to", "2026-03-31")
    assert text.exit_code == 0 and "Suivi des délais" in text.stdout
    refused = stats_cli(database_url, tmp_path, "--by", "name")
    assert refused.exit_code == 1 and refused.stderr.startswith("error: ")
    assert refused.stderr.count("\n") == 1  # one line, saying it once
    assert refused.stderr.count("« name » n'est pas une ventilation possible") == 1


def test_cli_html_is_self_contained_and_its_bars_match(tracked: tuple[Engine, list[str]],
                                                       database_url: str,
                                                       tmp_path: Path) -> None:
    result = stats_cli(database_url, tmp_path, "--html", "--by", "region")
    assert result.exit_code == 0, result.output
    page = result.stdout
    assert not re.search(r"https?://|<script|<link|\ssrc=|@import|url\(", page)
    assert '<meta name="viewport"' in page
    svgs = [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", page, re.DOTALL)]
    assert svgs
    by_title = {svg.findtext("title"): svg for svg in svgs}
    requests = by_title["Demandes"].findall("rect")
    assert [int(r.get("data-value", "")) for r in requests] == [len(ALL)]
    regions = by_title["Ventilation : region"].findall("rect")
    expected = [sum(p.region == r for p in ALL) for r in ("maritime", "plateaux")]
    assert [int(r.get("data-value", "")) for r in regions] == expected
    widths = [float(r.get("width", "")) for r in regions]
    assert max(widths) == render_stats.BAR_WIDTH
    assert widths[0] / widths[1] == pytest.approx(expected[0] / expected[1], rel=1e-3)


def test_the_html_escapes_what_it_shows(tracked: tuple[Engine, list[str]]) -> None:
    engine = tracked[0]
    marked = replace(engine.procedures["track"], title=Text("<i>Suivi</i>", "<i>Track</i>"))
    page = render_stats.html(report(engine), {"track": marked})
    assert "&lt;i&gt;Suivi&lt;/i&gt;" in page and "<i>" not in page
