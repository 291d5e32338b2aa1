"""The compiled procedure: frozen values shared by every case (no I/O here).

`Procedure` is what the compiler builds from a validated file and what the runtime, the
simulator and the renderers use. Every element keeps the `path` of its definition in the
source document so that diagnostics can point at it.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .expressions import Expression, Template

if TYPE_CHECKING:
    from .calendars import Calendar

Path = tuple[str | int, ...]
LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"

FIELD_TYPES = (
    "string", "text", "integer", "number", "boolean", "date", "email", "phone",
    "choice", "multi_choice", "country", "nin", "group",
)
NUMERIC_TYPES = ("integer", "number")
OUTCOMES = ("accepted", "rejected", "withdrawn", "expired", "cancelled", "revoked")


@dataclass(frozen=True)
class Text:
    """A human-readable text in French and/or English."""

    fr: str | None = None
    en: str | None = None

    def get(self, language: str = DEFAULT_LANGUAGE) -> str:
        """The text in `language`, falling back to French then English."""
        value = self.en if language == "en" else self.fr
        return value or self.fr or self.en or ""

    def __str__(self) -> str:
        return self.get()


#: The longest duration a procedure may state: 100 years (36,525 calendar days), so that a
#: date plus any duration is still a date (`Duration.add_to` cannot overflow).
MAX_DURATION_DAYS = 36_525
#: Calendar days in one unit (a business day may take 7/5 of a day: weekends are skipped).
_UNIT_DAYS = {"seconds": 1 / 86400, "minutes": 1 / 1440, "hours": 1 / 24, "days": 1,
              "business_days": 7 / 5, "weeks": 7, "months": 30, "years": 365}


#: The most days in a row a calendar may close (weekends, holidays, closure days) before
#: counting business days gives up: a calendar closing every day must not loop forever.
MAX_CLOSED_RUN = 366


class DurationLimit(ValueError):
    """A duration longer than MAX_DURATION_DAYS."""


def _business(day: dt.date, calendar: Calendar | None) -> bool:
    return day.weekday() < 5 and (calendar is None or calendar.is_business_day(day))


@dataclass(frozen=True)
class Duration:
    """`amount` of `unit` (minutes, hours, days, business_days, weeks, months, years; and
    seconds, which only the engine writes: the time left on a paused deadline).

    At most MAX_DURATION_DAYS (100 years): a longer one raises DurationLimit (a ValueError).
    """

    amount: int
    unit: str

    def __post_init__(self) -> None:
        days = _UNIT_DAYS.get(self.unit)
        if days is not None and self.amount * days > MAX_DURATION_DAYS:
            raise DurationLimit(f'"{self}" is longer than the limit of 100 years')

    @classmethod
    def parse(cls, text: str) -> Duration:
        """`30 days`, `1 business day`...; raises ValueError (DurationLimit past 100 years)."""
        number, _, unit = text.partition(" ")
        unit = unit.replace("business day", "business_day")
        unit = unit if unit.endswith("s") else unit + "s"
        if number.isdigit() and len(number) > len(str(MAX_DURATION_DAYS * 1440)):
            raise DurationLimit(f'"{text}" is longer than the limit of 100 years')
        return cls(int(number), unit)

    def approximate(self) -> dt.timedelta:
        """A plain timedelta (business days counted as calendar days, months as 30 days)."""
        days = {"weeks": 7, "months": 30, "years": 365, "days": 1, "business_days": 1}
        if self.unit == "seconds":
            return dt.timedelta(seconds=self.amount)
        if self.unit == "minutes":
            return dt.timedelta(minutes=self.amount)
        if self.unit == "hours":
            return dt.timedelta(hours=self.amount)
        return dt.timedelta(days=self.amount * days[self.unit])

    def add_to(self, moment: dt.datetime, calendar: Calendar | None = None) -> dt.datetime:
        """`moment` plus this duration: THE computation of when a deadline falls. Business
        days step a day at a time, counting only the days `calendar` says offices are open
        (None: Monday to Friday), at the same time of day. Bounded: past
        MAX_CLOSED_RUN closed days in a row, DurationLimit."""
        if self.unit != "business_days":
            return moment + self.approximate()
        left, closed = self.amount, 0
        while left:
            moment += dt.timedelta(days=1)
            day = moment.date()
            if _business(day, calendar):
                left, closed = left - 1, 0
            else:
                closed += 1
                if closed > MAX_CLOSED_RUN:
                    raise DurationLimit(f"no business day in {MAX_CLOSED_RUN} days after "
                                        f"{day - dt.timedelta(days=closed - 1)}")
        return moment

    def left(self, now: dt.datetime, due: dt.datetime, calendar: Calendar | None = None
             ) -> Duration:
        """What is left of a deadline of this unit falling at `due`, seen at `now`: business
        days still to count (those after `now`'s day up to `due`'s day) for a business-day
        one, else (or when under one business day is left) the seconds; at least 0."""
        if self.unit == "business_days" and due.date() > now.date():
            days = (due.date() - now.date()).days
            counted = sum(1 for n in range(1, days + 1)
                          if _business(now.date() + dt.timedelta(days=n), calendar))
            if counted:
                return Duration(counted, "business_days")
        return Duration(max(int((due - now).total_seconds()), 0), "seconds")

    def last_day(self, first: dt.date) -> dt.date:
        """The last day of a period of this length starting on `first`, months and years
        counted on the calendar (12 months from 5 January: to 4 January; from 31 January, 1
        month ends on 27 or 28 February, the day before the clamped 28 or 29 February)."""
        if self.unit not in ("months", "years"):
            start = dt.datetime.combine(first, dt.time())
            return self.add_to(start).date() - dt.timedelta(days=1)
        months = first.month - 1 + self.amount * (12 if self.unit == "years" else 1)
        year, month = first.year + months // 12, months % 12 + 1
        day = min(first.day, calendar.monthrange(year, month)[1])
        return dt.date(year, month, day) - dt.timedelta(days=1)

    def __str__(self) -> str:
        unit = self.unit.replace("_", " ")
        return f"{self.amount} {unit[:-1] if self.amount == 1 else unit}"


@dataclass(frozen=True)
class FieldDuration:
    """A duration read from a case's data: the integer value of `field` (a form field or a
    step input) in `unit`; `resolve` gives None while it is unset or unusable."""

    field: str
    unit: str  # days, business_days, weeks, months, years

    def resolve(self, data: Mapping[str, Any]) -> Duration | None:
        """The duration this case's data gives, or None (unset, not a positive integer, or
        longer than MAX_DURATION_DAYS)."""
        value = data.get(self.field)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return None
        try:
            return Duration(value, self.unit)
        except DurationLimit:
            return None

    def __str__(self) -> str:
        return f"{self.field} {self.unit.replace('_', ' ')}"


#: The name issued documents' templates read the end of validity from (`validity:`).
VALID_UNTIL = "valid_until"

#: A duration stated in the file, or read from a case's data.
AnyDuration = Duration | FieldDuration


def resolve_duration(duration: AnyDuration | None, data: Mapping[str, Any]
                     ) -> Duration | None:
    """A stated duration as it is, one read from data as this case's data gives it."""
    if isinstance(duration, FieldDuration):
        return duration.resolve(data)
    return duration


@dataclass(frozen=True)
class Option:
    value: str
    label: Text
    when: Expression | None = None  # offered only when it holds


@dataclass(frozen=True)
class Field:
    """A form field (or a transition input); groups hold sub-fields repeated in rows."""

    id: str
    type: str
    label: Text
    path: Path = field(compare=False)
    hint: Text | None = None
    required: bool = False
    when: Expression | None = None
    minimum: Any = None
    maximum: Any = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    pattern_message: Text | None = None
    min_age: int | None = None
    max_age: int | None = None
    options: tuple[Option, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    fields: tuple[Field, ...] = ()
    #: sensitive personal data (never in hook payloads; see Workflow, "who may read what")
    sensitive: bool = False
    #: the only roles that see the value, besides the applicant party (empty: not restricted)
    visible_to: tuple[str, ...] = ()

    @property
    def option_values(self) -> tuple[str, ...]:
        return tuple(o.value for o in self.options)


@dataclass(frozen=True)
class Document:
    """A document the applicant must attach."""

    id: str
    label: Text
    path: Path = field(compare=False)
    hint: Text | None = None
    required: bool = True
    when: Expression | None = None
    media_types: tuple[str, ...] = ("application/pdf", "image/jpeg", "image/png")
    max_size: int = 5 * 1024 * 1024
    min_files: int = 1
    max_files: int = 1
    original_at_counter: bool = False
    sensitive: bool = False  # as Field.sensitive, for its files' names and hashes
    visible_to: tuple[str, ...] = ()  # as Field.visible_to


@dataclass(frozen=True)
class Fee:
    """A fee item in XOF: fixed, conditional (`when`) or per unit of a numeric field (`per`)."""

    id: str
    label: Text
    amount: int
    due: str
    path: Path = field(compare=False)
    per: str | None = None
    when: Expression | None = None
    #: a numeric form field or step input holding the amount (a quote set at a step)
    amount_from: str | None = None


@dataclass(frozen=True)
class Notification:
    channel: str
    to: str
    template: Mapping[str, Template]  # language -> compiled template
    path: Path = field(compare=False)
    subject: Text | None = None


@dataclass(frozen=True)
class IssuedDocument:
    id: str
    title: Text
    template: Mapping[str, Template]
    path: Path = field(compare=False)
    channel: str = "portal"


@dataclass(frozen=True)
class Deadline:
    """After `after` in a state, `trigger` fires as the system actor; a reminder may precede it."""

    after: AnyDuration
    trigger: str
    path: Path = field(compare=False)
    remind_before: Duration | None = None
    reminder: Notification | None = None
    #: states where its clock stops: back in its state, it resumes with the time left
    pause_in: tuple[str, ...] = ()


Requirement = Literal["all"] | tuple[str, ...]


@dataclass(frozen=True)
class EditGrant:
    """Who may change which form fields in a state: the applicant party (`applicant`),
    holders of `roles` (staff correcting declared data); `fields` "all" or the ids."""

    roles: tuple[str, ...] = ()
    fields: Requirement = "all"
    applicant: bool = False


@dataclass(frozen=True)
class FollowUp:
    """A case of `procedure` linked to this one, with data carried over: `carry` pairs
    (its field, this case's field or step input)."""

    procedure: str
    path: Path = field(compare=False)
    carry: tuple[tuple[str, str], ...] = ()

    def data(self, parent: Mapping[str, Any]) -> dict[str, Any]:
        """The child's data carried from the parent's (unset values left out)."""
        return {child: parent[source] for child, source in self.carry
                if parent.get(source) is not None}


@dataclass(frozen=True)
class State:
    id: str
    label: Text
    path: Path = field(compare=False)
    description: Text | None = None
    initial: bool = False
    outcome: str | None = None  # set for final states
    edits: tuple[EditGrant, ...] = ()
    deadlines: tuple[Deadline, ...] = ()
    notify: tuple[Notification, ...] = ()
    follow_ups: tuple[FollowUp, ...] = ()  # procedures its applicant may open from here
    #: who the case waits for here (`waiting: applicant`): not the administration's time
    waiting: str | None = None

    @property
    def final(self) -> bool:
        return self.outcome is not None

    @property
    def editable(self) -> bool:
        """Whether the applicant may change (some of) the form and attach files here."""
        return any(grant.applicant for grant in self.edits)


@dataclass(frozen=True)
class Transition:
    trigger: str
    sources: tuple[str, ...]
    target: str
    roles: tuple[str, ...]
    path: Path = field(compare=False)
    label: Text | None = None
    when: Expression | None = None
    #: what a citizen reads when the guard `when` refuses (None: a text naming the label)
    message: Text | None = None
    requires_fields: Requirement = ()
    requires_documents: Requirement = ()
    input: tuple[Field, ...] = ()
    not_applicant: bool = True
    not_actor_of: tuple[str, ...] = ()
    notify: tuple[Notification, ...] = ()
    issue: tuple[IssuedDocument, ...] = ()
    opens: FollowUp | None = None  # a case of another procedure its firing opens


#: The role that may open cases of a file that declares no `start:` (the compatibility rule).
COMPATIBLE_START_ROLE = "applicant"
#: The party a notification goes to by default: the case's applicant (a person or an
#: organisation), whatever role they hold.
APPLICANT_PARTY = "applicant"

#: The role of the engine itself: deadlines fire as it (values.SYSTEM is the actor holding it).
SYSTEM_ROLE = "system"


@dataclass(frozen=True)
class Role:
    id: str
    label: Text
    path: Path = field(compare=False)
    description: Text | None = None


@dataclass(frozen=True)
class Start:
    """Who may open a case. Holders of `roles` open their own case and are its applicant
    party; holders of `on_behalf` roles open one at the counter for a person.

    `implied`: the file declares no `start:` and has a role named `applicant`, which then
    may open cases (the compatibility rule; validate warns and says what to add)."""

    roles: tuple[str, ...] = ()
    on_behalf: tuple[str, ...] = ()
    implied: bool = False
    organisations: bool = False  # an organisation may apply, its members acting for it


@dataclass(frozen=True)
class Party:
    """A party of a case reached through form fields: the ids of the fields holding its
    name, phone and e-mail (each optional)."""

    id: str
    label: Text | None
    path: Path = field(compare=False)
    name: str | None = None
    phone: str | None = None
    email: str | None = None

    @property
    def contact_fields(self) -> dict[str, str]:
        """kind (name, phone, email) -> field id, for those declared."""
        found = {"name": self.name, "phone": self.phone, "email": self.email}
        return {kind: field_id for kind, field_id in found.items() if field_id}


@dataclass(frozen=True)
class PaymentMethod:
    """A way to pay that the procedure accepts (`payment_methods:`): its id, as payments
    record it, and its label."""

    id: str
    label: Text
    path: Path = field(compare=False)


#: The field types a reporting dimension may name: values from a closed list.
DIMENSION_TYPES = ("choice", "country")


@dataclass(frozen=True)
class ReportingDimension:
    """A form field `guichet stats` breaks its figures down by (`reporting:`). A sensitive
    one is only ever counted, and its groups of fewer than 5 cases are suppressed."""

    field_id: str
    path: Path = field(compare=False)
    sensitive: bool = False


@dataclass(frozen=True)
class Simulation:
    """Figures for load simulation: arrivals, staff per role, handling times, delays, weights,
    and lead times (calendar time before a staff trigger can be handled, after its source
    state is entered)."""

    arrivals_per_day: float | None = None
    staff: Mapping[str, int] = field(default_factory=dict)
    handling: Mapping[str, Duration] = field(default_factory=dict)
    delays: Mapping[str, Duration] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    lead_times: Mapping[str, Duration] = field(default_factory=dict)


@dataclass(frozen=True)
class Procedure:
    """One compiled version of a procedure. `hash` identifies the version (of `definition`)."""

    id: str
    version: str
    title: Text
    reference_prefix: str
    roles: Mapping[str, Role]
    fields: tuple[Field, ...]
    documents: tuple[Document, ...]
    fees: tuple[Fee, ...]
    states: Mapping[str, State]
    transitions: tuple[Transition, ...]
    definition: Mapping[str, Any] = field(repr=False, compare=False)
    hash: str = ""
    description: Text | None = None
    ministry: Text | None = None
    directorate: Text | None = None
    legal_basis: tuple[Text, ...] = ()
    processing_time: Duration | None = None
    validity: AnyDuration | None = None
    retention: Duration | None = None
    source_path: str = field(default="", compare=False)
    simulation: Simulation = field(default_factory=Simulation, compare=False)
    start: Start = field(default_factory=Start)
    parties: Mapping[str, Party] = field(default_factory=dict)
    #: roles that may read every case without acting on it (`read:`)
    read_roles: tuple[str, ...] = ()
    #: the ways of paying accepted (`payment_methods:`); none declared: any, or none, is
    #: recorded
    payment_methods: tuple[PaymentMethod, ...] = ()
    #: the form fields statistics are broken down by (`reporting:`)
    reporting: tuple[ReportingDimension, ...] = ()
    #: the country whose public holidays business days skip (`calendar: TG`); None: weekends
    calendar: str | None = None

    @property
    def party_roles(self) -> frozenset[str]:
        """The roles whose holders act on a case only as its applicant party."""
        return frozenset(self.start.roles)

    @property
    def staff_roles(self) -> frozenset[str]:
        """The declared roles that act on any case of the procedure (not the system's)."""
        return frozenset(self.roles) - self.party_roles - {SYSTEM_ROLE}

    @property
    def initial_state(self) -> State:
        return next(s for s in self.states.values() if s.initial)

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every trigger, in order of first declaration."""
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def field(self, field_id: str) -> Field | None:
        return next((f for f in self.fields if f.id == field_id), None)

    def document(self, document_id: str) -> Document | None:
        return next((d for d in self.documents if d.id == document_id), None)

    def transitions_from(self, state: str, trigger: str | None = None) -> Iterator[Transition]:
        for transition in self.transitions:
            if state in transition.sources and trigger in (None, transition.trigger):
                yield transition
