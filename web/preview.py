"""`guichet preview`: play a procedure in a browser before it goes live.

`create_app(procedures)` serves the procedures (their page, form and diagram, as the renderers
make them) and runs a real `Engine` on an in-memory SQLite database, its files in a temporary
directory removed when the server stops. The author chooses whom they act as (a role of the
procedure and an id, kept in a cookie) and the language, fills the form as an applicant,
then switches role and fires the next steps from buttons that show what is available and why
the others are blocked — in the citizen's words (`Reason.message`), never as expressions.

Every refusal of the engine (a GuichetError) is shown on the page in the chosen language, never
a traceback. Every POST carries the app's CSRF token: a random nonce signed with a per-app
secret, in a cookie and in a hidden field, which must match.

The preview is for one author on their own machine: it binds to 127.0.0.1 by default, and
serves requests one at a time (the engine is called on the event loop, so steps never
interleave).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import (
    Actor,
    Blocked,
    Case,
    ConcurrentUpdate,
    Engine,
    GuichetError,
    InvalidData,
    NotAllowed,
    Procedure,
    UnknownCase,
    UnknownProcedure,
    UnknownTrigger,
    load_procedures,
)
from engine.blobs import DirectoryBlobStore
from engine.clock import Clock, utc_now
from engine.model import Field
from engine.values import SYSTEM
from renderers.html import render

from . import formdata, views
from .texts import LANGUAGES, texts

log = logging.getLogger("guichet.preview")

DEFAULT_HOST = "127.0.0.1"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ACTOR_COOKIE = "guichet_actor"
LANGUAGE_COOKIE = "guichet_lang"
CSRF_COOKIE = "guichet_csrf"
CSRF_FIELD = "csrf"
DEFAULT_ACTOR_ID = "citizen-1"
_FLASHES = 200  # messages kept for the next page (the oldest go first)

ProcedureSource = str | Path | Procedure


# --- the app ------------------------------------------------------------------------------------

def create_app(procedures: ProcedureSource | Iterable[ProcedureSource], *,
               clock: Clock | None = None, language: str = "fr") -> FastAPI:
    """The preview app for `procedures` (files, directories or compiled Procedures).

    The Engine is built here (a refused procedure raises ProcedureError now, not when the
    server starts); the app's lifespan closes it and removes its temporary directory, as does
    the app's garbage collection if it never ran."""
    preview = Preview(load_procedures(procedures), clock or utc_now,
                      language if language in LANGUAGES else "fr")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            preview.close()

    app = FastAPI(title="Guichet preview", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.preview = preview
    weakref.finalize(app, preview.close)
    _routes(app, preview)
    return app


def run(app: FastAPI, host: str = DEFAULT_HOST, port: int = 8000) -> None:
    """Serve `app` with uvicorn until interrupted (the only uvicorn import of the project)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")


@dataclass
class Message:
    """A line shown at the top of a page: an error, or a notice that something was done."""

    kind: str  # "error" | "notice"
    text: str
    details: list[str] = field(default_factory=list)


class Preview:
    """The state of one preview app: its engine, its secret, its messages for the next page."""

    def __init__(self, procedures: list[Procedure], clock: Clock, language: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="guichet-preview-")
        try:
            self.engine = Engine(procedures, "sqlite://",
                                 blobs=DirectoryBlobStore(self.directory), clock=clock)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.language = language
        self.secret = secrets.token_bytes(32)
        self.flashes: dict[str, list[Message]] = {}
        self.closed = False

    @property
    def procedures(self) -> Mapping[str, Procedure]:
        return self.engine.procedures

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.engine.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # --- who, in which language ---------------------------------------------------------------

    def lang(self, request: Request) -> str:
        for value in (request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
            if value in LANGUAGES:
                return value
        return self.language

    def actor(self, request: Request, procedure: Procedure | None = None) -> Actor:
        """The actor chosen in the "act as" form, or an applicant of `procedure`."""
        lang = self.lang(request)
        role, _, actor_id = (request.cookies.get(ACTOR_COOKIE) or "").partition(":")
        if role and actor_id:
            try:
                return Actor(actor_id, [role], language=lang)
            except ValueError:  # InvalidActor: a cookie edited by hand
                pass
        starts = procedure.start.roles if procedure is not None else ()
        return Actor(DEFAULT_ACTOR_ID, [starts[0] if starts else "applicant"], language=lang)

    # --- CSRF ---------------------------------------------------------------------------------

    def _sign(self, nonce: str) -> str:
        return hmac.new(self.secret, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_token(self, request: Request) -> str:
        """The browser's token if it is one of this app's, else a new one."""
        token = request.cookies.get(CSRF_COOKIE, "")
        if self.csrf_valid(token):
            return token
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def csrf_valid(self, token: str) -> bool:
        nonce, _, signature = token.partition(".")
        return bool(nonce) and hmac.compare_digest(signature, self._sign(nonce))

    def csrf_ok(self, request: Request, form: FormData) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        posted = form.get(CSRF_FIELD)
        return (isinstance(posted, str) and self.csrf_valid(cookie)
                and hmac.compare_digest(posted, cookie))

    # --- messages for the next page -----------------------------------------------------------

    def flash(self, messages: list[Message]) -> str:
        key = secrets.token_urlsafe(9)
        self.flashes[key] = messages
        while len(self.flashes) > _FLASHES:
            self.flashes.pop(next(iter(self.flashes)))
        return key

    def flashed(self, request: Request) -> list[Message]:
        return self.flashes.pop(request.query_params.get("m") or "", [])

    # --- pages --------------------------------------------------------------------------------

    def page(self, request: Request, template: str, *, procedure: Procedure | None = None,
             status: int = 200, messages: Sequence[Message] = (), **values: Any
             ) -> Response:
        lang = self.lang(request)
        token = self.csrf_token(request)
        actor = self.actor(request, procedure)
        roles = views.roles([procedure] if procedure else list(self.procedures.values()), lang)
        if actor.id and next(iter(actor.roles)) not in {r for r, _ in roles}:
            roles.append((next(iter(actor.roles)), next(iter(actor.roles))))
        html = render(template, language=lang, t=texts(lang), languages=LANGUAGES,
                      csrf=token, csrf_field=CSRF_FIELD, actor_role=next(iter(actor.roles)),
                      actor_id=actor.id, roles=roles, here=views.here(request),
                      messages=[*self.flashed(request), *messages], **values)
        return self.respond(request, HTMLResponse(html, status), token)

    def respond(self, request: Request, response: Response, token: str | None = None
                ) -> Response:
        """Give the browser the app's CSRF token and remember the language it asked for."""
        token = token or self.csrf_token(request)
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
        lang = request.query_params.get("lang")
        if lang in LANGUAGES and request.cookies.get(LANGUAGE_COOKIE) != lang:
            response.set_cookie(LANGUAGE_COOKIE, lang, samesite="lax")
        return response

    def error_page(self, request: Request, status: int, text: str, *,
                   procedure: Procedure | None = None) -> Response:
        return self.page(request, "preview_message.html.j2", procedure=procedure,
                         status=status, title=text, messages=[Message("error", text)])

    def refusal(self, error: GuichetError, lang: str, fields: Iterable[Field] = ()
                ) -> Message:
        """A GuichetError as a message: its text, and for InvalidData each field's message."""
        if isinstance(error, InvalidData):
            labels = views.labels(fields, lang)
            colon = texts(lang)["colon"]
            details = [f"{views.label_of(path, labels)}{colon}{m.get(lang) or m.get('fr', '')}"
                       for path, m in error.errors.items()]
            return Message("error", error.text.get(lang) or error.text.get("fr", ""), details)
        return Message("error", error.message(lang))

    # --- a procedure's pages ------------------------------------------------------------------

    def procedure(self, procedure_id: str) -> Procedure:
        found = self.procedures.get(procedure_id)
        if found is None:
            raise UnknownProcedure({"fr": texts("fr")["unknown_procedure"],
                                    "en": texts("en")["unknown_procedure"]})
        return found

    def form_page(self, request: Request, procedure: Procedure, *, status: int = 200,
                  messages: Sequence[Message] = (), values: Mapping[str, Any] | None = None,
                  errors: Mapping[str, Mapping[str, str]] | None = None) -> Response:
        """The start form: the renderer's (with the CSRF field added) while nothing was
        refused, else the preview's own, filled with what was sent and each field's error."""
        lang = self.lang(request)
        action = f"/procedures/{quote(procedure.id)}/start"
        rendered = None if values is not None else _form_html(procedure, lang, action=action)
        if rendered is not None:
            token = self.csrf_token(request)
            html = _with_csrf(rendered, action, token, self.banner(request, procedure))
            return self.respond(request, HTMLResponse(html, status), token)
        today = self.engine.clock().date()
        controls = views.controls(procedure.fields, values or {}, errors or {}, lang, today,
                                  "start")
        return self.page(request, "preview_form.html.j2", procedure=procedure, status=status,
                         messages=messages, title=procedure.title.get(lang), action=action,
                         controls=controls, documents=views.upload_documents(procedure, lang),
                         submit=texts(lang)["start"])

    def banner(self, request: Request, procedure: Procedure) -> str:
        actor = self.actor(request, procedure)
        t = texts(self.lang(request))
        return render("preview_banner.html.j2", t=t, actor_role=next(iter(actor.roles)),
                      actor_id=actor.id)

    # --- a case's page ------------------------------------------------------------------------

    def case_page(self, request: Request, reference: str, *, status: int = 200,
                  messages: Sequence[Message] = (),
                  step_values: Mapping[str, Mapping[str, Any]] | None = None,
                  errors: Mapping[str, Mapping[str, str]] | None = None,
                  edit_values: Mapping[str, Any] | None = None) -> Response:
        lang = self.lang(request)
        t = texts(lang)
        try:
            seen = self.engine.case(reference, SYSTEM)
        except UnknownCase as error:
            return self.error_page(request, 404, error.message(lang))
        procedure = self.engine.workflow(seen.procedure_hash).procedure
        actor = self.actor(request, procedure)
        notes = list(messages)
        try:
            case = self.engine.case(reference, actor)
            history = self.engine.history(reference, actor)
        except NotAllowed as error:
            case, history = seen, self.engine.history(reference, SYSTEM)
            notes.append(Message("notice", t["seen_as_system"], [error.message(lang)]))
        today = self.engine.clock().date()
        steps = [views.step(a, procedure, case, lang, today,
                            (step_values or {}).get(a.trigger, {}), errors or {})
                 for a in self.engine.available(reference, actor)]
        state = procedure.states.get(case.state)
        editable = bool(state and state.edits) and not case.closed
        return self.page(
            request, "preview_case.html.j2", procedure=procedure, status=status,
            messages=notes, title=f"{case.reference} — {procedure.title.get(lang)}",
            case=case, procedure_title=procedure.title.get(lang),
            procedure_id=procedure.id,
            state_label=state.label.get(lang) if state else case.state,
            data=views.data_rows(procedure, case.data, lang, t),
            documents=views.documents(procedure, case, self.engine.documents_missing(reference),
                                 lang),
            methods=[(m.id, m.label.get(lang)) for m in procedure.payment_methods],
            payment_reference=secrets.token_hex(8),
            steps=steps, history=[views.entry(procedure, h, lang, t) for h in history],
            edit=views.controls(procedure.fields,
                                case.data if edit_values is None else edit_values,
                                errors or {} if edit_values is not None else {}, lang, today,
                                "edit")
            if editable else [],
        )


# --- routes -------------------------------------------------------------------------------------

_STATUS: list[tuple[type[GuichetError], int]] = [
    (UnknownCase, 404), (UnknownProcedure, 404), (UnknownTrigger, 404), (NotAllowed, 403),
    (Blocked, 409), (ConcurrentUpdate, 409), (InvalidData, 422)]


def _status(error: GuichetError) -> int:
    return next((code for kind, code in _STATUS if isinstance(error, kind)), 400)


def _routes(app: FastAPI, preview: Preview) -> None:  # noqa: C901 - one closure per route
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        t = texts(preview.lang(request))
        text = t["not_found"] if exc.status_code == 404 else t["bad_request"]
        return preview.error_page(request, exc.status_code, text)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("preview: %s %s failed", request.method, request.url.path)
        return preview.error_page(request, 500, texts(preview.lang(request))["internal"])

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Response:
        lang = preview.lang(request)
        entries = [{"id": p.id, "title": p.title.get(lang),
                    "authority": _authority(p, lang)}
                   for p in sorted(preview.procedures.values(), key=lambda p: p.title.get(lang))]
        cases = [(c.reference, preview.procedures[c.procedure_id].title.get(lang)
                  if c.procedure_id in preview.procedures else c.procedure_id,
                  _state_label(preview, c, lang))
                 for c in preview.engine.cases(actor=SYSTEM, limit=200)]
        return preview.page(request, "preview_index.html.j2", title=texts(lang)["preview"],
                            procedures=entries, cases=cases)

    @app.post("/actor")
    async def act_as(request: Request) -> Response:
        async with request.form() as form:
            if not preview.csrf_ok(request, form):
                return preview.error_page(request, 403, texts(preview.lang(request))["csrf"])
            role, actor_id = str(form.get("role") or ""), str(form.get("id") or "").strip()
            lang = str(form.get("lang") or "")
            target = views.local_path(str(form.get("next") or "/"))
        response = RedirectResponse(target, status_code=303)
        try:
            Actor(actor_id, [role])
        except ValueError as error:
            message = error.message(preview.lang(request)) if isinstance(
                error, GuichetError) else str(error)
            key = preview.flash([Message("error", message)])
            response = RedirectResponse(views.with_query(target, m=key), status_code=303)
        else:
            response.set_cookie(ACTOR_COOKIE, f"{role}:{actor_id}", samesite="lax")
        if lang in LANGUAGES:
            response.set_cookie(LANGUAGE_COOKIE, lang, samesite="lax")
        return response

    @app.get("/procedures/{procedure_id}", response_class=HTMLResponse)
    async def procedure_page(request: Request, procedure_id: str) -> Response:
        lang = preview.lang(request)
        try:
            procedure = preview.procedure(procedure_id)
        except UnknownProcedure as error:
            return preview.error_page(request, 404, error.message(lang))
        rendered = _page_html(procedure, lang)
        if rendered is not None:
            html = _with_banner(rendered, preview.banner(request, procedure))
            return preview.respond(request, HTMLResponse(html))
        return preview.page(request, "preview_procedure.html.j2", procedure=procedure,
                            title=procedure.title.get(lang), procedure_id=procedure.id,
                            description=procedure.description.get(lang)
                            if procedure.description else "", diagram=None)

    @app.get("/procedures/{procedure_id}/form", response_class=HTMLResponse)
    async def form(request: Request, procedure_id: str) -> Response:
        try:
            procedure = preview.procedure(procedure_id)
        except UnknownProcedure as error:
            return preview.error_page(request, 404, error.message(preview.lang(request)))
        return preview.form_page(request, procedure)

    @app.get("/procedures/{procedure_id}/diagram", response_class=HTMLResponse)
    async def diagram(request: Request, procedure_id: str) -> Response:
        lang = preview.lang(request)
        try:
            procedure = preview.procedure(procedure_id)
        except UnknownProcedure as error:
            return preview.error_page(request, 404, error.message(lang))
        return preview.page(request, "preview_procedure.html.j2", procedure=procedure,
                            title=procedure.title.get(lang), procedure_id=procedure.id,
                            description="", diagram=_diagram(procedure, lang))

    @app.post("/procedures/{procedure_id}/start")
    async def start(request: Request, procedure_id: str) -> Response:
        lang = preview.lang(request)
        try:
            procedure = preview.procedure(procedure_id)
        except UnknownProcedure as error:
            return preview.error_page(request, 404, error.message(lang))
        async with request.form() as form:
            if not preview.csrf_ok(request, form):
                return preview.error_page(request, 403, texts(lang)["csrf"],
                                          procedure=procedure)
            posted = views.posted(form)
            data = formdata.typed(procedure.fields, posted)
            actor = preview.actor(request, procedure)
            try:
                case = preview.engine.start(procedure.id, actor, data)
            except GuichetError as error:
                errors = error.errors if isinstance(error, InvalidData) else {}
                return preview.form_page(request, procedure, status=_status(error),
                                         messages=[preview.refusal(error, lang,
                                                                   procedure.fields)],
                                         values=data, errors=errors)
            notes = [Message("notice", texts(lang)["done"])]
            for document_id, upload in views.uploads(form, procedure):
                notes.extend(_attach(preview, case.reference, procedure, document_id, upload,
                                     actor, lang))
        return _redirect_to_case(preview, case.reference, notes)

    @app.get("/cases/{reference}", response_class=HTMLResponse)
    async def case_page(request: Request, reference: str) -> Response:
        return preview.case_page(request, reference)

    @app.post("/cases/{reference}/{action}")
    async def case_action(request: Request, reference: str, action: str) -> Response:
        lang = preview.lang(request)
        try:
            seen = preview.engine.case(reference, SYSTEM)
        except UnknownCase as error:
            return preview.error_page(request, 404, error.message(lang))
        procedure = preview.engine.workflow(seen.procedure_hash).procedure
        async with request.form() as form:
            if not preview.csrf_ok(request, form):
                return preview.error_page(request, 403, texts(lang)["csrf"],
                                          procedure=procedure)
            handler = _ACTIONS.get(action)
            if handler is None:
                return preview.error_page(request, 404, texts(lang)["not_found"])
            return handler(preview, request, seen, procedure, form)


def _redirect_to_case(preview: Preview, reference: str, notes: list[Message]) -> Response:
    target = f"/cases/{quote(reference)}"
    if notes:
        target = views.with_query(target, m=preview.flash(notes))
    return RedirectResponse(target, status_code=303)


# --- case actions (POST /cases/{reference}/{action}) --------------------------------------------

Action = Callable[[Preview, Request, Case, Procedure, FormData], Response]


def _fire(preview: Preview, request: Request, case: Case, procedure: Procedure,
          form: FormData) -> Response:
    lang = preview.lang(request)
    trigger = str(form.get("trigger") or "")
    actor = preview.actor(request, procedure)
    inputs = views.inputs(procedure, case.state, trigger)
    data = formdata.typed(inputs, views.posted(form))
    version = str(form.get("version") or "")
    try:
        preview.engine.fire(case.reference, trigger, actor, data,
                            expected_version=int(version) if version.isdigit() else None)
    except GuichetError as error:
        errors = error.errors if isinstance(error, InvalidData) else {}
        return preview.case_page(request, case.reference, status=_status(error),
                                 messages=[preview.refusal(error, lang, inputs)],
                                 step_values={trigger: data}, errors=errors)
    return _redirect_to_case(preview, case.reference, [Message("notice", texts(lang)["done"])])


def _attach_action(preview: Preview, request: Request, case: Case, procedure: Procedure,
                   form: FormData) -> Response:
    lang = preview.lang(request)
    document_id = str(form.get("document") or "")
    upload = form.get("file")
    actor = preview.actor(request, procedure)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return preview.case_page(request, case.reference, status=422, messages=[
            Message("error", texts(lang)["file"] + texts(lang)["colon"] + "?")])
    notes = _attach(preview, case.reference, procedure, document_id, upload, actor, lang)
    if any(n.kind == "error" for n in notes):
        return preview.case_page(request, case.reference, status=422, messages=notes)
    return _redirect_to_case(preview, case.reference, notes)


def _pay(preview: Preview, request: Request, case: Case, procedure: Procedure,
         form: FormData) -> Response:
    lang = preview.lang(request)
    actor = preview.actor(request, procedure)
    amount_text = str(form.get("amount") or "").strip()
    method = str(form.get("method") or "") or None
    reference = str(form.get("payment_reference") or "") or secrets.token_hex(8)
    try:
        amount = int(amount_text)
    except ValueError:
        return preview.case_page(request, case.reference, status=422, messages=[
            Message("error", f"{texts(lang)['amount']}{texts(lang)['colon']}{amount_text!r}")])
    try:
        preview.engine.pay(case.reference, amount, "preview", f"PREVIEW-{reference}", actor,
                           method=method)
    except GuichetError as error:
        return preview.case_page(request, case.reference, status=_status(error),
                                 messages=[preview.refusal(error, lang)])
    return _redirect_to_case(preview, case.reference, [Message("notice", texts(lang)["done"])])


def _edit(preview: Preview, request: Request, case: Case, procedure: Procedure,
          form: FormData) -> Response:
    lang = preview.lang(request)
    actor = preview.actor(request, procedure)
    data = formdata.typed(procedure.fields, views.posted(form))
    changed = {k: v for k, v in data.items() if case.data.get(k) != v
               and not (v is False and case.data.get(k) is None)}
    try:
        if changed:
            preview.engine.update(case.reference, actor, changed)
    except GuichetError as error:
        errors = error.errors if isinstance(error, InvalidData) else {}
        return preview.case_page(request, case.reference, status=_status(error),
                                 messages=[preview.refusal(error, lang, procedure.fields)],
                                 errors=errors, edit_values={**case.data, **data})
    return _redirect_to_case(preview, case.reference, [Message("notice", texts(lang)["done"])])


_ACTIONS: dict[str, Action] = {"fire": _fire, "attach": _attach_action, "pay": _pay,
                               "edit": _edit}


def _attach(preview: Preview, reference: str, procedure: Procedure, document_id: str,
            upload: UploadFile, actor: Actor, lang: str) -> list[Message]:
    """Attach one uploaded file (read up to one byte past the document's limit)."""
    spec = procedure.document(document_id)
    limit = (spec.max_size if spec else 0) + 1
    content = upload.file.read(limit)
    try:
        preview.engine.attach(reference, document_id, upload.filename or "file", content, actor)
    except GuichetError as error:
        label = spec.label.get(lang) if spec else document_id
        message = preview.refusal(error, lang)
        return [Message("error", f"{label} — {message.text}", message.details)]
    label = spec.label.get(lang) if spec else document_id
    return [Message("notice", f"{label}{texts(lang)['colon']}{upload.filename}")]


# --- from the renderers, when they exist --------------------------------------------------------

def _renderer(module: str, name: str) -> Callable[..., str] | None:
    """A renderer function, or None while it is not written (the preview does not wait)."""
    try:
        found = getattr(__import__(f"renderers.{module}", fromlist=[name]), name, None)
    except ImportError:
        return None
    return found if callable(found) else None


def _rendered(module: str, name: str, *arguments: Any, **options: Any) -> str | None:
    """What a renderer makes, or None when it is missing or fails (the preview then shows
    its own page, and the reason goes to the log)."""
    function = _renderer(module, name)
    if function is None:
        return None
    try:
        return function(*arguments, **options)
    except Exception:  # noqa: BLE001 - a renderer being written must not break the preview
        log.warning("renderers.%s.%s failed; the preview shows its own page", module, name,
                    exc_info=True)
        return None


def _form_html(procedure: Procedure, lang: str, **options: Any) -> str | None:
    return _rendered("form", "form_html", procedure, lang, **options)


def _page_html(procedure: Procedure, lang: str) -> str | None:
    return _rendered("page", "page_html", procedure, lang)


def _diagram(procedure: Procedure, lang: str) -> dict[str, str] | None:
    """{"svg": ...} when Graphviz draws it, else {"mermaid": ...}, else None."""
    drawn = _rendered("diagram", "svg", procedure, lang)  # None without graphviz
    if drawn is not None:
        return {"svg": drawn}
    text = _rendered("diagram", "mermaid", procedure, lang)
    return {"mermaid": text} if text is not None else None


_FORM_TAG = re.compile(r"<form\b[^>]*>", re.IGNORECASE)
_MAIN_TAG = re.compile(r"<(main|body)\b[^>]*>", re.IGNORECASE)


def _with_csrf(html: str, action: str, token: str, banner: str) -> str:
    """The renderer's page with the CSRF field in its forms that post to `action`."""
    def add(match: re.Match[str]) -> str:
        tag = match.group(0)
        if action not in tag:
            return tag
        if "method=" not in tag.lower():
            tag = tag[:-1] + ' method="post">'
        if "enctype=" not in tag.lower():
            tag = tag[:-1] + ' enctype="multipart/form-data">'
        return (f'{tag}<input type="hidden" name="{CSRF_FIELD}" '
                f'value="{_attribute(token)}">')

    return _with_banner(_FORM_TAG.sub(add, html), banner)


def _with_banner(html: str, banner: str) -> str:
    """The renderer's page with the preview's banner (back to the index, who acts)."""
    return _MAIN_TAG.sub(lambda m: m.group(0) + banner, html, count=1)


def _attribute(value: str) -> str:
    return (value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def _state_label(preview: Preview, case: Case, lang: str) -> str:
    state = preview.engine.workflow(case.procedure_hash).procedure.states.get(case.state)
    return state.label.get(lang) if state else case.state


def _authority(procedure: Procedure, lang: str) -> str:
    found = procedure.ministry or procedure.directorate
    return found.get(lang) if found else ""
