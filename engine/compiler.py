"""From a loaded document to a compiled `Procedure`, and the whole check of a file.

`build` is lenient: it makes the best model it can from any data that passed loading, so the
semantic rules can report every problem at once; `compile_source` only returns a Procedure
when no rule found an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path as FsPath
from typing import Any

from . import cascade, expressions, hints, links, rules, schema, source
from .effects import default_reminder
from .errors import Diagnostic, Location, ProcedureError
from .expressions import (
    MAX_DOCUMENT_CHARS,
    MAX_NOTIFICATION_CHARS,
    Expression,
    ExpressionError,
    ExpressionLimit,
    Template,
    compile_expression,
    compile_template,
)
from .model import (
    COMPATIBLE_START_ROLE,
    LANGUAGES,
    AnyDuration,
    Deadline,
    Document,
    Duration,
    DurationLimit,
    EditGrant,
    Fee,
    Field,
    FieldDuration,
    FollowUp,
    IssuedDocument,
    Notification,
    Option,
    Party,
    Path,
    PaymentMethod,
    Procedure,
    ReportingDimension,
    Requirement,
    Role,
    Simulation,
    Start,
    State,
    Text,
    Transition,
)

YAML_SUFFIXES = (".yaml", ".yml")
#: The largest `max_size` a document may declare: 100 MB.
MAX_DOCUMENT_SIZE = 100 * 1024 * 1024


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(v for v in _list(value) if isinstance(v, str))


def text(value: Any) -> Text | None:
    """A Text from a string (French), a {fr, en} mapping or {all: ...}, one text for every
    language (a language also given keeps its own; the schema refuses mixing them)."""
    if isinstance(value, str):
        return Text(fr=value)
    if isinstance(value, dict):
        every = _str(value.get("all"))
        return Text(fr=_str(value.get("fr")) or every or None,
                    en=_str(value.get("en")) or every or None)
    return None


def _size(value: Any) -> int:
    """Bytes in a size like "500 KB" or "5 MB" (0 when unreadable, the schema says why)."""
    if not isinstance(value, str):
        return 5 * 1024 * 1024
    number, _, unit = value.partition(" ")
    if not number.isdigit():
        return 0
    if len(number) > len(str(MAX_DOCUMENT_SIZE)):
        return MAX_DOCUMENT_SIZE + 1
    return int(number) * (1024 * 1024 if unit == "MB" else 1024)


def start_rule(data: dict[str, Any]) -> Start:
    """Who may open a case: the `start:` block, or, without one, a role named "applicant"
    (the compatibility rule, reported by validate), or no one."""
    declared = data.get("start")
    if isinstance(declared, dict):
        return Start(_names(declared.get("roles")), _names(declared.get("on_behalf")),
                     organisations=declared.get("organisations") is True)
    if COMPATIBLE_START_ROLE in _dict(data.get("roles")):
        return Start((COMPATIBLE_START_ROLE,), implied=True)
    return Start()


class _Builder:
    def __init__(self, document: source.Document) -> None:
        self.document = document
        self.diagnostics: list[Diagnostic] = []
        self.starting = start_rule(_dict(document.data))

    def error(self, path: Path, rule: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.document.at(path), "error", rule, message))

    def expression(self, value: Any, path: Path) -> Expression | None:
        if not isinstance(value, str):
            return None
        try:
            return compile_expression(value)
        except ExpressionLimit as exc:
            self.error(path, "expression-limit", f'expression "{value}" goes over a limit: '
                                                 f"{exc.message}")
        except ExpressionError as exc:
            self.error(path, "expression-syntax", f'invalid expression "{value}": {exc.message}')
        return None

    def template(self, value: Any, path: Path,
                 max_chars: int = MAX_NOTIFICATION_CHARS) -> dict[str, Template]:
        compiled: dict[str, Template] = {}
        sources = {"fr": value} if isinstance(value, str) else _dict(value)
        for language, text_source in sources.items():
            if not isinstance(text_source, str):
                continue
            where = path if isinstance(value, str) else (*path, language)
            try:
                template = compile_template(text_source, max_chars=max_chars)
                languages = LANGUAGES if language == "all" else (language,)
                compiled.update(dict.fromkeys(languages, template))
            except ExpressionLimit as exc:
                self.error(where, "expression-limit", f"template goes over a limit: {exc.message}")
            except ExpressionError as exc:
                self.error(where, "template-syntax", f"invalid template: {exc.message}")
        return compiled

    def duration(self, value: Any, path: Path) -> Duration | None:
        """A duration, None when absent or unreadable (the schema says why); one over
        MAX_DURATION_DAYS is reported here (`value-limit`)."""
        if not isinstance(value, str):
            return None
        try:
            return Duration.parse(value)
        except DurationLimit as exc:
            self.error(path, "value-limit", f"duration {exc}")
        except ValueError:
            pass
        return None

    def document_size(self, value: Any, path: Path) -> int:
        """A document's `max_size` in bytes; one over MAX_DOCUMENT_SIZE is reported."""
        size = _size(value)
        if size > MAX_DOCUMENT_SIZE:
            shown = value if len(value) <= 40 else value[:30] + "..." + value[-6:]
            self.error(path, "value-limit", f'max_size "{shown}" is over the limit of '
                                            f"{MAX_DOCUMENT_SIZE // (1024 * 1024)} MB")
        return size

    def field(self, data: Any, path: Path) -> Field:
        d = _dict(data)
        return Field(
            id=_str(d.get("id")), type=_str(d.get("type"), "string"),
            label=text(d.get("label")) or Text(), path=path, hint=text(d.get("hint")),
            required=d.get("required") is True,
            when=self.expression(d.get("when"), (*path, "when")),
            minimum=d.get("min"), maximum=d.get("max"),
            min_length=_int(d.get("min_length")), max_length=_int(d.get("max_length")),
            pattern=d.get("pattern") if isinstance(d.get("pattern"), str) else None,
            pattern_message=text(d.get("pattern_message")),
            min_age=_int(d.get("min_age")), max_age=_int(d.get("max_age")),
            options=tuple(
                Option(_str(o.get("value")), text(o.get("label")) or Text(),
                       self.expression(o.get("when"), (*path, "options", i, "when")))
                for i, o in enumerate(map(_dict, _list(d.get("options"))))
            ),
            min_rows=_int(d.get("min_rows")), max_rows=_int(d.get("max_rows")),
            fields=self.fields(d.get("fields"), (*path, "fields")),
            sensitive=d.get("sensitive") is True, visible_to=_names(d.get("visible_to")),
        )

    def fields(self, data: Any, path: Path) -> tuple[Field, ...]:
        return tuple(self.field(f, (*path, i)) for i, f in enumerate(_list(data)))

    def document_item(self, data: Any, path: Path) -> Document:
        d = _dict(data)
        media = tuple(m for m in _list(d.get("media_types")) if isinstance(m, str))
        extra: dict[str, Any] = {"media_types": media} if media else {}
        return Document(
            id=_str(d.get("id")), label=text(d.get("label")) or Text(), path=path,
            hint=text(d.get("hint")), required=d.get("required") is not False,
            when=self.expression(d.get("when"), (*path, "when")),
            max_size=self.document_size(d.get("max_size"), (*path, "max_size")),
            min_files=_int(d.get("min_files")) or 0 if "min_files" in d else 1,
            max_files=_int(d.get("max_files")) or 1,
            original_at_counter=d.get("original_at_counter") is True,
            sensitive=d.get("sensitive") is True, visible_to=_names(d.get("visible_to")),
            **extra,
        )

    def fee(self, data: Any, path: Path) -> Fee:
        d = _dict(data)
        source = _dict(d.get("amount")).get("from")
        return Fee(
            id=_str(d.get("id")), label=text(d.get("label")) or Text(),
            amount=_int(d.get("amount")) or 0, due=_str(d.get("due")), path=path,
            per=d.get("per") if isinstance(d.get("per"), str) else None,
            when=self.expression(d.get("when"), (*path, "when")),
            amount_from=source if isinstance(source, str) else None,
        )

    def any_duration(self, value: Any, path: Path) -> AnyDuration | None:
        """A stated duration, or one read from data ({field, unit})."""
        if isinstance(value, dict):
            field_id, unit = value.get("field"), value.get("unit")
            if isinstance(field_id, str) and isinstance(unit, str):
                return FieldDuration(field_id, unit.replace(" ", "_"))
            return None
        return self.duration(value, path)

    def edits(self, value: Any) -> tuple[EditGrant, ...]:
        """Who may change which form fields in a state (`editable:`)."""
        if value is True:
            return (EditGrant(applicant=True),)
        if not isinstance(value, dict | list):
            return ()
        parties = set(self.starting.roles)
        grants = []
        for grant in map(_dict, value if isinstance(value, list) else [value]):
            roles = _names(grant.get("roles"))
            fields = _requirement(grant.get("fields")) if "fields" in grant else "all"
            grants.append(EditGrant(tuple(r for r in roles if r not in parties), fields,
                                    applicant=bool(parties & set(roles))))
        return tuple(g for g in grants if g.roles or g.applicant)

    def follow_up(self, value: Any, path: Path) -> FollowUp | None:
        d = _dict(value)
        if not isinstance(d.get("procedure"), str):
            return None
        carry = tuple((k, v) for k, v in _dict(d.get("carry")).items()
                      if isinstance(k, str) and isinstance(v, str))
        return FollowUp(d["procedure"], path, carry)

    def notification(self, data: Any, path: Path) -> Notification:
        d = _dict(data)
        return Notification(
            channel=_str(d.get("channel"), "portal"), to=_str(d.get("to"), "applicant"),
            template=self.template(d.get("template"), (*path, "template")), path=path,
            subject=text(d.get("subject")),
        )

    def notifications(self, data: Any, path: Path) -> tuple[Notification, ...]:
        return tuple(self.notification(n, (*path, i)) for i, n in enumerate(_list(data)))

    def state(self, state_id: str, data: Any, path: Path) -> State:
        d = _dict(data)
        deadlines = []
        for i, item in enumerate(_list(d.get("deadlines"))):
            dl, where = _dict(item), (*path, "deadlines", i)
            reminder = dl.get("reminder")
            remind_before = self.duration(dl.get("remind_before"), (*where, "remind_before"))
            deadlines.append(Deadline(
                after=self.any_duration(dl.get("after"), (*where, "after"))
                or Duration(1, "days"),
                trigger=_str(dl.get("trigger")), path=where, remind_before=remind_before,
                reminder=self.notification(reminder, (*where, "reminder")) if reminder
                else default_reminder((*where, "reminder")) if remind_before else None,
                pause_in=_names(dl.get("pause_in")),
            ))
        outcome = d.get("final")
        return State(
            id=state_id, label=text(d.get("label")) or Text(), path=path,
            description=text(d.get("description")), initial=d.get("initial") is True,
            outcome=outcome if isinstance(outcome, str) else None,
            edits=self.edits(d.get("editable")), deadlines=tuple(deadlines),
            notify=self.notifications(d.get("notify"), (*path, "notify")),
            follow_ups=tuple(f for i, item in enumerate(_list(d.get("follow_ups")))
                             if (f := self.follow_up(item, (*path, "follow_ups", i)))),
            waiting=_str(d.get("waiting")) or None,
        )

    def transition(self, data: Any, path: Path) -> Transition:
        d = _dict(data)
        roles = _names(d.get("roles"))
        requires = _dict(d.get("requires"))
        separation = _dict(d.get("separation"))
        not_applicant = separation.get("not_applicant")
        return Transition(
            trigger=_str(d.get("trigger")), sources=_names(d.get("from")),
            target=_str(d.get("to")), roles=roles, path=path, label=text(d.get("label")),
            when=self.expression(d.get("when"), (*path, "when")),
            message=text(d.get("message")),
            requires_fields=_requirement(requires.get("fields")),
            requires_documents=_requirement(requires.get("documents")),
            input=self.fields(d.get("input"), (*path, "input")),
            not_applicant=not_applicant if isinstance(not_applicant, bool)
            else not set(roles) & set(self.starting.roles),
            not_actor_of=_names(separation.get("not_actor_of")),
            notify=self.notifications(d.get("notify"), (*path, "notify")),
            opens=self.follow_up(d.get("opens"), (*path, "opens")),
            issue=tuple(
                IssuedDocument(
                    id=_str(_dict(item).get("id")), title=text(_dict(item).get("title")) or Text(),
                    template=self.template(_dict(item).get("template"),
                                           (*path, "issue", i, "template"), MAX_DOCUMENT_CHARS),
                    path=(*path, "issue", i), channel=_str(_dict(item).get("channel"), "portal"),
                )
                for i, item in enumerate(_list(d.get("issue")))
            ),
        )

    def procedure(self) -> Procedure:
        data = self.document.data
        authority = _dict(data.get("authority"))
        snapshot = canonical_json(data)
        return Procedure(
            id=_str(data.get("id")), version=_str(data.get("version")),
            title=text(data.get("title")) or Text(),
            reference_prefix=_str(data.get("reference_prefix")) or _str(data.get("id"))[:3].upper(),
            roles={
                k: Role(k, text(_dict(v).get("label")) or Text(), ("roles", k),
                        text(_dict(v).get("description")))
                for k, v in _dict(data.get("roles")).items()
            },
            fields=self.fields(data.get("fields"), ("fields",)),
            documents=tuple(
                self.document_item(d, ("documents", i))
                for i, d in enumerate(_list(data.get("documents")))
            ),
            fees=tuple(self.fee(f, ("fees", i)) for i, f in enumerate(_list(data.get("fees")))),
            states={
                k: self.state(k, v, ("states", k)) for k, v in _dict(data.get("states")).items()
            },
            transitions=tuple(
                self.transition(t, ("transitions", i))
                for i, t in enumerate(_list(data.get("transitions")))
            ),
            definition=data, hash=hashlib.sha256(snapshot.encode()).hexdigest(),
            description=text(data.get("description")),
            ministry=text(authority.get("ministry")),
            directorate=text(authority.get("directorate")),
            legal_basis=tuple(t for t in map(text, _list(data.get("legal_basis"))) if t),
            processing_time=self.duration(data.get("processing_time"), ("processing_time",)),
            validity=self.any_duration(data.get("validity"), ("validity",)),
            retention=self.duration(data.get("retention"), ("retention",)),
            source_path=self.document.path,
            simulation=self.simulation(_dict(data.get("simulation"))),
            start=self.starting, read_roles=_names(data.get("read")),
            parties=self.parties(_dict(data.get("parties"))),
            payment_methods=self.payment_methods(data.get("payment_methods")),
            calendar=data.get("calendar") if isinstance(data.get("calendar"), str) else None,
            reporting=self.reporting(data.get("reporting")),
        )

    def reporting(self, data: Any) -> tuple[ReportingDimension, ...]:
        items = [_dict(d) for d in _list(data)]
        return tuple(ReportingDimension(_str(d.get("field")), ("reporting", i),
                                        sensitive=d.get("sensitive") is True)
                     for i, d in enumerate(items))

    def payment_methods(self, data: Any) -> tuple[PaymentMethod, ...]:
        methods = [_dict(m) for m in _list(data)]
        return tuple(PaymentMethod(_str(m.get("id")), text(m.get("label")) or Text(),
                                   ("payment_methods", i)) for i, m in enumerate(methods))

    def parties(self, d: dict[str, Any]) -> dict[str, Party]:
        parties = {}
        for party_id, spec in d.items():
            given = _dict(spec)
            contacts = {kind: given[kind] for kind in ("name", "phone", "email")
                        if isinstance(given.get(kind), str)}
            parties[party_id] = Party(party_id, text(given.get("label")), ("parties", party_id),
                                      **contacts)
        return parties

    def simulation(self, d: dict[str, Any]) -> Simulation:
        def durations(key: str) -> dict[str, Duration]:
            parsed = {k: self.duration(v, ("simulation", key, k))
                      for k, v in _dict(d.get(key)).items()}
            return {k: v for k, v in parsed.items() if v is not None}

        arrivals = d.get("arrivals_per_day")
        return Simulation(
            arrivals_per_day=float(arrivals) if isinstance(arrivals, int | float) else None,
            staff={k: v for k, v in _dict(d.get("staff")).items() if _int(v)},
            handling=durations("handling"), delays=durations("delays"),
            weights={k: float(v) for k, v in _dict(d.get("weights")).items()
                     if isinstance(v, int | float)},
            lead_times=durations("lead_times"),
        )


def _requirement(value: Any) -> Requirement:
    if value == "all":
        return "all"
    return _names(value) if isinstance(value, list) else ()


def canonical_json(data: Any) -> str:
    """The canonical text of a definition: what its version hash is computed from."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compile_document(document: source.Document, loaded: Iterable[Diagnostic] = (),
                     tolerated: frozenset[str] = frozenset()
                     ) -> tuple[Procedure | None, list[Diagnostic]]:
    """Schema, model and semantic rules; the Procedure only when there is no error.

    `loaded`: what loading the file reported (an error there refuses the procedure too);
    `tolerated`: rules whose errors are only warnings here (see `compile_definition`).
    One mistake gives one error (engine/cascade.py): the model and the rules read the file
    as its author meant it, and a value already refused is not reported again."""
    found = _schema(document)
    document, misspelled = cascade.as_meant(document, found)
    if misspelled:
        found = misspelled + _schema(document)
    builder = _Builder(document)
    procedure = builder.procedure()
    checked = rules.check(procedure, document)
    stages = (loaded, found, builder.diagnostics, checked)
    diagnostics = sorted(set(cascade.one_per_value(document, stages)), key=lambda d: d.sort_key)
    diagnostics = [replace(d, severity="warning") if d.rule in tolerated else d
                   for d in diagnostics]
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return procedure, diagnostics


def _schema(document: source.Document) -> list[Diagnostic]:
    """The schema's diagnostics, a text cut by an unquoted comma said as such."""
    return hints.quote_commas(document, schema.check(document))


def clear_caches() -> None:
    """Forget compiled expressions and templates and the values the schema found valid, so
    that the next check costs what a first check costs (benchmarks use it)."""
    expressions.forget()
    schema.forget()


def compile_source(raw: bytes | str, path: str) -> tuple[Procedure | None, list[Diagnostic]]:
    """Load, check and compile one file's content."""
    procedure, _, diagnostics = _compile_file(raw, path)
    return procedure, diagnostics


def _compile_file(raw: bytes | str, path: str
                  ) -> tuple[Procedure | None, source.Document | None, list[Diagnostic]]:
    document, diagnostics = source.load(raw, path)
    if document is None:
        return None, None, diagnostics
    procedure, diagnostics = compile_document(document, diagnostics)
    return procedure, document, diagnostics


#: Rules made stricter since a definition may have been stored, whose errors do not change
#: how the engine runs it: a snapshot stored before keeps running, as it ran (issue 12 refused
#: keys that serve no purpose on a field's type, such as `pattern` on a date).
SNAPSHOT_TOLERATED = frozenset({"field-constraint"})


def compile_definition(definition: dict[str, Any], path: str = "<snapshot>") -> Procedure:
    """Compile a stored definition (a snapshot from the database, pinned by its cases);
    raises ProcedureError. Errors of SNAPSHOT_TOLERATED rules do not stop it: the cases
    opened on an earlier version of the format keep running."""
    document = source.Document(path, definition, {(): Location(path)}, {})
    procedure, diagnostics = compile_document(document, tolerated=SNAPSHOT_TOLERATED)
    if procedure is None:
        raise ProcedureError(diagnostics)
    return procedure


def load_procedure(path: str | FsPath) -> Procedure:
    """Load and compile one procedure file; raises ProcedureError listing every error."""
    raw, problems = source.read(path)
    if raw is None:
        raise ProcedureError(problems)
    procedure, diagnostics = compile_source(raw, str(path))
    if procedure is None:
        raise ProcedureError(diagnostics)
    return procedure


def procedure_files(paths: Iterable[str | FsPath]) -> Iterator[FsPath]:
    """The YAML files named by `paths`, directories searched (not recursively), sorted."""
    for path in map(FsPath, paths):
        if path.is_dir():
            yield from sorted(
                p for p in path.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file()
            )
        else:
            yield path


def lint(paths: Iterable[str | FsPath]) -> list[Diagnostic]:
    """Every diagnostic of every procedure file under `paths`, and of the follow-ups between
    them (engine/links.py: one naming a procedure not among them is a warning)."""
    found: list[Diagnostic] = []
    compiled: list[tuple[Procedure, source.Document | None]] = []
    for path in procedure_files(paths):
        raw, problems = source.read(path)
        if raw is None:
            found.extend(problems)
            continue
        procedure, document, diagnostics = _compile_file(raw, str(path))
        found.extend(diagnostics)
        if procedure is not None:
            compiled.append((procedure, document))
    return found + sorted(links.check(compiled, "warning"), key=lambda d: d.sort_key)
