"""What a step sends and issues: notifications and documents rendered from author templates.

Effects are rendered before the step's write transaction, never while it holds the database's
write lock, and each rendering is bounded in size and time (engine/expressions.py). A template
that cannot be rendered refuses the step (fail closed): a case never moves on with an empty
notice or an empty issued document.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from .errors import Blocked, Reason
from .expressions import OPTION_LABELS, Template, compile_template
from .messages import LANGUAGES, text
from .model import Field, IssuedDocument, Notification, Path, Procedure, Text
from .workflow import Workflow

log = logging.getLogger("guichet")

#: Rendered effects of one step: {"notifications": [...], "issued": [...]}.
Effects = dict[str, list[dict[str, Any]]]


class _Unrenderable(Exception):
    def __init__(self, subject: str, problem: str) -> None:
        super().__init__(problem)
        self.subject = subject
        self.problem = problem


def render(workflow: Workflow, notifications: Iterable[Notification],
           issued: Iterable[IssuedDocument], context: Mapping[str, Any], reference: str,
           state: str, trigger: str) -> Effects:
    """Render a step's notifications and issued documents; raises Blocked if one fails."""
    names = {"reference": reference, "state": state}
    try:
        return {
            "notifications": [_notification(workflow, n, context, names) for n in notifications],
            "issued": [_document(workflow, d, context, names) for d in issued],
        }
    except _Unrenderable as failed:
        log.warning("step %s of %s refused: template %s failed: %s", trigger, reference,
                    failed.subject, failed.problem)
        reason = Reason("template", failed.subject,
                        text("template_failed", subject=failed.subject))
        raise Blocked(text("step_impossible", trigger=trigger), [reason]) from None


def _notification(workflow: Workflow, note: Notification, context: Mapping[str, Any],
                  names: Mapping[str, str]) -> dict[str, Any]:
    subject = f"{note.channel} → {note.to}"
    sent = {"channel": note.channel, "to": note.to,
            "text": _texts(workflow, note.template, context, names, subject),
            "subject": _bilingual(note.subject) if note.subject else None}
    party = workflow.procedure.parties.get(note.to)
    if party is not None:  # reached through form fields: the host needs the address
        sent["contact"] = {kind: context.get(field_id)
                           for kind, field_id in party.contact_fields.items()}
    return sent


def _document(workflow: Workflow, item: IssuedDocument, context: Mapping[str, Any],
              names: Mapping[str, str]) -> dict[str, Any]:
    return {"id": item.id, "channel": item.channel, "title": _bilingual(item.title),
            "text": _texts(workflow, item.template, context, names, item.id)}


def _bilingual(text: Text) -> dict[str, str | None]:
    return {"fr": text.get("fr"), "en": text.get("en")}


def _texts(workflow: Workflow, templates: Mapping[str, Any], context: Mapping[str, Any],
           names: Mapping[str, str], subject: str) -> dict[str, str]:
    texts = {}
    procedure = workflow.procedure
    state = procedure.states.get(names["state"])
    for language, template in templates.items():
        seen = {**context, **names, "procedure_title": procedure.title.get(language),
                "state_label": state.label.get(language) if state else names["state"],
                OPTION_LABELS: option_labels(procedure, language)}
        try:
            texts[language] = template.render(seen)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the step
            raise _Unrenderable(subject, _describe(exc)) from None
    return texts


def _describe(exc: Exception) -> str:
    """A short, single-line account of why a template failed (no stack, no huge values)."""
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


def option_labels(procedure: Procedure, language: str) -> dict[str, dict[str, str]]:
    """The option labels of every field, step input and group sub-field with options, in
    `language`: {field id: {value: label}} (a form field's id wins over a sub-field's)."""
    labels: dict[str, dict[str, str]] = {}
    pending: list[Field] = [*procedure.fields, *(i for t in procedure.transitions for i in t.input)]
    for item in pending:  # grows with sub-fields while it is walked
        if item.options:
            labels.setdefault(item.id, {o.value: o.label.get(language) for o in item.options})
        pending.extend(item.fields)
    return labels


def default_reminder(path: Path) -> Notification:
    """The reminder a deadline with `remind_before` and no `reminder` sends: a portal notice to
    the applicant naming the case, its state and the deadline's date (message catalogue)."""
    subject = text("reminder_subject")
    return Notification(channel="portal", to="applicant", template=_reminder_templates(),
                        path=path, subject=Text(fr=subject["fr"], en=subject["en"]))


@cache
def _reminder_templates() -> Mapping[str, Template]:
    """The default reminder's templates, compiled once: the catalogue's text with template
    names for its placeholders."""
    sources = text("reminder_default", reference="{{ reference }}", state="{{ state_label }}",
                   due_date="{{ due_date }}")
    return MappingProxyType({language: compile_template(sources[language])
                             for language in LANGUAGES})
