"""The `guichet` command line: validate procedures, print the schema, run cases.

Exit status: 0 success, 1 problems found (or a refused operation), 2 bad usage.

`guichet case ...` and `guichet tick` run cases on a database (`--db`, default
`sqlite:///guichet.db`, or $GUICHET_DATABASE_URL) with the procedures of `--procedures`.
Every refused operation (a GuichetError) and every procedure that cannot be loaded prints
one `error: ...` line on stderr (or one JSON object on stdout with `--json`) and exits 1.

Everything is printed through `echo` (text without terminal control characters) or
`json_text` (JSON with them escaped), so no value stored in a case can drive the terminal.
`--data` is bounded like any data given to the engine (engine/limits.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import yaml

from engine import (
    Actor,
    Case,
    DatabaseUnavailable,
    GuichetError,
    HistoryEntry,
    InvalidData,
    InvalidDatabaseURL,
    ProcedureError,
    compiler,
    limits,
    source,
)
from engine.clock import FakeClock, utc_now
from engine.errors import Reason
from engine.model import Procedure
from engine.schema import schema_text
from engine.values import SYSTEM

if TYPE_CHECKING:  # imported where a command runs cases: `validate` never loads the database stack
    from engine.analysis.loadsim import LoadParameters  # and the analyses only where they run
    from engine.analysis.scenarios import Session, Suite
    from engine.runtime import Engine

DEFAULT_PROCEDURES = "procedures/"
DEFAULT_DATABASE = "sqlite:///guichet.db"
DATABASE_ENV = "GUICHET_DATABASE_URL"
LANGUAGES = ("fr", "en")

F = TypeVar("F", bound=Callable[..., Any])


# --- settings shared by `case` and `tick` --------------------------------------------------------

class Settings:
    """What the options of one invocation say; builds the Engine once, when first needed."""

    def __init__(self) -> None:
        self.database: str | None = None
        self.procedures: str | None = None
        self.as_json = False
        self.language: str = "fr"
        self.now: dt.datetime | None = None
        self.closures: frozenset[dt.date] = frozenset()
        self._engine: Engine | None = None

    @property
    def database_url(self) -> str:
        return self.database or os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE

    def engine(self) -> Engine:
        if self._engine is None:
            url = self.database_url
            clock = utc_now if self.now is None else FakeClock(self.now)
            from engine.runtime import Engine

            try:
                engine = Engine(self.procedures or DEFAULT_PROCEDURES, url, clock=clock,
                                closures=self.closures)
            except InvalidDatabaseURL as exc:  # malformed, or an unknown dialect
                raise _bad_url(exc) from None
            self._engine = engine
            click.get_current_context().find_root().call_on_close(engine.close)
        return self._engine

    def actor(self, spec: ActorSpec) -> Actor:
        return Actor(spec.id, spec.roles, self.language)


def _bad_url(exc: InvalidDatabaseURL) -> click.BadParameter:
    return click.BadParameter(f"not a usable database URL: {exc.url!r} ({exc.problem})",
                              param_hint="'--db'")


def _settings() -> Settings:
    return click.get_current_context().ensure_object(Settings)


def _remember(attribute: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """An option callback storing a given value in Settings (a subcommand's value wins)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:
            setattr(ctx.ensure_object(Settings), attribute, value)

    return callback


def _read_closures(ctx: click.Context, param: click.Parameter, value: str | None
                   ) -> frozenset[dt.date] | None:
    """The closure days of a --closures file (a YAML list, block or flow, or one ISO date a
    line)."""
    if value is None:
        return None
    from engine.calendars import ClosuresError, read_closures

    try:
        return read_closures(value)
    except ClosuresError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _remember_closures(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    closures = _read_closures(ctx, param, value)
    if closures is not None:
        ctx.ensure_object(Settings).closures = closures


#: --closures FILE, for the commands that run cases
CLOSURES_HELP = ("File of days the offices are closed by decree (a YAML list, `- 2026-03-06` "
                 "lines or `[2026-03-06, 2026-04-27]`, or one ISO date YYYY-MM-DD a line; a "
                 "regular file of at most 64 KiB): business-day deadlines of procedures with a "
                 "calendar skip them.")


def session_options(function: F) -> F:
    """--db, --procedures, --json, --lang and --closures: accepted by `case`, each case
    command, tick, purge and worker."""
    options = [
        click.option("--db", "database", metavar="URL", expose_value=False,
                     callback=_remember("database"),
                     help=f"Database URL [default: ${DATABASE_ENV}, else {DEFAULT_DATABASE}]."),
        click.option("--procedures", metavar="PATH", expose_value=False,
                     callback=_remember("procedures"),
                     help=f"Procedure file or directory [default: {DEFAULT_PROCEDURES}]."),
        # eager: known before --as and --data are checked, whose errors they shape
        click.option("--json", "as_json", is_flag=True, default=False, expose_value=False,
                     is_eager=True, callback=_remember("as_json"),
                     help="Machine-readable JSON output."),
        click.option("--lang", "language", type=click.Choice(LANGUAGES), expose_value=False,
                     is_eager=True, callback=_remember("language"),
                     help="Language of messages [default: fr]."),
        click.option("--closures", metavar="FILE", expose_value=False,
                     callback=_remember_closures, help=CLOSURES_HELP),
    ]
    for option in reversed(options):
        function = option(function)
    return function


# --- parameter types ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ActorSpec:
    roles: frozenset[str]
    id: str


class ActorType(click.ParamType):  # type: ignore[type-arg]  # generic in newer click
    """`ROLE:ID` or `ROLE,ROLE:ID`, e.g. `applicant:citizen-1`, `agent,supervisor:agent-7`."""

    name = "ROLE:ID"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> ActorSpec:
        if isinstance(value, ActorSpec):
            return value
        roles_text, colon, actor_id = str(value).partition(":")
        roles = frozenset(r.strip() for r in roles_text.split(",") if r.strip())
        if not colon or not roles or not actor_id.strip():
            self.fail(f"{value!r} is not ROLE:ID (e.g. applicant:citizen-1 or "
                      f"agent,supervisor:agent-7)", param, ctx)
        limits.check_actor(actor_id.strip(), roles)  # InvalidActor: one line, exit 1
        return ActorSpec(roles, actor_id.strip())


class DataType(click.ParamType):  # type: ignore[type-arg]  # generic in newer click
    """Inline JSON, `@file.json`, or `@file.yaml` (read with the engine's strict YAML loader).

    Bad syntax is a usage error (exit 2); data beyond the engine's limits (a regular file of
    at most limits.MAX_DATA_BYTES, nested at most limits.MAX_DEPTH deep, no NUL or lone
    surrogate: limits.check_data) is refused as InvalidData (one line, exit 1).
    """

    name = "JSON|@FILE"

    def fail(self, message: str, param: click.Parameter | None = None,
             ctx: click.Context | None = None) -> NoReturn:
        super().fail(printable(message), param, ctx)  # it may quote a file's name or content

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        text = str(value)
        if text.startswith("@"):
            data = self._from_file(text[1:], param, ctx)
        else:
            data = self._json(text, "", param, ctx)
        if not isinstance(data, dict):
            self.fail("must be an object mapping field names to values, e.g. "
                      '\'{"surname": "Amegah"}\'', param, ctx)
        limits.check_data(data)
        return data

    def _from_file(self, name: str, param: click.Parameter | None,
                   ctx: click.Context | None) -> Any:
        if not name:
            self.fail("@ must be followed by a file name, e.g. @data.json", param, ctx)
        try:
            raw = _read_data_file(Path(name))
        except OSError as exc:
            self.fail(f"cannot read {name}: {(exc.strerror or str(exc)).lower()}", param, ctx)
        if raw is None:
            self.fail(f"cannot read {name}: not a regular file", param, ctx)
        if Path(name).suffix.lower() in (".yaml", ".yml"):
            return self._yaml(raw, name, param, ctx)
        return self._json(raw, f"{name}: ", param, ctx)

    def _json(self, raw: str | bytes, where: str, param: click.Parameter | None,
              ctx: click.Context | None) -> Any:
        try:
            return json.loads(raw, object_pairs_hook=_no_duplicates,
                              parse_constant=_no_constant)
        except RecursionError:  # nested too deep for the parser itself
            raise limits.too_deep("--data") from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            self.fail(f"{where}invalid JSON: {_first_line(str(exc))}", param, ctx)

    def _yaml(self, raw: bytes, name: str, param: click.Parameter | None,
              ctx: click.Context | None) -> Any:
        document, diagnostics = source.load(raw, name)
        errors = [d for d in diagnostics if d.severity == "error"]
        if errors and errors[0].rule == "not-a-mapping":
            self.fail(f"{name}: must be a mapping of field names to values", param, ctx)
        if document is None or errors:
            self.fail(str(errors[0]) if errors else f"{name}: unreadable YAML", param, ctx)
        return document.data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _read_data_file(path: Path) -> bytes | None:
    """The bytes of a data file: None if it is not a regular file (a device, a pipe, a
    directory: never read); InvalidData past limits.MAX_DATA_BYTES (read no further)."""
    if not stat.S_ISREG(path.stat().st_mode):  # before opening: a pipe would block open()
        return None
    with path.open("rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return None
        raw = stream.read(limits.MAX_DATA_BYTES + 1)
    if len(raw) > limits.MAX_DATA_BYTES:
        raise limits.invalid("--data", {
            "fr": f"le fichier dépasse {limits.MAX_DATA_BYTES} octets",
            "en": f"the file exceeds {limits.MAX_DATA_BYTES} bytes"})
    return raw


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None
               ) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date-time, e.g. "
                                 "2030-01-01T09:00:00 (UTC) or 2030-01-01T09:00:00+00:00"
                                 ) from None
    if moment.tzinfo is not None:  # the engine keeps naive UTC times
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


# --- errors -------------------------------------------------------------------------------------

class GuichetGroup(click.Group):
    """Turns every refused operation into one line (or one JSON object) and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (GuichetError, ProcedureError) as exc:
            settings = ctx.find_object(Settings) or Settings()
            _report(exc, settings)
            ctx.exit(1)


def _report(exc: Exception, settings: Settings) -> None:
    language = settings.language
    payload: dict[str, Any]
    if isinstance(exc, ProcedureError):
        errors = [d for d in exc.diagnostics if d.severity == "error"]
        message = (f"procedure refused ({len(errors)} error(s)): "
                   + "; ".join(str(d) for d in errors)) if errors else \
            "procedure refused: its stored definition is missing from the database"
        payload = {"error": "ProcedureError", "message": message,
                   "diagnostics": [d.as_json() for d in exc.diagnostics]}
    elif isinstance(exc, DatabaseUnavailable):  # the database's words, for the operator
        where = exc.url or _safe_url(settings.database_url)
        message = f"database {where}: {exc.problem}"
        payload = {"error": "DatabaseError", "message": message}
    else:
        assert isinstance(exc, GuichetError)
        message = exc.message(language)
        payload = {"error": type(exc).__name__, "message": message}
        if isinstance(exc, InvalidData):
            payload["errors"] = {name: texts.get(language) or texts.get("fr", "")
                                 for name, texts in exc.errors.items()}
        else:
            payload["reasons"] = [{"code": r.code, "subject": r.subject,
                                   "message": r.message(language)} for r in exc.reasons]
    message = " ".join(message.splitlines())  # one line, whatever the messages hold
    if settings.as_json:
        payload["message"] = message
        _print_json(payload)
    else:
        echo(f"error: {message}", err=True)


def _safe_url(url: str) -> str:
    """The database URL without its password, fit to print (the engine's errors carry it so
    already: this is for one that does not)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# --- output -------------------------------------------------------------------------------------

def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: Terminal escape sequences: OSC (to BEL or ST, within the line), DCS/SOS/PM/APC strings,
#: CSI, then any other ESC sequence.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?"
    r"|\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-~]?"
)
_TERMINAL_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but \t \n; DEL; C1
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\ud800-\udfff\u2028\u2029]")  # json.dumps leaves these


def printable(text: str) -> str:
    """`text` safe to print on a terminal: escape sequences and control characters (but tab
    and newline) removed, lone surrogates (which no terminal encoding can hold) as U+FFFD."""
    text = _TERMINAL_CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))
    return _SURROGATE.sub("\ufffd", text)


def echo(message: str = "", err: bool = False, nl: bool = True) -> None:
    """Print a line of text (click.echo), made printable: every text output goes here."""
    click.echo(printable(message), err=err, nl=nl)


def json_text(value: Any) -> str:
    """`value` as indented JSON, lossless and safe to print: json.dumps escapes C0 control
    characters; DEL, C1, lone surrogates and line separators are escaped here too."""
    text = json.dumps(value, default=_encode, indent=2, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _print_json(value: Any) -> None:
    click.echo(json_text(value))


def _case_json(case: Case) -> dict[str, Any]:
    result: dict[str, Any] = {f.name: getattr(case, f.name) for f in dataclasses.fields(case)}
    result["fees_outstanding"] = case.fees_outstanding
    result["closed"] = case.closed
    return result


def _state_label(engine: Engine, case: Case, state: str, language: str) -> str:
    found = engine.workflow(case.procedure_hash).procedure.states.get(state)
    return found.label.get(language) if found else state


def _reason_text(reason: Reason, language: str, staff: bool) -> str:
    """A refusal reason as a reader sees it: staff also see its detail (a guard's
    expression), which a citizen never does."""
    message = reason.message(language)
    return f"{message} [{reason.detail}]" if staff and reason.detail else message


def _reason_json(reason: Reason, language: str, staff: bool) -> dict[str, str]:
    found = {"code": reason.code, "subject": reason.subject,
             "message": reason.message(language)}
    if staff and reason.detail:
        found["detail"] = reason.detail
    return found


def _case_lines(engine: Engine, case: Case, language: str) -> list[str]:
    state = f"{case.state} ({_state_label(engine, case, case.state, language)})"
    lines = [
        f"reference: {case.reference}",
        f"procedure: {case.procedure_id}",
        f"state:     {state}",
    ]
    if case.outcome is not None:
        lines.append(f"outcome:   {case.outcome}")
    lines += [
        f"fees:      {case.fees_due} XOF due, {case.fees_paid} XOF paid"
        + (f", {case.fees_outstanding} XOF outstanding" if case.fees_outstanding else ""),
        f"version:   {case.version}",
    ]
    if case.claim_code is not None:
        lines.append(f"claim code: {case.claim_code} (for the receipt: the person claims the "
                     "case with it)")
    if case.parent is not None:
        lines.append(f"follows:   {case.parent}")
    if case.follow_ups:
        lines.append(f"follow-ups: {', '.join(case.follow_ups)}")
    return lines


def _print_case(case: Case) -> None:
    settings = _settings()
    if settings.as_json:
        _print_json(_case_json(case))
    else:
        echo("\n".join(_case_lines(settings.engine(), case, settings.language)))


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _time(moment: dt.datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_encode, ensure_ascii=False)


# --- commands -----------------------------------------------------------------------------------

@click.group(cls=GuichetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="guichet")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Guichet: one YAML file per administrative procedure."""
    ctx.ensure_object(Settings)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--format", "output_format",
              type=click.Choice(["text", "json", "sarif", "github"]), default="text",
              show_default=True,
              help="text: one problem per line; json: an array for CI; sarif: SARIF 2.1.0 for "
                   "code scanning; github: GitHub Actions annotations.")
def validate(paths: tuple[str, ...], output_format: str) -> None:
    """Check procedure files (files or directories; default procedures/)."""
    if not paths:
        if not Path(DEFAULT_PROCEDURES).is_dir():
            raise click.UsageError(f"no PATH given and no {DEFAULT_PROCEDURES} directory here")
        paths = (DEFAULT_PROCEDURES,)
    files = list(compiler.procedure_files(paths))
    diagnostics = compiler.lint(files)
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    if output_format == "json":
        click.echo(json_text([d.as_json() for d in diagnostics]))
    elif output_format == "sarif":
        from importlib.metadata import PackageNotFoundError, version

        from engine.diagnostic_formats import sarif_log
        try:
            tool_version: str | None = version("guichet")
        except PackageNotFoundError:  # pragma: no cover - run from a checkout, not installed
            tool_version = None
        click.echo(json_text(sarif_log(diagnostics, tool_version=tool_version)))
    else:
        if output_format == "github":
            from engine.diagnostic_formats import to_github
            echo(to_github(diagnostics), nl=False)
        else:
            for diagnostic in diagnostics:
                echo(str(diagnostic))
        summary = f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)"
        echo(summary, err=True)
    sys.exit(1 if errors else 0)


@main.command()
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of the procedure format."""
    echo(schema_text(), nl=False)


@main.group()
@session_options
def case() -> None:
    """Start cases, fire triggers, attach documents, record payments, read cases."""


def _as_option(required: bool = True) -> Callable[[F], F]:
    return click.option("--as", "actor", type=ActorType(), required=required,
                        help="Who acts: ROLE:ID, several roles with commas "
                             "(agent,supervisor:agent-7).")


_data_option = click.option("--data", type=DataType(), default=None,
                            help="Data: inline JSON, @file.json or @file.yaml.")


def _reader_options(function: F) -> F:
    """--as ROLE:ID or --as-system: who reads, said every time (show, history, list)."""
    function = click.option("--as-system", "as_system", is_flag=True,
                            help="Read as the system: every value, nothing masked.")(function)
    return click.option("--as", "actor", type=ActorType(), default=None,
                        help="Who reads: ROLE:ID; shows what this actor may see "
                             "(or use --as-system).")(function)


def _reader(settings: Settings, actor: ActorSpec | None, as_system: bool) -> Actor:
    """The actor a read command reads as: exactly one of --as and --as-system."""
    if (actor is None) == (not as_system):
        raise click.UsageError("say who reads: --as ROLE:ID (what that actor may see), "
                               "or --as-system (everything)")
    return SYSTEM if actor is None else settings.actor(actor)


@case.command()
@click.argument("procedure")
@_as_option()
@_data_option
@click.option("--on-behalf", is_flag=True,
              help="Open it at the counter for a person, who claims it later with the code "
                   "printed here.")
@click.option("--organisation", metavar="ID", default=None,
              help="Apply as this organisation (you administer its members on the case).")
@click.option("--parent", metavar="REFERENCE", default=None,
              help="Open it as a follow-up of this case (its state must offer it); the data "
                   "it carries over is filled in.")
@session_options
def start(procedure: str, actor: ActorSpec, data: dict[str, Any] | None,
          on_behalf: bool, organisation: str | None, parent: str | None) -> None:
    """Open a case of PROCEDURE (its id, e.g. passport)."""
    settings = _settings()
    _print_case(settings.engine().start(procedure, settings.actor(actor), data,
                                        on_behalf=on_behalf, organisation=organisation,
                                        parent=parent))


@case.command()
@click.argument("reference")
@click.argument("members", nargs=-1)
@_as_option()
@session_options
def members(reference: str, members: tuple[str, ...], actor: ActorSpec) -> None:
    """Name the MEMBERS of your organisation who may act for it on the case REFERENCE."""
    settings = _settings()
    _print_case(settings.engine().set_members(reference, settings.actor(actor), members))


@case.command()
@click.argument("reference")
@click.argument("code")
@_as_option()
@session_options
def claim(reference: str, code: str, actor: ActorSpec) -> None:
    """Make a case opened for you at the counter yours, with the CODE on its receipt."""
    settings = _settings()
    _print_case(settings.engine().claim(reference, settings.actor(actor), code))


@case.command()
@click.argument("reference")
@click.argument("trigger")
@_as_option()
@_data_option
@click.option("--expected-version", type=int, default=None,
              help="Refuse if the case is no longer at this version.")
@click.option("--keep-data", is_flag=True,
              help="If the step is blocked, save the form fields sent with it as a draft.")
@session_options
def fire(reference: str, trigger: str, actor: ActorSpec, data: dict[str, Any] | None,
         expected_version: int | None, keep_data: bool) -> None:
    """Fire TRIGGER on the case REFERENCE."""
    settings = _settings()
    _print_case(settings.engine().fire(reference, trigger, settings.actor(actor), data,
                                       expected_version, keep_data=keep_data))


@case.command()
@click.argument("reference")
@_as_option()
@click.option("--data", type=DataType(), required=True,
              help="The form fields to save: inline JSON, @file.json or @file.yaml.")
@session_options
def edit(reference: str, actor: ActorSpec, data: dict[str, Any]) -> None:
    """Save form fields of the case REFERENCE without a transition: the applicant's draft,
    or staff correcting the fields the state lets them."""
    settings = _settings()
    _print_case(settings.engine().update(reference, settings.actor(actor), data))


@case.command()
@click.argument("reference")
@click.argument("document_id")
@click.argument("file", type=click.File("rb"))
@_as_option()
@click.option("--replace", is_flag=True,
              help="Instead of the document's current files (they stay in the record).")
@session_options
def attach(reference: str, document_id: str, file: IO[bytes], actor: ActorSpec,
           replace: bool) -> None:
    """Attach FILE as DOCUMENT_ID (its type is read from its bytes, not its name)."""
    settings = _settings()
    filename = os.path.basename(getattr(file, "name", "") or "") or "stdin"
    _print_case(settings.engine().attach(reference, document_id, filename, file,
                                         settings.actor(actor), replace=replace))


@case.command()
@click.argument("reference")
@click.argument("document_id")
@click.option("--sha256", metavar="HASH", default=None,
              help="Only the file with this SHA-256 (as `case show` prints it) "
                   "[default: every file of the document].")
@_as_option()
@session_options
def remove(reference: str, document_id: str, sha256: str | None, actor: ActorSpec) -> None:
    """Remove the files of DOCUMENT_ID from the case REFERENCE (they stay in the record)."""
    settings = _settings()
    _print_case(settings.engine().remove_document(reference, document_id,
                                                  settings.actor(actor), sha256))


@case.command()
@click.argument("reference")
@click.argument("amount", type=int)
@click.option("--provider", required=True, help="Payment provider, e.g. tmoney.")
@click.option("--provider-reference", required=True, help="The provider's transaction id.")
@click.option("--method", default=None,
              help="How it was paid: one of the procedure's payment_methods ids.")
@_as_option()
@session_options
def pay(reference: str, amount: int, provider: str, provider_reference: str,
        method: str | None, actor: ActorSpec) -> None:
    """Record a payment of AMOUNT XOF (the same provider reference twice counts once)."""
    settings = _settings()
    _print_case(settings.engine().pay(reference, amount, provider, provider_reference,
                                      settings.actor(actor), method=method))


@case.command()
@click.argument("reference")
@_reader_options
@session_options
def show(reference: str, actor: ActorSpec | None, as_system: bool) -> None:
    """Show a case as --as ROLE:ID may see it (values they may not see as •••), with the
    triggers they may fire now (and why not); or everything, --as-system."""
    settings = _settings()
    reader = _reader(settings, actor, as_system)  # refused before the engine is built
    engine = settings.engine()
    found = engine.case(reference, reader)
    available = engine.available(found.reference, reader) if actor else None
    staff = engine.workflow(found.procedure_hash).is_staff(reader)
    if settings.as_json:
        result = _case_json(found)
        if available is not None:
            result["available"] = [
                {"trigger": a.trigger, "label": a.label, "allowed": a.allowed,
                 "reasons": [_reason_json(r, settings.language, staff) for r in a.reasons],
                 "input": list(a.input)} for a in available]
        _print_json(result)
        return
    lines = _case_lines(engine, found, settings.language)
    lines.append("data:" if found.data else "data:      (none)")
    lines += [f"  {name}: {_value(value)}" for name, value in found.data.items()]
    lines.append("documents:" if found.documents else "documents: (none)")
    lines += [f"  {d.document_id}: {d.filename} ({d.media_type}, {d.size} bytes, "
              f"sha256 {d.sha256[:12]})" for d in found.documents]
    sent = [(e, _step_details(dataclasses.replace(e, changes={}), settings.language))
            for e in engine.history(found.reference, reader)]
    sent = [(e, details) for e, details in sent if details]
    lines.append("sent and issued:" if sent else "sent and issued: (none)")
    lines += [f"  #{e.sequence} {e.trigger}: {detail}" for e, details in sent
              for detail in details]
    if actor is not None and available is not None:
        lines.append(f"triggers for {actor.id} ({', '.join(sorted(actor.roles))}):"
                     if available else f"triggers for {actor.id}: (none)")
        for a in available:
            status = "allowed" if a.allowed else "blocked: " + "; ".join(
                _reason_text(r, settings.language, staff) for r in a.reasons)
            needs = f" [input: {', '.join(a.input)}]" if a.input else ""
            lines.append(f"  {a.trigger} ({a.label}){needs}: {status}")
    echo("\n".join(lines))


@case.command()
@click.argument("reference")
@_reader_options
@session_options
def history(reference: str, actor: ActorSpec | None, as_system: bool) -> None:
    """Every recorded step of a case, oldest first, as --as ROLE:ID may see it (or
    --as-system)."""
    settings = _settings()
    reader = _reader(settings, actor, as_system)
    entries = settings.engine().history(reference, reader)
    if settings.as_json:
        _print_json(entries)
        return
    rows = [("#", "time (UTC)", "trigger", "from → to", "actor (role)")]
    rows += [(str(e.sequence), _time(e.at), e.trigger, f"{e.from_state or '-'} → {e.to_state}",
              f"{e.actor_id} ({e.actor_role})") for e in entries]
    header, *lines = _table(rows)
    shown = [header]
    for line, entry in zip(lines, entries, strict=True):
        shown += [line, *(f"    {detail}" for detail in _step_details(entry, settings.language))]
    echo("\n".join(shown))


def _step_details(entry: HistoryEntry, language: str) -> list[str]:
    """What a step changed in the form, the notifications it sent and what it issued."""
    details = [f"changed {name}: {_value(change.get('before'))} → {_value(change.get('after'))}"
               for name, change in entry.changes.items()]
    details += [f"sent {n.get('channel')} → {n.get('to')}: {_text(n.get('text'), language)}"
                for n in entry.notifications]
    details += [f"issued {d.get('id')} ({d.get('channel')}): "
                f"{_text(d.get('title'), language)}" for d in entry.issued]
    return details


def _text(texts: Any, language: str) -> str:
    """A rendered text in the reader's language, on one line."""
    if not isinstance(texts, Mapping):
        return ""
    return " ".join(str(texts.get(language) or texts.get("fr") or "").split())


@case.command(name="list")
@click.option("--procedure", default=None, help="Only cases of this procedure id.")
@click.option("--state", default=None, help="Only cases in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="At most this many cases.")
@click.option("--after", metavar="REFERENCE", default=None,
              help="The page after this case (pass the last reference shown).")
@_reader_options
@session_options
def list_cases(procedure: str | None, state: str | None, limit: int, after: str | None,
               actor: ActorSpec | None, as_system: bool) -> None:
    """List the cases --as ROLE:ID may read (or all, --as-system), oldest first, a page at
    a time."""
    settings = _settings()
    reader = _reader(settings, actor, as_system)
    for name, value, longest in (("--procedure", procedure, limits.MAX_PROCEDURE_ID),
                                 ("--state", state, limits.MAX_STATE)):
        if value is not None:  # a NUL would reach PostgreSQL as a driver error
            limits.check_text(name, value, longest)
    found = settings.engine().cases(procedure, state, actor=reader, limit=limit, after=after)
    if settings.as_json:
        _print_json([_case_json(c) for c in found])
        return
    if found:
        rows = [("reference", "procedure", "state", "outcome", "version", "updated (UTC)")]
        rows += [(c.reference, c.procedure_id, c.state, c.outcome or "-", str(c.version),
                  _time(c.updated_at)) for c in found]
        echo("\n".join(_table(rows)))
    more = f"; next page: --after {found[-1].reference}" if len(found) == limit else ""
    echo(f"{len(found)} case(s){more}", err=True)


@main.command()
@click.option("--now", metavar="ISO-DATETIME", callback=_parse_now,
              help="Act as if it were this moment (UTC unless an offset is given) "
                   "[default: the current time].")
@session_options
def tick(now: dt.datetime | None) -> None:
    """Fire every due deadline and reminder once, as the system actor."""
    settings = _settings()
    settings.now = now  # the engine's clock too: history and new timers date from `now`
    done = settings.engine().tick(now)
    if settings.as_json:
        _print_json([{"reference": r, "trigger": t, "result": result} for r, t, result in done])
        return
    for reference, trigger, result in done:
        echo(f"{reference}  {trigger}  {result}")
    echo(f"{len(done)} timer(s) due", err=True)


@main.command()
@click.option("--interval", type=click.FloatRange(min=0), default=5.0, show_default=True,
              metavar="SECONDS", help="Wait between rounds that found nothing more to do.")
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True,
              metavar="N", help="Due timers read per round.")
@click.option("--health", "health_interval", type=click.FloatRange(min=0, min_open=True),
              default=60.0, show_default=True, metavar="SECONDS",
              help="Seconds between health lines.")
@click.option("--once", is_flag=True, help="One round, then exit.")
@session_options
def worker(interval: float, batch: int, health_interval: float, once: bool) -> None:
    """Fire due deadlines and reminders and deliver the outbox, round after round, until
    SIGTERM or SIGINT (the timer in progress is finished first). One JSON line on stderr
    per action, and a health line. Several workers may share a PostgreSQL database; on
    SQLite one at a time."""
    import threading

    from engine.worker import Worker, WorkerLocked, stop_on_signals

    settings = _settings()
    running = Worker(settings.engine(), interval=interval, batch=batch,
                     health_interval=health_interval)
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        if once:
            running.run_once()
        else:
            running.run(stop)
    except WorkerLocked as exc:
        _report_line(str(exc), settings)
        sys.exit(1)


def _report_line(message: str, settings: Settings) -> None:
    """One `error: ...` line on stderr (a JSON object on stdout with --json)."""
    if settings.as_json:
        _print_json({"error": "WorkerLocked", "message": message})
    else:
        echo(f"error: {message}", err=True)


@main.command()
@click.option("--procedure", default=None, help="Only the payments of this procedure id.")
@_reader_options
@session_options
def payments(procedure: str | None, actor: ActorSpec | None, as_system: bool) -> None:
    """Payments recorded, by method: how many and how much, for the procedures --as ROLE:ID
    reads (a role acting on them or named by `read:`), or all, --as-system."""
    settings = _settings()
    reader = _reader(settings, actor, as_system)
    if procedure is not None:
        limits.check_text("--procedure", procedure, limits.MAX_PROCEDURE_ID)
    totals = settings.engine().payment_statistics(procedure, actor=reader)
    if settings.as_json:
        _print_json({method: dataclasses.asdict(t) for method, t in totals.items()})
        return
    rows = [("method", "payments", "amount (XOF)")]
    rows += [(method or "(none)", str(t.count), str(t.amount)) for method, t in totals.items()]
    rows.append(("total", str(sum(t.count for t in totals.values())),
                 str(sum(t.amount for t in totals.values()))))
    echo("\n".join(_table(rows)))


_DAY = click.DateTime(formats=["%Y-%m-%d"])


@main.command()
@click.option("--procedure", default=None, help="Only the cases of this procedure id.")
@click.option("--from", "since", type=_DAY, default=None, metavar="YYYY-MM-DD",
              help="Only the cases opened on or after this day (UTC).")
@click.option("--to", "until", type=_DAY, default=None, metavar="YYYY-MM-DD",
              help="Only the cases opened on or before this day (UTC).")
@click.option("--by", default=None, metavar="month|week|authority|state|FIELD",
              help="Break the figures down by month or week opened, authority, current "
                   "state, or a reporting dimension's field (`reporting:`).")
@click.option("--csv", "as_csv", is_flag=True, help="One CSV: section, procedure, group, "
                                                    "measure, value.")
@click.option("--html", "as_html", is_flag=True,
              help="One self-contained HTML page with charts (inline SVG, no network).")
@session_options
def stats(procedure: str | None, since: dt.datetime | None, until: dt.datetime | None,
          by: str | None, as_csv: bool, as_html: bool) -> None:
    """Requests per procedure and outcome, processing times (p50/p90/p99) against the
    target, time per state, the backlog by age, a breakdown, payments by method: read as
    the system, for the cases opened in the period."""
    settings = _settings()
    if as_csv + as_html + settings.as_json > 1:
        raise click.UsageError("choose one of --json, --csv and --html")
    if procedure is not None:
        limits.check_text("--procedure", procedure, limits.MAX_PROCEDURE_ID)
    if by is not None:
        limits.check_text("--by", by, limits.MAX_PROCEDURE_ID)
    if since and until and until < since:
        raise click.BadParameter("is before --from", param_hint="'--to'")
    from engine.stats import report
    from renderers import stats as render_stats

    engine = settings.engine()
    found = report(engine, procedure=procedure, since=since, by=by,
                   until=until + dt.timedelta(days=1) if until else None)
    if settings.as_json:
        _print_json(render_stats.data(found))
    elif as_csv:
        echo(render_stats.csv_text(found), nl=False)
    elif as_html:
        echo(render_stats.html(found, engine.procedures, settings.language), nl=False)
    else:
        for title, rows in render_stats.sections(found, engine.procedures, settings.language):
            echo(title)
            echo("\n".join(_table(rows)))
            echo()


@main.command()
@click.option("--dry-run", is_flag=True,
              help="Change nothing: say which cases would be purged and what would be erased.")
@click.option("--now", metavar="ISO-DATETIME", callback=_parse_now,
              help="Act as if it were this moment (UTC unless an offset is given) "
                   "[default: the current time].")
@session_options
def purge(dry_run: bool, now: dt.datetime | None) -> None:
    """Erase the personal data of closed cases past their procedure's retention, keeping
    the skeleton of their record (states, times, roles) and a record of the purge."""
    settings = _settings()
    settings.now = now  # the engine's clock too: the purge is recorded at `now`
    done = settings.engine().purge(now, dry_run=dry_run)
    if settings.as_json:
        _print_json([dataclasses.asdict(r) for r in done])
        return
    erase, delete = ("would erase", "to delete") if dry_run else ("erased", "deleted")
    for r in done:
        kept = f", {len(r.files_kept)} kept (another case has them)" if r.files_kept else ""
        echo(f"{r.reference}  {r.procedure_id}  closed {_time(r.closed_at)}  retention "
             f"{r.retention}  {erase}: {len(r.fields)} field(s), {r.file_names} file name(s), "
             f"{r.history_rows} history row(s), {r.outbox_rows} outbox row(s); files: "
             f"{len(r.files_deleted)} {delete}{kept}")
    if dry_run:
        echo(f"{len(done)} case(s) to purge (dry run: nothing changed)", err=True)
    else:
        echo(f"{len(done)} case(s) purged", err=True)



# --- proving procedures: test, simulate ---------------------------------------------------------

@main.command(name="test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--coverage", is_flag=True, help="Report the states and transitions exercised.")
@click.option("--procedures", "extra", metavar="PATH", multiple=True,
              help="Where scenarios find their procedures (repeatable) [default: procedures/].")
@click.option("--closures", metavar="FILE", callback=_read_closures, help=CLOSURES_HELP)
def test_command(paths: tuple[str, ...], coverage: bool, extra: tuple[str, ...],
                 closures: frozenset[dt.date] | None) -> None:
    """Validate procedures and play their scenario tests (default procedures/)."""
    if not paths:
        if not Path(DEFAULT_PROCEDURES).is_dir():
            raise click.UsageError(f"no PATH given and no {DEFAULT_PROCEDURES} directory here")
        paths = (DEFAULT_PROCEDURES,)
    if not extra and Path(DEFAULT_PROCEDURES).is_dir():
        extra = (DEFAULT_PROCEDURES,)
    from engine.analysis.scenarios import run_suite

    suite = run_suite(paths, extra, closures or frozenset())
    for diagnostic in suite.diagnostics:
        echo(str(diagnostic))
    for result in suite.results:
        echo(f"{result.scenario.id} {'PASSED' if result.passed else 'FAILED'}")
    failed = [r for r in suite.results if not r.passed]
    if failed:
        echo("\n=================== FAILURES ===================")
        for result in failed:
            echo(f"___ {result.scenario.id} ___")
            for failure in result.failures:
                echo(failure)
    if coverage:
        _print_coverage(suite)
    echo(suite.summary())
    sys.exit(1 if suite.failed else 0)


def _print_coverage(suite: Suite) -> None:
    echo("\n------------------- coverage -------------------")
    for procedure_id, covered in sorted(suite.coverage.items()):
        states, transitions = covered.percent()
        echo(f"{procedure_id}: states {len(covered.states)}/"
             f"{len(covered.procedure.states)} ({states:.0f}%), transitions "
             f"{len(covered.transitions)}/{len(covered.procedure.transitions)} "
             f"({transitions:.0f}%)")
        for name in covered.missed_states():
            echo(f"  state never entered: {name}")
        for name in covered.missed_transitions():
            echo(f"  transition never fired: {name}")


def _procedures_in(directory: str) -> dict[str, Procedure]:
    """The procedures of the valid files of `directory`, by id ({} when it is none)."""
    found = {}
    for path in compiler.procedure_files([directory] if Path(directory).is_dir() else []):
        raw, _ = source.read(path)
        procedure, _ = compiler.compile_source(raw, str(path)) if raw else (None, [])
        if procedure is not None:
            found[procedure.id] = procedure
    return found


def _procedure(name: str, directory: str) -> Procedure:
    """A procedure by file path, or by id among the files of `directory`."""
    if Path(name).is_file():
        return compiler.load_procedure(name)
    if not Path(directory).is_dir():
        raise click.BadParameter(f"no file {name!r} and no {directory} directory to search",
                                 param_hint="'PROCEDURE'")
    found = _procedures_in(directory)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise click.BadParameter(f"unknown procedure {name!r} (known: {known})",
                                 param_hint="'PROCEDURE'")
    return found[name]


@main.command()
@click.argument("procedure_name", metavar="PROCEDURE")
@click.option("--procedures", "directory", metavar="DIR", default=DEFAULT_PROCEDURES,
              show_default=True, help="Where to find PROCEDURE by id.")
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False),
              help="Print the step-by-step trace of this scenario instead of asking.")
@click.option("--save", type=click.Path(dir_okay=False, writable=True),
              help="Save the interactive session as a scenario file.")
@click.option("--lang", "language", type=click.Choice(LANGUAGES), default="fr",
              show_default=True, help="Language of labels and messages.")
@click.option("--load", is_flag=True,
              help="Simulate many cases over days (a seeded discrete-event simulation).")
@click.option("--days", type=click.IntRange(1), help="--load: days simulated [default: 365].")
@click.option("--arrivals", type=click.FloatRange(0, min_open=True),
              help="--load: mean new cases a day [default: the procedure's figure].")
@click.option("--staff", multiple=True, metavar="ROLE=N", help="--load: people per role.")
@click.option("--handling", multiple=True, metavar="TRIGGER=DURATION",
              help='--load: mean working time of a step, e.g. verify="10 minutes".')
@click.option("--delay", multiple=True, metavar="STATE=DURATION",
              help="--load: mean time before the applicant acts in a state.")
@click.option("--weight", multiple=True, metavar="TRIGGER=W",
              help="--load: relative likelihood of a trigger.")
@click.option("--seed", type=int, default=0, show_default=True, help="--load: random seed.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, writable=True),
              help="--load: write the daily backlog per state as CSV.")
@click.option("--svg", "svg_file", type=click.Path(dir_okay=False, writable=True),
              help="--load: write a chart of the backlog over time as SVG.")
def simulate(procedure_name: str, directory: str, scenario: str | None, save: str | None,
             language: str, load: bool, days: int | None, arrivals: float | None,
             staff: tuple[str, ...], handling: tuple[str, ...], delay: tuple[str, ...],
             weight: tuple[str, ...], seed: int, csv_file: str | None,
             svg_file: str | None) -> None:
    """Run one case of PROCEDURE (an id or a file) on an in-memory database, step by step.

    Interactively, it lists the triggers with their blocking reasons and asks for the data
    each step needs; commands: TRIGGER, as ROLE:ID, edit (form changes sent with the next
    trigger), attach DOCUMENT [COUNT], pay [AMOUNT] [METHOD], wait DURATION, history, save
    FILE, quit.
    """
    procedure = _procedure(procedure_name, directory)
    if load:
        overrides = LoadOverrides(days, arrivals, staff, handling, delay, weight, seed)
        _simulate_load(procedure, overrides, csv_file, svg_file)
        return
    others = list(_procedures_in(directory).values())  # the follow-ups it may open
    if scenario is not None:
        _trace(procedure, others, scenario, language)
        return
    from engine.analysis.scenarios import Session

    session = Session(procedure, others=others)
    try:
        Interactive(session, language).run()
    except click.Abort:
        echo("\nleft the simulation", err=True)
    finally:
        if save:
            _save_scenario(session, save)
            echo(f"saved {len(session.steps)} step(s) to {save}", err=True)
        session.close()


@dataclasses.dataclass(frozen=True)
class LoadOverrides:
    """Load-simulation figures given on the command line (they win over the procedure's)."""

    days: int | None
    arrivals: float | None
    staff: tuple[str, ...]
    handling: tuple[str, ...]
    delays: tuple[str, ...]
    weights: tuple[str, ...]
    seed: int

    def parameters(self, procedure: Procedure) -> LoadParameters:
        from engine.analysis.loadsim import LoadParameters

        try:
            return LoadParameters.from_procedure(
                procedure, days=self.days or 365, arrivals_per_day=self.arrivals,
                staff={k: int(v) for k, v in _pairs(self.staff, "--staff").items()} or None,
                handling=_pairs(self.handling, "--handling") or None,
                delays=_pairs(self.delays, "--delay") or None,
                weights={k: float(v) for k, v in _pairs(self.weights, "--weight").items()}
                or None,
                seed=self.seed,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=f"'{option}'")
        pairs[name.strip()] = value.strip().strip('"')
    return pairs


def _simulate_load(procedure: Procedure, overrides: LoadOverrides, csv_file: str | None,
                   svg_file: str | None) -> None:
    from engine.analysis.loadsim import simulate_load

    params = overrides.parameters(procedure)
    with click.progressbar(length=100, label="simulating", file=sys.stderr) as bar:
        report = simulate_load(procedure, params,
                               progress=lambda done: bar.update(int(done * 100) - bar.pos))
    echo("\n".join(report.summary_lines()))
    if csv_file:
        Path(csv_file).write_text(report.to_csv(), encoding="utf-8")
        echo(f"daily backlog written to {csv_file}", err=True)
    if svg_file:
        Path(svg_file).write_text(report.to_svg(), encoding="utf-8")
        echo(f"backlog chart written to {svg_file}", err=True)


def _save_scenario(session: Session, path: str) -> None:
    if not path:
        raise ValueError("save needs a file name")
    text = yaml.safe_dump(session.scenario(Path(path).stem), allow_unicode=True, sort_keys=False)
    Path(path).write_text(text, encoding="utf-8")


def _trace(procedure: Procedure, others: list[Procedure], path: str, language: str) -> None:
    from engine.analysis.scenarios import Runner, load_scenario

    known = {p.id: p for p in others} | {procedure.id: procedure}
    loaded, diagnostics = load_scenario(path, known)
    for diagnostic in diagnostics:
        echo(str(diagnostic))
    if loaded is None:
        sys.exit(1)
    lines: list[str] = []
    result = Runner(known.values()).run(loaded, trace=lines, language=language)
    echo("\n".join(lines))
    for failure in result.failures:
        echo(f"FAILED {failure}")
    sys.exit(0 if result.passed else 1)


class Interactive:
    """The prompts of `guichet simulate`: plain lines, one question at a time."""

    def __init__(self, session: Session, language: str) -> None:
        from engine.analysis.scenarios import actor_of, default_actor

        self.session = session
        self.language = language
        opener = actor_of(default_actor(session.procedure))
        self.actor = Actor(opener.id, opener.roles, language)
        self.workflow = session.engine.workflow(session.procedure.hash)
        self.pending: dict[str, Any] = {}

    def text(self, value: Any) -> str:
        return value.get(self.language) if value is not None else ""

    def run(self) -> None:
        procedure = self.session.procedure
        echo(f"{self.text(procedure.title)} ({procedure.id} {procedure.version}) — "
             "an in-memory case; Ctrl-C leaves.")
        from engine.analysis.scenarios import default_actor

        self.actor = self.ask_actor("Open the case as", default_actor(procedure))
        while True:
            data = self.ask_fields(procedure.fields, self.workflow.form)
            try:
                self.session.start(self.actor, data)
                break
            except GuichetError as exc:
                echo(f"refused: {exc.message(self.language)}")
        while self.session.case().outcome is None:
            self.show()
            self.command(click.prompt(">", default="", show_default=False).strip())
        case = self.session.case()
        echo(f"case closed: {case.state} ({case.outcome})")

    def ask_actor(self, question: str, default: str) -> Actor:
        while True:
            answer = click.prompt(f"{question} (ROLE:ID)", default=default)
            roles, _, actor_id = answer.partition(":")
            if roles and actor_id:
                try:
                    return Actor(actor_id, roles.split(","), self.language)
                except limits.InvalidActor as exc:
                    echo(f"refused: {exc.message(self.language)}")
                    continue
            echo("write it as ROLE:ID, e.g. agent:agent-7")

    def ask_fields(self, fields: Sequence[Any], form: Any) -> dict[str, Any]:
        """Ask each field in turn, validated as the engine validates it; blank skips."""
        data: dict[str, Any] = {}
        today = self.session.clock.now.date()
        for f in fields:
            context = self.workflow.context(data, {}, 0, today)
            if f.when is not None and not f.when.holds(context):
                continue
            while True:
                hint = f" — {self.text(f.hint)}" if f.hint else ""
                kind = f.type + (f": {', '.join(f.option_values)}" if f.options else "")
                mark = "*" if f.required else ""
                answer = click.prompt(printable(f"{self.text(f.label)}{mark} [{kind}]{hint}"),
                                      default="", show_default=False).strip()
                if not answer:
                    break
                value = _typed(f.type, answer)
                _, errors = form.validate({f.id: value}, today)
                if not errors:
                    data[f.id] = value
                    break
                for name, texts in errors.items():
                    echo(f"  {name}: {texts.get(self.language)}")
        return data

    def show(self) -> None:
        case = self.session.case()
        state = self.session.procedure.states[case.state]
        echo(f"\n{case.reference}: {self.text(state.label)} [{case.state}]  fees "
             f"{case.fees_paid}/{case.fees_due} XOF  — acting as "
             f"{','.join(sorted(self.actor.roles))}:{self.actor.id}")
        missing = self.session.engine.documents_missing(case.reference)
        if missing:
            echo(f"  documents missing: {', '.join(missing)}")
        for item in self.session.engine.available(case.reference, self.actor):
            status = "ready" if item.allowed else "blocked: " + "; ".join(
                r.message(self.language) for r in item.reasons)
            echo(f"  {item.trigger:<24} {status}")

    def command(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        handlers: dict[str, Callable[[str], None]] = {
            "": self.help, "help": self.help, "?": self.help, "quit": self.quit,
            "as": self.switch, "attach": self.attach, "pay": self.pay, "wait": self.wait,
            "history": self.history, "save": self.save, "edit": self.edit,
        }
        try:
            handler = handlers.get(word)
            if handler is None:
                self.fire(word)
            else:
                handler(rest.strip())
        except GuichetError as exc:
            echo(f"  refused: {exc.message(self.language)}")
        except (KeyError, ValueError) as exc:
            echo(f"  not understood: {exc}; type help")

    def help(self, _: str) -> None:
        echo("TRIGGER | as ROLE:ID | edit | attach DOCUMENT [COUNT] | pay [AMOUNT] [METHOD] | "
             "wait DURATION | history | save FILE | quit")

    def edit(self, _: str) -> None:
        """Collect form changes; they go with the next trigger (in an editable state)."""
        self.pending = self.ask_fields(self.session.procedure.fields, self.workflow.form)
        echo(f"  {len(self.pending)} change(s) will be sent with the next trigger")

    def quit(self, _: str) -> None:
        raise click.Abort()

    def switch(self, rest: str) -> None:
        self.actor = self.ask_actor("Act as", rest or "agent:agent-1")

    def attach(self, rest: str) -> None:
        name, _, count = rest.partition(" ")
        self.session.attach(name, self.actor, count=int(count or 1))

    def pay(self, rest: str) -> None:
        amount, _, method = rest.partition(" ")
        self.session.pay(amount or "due", self.actor, method=method.strip() or None)

    def wait(self, rest: str) -> None:
        for reference, trigger, result in self.session.wait(rest):
            echo(f"  deadline {trigger} on {reference}: {result}")

    def history(self, _: str) -> None:
        for h in self.session.engine.history(self.session.case().reference, self.actor):
            echo(f"  {h.sequence:>3} {h.trigger:<22} {h.from_state or '-'} -> "
                 f"{h.to_state}  {h.actor_id} ({h.actor_role})")

    def save(self, rest: str) -> None:
        _save_scenario(self.session, rest)
        echo(f"  saved to {rest}")

    def fire(self, trigger: str) -> None:
        procedure = self.session.procedure
        if trigger not in procedure.triggers:
            echo(f"  unknown command or trigger {trigger!r}; type help")
            return
        case = self.session.case()
        inputs = [f for t in procedure.transitions_from(case.state, trigger) for f in t.input]
        candidates = list(procedure.transitions_from(case.state, trigger))
        data = self.ask_fields(inputs, self.workflow.input_form(candidates)) if inputs else {}
        data = {**self.pending, **data}
        self.session.events.clear()
        after = self.session.fire(trigger, self.actor, data)
        self.pending = {}
        echo(f"  -> {after.state}")
        for event in self.session.events:
            text = event.payload.get("text", {})
            echo(f"  {event.name} ({event.payload.get('channel', '')}): "
                 f"{text.get(self.language) if isinstance(text, dict) else text}")


def _typed(kind: str, answer: str) -> Any:
    """A typed answer to a prompt: numbers, booleans, lists, JSON for groups."""
    try:
        if kind == "integer":
            return int(answer)
        if kind == "number":
            return float(answer)
    except ValueError:
        return answer
    if kind == "boolean":
        return answer.lower() in ("y", "yes", "o", "oui", "true", "1")
    if kind == "multi_choice":
        return [part.strip() for part in answer.split(",") if part.strip()]
    if kind == "group":
        try:
            return json.loads(answer)
        except (json.JSONDecodeError, RecursionError):  # too deep: refused by validation
            return answer
    return answer



@main.command(name="explore")
@click.argument("procedure_name", metavar="PROCEDURE")
@click.option("--procedures", "directory", metavar="DIR", default=DEFAULT_PROCEDURES,
              show_default=True, help="Where to find PROCEDURE by id.")
@click.option("--max-depth", type=click.IntRange(1), default=50, show_default=True,
              help="Longest run explored (transitions).")
@click.option("--max-nodes", type=click.IntRange(1), default=100_000, show_default=True,
              help="Most (state, data) combinations explored.")
@click.option("--save", "save_dir", type=click.Path(file_okay=False),
              help="Write each finding's counterexample as a scenario file in this directory.")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
              help="The day the exploration runs on (today, age()) [default: today's date].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def explore_command(procedure_name: str, directory: str, max_depth: int, max_nodes: int,
                    save_dir: str | None, today: dt.datetime | None, as_json: bool) -> None:
    """Explore every reachable (state, data) of PROCEDURE: unreachable states, guards that
    never hold, deadlocks and cycles without exit, each with a shortest counterexample."""
    procedure = _procedure(procedure_name, directory)
    day = (today or utc_now()).date()
    from engine.analysis.explore import explore

    report = explore(procedure, max_depth=max_depth, max_nodes=max_nodes, today=day)
    if as_json:
        _print_json(report.as_json())
    else:
        echo("\n".join(report.lines()))
    if save_dir:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        for finding in report.findings:
            if finding.counterexample is None:
                continue
            target = Path(save_dir) / f"{finding.slug}.yaml"
            target.write_text(finding.scenario_text(procedure.id), encoding="utf-8")
            echo(f"counterexample saved: {target}", err=True)
    sys.exit(1 if report.findings else 0)


# --- seeing a procedure: render, site, verify, preview ----------------------------------------
# Each command imports its renderer when it runs (the CLI stays quick to start).

@main.group()
def render() -> None:
    """Render a procedure (or a case's document) as a person sees it."""


def _write_output(text: str, output: str | None) -> None:
    """Print a rendering, or write it to OUTPUT (a path the user gave on the command line)."""
    if output is None:
        echo(text, nl=not text.endswith("\n"))
        return
    Path(output).write_text(text, encoding="utf-8")
    echo(f"written: {output}", err=True)


def _one_line_error(message: str) -> NoReturn:
    """Print `error: MESSAGE` (one line) and exit with status 1."""
    echo("error: " + " ".join(message.split()), err=True)
    sys.exit(1)


def _rendering_options(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The argument and options every `render` command of a procedure takes: PROCEDURE,
    --lang, -o/--output and --procedures."""
    options = [
        click.argument("procedure_name", metavar="PROCEDURE"),
        click.option("--lang", "language", type=click.Choice(LANGUAGES), default="fr",
                     show_default=True, help=f"Language of the {what}."),
        click.option("-o", "--output", type=click.Path(dir_okay=False),
                     help="Write to this file instead of printing."),
        click.option("--procedures", "directory", metavar="DIR", default=DEFAULT_PROCEDURES,
                     show_default=True, help="Where to find PROCEDURE by id."),
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _render(procedure_name: str, directory: str, output: str | None,
            produce: Callable[[Procedure], str], *refused: type[Exception]) -> None:
    """Render PROCEDURE (an id among DIR's files, or a file) with `produce` and print or
    write it; a procedure not found, an error of the kinds `refused` names or a file that
    cannot be written is one line and exit status 1."""
    try:
        procedure = _procedure(procedure_name, directory)
    except click.BadParameter as exc:
        _one_line_error(exc.format_message())
    try:
        text = produce(procedure)
    except refused as exc:
        _one_line_error(str(exc))
    try:
        _write_output(text, output)
    except OSError as exc:
        _one_line_error(f"cannot write {output}: {exc.strerror or exc}")


@render.command(name="form")
@_rendering_options("form")
@click.option("--step", "trigger", metavar="TRIGGER", default=None,
              help="The input of this step instead of the start form.")
def render_form(procedure_name: str, trigger: str | None, language: str, output: str | None,
                directory: str) -> None:
    """The citizen's form of PROCEDURE (an id or a file) as one HTML page: labels, hints,
    constraints, documents, a live fee summary; fields show and hide with their `when:`."""
    from renderers.form import form_html

    _render(procedure_name, directory, output,
            lambda p: form_html(p, language, trigger=trigger), ValueError)


@render.command(name="diagram")
@_rendering_options("labels")
@click.option("--format", "output_format", type=click.Choice(["mermaid", "dot", "svg"]),
              default="mermaid", show_default=True,
              help="Mermaid stateDiagram-v2, Graphviz DOT, or SVG (needs Graphviz's dot).")
def render_diagram(procedure_name: str, output_format: str, language: str,
                   output: str | None, directory: str) -> None:
    """The state machine of PROCEDURE (an id or a file) as a diagram: final states by
    outcome, transitions with their label and roles, deadlines dashed with their delay."""
    from renderers import diagram

    draw = {"mermaid": diagram.mermaid, "dot": diagram.dot, "svg": diagram.svg}[output_format]
    _render(procedure_name, directory, output, lambda p: draw(p, language),
            diagram.DiagramUnavailable)


@render.command(name="page")
@_rendering_options("page")
@click.option("--format", "output_format", type=click.Choice(["html", "markdown"]),
              default="html", show_default=True,
              help="A whole HTML document, or Markdown.")
def render_page(procedure_name: str, output_format: str, language: str,
                output: str | None, directory: str) -> None:
    """The page a citizen reads before applying to PROCEDURE (an id or a file): who may
    apply, documents and their conditions in plain words, fees, time limits, steps."""
    from renderers import page

    make = page.page_html if output_format == "html" else page.page_markdown
    _render(procedure_name, directory, output, lambda p: make(p, language))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("-o", "--output", "directory", required=True, type=click.Path(file_okay=False),
              help="The folder to write the site into (created if needed).")
def site(paths: tuple[str, ...], directory: str) -> None:
    """Build the static catalogue site of the procedures under PATHS (default procedures/):
    an index per language grouped by authority, with an offline search box, and each
    procedure's page, form and diagram. Plain files: open DIRECTORY/index.html."""
    from renderers.site import build_site

    procedures = [compiler.load_procedure(p) for p in compiler.procedure_files(paths or
                                                                                ("procedures",))]
    written = build_site(procedures, directory)
    echo(f"{len(written)} file(s) written under {directory} "
         f"({len(procedures)} procedure(s)); open {Path(directory) / 'index.html'}")


# --- issued documents: render document, verify, keys (renderers/documents.py, signing.py) ----

class _PreviewData(DataType):
    """--data for a preview: a file's path as it is (or @file, or inline JSON)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        text = str(value)
        if not text.startswith(("@", "{")) and Path(text).is_file():
            text = "@" + text
        return super().convert(text, param, ctx)


def _refuse(message: str) -> NoReturn:
    """One line on stderr, exit status 1."""
    echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(1)


def _signer(key: str | None) -> Any:
    """The Signer of --key FILE.pem (None without it); a bad key file is refused."""
    if key is None:
        return None
    from renderers.signing import KeyProblem, Signer

    try:
        return Signer.from_pem(key)
    except KeyProblem as exc:
        _refuse(str(exc))


@render.command(name="document")
@click.argument("first", metavar="REFERENCE|PROCEDURE")
@click.argument("document_id", metavar="DOCUMENT")
@click.option("--case", "case_reference", metavar="REFERENCE", default=None,
              help="The case whose document it is (then the first argument is its "
                   "procedure's id).")
@click.option("--data", "data", type=_PreviewData(), default=None,
              help="Preview: render PROCEDURE's DOCUMENT template with this sample data "
                   "(a JSON or YAML file, or inline JSON); no case, no database.")
@_reader_options
@click.option("--key", type=click.Path(dir_okay=False), default=None,
              help="Sign with this Ed25519 private key (PEM): prints the verification code "
                   "and its QR code.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of printing.")
@click.option("--pdf", is_flag=True,
              help="Write a PDF to --output with Chromium's print-to-PDF (needs chromium).")
@session_options
def render_document(first: str, document_id: str, case_reference: str | None,
                    data: dict[str, Any] | None, actor: ActorSpec | None, as_system: bool,
                    key: str | None, output: str | None, pdf: bool) -> None:
    """An issued document of a case as print-ready HTML (A4): `REFERENCE DOCUMENT`, or
    `PROCEDURE DOCUMENT --case REFERENCE`, read as --as ROLE:ID (or --as-system); DOCUMENT
    `receipt` is the case's receipt. `PROCEDURE DOCUMENT --data FILE` previews the template
    with sample data. The text is the one issued at the step, never rendered again."""
    settings = _settings()
    if pdf and output is None:
        raise click.UsageError("--pdf needs --output FILE.pdf")
    if data is not None:
        if case_reference is not None or actor is not None or as_system:
            raise click.UsageError("--data previews a template: no --case, --as or --as-system")
        if key is not None:
            raise click.UsageError("--data previews a template: a preview is never signed "
                                   "(no --key)")
        procedure = _procedure(first, settings.procedures or DEFAULT_PROCEDURES)
        page = _preview_document(procedure, document_id, data, settings.language)
    else:
        reader = _reader(settings, actor, as_system)
        signer = _signer(key)
        page = _case_document(settings, first, case_reference, document_id, reader, signer)
    if pdf:
        assert output is not None
        _write_pdf(page, output)
    else:
        _write_output(page, output)


def _case_document(settings: Settings, first: str, case_reference: str | None,
                   document_id: str, reader: Actor, signer: Any) -> str:
    """A case's issued document (or receipt) as `reader` may read it."""
    from engine.workflow import MASKED
    from renderers.documents import (
        RECEIPT,
        DocumentNotIssued,
        document_html,
        find_issued,
        issued_ids,
        receipt_html,
        receipt_text,
    )

    engine = settings.engine()
    found = engine.case(case_reference or first, reader)
    if case_reference is not None and found.procedure_id != first:
        _refuse(f"case {found.reference} is a case of {found.procedure_id}, not of {first}")
    procedure = engine.workflow(found.procedure_hash).procedure
    language = settings.language
    declared = {item.id for t in procedure.transitions for item in t.issue}
    if document_id == RECEIPT and RECEIPT not in declared:
        if signer is not None and MASKED in receipt_text(procedure, found, language):
            _refuse(f"{reader.id} may not read every value of {found.reference}: a signed "
                    "receipt is printed by a reader who sees them all (--as-system)")
        return receipt_html(procedure, found, language, signer=signer)
    entries = engine.history(found.reference, reader)
    try:
        issued = find_issued(entries, document_id, language)
    except DocumentNotIssued:
        known = ", ".join([*issued_ids(entries), RECEIPT])
        _refuse(f'no document "{document_id}" was issued on {found.reference} '
                f"(there is: {known})")
    if issued.text == MASKED:
        _refuse(f"{reader.id} may not read the text of {document_id} of {found.reference}")
    return document_html(procedure, found, document_id, language, signer=signer,
                         history=entries)


def _preview_document(procedure: Procedure, document_id: str, data: Mapping[str, Any],
                      language: str) -> str:
    """The document `document_id` of `procedure` rendered from `data` through the sandbox, as
    a step issuing it would (engine/effects.py), on a sample case."""
    from engine import effects, references
    from engine.workflow import Workflow
    from renderers.documents import document_html

    issuing = [(t, item) for t in procedure.transitions for item in t.issue
               if item.id == document_id]
    if not issuing:
        declared = sorted({item.id for t in procedure.transitions for item in t.issue})
        _refuse(f'{procedure.id} issues no document "{document_id}" '
                f"(it issues: {', '.join(declared) or 'none'})")
    transition, item = issuing[0]
    workflow = Workflow(procedure)
    now = utc_now()
    context = workflow.document_context(workflow.context(data, {}, 0, now.date()), now.date())
    reference = next(r for n in range(1, 3)
                     if (r := references.make(procedure.reference_prefix, now.year, n)))
    rendered = effects.render(workflow, (), (item,), context, reference, transition.target,
                              transition.trigger)
    text = rendered["issued"][0]["text"]
    sample = Case(reference, procedure.id, procedure.hash, transition.target, None, "preview",
                  data, 0, 0, (), 1, now, now)
    return document_html(procedure, sample, document_id, language,
                         issued_text=text.get(language) or text.get("fr") or
                         next(iter(text.values()), ""), issued_at=now)


#: The longest Chromium may take to print a PDF.
PDF_SECONDS = 60


def _write_pdf(page: str, output: str) -> None:
    """Print `page` to the PDF file `output` with Chromium (headless, no network)."""
    import shutil
    import subprocess
    import tempfile

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        _refuse("--pdf needs Chromium (chromium) on the PATH; write HTML with -o FILE.html")
    target = Path(output).resolve()
    with tempfile.TemporaryDirectory(prefix="guichet-pdf-") as work:
        source_page = Path(work) / "document.html"
        source_page.write_text(page, encoding="utf-8")
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
                   "--no-pdf-header-footer", f"--user-data-dir={work}/profile",
                   f"--print-to-pdf={target}", source_page.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, timeout=PDF_SECONDS,
                                  check=False)
        except subprocess.TimeoutExpired:
            _refuse(f"Chromium did not print the PDF within {PDF_SECONDS} s")
        except OSError as exc:
            _refuse(f"cannot run {browser}: {exc.strerror or exc}")
    if done.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
        _refuse(f"Chromium could not print the PDF (exit status {done.returncode})")
    echo(f"written: {output}", err=True)


@main.command(name="verify")
@click.argument("code", required=False)
@click.option("--file", "document_file", type=click.Path(dir_okay=False), default=None,
              help="The document: a page `guichet render document` wrote (.html: its text, "
                   "and its code when CODE is not given) or its text (.txt).")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False), required=True,
              help="The issuing host's Ed25519 public key (PEM).")
def verify_command(code: str | None, document_file: str | None, public_key: str) -> None:
    """Whether a document is authentic and unchanged: its verification CODE (as printed on
    it) checked against its text (--file) with the issuer's public key. Exit status 0 when
    authentic and unchanged, 1 otherwise, with the reason on one line."""
    from renderers.documents import MAX_PAGE_CHARS, read_page
    from renderers.signing import KeyProblem, read_public_key, verify

    if document_file is None:
        raise click.UsageError("give the document to check: --file FILE.html or FILE.txt "
                               "(the code alone says nothing about the text)")
    try:
        key = read_public_key(public_key)
    except KeyProblem as exc:
        _refuse(str(exc))
    content = _document_text(document_file, MAX_PAGE_CHARS)
    if Path(document_file).suffix.lower() in (".html", ".htm"):
        text, embedded = read_page(content)
        if text is None:
            _refuse(f"{document_file}: not a document page Guichet wrote (no #issued-text)")
        content, code = text, code or embedded
    if not code:
        raise click.UsageError("give the verification CODE (printed on the document)")
    verdict = verify(code, content, key)
    if verdict.ok:
        echo(verdict.message)
        return
    _refuse(verdict.message)


def _document_text(path: str, longest: int) -> str:
    """A document file's text (UTF-8, at most `longest` characters); refused otherwise."""
    try:
        with open(path, "rb") as file:
            raw = file.read(longest * 4 + 1)
    except OSError as exc:
        _refuse(f"{path}: cannot read ({exc.strerror or type(exc).__name__})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _refuse(f"{path}: not UTF-8 text")
    if len(raw) > longest * 4 or len(text) > longest:
        _refuse(f"{path}: larger than a document ({longest:,} characters)")
    return text


@main.group()
def keys() -> None:
    """Keys that sign issued documents (Ed25519)."""


@keys.command(name="generate")
@click.option("--private", "private_file", type=click.Path(dir_okay=False), required=True,
              help="Where to write the private key (PEM; kept secret, mode 600).")
@click.option("--public", "public_file", type=click.Path(dir_okay=False), required=True,
              help="Where to write the public key to publish (PEM).")
def keys_generate(private_file: str, public_file: str) -> None:
    """A new Ed25519 key pair: sign with the private key (`render document --key`), publish
    the public one (`verify --public-key`). Never overwrites a file."""
    from renderers.signing import Signer

    signer = Signer.generate()
    for path in (private_file, public_file):
        if Path(path).exists():
            _refuse(f"{path} exists: not overwritten")
    try:
        descriptor = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(signer.private_pem())
        Path(public_file).write_bytes(signer.public_pem())
    except OSError as exc:
        _refuse(f"cannot write the keys: {exc.strerror or exc}")
    echo(f"written: {private_file} (private, keep it secret), {public_file} (public)")


# --- preview: play a procedure in a browser (web/preview.py, the optional web extra) ---------

PREVIEW_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (only this machine unless --public).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--lang", "language", type=click.Choice(LANGUAGES), default="fr",
              show_default=True, help="The language pages open in (switchable on each page).")
@click.option("--public", is_flag=True,
              help="Allow a --host other than 127.0.0.1/localhost (anyone who reaches it may "
                   "act as any role: never on a network you do not trust).")
def preview(paths: tuple[str, ...], host: str, port: int, language: str, public: bool) -> None:
    """Play the procedures under PATHS (default procedures/) in a browser: fill the form as
    an applicant, then switch role and fire the next steps, on an in-memory engine that
    forgets everything when the server stops. Needs the `web` extra (pip install
    'guichet[web]')."""
    if host not in PREVIEW_LOCAL_HOSTS and not public:
        raise click.UsageError(f"--host {host} would serve the preview beyond this machine; "
                               "add --public if that is what you want")
    try:
        from web.preview import create_app, run
    except ImportError as exc:
        _refuse(f"the preview needs the web extra: pip install 'guichet[web]' ({exc})")
    if not paths:
        if not Path(DEFAULT_PROCEDURES).is_dir():
            raise click.UsageError(f"no PATH given and no {DEFAULT_PROCEDURES} directory here")
        paths = (DEFAULT_PROCEDURES,)
    procedures = [compiler.load_procedure(p) for p in compiler.procedure_files(paths)]
    app = create_app(procedures, language=language)
    if host not in PREVIEW_LOCAL_HOSTS:
        echo(f"warning: serving on {host}: anyone who reaches it may act as any role",
             err=True)
    shown = f"[{host}]" if ":" in host else host
    echo(f"preview of {len(procedures)} procedure(s): http://{shown}:{port}/ "
         "(Ctrl+C to stop)", err=True)
    run(app, host=host, port=port)


# --- starting a procedure -----------------------------------------------------------------------

@main.command(name="new")
@click.argument("procedure_id")
@click.option("--directory", default=DEFAULT_PROCEDURES, show_default=True,
              type=click.Path(file_okay=False), help="Where to write the procedure.")
def new_command(procedure_id: str, directory: str) -> None:
    """Write a small valid procedure PROCEDURE_ID.yaml and its scenarios (tests/PROCEDURE_ID/)
    to start from; never overwrites a file."""
    from engine.new_procedure import NewProcedureError, write
    try:
        written = write(procedure_id, directory)
    except NewProcedureError as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(1)
    for path in written:
        echo(f"wrote {path}")
    echo(f"next: guichet validate {directory} && guichet test {directory} --coverage", err=True)


# --- the language server --------------------------------------------------------------------

@main.command(name="lsp")
def lsp_command() -> None:
    """Serve the language server over stdio for an editor: the diagnostics of `guichet
    validate` as you type, completion of ids, go to definition, hover. Needs the lsp extra
    (pip install 'guichet[lsp]')."""
    try:
        from lsp.server import main as serve
    except ImportError as exc:
        _refuse(f"the language server needs the lsp extra: pip install 'guichet[lsp]' ({exc})")
    serve()


if __name__ == "__main__":  # pragma: no cover
    main()
