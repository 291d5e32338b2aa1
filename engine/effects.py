"""What a step sends and issues: notifications and documents rendered from author templates.

Effects are rendered before the step's write transaction, never while it holds the database's
write lock, and each rendering is bounded in size and time (engine/expressions.py). A template
that cannot be rendered refuses the step (fail closed): a case never moves on with an empty
notice or an empty issued document.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import Blocked, Reason
from .messages import text
from .model import IssuedDocument, Notification, Text
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
    for language, template in templates.items():
        seen = {**context, **names, "procedure_title": workflow.procedure.title.get(language)}
        try:
            texts[language] = template.render(seen)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the step
            raise _Unrenderable(subject, _describe(exc)) from None
    return texts


def _describe(exc: Exception) -> str:
    """A short, single-line account of why a template failed (no stack, no huge values)."""
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__
