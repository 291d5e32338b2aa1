"""View models of the preview's pages: a case's data, documents, steps and history, and the
preview's own form controls, as plain values for the templates (renderers/templates/preview_*)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from engine import Case, Procedure
from engine.model import Field, Transition
from engine.values import Availability, HistoryEntry

CSRF_FIELD = "csrf"


# --- view models --------------------------------------------------------------------------------

def roles(procedures: Sequence[Procedure], lang: str) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for procedure in procedures:
        for role in procedure.roles.values():
            if role.id != "system":
                found.setdefault(role.id, role.label.get(lang))
    return list(found.items())


def here(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("m", "lang")]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def local_path(target: str) -> str:
    """Only a path of this site (never another host: no open redirect)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def with_query(path: str, **values: str) -> str:
    return path + ("&" if "?" in path else "?") + urlencode(values)


def posted(form: FormData) -> dict[str, list[str]]:
    posted: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key != CSRF_FIELD:
            posted.setdefault(key, []).append(value)
    return posted


_DOCUMENT_NAME = re.compile(r"^(?:documents?[.\[_-])?(?P<id>[^\[\]]+?)\]?(?:\[\])?$")


def uploads(form: FormData, procedure: Procedure) -> list[tuple[str, UploadFile]]:
    """The files sent with the start form, by document id (`photos`, `documents.photos`...)."""
    found = []
    for key, value in form.multi_items():
        if not isinstance(value, UploadFile) or not value.filename:
            continue
        match = _DOCUMENT_NAME.match(key)
        for name in (key, match["id"] if match else ""):
            if procedure.document(name) is not None:
                found.append((name, value))
                break
    return found


def labels(fields: Iterable[Field], lang: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for f in fields:
        labels[f.id] = f.label.get(lang)
        for sub in f.fields:
            labels[f"{f.id}.{sub.id}"] = f"{f.label.get(lang)} — {sub.label.get(lang)}"
    return labels


def label_of(path: str, labels: Mapping[str, str]) -> str:
    """A field path (`members.0.surname`) named by its labels (row numbers from 1)."""
    if path in labels:
        return labels[path]
    parts = path.split(".")
    if len(parts) >= 3 and parts[1].isdigit():
        row = int(parts[1]) + 1
        name = labels.get(f"{parts[0]}.{'.'.join(parts[2:])}")
        if name:
            return f"{name} ({row})"
    return path


def display(f: Field | None, value: Any, lang: str, t: Mapping[str, str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return t["yes"] if value else t["no"]
    if f is not None and f.type == "choice":
        return next((o.label.get(lang) for o in f.options if o.value == value), str(value))
    if f is not None and f.type == "multi_choice" and isinstance(value, list):
        return ", ".join(display(_choice(f), v, lang, t) for v in value)
    if f is not None and f.type == "group" and isinstance(value, list):
        return " ; ".join(", ".join(f"{sub.label.get(lang)}: "
                                    f"{display(sub, row.get(sub.id), lang, t)}"
                                    for sub in f.fields if isinstance(row, dict) and sub.id in row)
                          for row in value)
    return str(value)


def _choice(f: Field) -> Field:
    return Field(f.id, "choice", f.label, f.path, options=f.options)


def data_rows(procedure: Procedure, data: Mapping[str, Any], lang: str,
               t: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, value) of each value of the case: form fields in order, then step inputs."""
    rows = [(f.label.get(lang), display(f, data[f.id], lang, t))
            for f in procedure.fields if data.get(f.id) is not None]
    inputs: dict[str, Field] = {}
    for tr in procedure.transitions:  # the first label of an input several steps ask
        for f in tr.input:
            inputs.setdefault(f.id, f)
    known = {f.id for f in procedure.fields}
    for key, value in data.items():
        if key not in known and value is not None:
            found = inputs.get(key)
            rows.append((found.label.get(lang) if found else key,
                         display(found, value, lang, t)))
    return rows


def documents(procedure: Procedure, case: Case, missing: Iterable[str], lang: str
               ) -> list[dict[str, Any]]:
    lacking = set(missing)
    return [{"id": d.id, "label": d.label.get(lang), "required": d.required,
             "conditional": d.when is not None, "missing": d.id in lacking,
             "accept": ",".join(d.media_types),
             "files": [f for f in case.documents if f.document_id == d.id]}
            for d in procedure.documents]


def upload_documents(procedure: Procedure, lang: str) -> list[dict[str, Any]]:
    return [{"id": d.id, "label": d.label.get(lang), "required": d.required and d.when is None,
             "accept": ",".join(d.media_types), "multiple": d.max_files > 1}
            for d in procedure.documents]


def inputs(procedure: Procedure, state: str, trigger: str) -> list[Field]:
    found: dict[str, Field] = {}
    for t in procedure.transitions_from(state, trigger):
        for f in t.input:
            found.setdefault(f.id, f)
    return list(found.values())


def step(availability: Availability, procedure: Procedure, case: Case, lang: str,
          today: dt.date, values: Mapping[str, Any], errors: Mapping[str, Mapping[str, str]]
          ) -> dict[str, Any]:
    fields = inputs(procedure, case.state, availability.trigger)
    transition: Transition | None = next(procedure.transitions_from(case.state,
                                                                     availability.trigger), None)
    target = procedure.states.get(transition.target) if transition else None
    # a guard may read the step's own input (record_enrolment: `originals_checked and ...`):
    # asked without it, it refuses; the step stays open, the guard decides on what is sent
    open_to_input = bool(fields) and bool(availability.reasons) and all(
        r.code == "guard" for r in availability.reasons)
    return {"trigger": availability.trigger, "label": availability.label,
            "allowed": availability.allowed or open_to_input,
            "conditional": open_to_input,
            "reasons": [r.message(lang) for r in availability.reasons],
            "target": target.label.get(lang) if target else "",
            "controls": controls(fields, values, errors if values else {}, lang, today,
                                  f"step-{availability.trigger}")}


def entry(procedure: Procedure, entry: HistoryEntry, lang: str, t: Mapping[str, str]
          ) -> dict[str, Any]:
    """One history row: the step in words, states by label, what it carried by label."""
    transition = next((tr for tr in procedure.transitions if tr.trigger == entry.trigger), None)
    label = (transition.label.get(lang) if transition and transition.label else
             t.get("step" + entry.trigger.replace("@", "_"), entry.trigger))

    def state(name: str | None) -> str:
        found = procedure.states.get(name or "")
        return found.label.get(lang) if found else (name or "—")

    fields = {f.id: f for f in procedure.fields}
    for tr in procedure.transitions:
        for f in tr.input:
            fields.setdefault(f.id, f)
    documents = {d.id: d.label.get(lang) for d in procedure.documents}
    details: list[str] = []
    payload = entry.payload
    if entry.trigger == "@attach":
        details.append(f"{documents.get(str(payload.get('document_id')), '')}: "
                       f"{payload.get('filename')} ({payload.get('media_type')}, "
                       f"{payload.get('size')} B)")
    elif entry.trigger == "@pay":
        details.append(f"{payload.get('amount')} XOF" + (f" ({payload['method']})"
                                                          if payload.get("method") else ""))
    elif not entry.trigger.startswith("@"):  # a transition: its step input
        for key, value in payload.items():
            if not key.startswith("@"):
                known = fields.get(key)
                details.append(f"{known.label.get(lang) if known else key}: "
                               f"{display(known, value, lang, t)}")
    for name, change in entry.changes.items():
        known = fields.get(name)
        details.append(f"{known.label.get(lang) if known else name}: "
                       f"{display(known, change.get('before'), lang, t) or '—'} → "
                       f"{display(known, change.get('after'), lang, t) or '—'}")
    sent = [_text(n.get("text"), lang) for n in entry.notifications]
    issued = [{"title": _text(i.get("title"), lang), "text": _text(i.get("text"), lang)}
              for i in entry.issued]
    return {"sequence": entry.sequence, "at": entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            "label": label, "from": state(entry.from_state), "to": state(entry.to_state),
            "actor": f"{entry.actor_id} ({entry.actor_role})", "details": details,
            "notifications": sent, "issued": issued}


def _text(value: Any, lang: str) -> str:
    if isinstance(value, Mapping):
        return str(value.get(lang) or value.get("fr") or "")
    return "" if value is None else str(value)


# --- the preview's own form controls ------------------------------------------------------------

_INPUT_TYPES = {"date": "date", "integer": "number", "number": "number", "email": "email",
                "phone": "tel"}


def controls(fields: Iterable[Field], values: Mapping[str, Any],
              errors: Mapping[str, Mapping[str, str]], lang: str, today: dt.date,
              prefix: str) -> list[dict[str, Any]]:
    """Form controls for `fields` (labels, values, each field's error) for the templates."""
    return [_control(f, f.id, values.get(f.id), errors, lang, today, prefix) for f in fields]


def _control(f: Field, name: str, value: Any, errors: Mapping[str, Mapping[str, str]],
             lang: str, today: dt.date, prefix: str) -> dict[str, Any]:
    error = errors.get(name)
    control: dict[str, Any] = {
        "name": name, "id": f"{prefix}-{name}".replace(".", "-"), "label": f.label.get(lang),
        "hint": f.hint.get(lang) if f.hint else "", "required": f.required and f.when is None,
        "error": (error.get(lang) or error.get("fr", "")) if error else "",
        "kind": "input", "type": _INPUT_TYPES.get(f.type, "text"), "attributes": {},
        "options": [(o.value, o.label.get(lang)) for o in f.options], "rows": [],
    }
    if f.type == "boolean":
        control.update(kind="checkbox", value=value is True, required=False)
    elif f.type == "choice":
        control.update(kind="select", value="" if value is None else str(value))
    elif f.type == "multi_choice":
        control.update(kind="checkboxes",
                       value=[str(v) for v in value] if isinstance(value, list) else [])
    elif f.type == "group":
        rows = [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []
        count = max(len(rows) + (1 if f.max_rows is None or len(rows) < f.max_rows else 0),
                    f.min_rows or 1)
        control.update(kind="group", rows=[
            [_control(sub, f"{name}.{i}.{sub.id}", rows[i].get(sub.id) if i < len(rows)
                      else None, errors, lang, today, prefix) for sub in f.fields]
            for i in range(count)])
    else:
        control.update(kind="textarea" if f.type == "text" else "input",
                       value="" if value is None else str(value),
                       attributes=_attributes(f, today))
    return control


def _attributes(f: Field, today: dt.date) -> dict[str, str]:
    found: dict[str, Any] = {"min": f.minimum, "max": f.maximum, "minlength": f.min_length,
                             "maxlength": f.max_length}
    if f.type == "date":
        for key in ("min", "max"):
            if found[key] == "today":
                found[key] = today.isoformat()
    elif f.type not in ("integer", "number"):
        found.pop("min"), found.pop("max")
    if f.type == "country":
        found["maxlength"] = 2
    return {k: str(v) for k, v in found.items() if v is not None}
