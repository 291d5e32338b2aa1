"""A procedure as a citizen reads it: the view model shared by the page, the form and the site.

`procedure_view(procedure, language)` resolves every text in one language: who may apply,
the documents to provide (conditions in words, never expressions: renderers.words), the fees
in XOF (conditional, per unit, set at a step), payment methods, processing time, validity,
the steps in order (the states breadth-first from the initial one, by engine.graph), the
authority and the legal basis. Every value is frozen; templates only lay them out (an
author's text stays plain text: the HTML templates escape it, Markdown goes through
`markdown_text`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine import graph
from engine.model import (
    LANGUAGES,
    SYSTEM_ROLE,
    AnyDuration,
    Document,
    Duration,
    Fee,
    Field,
    Procedure,
    Text,
)

from .words import NBSP, condition, number, quoted, xof

__all__ = [
    "DocumentView", "FeeView", "ProcedureView", "RoleView", "StepView", "WhoView",
    "duration_text", "markdown_text", "procedure_view", "size_text", "xof",
]

_UNITS = {
    "fr": {"minutes": ("minute", "minutes"), "hours": ("heure", "heures"),
           "days": ("jour", "jours"), "business_days": ("jour ouvré", "jours ouvrés"),
           "weeks": ("semaine", "semaines"), "months": ("mois", "mois"), "years": ("an", "ans")},
    "en": {"minutes": ("minute", "minutes"), "hours": ("hour", "hours"),
           "days": ("day", "days"), "business_days": ("business day", "business days"),
           "weeks": ("week", "weeks"), "months": ("month", "months"),
           "years": ("year", "years")},
}

#: The view's own words (the procedure's texts come from the procedure).
_WORDS = {
    "fr": {
        "granted": "la durée accordée",
        "per_unit": "{amount} par unité ({what})",
        "set_at_step": "montant fixé à l'étape {step} : {what}",
        "set_in_form": "montant indiqué dans le formulaire : {what}",
        "at_step": "à l'étape {step}",
        "counter": "Au guichet : un agent ({roles}) peut ouvrir la demande pour vous ; le reçu "
                   "porte un code pour la retrouver en ligne.",
        "organisations": "Une organisation peut aussi faire la demande : ses membres agissent "
                         "en son nom.",
        "nobody": "Aucune demande ne peut être ouverte en ligne pour l'instant.",
        "one_file": "1 fichier", "files": "{n} fichiers", "up_to": "jusqu'à {n} fichiers",
        "from_to": "de {low} à {high} fichiers",
        "units": "o|Ko|Mo",
        "accepted": "demande acceptée", "rejected": "demande rejetée",
        "withdrawn": "demande retirée", "expired": "demande close, délai dépassé",
        "cancelled": "demande annulée", "revoked": "décision retirée",
    },
    "en": {
        "granted": "the duration granted",
        "per_unit": "{amount} per unit ({what})",
        "set_at_step": "amount set at the step {step}: {what}",
        "set_in_form": "amount given in the form: {what}",
        "at_step": "at the step {step}",
        "counter": "At the counter: an officer ({roles}) may open the application for you; "
                   "the receipt carries a code to find it online.",
        "organisations": "An organisation may also apply: its members act on its behalf.",
        "nobody": "No application can be opened online for now.",
        "one_file": "1 file", "files": "{n} files", "up_to": "up to {n} files",
        "from_to": "{low} to {high} files",
        "units": "bytes|KB|MB",
        "accepted": "application accepted", "rejected": "application rejected",
        "withdrawn": "application withdrawn", "expired": "application closed, time limit passed",
        "cancelled": "application cancelled", "revoked": "decision revoked",
    },
}

_MEDIA = {"application/pdf": "PDF", "image/jpeg": "JPEG", "image/png": "PNG"}


@dataclass(frozen=True)
class RoleView:
    """A role a person holds: its label and description."""

    id: str
    label: str
    description: str | None


@dataclass(frozen=True)
class WhoView:
    """Who may apply: the roles opening their own case, the counter, organisations."""

    applicants: tuple[RoleView, ...]
    at_counter: tuple[RoleView, ...]
    organisations: bool
    #: the same in sentences (counter, organisations, or that nobody may apply)
    notes: tuple[str, ...]


@dataclass(frozen=True)
class DocumentView:
    """A document to provide, its condition in words (None: always)."""

    id: str
    label: str
    hint: str | None
    required: bool
    condition: str | None
    original_at_counter: bool
    media_types: tuple[str, ...]
    formats: str  # "PDF, JPEG, PNG"
    max_size: int  # bytes
    size: str  # "5 Mo", "5 MB"
    min_files: int
    max_files: int
    files: str  # "jusqu'à 2 fichiers"


@dataclass(frozen=True)
class FeeView:
    """A fee in XOF: fixed, per unit (`per`) or set at a step (`amount_from`)."""

    id: str
    label: str
    kind: str  # "fixed", "per_unit" or "set_later"
    amount: int | None  # the fixed amount, or the amount per unit; None when set later
    amount_text: str  # "30 000 FCFA", "500 FCFA par unité (...)", "montant fixé ..."
    condition: str | None  # "si ..." (None: always due)
    due: str  # the trigger that waits until it is paid
    due_text: str  # "à l'étape « Soumettre la demande »"
    per: str | None
    amount_from: str | None


@dataclass(frozen=True)
class StepView:
    """A state of the procedure, in the order a case meets them."""

    id: str
    label: str
    description: str | None
    final: bool
    outcome: str | None
    outcome_text: str | None  # "demande acceptée"
    actors: tuple[str, ...]  # labels of the roles acting from here (the system's aside)


@dataclass(frozen=True)
class ProcedureView:
    """A procedure in one language, as its page, form and catalogue show it."""

    id: str
    version: str
    language: str
    title: str
    description: str | None
    ministry: str | None
    directorate: str | None
    legal_basis: tuple[str, ...]
    processing_time: str | None
    validity: str | None
    who: WhoView
    documents: tuple[DocumentView, ...]
    fees: tuple[FeeView, ...]
    payment_methods: tuple[str, ...]
    steps: tuple[StepView, ...]


# --- texts ------------------------------------------------------------------------------------

def _check(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")
    return language


def _text(text: Text | None, language: str) -> str | None:
    return None if text is None else (text.get(language) or None)


def duration_text(duration: AnyDuration | None, language: str = "fr") -> str | None:
    """« 21 jours », "3 months"; a duration read from the form: « la durée accordée »."""
    if duration is None:
        return None
    if not isinstance(duration, Duration):
        return _WORDS[language]["granted"]
    singular, plural = _UNITS[language].get(duration.unit, (duration.unit, duration.unit))
    unit = singular if duration.amount == 1 else plural
    return f"{number(duration.amount, language)}{NBSP}{unit}"


def size_text(size: int, language: str = "fr") -> str:
    """« 5 Mo », "500 KB"."""
    units = _WORDS[language]["units"].split("|")
    for power in (2, 1):
        if size >= 1024 ** power:
            value = size / 1024 ** power
            shown = number(round(value, 1) if value % 1 else int(value), language)
            return f"{shown}{NBSP}{units[power]}"
    return f"{number(size, language)}{NBSP}{units[0]}"


_MARKDOWN = re.compile(r"([\\`*_\[\]|#])")


def markdown_text(text: str) -> str:
    """An author's text made inert in Markdown: no emphasis, link, table cell or raw HTML
    (`<` and `&` as entities, Markdown's marks escaped, line breaks as spaces)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


# --- the view ---------------------------------------------------------------------------------

def procedure_view(procedure: Procedure, language: str = "fr") -> ProcedureView:
    """`procedure` in `language` (fr or en), every text resolved."""
    _check(language)
    return ProcedureView(
        id=procedure.id,
        version=procedure.version,
        language=language,
        title=procedure.title.get(language),
        description=_text(procedure.description, language),
        ministry=_text(procedure.ministry, language),
        directorate=_text(procedure.directorate, language),
        legal_basis=tuple(t.get(language) for t in procedure.legal_basis if t.get(language)),
        processing_time=duration_text(procedure.processing_time, language),
        validity=duration_text(procedure.validity, language),
        who=_who(procedure, language),
        documents=tuple(_document(procedure, d, language) for d in procedure.documents),
        fees=tuple(_fee(procedure, f, language) for f in procedure.fees),
        payment_methods=tuple(m.label.get(language) for m in procedure.payment_methods),
        steps=_steps(procedure, language),
    )


def _role(procedure: Procedure, role_id: str, language: str) -> RoleView:
    role = procedure.roles.get(role_id)
    if role is None:
        return RoleView(role_id, role_id, None)
    return RoleView(role_id, role.label.get(language), _text(role.description, language))


def _who(procedure: Procedure, language: str) -> WhoView:
    words = _WORDS[language]
    start = procedure.start
    applicants = tuple(_role(procedure, r, language) for r in start.roles)
    counter = tuple(_role(procedure, r, language) for r in start.on_behalf)
    notes = []
    if counter:
        notes.append(words["counter"].format(roles=", ".join(r.label for r in counter)))
    if start.organisations:
        notes.append(words["organisations"])
    if not applicants and not counter:
        notes.append(words["nobody"])
    return WhoView(applicants, counter, start.organisations, tuple(notes))


def _document(procedure: Procedure, document: Document, language: str) -> DocumentView:
    words = _WORDS[language]
    low, high = document.min_files, document.max_files
    if high == 1:
        files = words["one_file"]
    elif low == high:
        files = words["files"].format(n=high)
    elif low <= 1:
        files = words["up_to"].format(n=high)
    else:
        files = words["from_to"].format(low=low, high=high)
    formats = ", ".join(_MEDIA.get(m, m.rpartition("/")[2].upper()) for m in document.media_types)
    return DocumentView(
        id=document.id, label=document.label.get(language),
        hint=_text(document.hint, language), required=document.required,
        condition=condition(document.when, procedure, language),
        original_at_counter=document.original_at_counter,
        media_types=document.media_types, formats=formats, max_size=document.max_size,
        size=size_text(document.max_size, language), min_files=low, max_files=high,
        files=files)


def _input(procedure: Procedure, name: str) -> tuple[Field | None, Text | None]:
    """The form field or step input `name`, and for an input the label of its step."""
    found = procedure.field(name)
    if found is not None:
        return found, None
    for transition in procedure.transitions:
        for given in transition.input:
            if given.id == name:
                return given, transition.label or Text(transition.trigger, transition.trigger)
    return None, None


def _step_label(procedure: Procedure, trigger: str, language: str) -> str:
    transition = next((t for t in procedure.transitions if t.trigger == trigger), None)
    label = transition.label.get(language) if transition and transition.label else None
    return quoted(label or trigger.replace("_", " "), language)


def _fee(procedure: Procedure, fee: Fee, language: str) -> FeeView:
    words = _WORDS[language]
    if fee.amount_from is not None:
        given, step = _input(procedure, fee.amount_from)
        what = given.label.get(language) if given else fee.amount_from
        kind, amount = "set_later", None
        if step is not None:
            text = words["set_at_step"].format(step=quoted(step.get(language), language),
                                               what=what)
        else:
            text = words["set_in_form"].format(what=what)
    elif fee.per is not None:
        given, _ = _input(procedure, fee.per)
        what = quoted(given.label.get(language) if given else fee.per, language)
        kind, amount = "per_unit", fee.amount
        text = words["per_unit"].format(amount=xof(fee.amount, language), what=what)
    else:
        kind, amount, text = "fixed", fee.amount, xof(fee.amount, language)
    return FeeView(
        id=fee.id, label=fee.label.get(language), kind=kind, amount=amount, amount_text=text,
        condition=condition(fee.when, procedure, language), due=fee.due,
        due_text=words["at_step"].format(step=_step_label(procedure, fee.due, language)),
        per=fee.per, amount_from=fee.amount_from)


#: Outcomes that end a case before its decision: who may withdraw is not who moves it on.
_ENDING = ("withdrawn", "cancelled")


def _steps(procedure: Procedure, language: str) -> tuple[StepView, ...]:
    """The states a case can reach, breadth-first from the initial one: the steps on the way,
    then the final ones (the possible outcomes), each group in that order."""
    order = list(graph.distances(graph.transition_graph(procedure),
                                 procedure.initial_state.id))
    order.sort(key=lambda state_id: procedure.states[state_id].final)  # stable
    steps = []
    for state_id in order:
        state = procedure.states[state_id]
        moving_on = [t for t in graph.leaving(procedure, state_id)
                     if t.target not in procedure.states
                     or procedure.states[t.target].outcome not in _ENDING]
        actors = dict.fromkeys(_role(procedure, role, language).label
                               for transition in moving_on
                               for role in transition.roles if role != SYSTEM_ROLE)
        steps.append(StepView(
            id=state.id, label=state.label.get(language),
            description=_text(state.description, language), final=state.final,
            outcome=state.outcome,
            outcome_text=_WORDS[language][state.outcome] if state.outcome else None,
            actors=tuple(actors)))
    return tuple(steps)
