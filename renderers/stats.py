"""A statistics report (engine.stats_values.Report) as tables, JSON, CSV and one HTML page.

`sections` gives the report as titled tables of texts (the CLI prints them; the HTML page
shows them), with French or English labels: procedure titles, state and option labels from
the procedures, amounts and numbers through renderers.words. `html` is one self-contained
page (renderers/templates/stats.html.j2: no network, no script, charts as inline SVG whose
bars carry their value in `data-value`), `data` a JSON-ready mapping, `csv_text` one CSV of
(section, procedure, group, measure, value) rows. A suppressed count of a sensitive breakdown
(engine.stats.protect: under 5, or one that would give such a count away) is never a number:
"suppressed" in JSON and CSV, « masqué » / "suppressed" in the tables; the same mark for both
kinds, so that which count is the small one is not told either.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.model import Procedure
from engine.stats_values import OPEN, Figures, Percentiles, Report

from .countries import COUNTRY_NAMES
from .html import render
from .words import NBSP, date, number, xof

Section = tuple[str, list[tuple[str, ...]]]  # title, rows (the first is the header)
#: A suppressed count in JSON and CSV (the tables say _WORDS[language]["suppressed"]).
SUPPRESSED = "suppressed"
#: The width of a chart's bars at their largest, in SVG user units.
BAR_WIDTH = 400

_WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Statistiques des démarches", "requests": "Demandes",
        "procedure": "Démarche", "time": "Délais de traitement (dossiers décidés)",
        "decided": "Décidés", "admin": "Administration", "total": "Total",
        "target": "Délai visé", "within": "Dans le délai", "states": "Temps par état",
        "state": "État", "stays": "Passages", "kind": "Temps de", "backlog": "Dossiers en cours",
        "open_cases": "En cours", "over": "Hors délai", "waiting": "Attente du demandeur",
        "breakdown": "Ventilation", "payments": "Paiements par moyen", "method": "Moyen",
        "count": "Paiements", "amount": "Montant", "none": "(non renseigné)",
        "no_method": "(aucun)", "period": "Période", "all": "toutes les dates",
        "from": "du", "to": "au", "generated": "Établi le", "age": "Ancienneté",
        "share_chart": "Part des dossiers décidés dans le délai visé",
        "sensitive": "Dimension sensible : seuls des effectifs sont donnés ; tout effectif "
                     "de moins de 5 dossiers est masqué, ainsi que ceux qui permettraient de "
                     "le retrouver par différence.",
        "suppressed": "masqué",
        "initial": "demandeur (brouillon)", "work": "administration",
        "waiting_kind": "demandeur (attente)", "final": "clos",
        "accepted": "accordé", "rejected": "rejeté", "withdrawn": "retiré",
        "expired": "expiré", "cancelled": "annulé", "revoked": "révoqué", OPEN: "en cours",
        "min": "min", "h": "h", "d": "j", "day": "jour", "days": "jours", "more": "plus de",
        "upto": "jusqu'à", "month": "Mois", "week": "Semaine du", "authority": "Autorité",
    },
    "en": {
        "title": "Procedure statistics", "requests": "Requests", "procedure": "Procedure",
        "time": "Processing times (decided cases)", "decided": "Decided",
        "admin": "Administration", "total": "Total", "target": "Target",
        "within": "Within target", "states": "Time per state", "state": "State",
        "stays": "Stays", "kind": "Time of", "backlog": "Open cases", "open_cases": "Open",
        "over": "Over target", "waiting": "Waiting for the applicant",
        "breakdown": "Breakdown", "payments": "Payments by method", "method": "Method",
        "count": "Payments", "amount": "Amount", "none": "(not given)",
        "no_method": "(none)", "period": "Period", "all": "all dates", "from": "from",
        "to": "to", "generated": "Produced on", "age": "Age",
        "share_chart": "Share of decided cases within the target",
        "sensitive": "Sensitive dimension: only counts are given; every count under 5 "
                     "cases is suppressed, and so is any count that would give it away by "
                     "subtraction.",
        "suppressed": "suppressed",
        "initial": "applicant (draft)", "work": "administration",
        "waiting_kind": "applicant (waiting)", "final": "closed",
        "accepted": "accepted", "rejected": "rejected", "withdrawn": "withdrawn",
        "expired": "expired", "cancelled": "cancelled", "revoked": "revoked", OPEN: "open",
        "min": "min", "h": "h", "d": "d", "day": "day", "days": "days", "more": "more than",
        "upto": "up to", "month": "Month", "week": "Week of", "authority": "Authority",
    },
}


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: its label, its value (None: suppressed), as shown, and width."""

    label: str
    value: int | None
    shown: str
    width: float


@dataclass(frozen=True)
class Chart:
    title: str
    bars: tuple[Bar, ...]

    @property
    def height(self) -> int:
        return 36 * len(self.bars) + 4


class _Labels:
    """The texts of one report in one language."""

    def __init__(self, procedures: Mapping[str, Procedure], language: str) -> None:
        self.procedures = procedures
        self.language = language
        self.words = _WORDS[language]

    def __getitem__(self, key: str) -> str:
        return self.words[key]

    def procedure(self, procedure_id: str) -> str:
        found = self.procedures.get(procedure_id)
        return found.title.get(self.language) if found else procedure_id

    def state(self, procedure_id: str, state: str) -> str:
        found = self.procedures.get(procedure_id)
        known = found.states.get(state) if found else None
        return known.label.get(self.language) if known else state

    def group(self, procedure_id: str, by: str | None, value: str | None) -> str:
        if value is None:
            return self["none"]
        if by == "state":
            return self.state(procedure_id, value)
        if by == "week":
            return f"{self['week']} {date(_day(value), self.language)}"
        found = self.procedures.get(procedure_id)
        field = found.field(by) if found and by else None
        if field is not None and field.type == "country" and value in COUNTRY_NAMES:
            return COUNTRY_NAMES[value][0 if self.language == "fr" else 1]
        option = next((o for o in field.options if o.value == value), None) if field else None
        return option.label.get(self.language) if option else value

    def count(self, value: int | None) -> str:
        return self["suppressed"] if value is None else number(value, self.language)

    def share(self, value: float | None) -> str:
        if value is None:
            return "—"
        percent = number(round(100 * value, 1), self.language)
        return f"{percent}{NBSP}%" if self.language == "fr" else f"{percent}%"

    def duration(self, seconds: int | None) -> str:
        """« 45 min », « 5,5 h », « 3,2 j »."""
        if seconds is None:
            return "—"
        if seconds < 3600:
            return f"{number(round(seconds / 60), self.language)}{NBSP}{self['min']}"
        if seconds < 86_400:
            return f"{number(round(seconds / 3600, 1), self.language)}{NBSP}{self['h']}"
        return f"{number(round(seconds / 86_400, 1), self.language)}{NBSP}{self['d']}"

    def age(self, bound: int | None, previous: int | None) -> str:
        if bound is None:
            return f"{self['more']} {self.days(previous or 0)}"
        return f"{self['upto']} {self.days(bound)}"

    def days(self, seconds: int) -> str:
        days = seconds // 86_400
        return f"{number(days, self.language)}{NBSP}{self['day' if days == 1 else 'days']}"


def _day(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


# --- tables --------------------------------------------------------------------------------------

def sections(report: Report, procedures: Mapping[str, Procedure], language: str = "fr"
             ) -> list[Section]:
    """The report as titled tables of texts."""
    labels = _Labels(procedures, language)
    found = [_requests(report.procedures, labels), _times(report.procedures, labels),
             _states(report, labels), _backlog(report, labels)]
    if report.by is not None:
        found.append(_breakdown(report, labels))
    found.append(_payments(report, labels))
    return found


def _outcomes(figures: Sequence[Figures]) -> list[str]:
    seen = {o: None for f in figures for o in f.outcomes}
    return list(seen)


def _requests(figures: Sequence[Figures], labels: _Labels) -> Section:
    outcomes = _outcomes(figures)
    rows = [(labels["procedure"], labels["requests"], *(labels[o] if o in labels.words else o
                                                      for o in outcomes))]
    rows += [(labels.procedure(f.procedure_id), labels.count(f.requests),
              *(labels.count(f.outcomes[o]) if o in f.outcomes else "0" for o in outcomes))
             for f in figures]
    return labels["requests"], rows


def _time_header(labels: _Labels, first: str) -> tuple[str, ...]:
    return (first, labels["decided"], *(f"{labels['admin']} p{p}" for p in (50, 90, 99)),
            *(f"{labels['total']} p{p}" for p in (50, 90, 99)), labels["target"],
            labels["within"])


def _time_cells(f: Figures, labels: _Labels) -> tuple[str, ...]:
    def ps(p: Percentiles) -> list[str]:
        return [labels.duration(v) for v in (p.p50, p.p90, p.p99)]
    return (labels.count(f.administration.count), *ps(f.administration), *ps(f.total),
            labels.duration(f.target), labels.share(f.share_within_target))


def _times(figures: Sequence[Figures], labels: _Labels) -> Section:
    rows = [_time_header(labels, labels["procedure"])]
    rows += [(labels.procedure(f.procedure_id), *_time_cells(f, labels)) for f in figures]
    return labels["time"], rows


def _states(report: Report, labels: _Labels) -> Section:
    rows: list[tuple[str, ...]] = [(labels["procedure"], labels["state"], labels["kind"],
                                     labels["stays"], "p50", "p90", "p99")]
    for s in report.states:
        kind = labels["waiting_kind" if s.kind == "waiting" else s.kind]
        rows.append((labels.procedure(s.procedure_id), labels.state(s.procedure_id, s.state),
                     kind, labels.count(s.stays.count),
                     *(labels.duration(v) for v in (s.stays.p50, s.stays.p90, s.stays.p99))))
    return labels["states"], rows


def _backlog(report: Report, labels: _Labels) -> Section:
    ages = report.backlog[0].ages if report.backlog else ()
    bounds = [b for b, _ in ages]
    header = [labels.age(b, bounds[i - 1] if i else None) for i, b in enumerate(bounds)]
    rows = [(labels["procedure"], labels["open_cases"], *header, labels["over"], labels["waiting"])]
    rows += [(labels.procedure(b.procedure_id), labels.count(b.cases),
              *(labels.count(n) for _, n in b.ages), labels.count(b.over_target),
              labels.count(b.waiting)) for b in report.backlog]
    return labels["backlog"], rows


def _breakdown(report: Report, labels: _Labels) -> Section:
    by = report.by or ""
    first = labels[by] if by in ("month", "week", "authority", "state") else by
    rows = [(labels["procedure"], first, labels["requests"],
             *_time_header(labels, labels["procedure"])[1:])]
    for f in report.breakdown:
        cells = _time_cells(f, labels) if not f.suppressed else ("",) * (len(rows[0]) - 3)
        rows.append((labels.procedure(f.procedure_id), labels.group(f.procedure_id, by, f.group),
                     labels.count(f.requests), *cells))
    title = f"{labels['breakdown']} : {first}" if labels.language == "fr" else \
        f"{labels['breakdown']}: {first}"
    return title, rows


def _payments(report: Report, labels: _Labels) -> Section:
    rows: list[tuple[str, ...]] = [(labels["method"], labels["count"], labels["amount"])]
    rows += [(method or labels["no_method"], labels.count(t.count), xof(t.amount, labels.language))
             for method, t in report.payments.items()]
    return labels["payments"], rows


# --- charts and the page ----------------------------------------------------------------------

def charts(report: Report, procedures: Mapping[str, Procedure], language: str = "fr"
           ) -> list[Chart]:
    """The bar charts of the HTML page: requests and within-target share per procedure,
    backlog by age, the breakdown's requests, payments by method (amounts)."""
    labels = _Labels(procedures, language)
    found = [
        _chart(labels["requests"], [(labels.procedure(f.procedure_id), f.requests)
                                    for f in report.procedures], labels.count),
        _chart(labels["share_chart"],
               [(labels.procedure(f.procedure_id), _percent(f.share_within_target))
                for f in report.procedures if f.share_within_target is not None],
               lambda v: labels.share(None if v is None else v / 1000), scale=1000),
        _chart(labels["backlog"], _ages(report, labels), labels.count),
    ]
    if report.by is not None:
        found.append(_chart(
            _breakdown(report, labels)[0],
            [(f"{labels.procedure(f.procedure_id)} — "
              f"{labels.group(f.procedure_id, report.by, f.group)}", f.requests)
             for f in report.breakdown], labels.count))
    found.append(_chart(labels["payments"], [(m or labels["no_method"], t.amount)
                                             for m, t in report.payments.items()],
                        lambda v: xof(v or 0, language)))
    return [c for c in found if c.bars]


def _percent(share: float | None) -> int | None:
    """A share in thousandths (bars have integer values)."""
    return None if share is None else round(share * 1000)


def _ages(report: Report, labels: _Labels) -> list[tuple[str, int | None]]:
    if not report.backlog:
        return []
    totals: dict[int | None, int] = {}
    for backlog in report.backlog:
        for bound, n in backlog.ages:
            totals[bound] = totals.get(bound, 0) + n
    bounds = list(totals)
    return [(labels.age(b, bounds[i - 1] if i else None), totals[b])
            for i, b in enumerate(bounds)]


def _chart(title: str, values: Sequence[tuple[str, int | None]], shown: Any,
           scale: int | None = None) -> Chart:
    """Bars whose widths are proportional to their values (the largest, or `scale`, is
    BAR_WIDTH); a suppressed value has no bar."""
    largest = scale or max((v for _, v in values if v is not None), default=0) or 1
    return Chart(title, tuple(Bar(label, value, shown(value),
                                  0.0 if value is None else round(BAR_WIDTH * value / largest, 2))
                              for label, value in values))


def html(report: Report, procedures: Mapping[str, Procedure], language: str = "fr") -> str:
    """One self-contained page: the tables and the charts (inline SVG, no network)."""
    labels = _Labels(procedures, language)
    period = (f"{labels['from']} {date(report.since.date(), language)}" if report.since else "",
              f"{labels['to']} {date(report.until.date(), language)}" if report.until else "")
    return render("stats.html.j2", language=language, words=labels.words, report=report,
                  sections=sections(report, procedures, language),
                  charts=charts(report, procedures, language), bar_width=BAR_WIDTH,
                  period=" ".join(p for p in period if p) or labels["all"],
                  generated=date(report.generated_at.date(), language))


# --- JSON and CSV ---------------------------------------------------------------------------------

def data(report: Report) -> dict[str, Any]:
    """The report as JSON values: durations in seconds, suppressed counts as SUPPRESSED."""
    def figures(f: Figures) -> dict[str, Any]:
        return {"procedure": f.procedure_id, "group": f.group, "requests": _n(f.requests),
                "outcomes": {o: _n(n) for o, n in f.outcomes.items()},
                "administration": _p(f.administration), "total": _p(f.total),
                "target": f.target, "within_target": _n(f.within_target),
                "with_target": _n(f.with_target), "share_within_target": f.share_within_target,
                "suppressed": f.suppressed}

    return {
        "generated_at": report.generated_at.isoformat(),
        "since": report.since.isoformat() if report.since else None,
        "until": report.until.isoformat() if report.until else None,
        "procedures": [figures(f) for f in report.procedures],
        "states": [{"procedure": s.procedure_id, "state": s.state, "kind": s.kind,
                    "stays": _p(s.stays)} for s in report.states],
        "backlog": [{"procedure": b.procedure_id, "cases": b.cases,
                     "ages": [{"up_to": bound, "cases": n} for bound, n in b.ages],
                     "over_target": b.over_target, "waiting": b.waiting}
                    for b in report.backlog],
        "by": report.by, "sensitive": report.sensitive,
        "breakdown": [figures(f) for f in report.breakdown],
        "payments": {m: {"count": t.count, "amount": t.amount}
                     for m, t in report.payments.items()},
    }


def _n(value: int | None) -> int | str:
    return SUPPRESSED if value is None else value


def _p(p: Percentiles) -> dict[str, Any]:
    return {"count": _n(p.count), "p50": p.p50, "p90": p.p90, "p99": p.p99}


def csv_text(report: Report) -> str:
    """One CSV: section, procedure, group, measure, value (seconds for durations)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "procedure", "group", "measure", "value"))
    writer.writerows(_csv_rows(data(report)))
    return out.getvalue()


def _csv_rows(d: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
    for section in ("procedures", "breakdown"):
        for f in d[section]:
            head = (section, f["procedure"], f["group"] if f["group"] is not None else "")
            yield (*head, "requests", f["requests"])
            yield from ((*head, f"outcome:{o}", n) for o, n in f["outcomes"].items())
            for name in ("administration", "total"):
                yield from ((*head, f"{name}:{k}", v) for k, v in f[name].items())
            yield from ((*head, k, f[k]) for k in ("target", "with_target", "within_target",
                                                   "share_within_target"))
    for s in d["states"]:
        yield from (("states", s["procedure"], s["state"], f"stay:{k}", v)
                    for k, v in s["stays"].items())
    for b in d["backlog"]:
        yield ("backlog", b["procedure"], "", "cases", b["cases"])
        yield from (("backlog", b["procedure"], "", f"age:{a['up_to'] or 'more'}", a["cases"])
                    for a in b["ages"])
        yield ("backlog", b["procedure"], "", "over_target", b["over_target"])
        yield ("backlog", b["procedure"], "", "waiting", b["waiting"])
    for method, t in d["payments"].items():
        yield ("payments", "", method, "count", t["count"])
        yield ("payments", "", method, "amount", t["amount"])
