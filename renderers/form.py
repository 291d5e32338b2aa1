"""The citizen's form: the start data of a procedure, or the input of one step, as accessible HTML.

`form_html` builds one whole HTML document (templates/form.html.j2, on base.html.j2): every
control has its label, hint, error slot and required marker, and HTML constraints mirroring
the server's rules (engine/forms.py): types, bounds (`today` and ages set by the page's script
from the browser's date), patterns, lengths, `+228` phones, national ID numbers, the country
list. Choices are radios (a few options) or a select, multi-choices checkboxes, repeatable
groups rows with add/remove buttons, documents file inputs with their types and size, and
the start form ends with a fee summary.

Conditions (`when:`) are compiled to JavaScript (renderers/formjs.py) so that fields,
documents, fees and options show and hide as the citizen types; hidden controls are disabled
(never submitted). With JavaScript off, everything is shown and the server decides.

Submitted names: a field's id; a group's cells `group.ROW.field` (as the server names errors);
a document's files `documents.ID`; booleans "true"/"false".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import forms, limits
from engine.expressions import Expression
from engine.model import Document, Field, Procedure, Transition

from . import formjs, views, words
from .countries import COUNTRY_NAMES
from .html import render

#: Choices with at most this many options are radios; more, a select.
MAX_RADIOS = 4

#: A phone as the server accepts it (engine/forms.py): spaces, dots and hyphens anywhere,
#: then 8 national digits (Togo, stored as +228...) or + and an E.164 number.
PHONE_PATTERN = (r"[\s.\-]*(?:\+[\s.\-]*[1-9](?:[\s.\-]*[0-9]){6,14}"
                 r"|[0-9](?:[\s.\-]*[0-9]){7})[\s.\-]*")
EMAIL_PATTERN = forms.EMAIL.removeprefix("^").removesuffix("$")
NIN_PATTERN = forms.NIN.removeprefix("^").removesuffix("$")

TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "required": "obligatoire", "colon": " : ",
        "required_note": "Les champs marqués d'un astérisque (*) sont obligatoires.",
        "choose": "— Choisir —", "yes": "Oui", "no": "Non",
        "documents": "Pièces à joindre", "fees": "Frais", "total": "Total",
        "total_depends": "selon vos réponses", "later": "montant fixé plus tard",
        "submit": "Envoyer la demande", "add_row": "Ajouter une ligne",
        "remove_row": "Retirer cette ligne", "row": "Ligne",
        "formats": "Formats acceptés : {formats}.", "size": "Taille maximale : {size} par "
        "fichier.", "files": "Nombre de fichiers : {files}.", "original": "L'original est "
        "présenté au guichet.",
        "phone": "Numéro togolais à 8 chiffres (+228), ou numéro international commençant "
                 "par +.",
        "nin": "10 chiffres.", "rows": "De {low} à {high} lignes.",
        "rows_from": "Au moins {low} ligne(s).", "rows_to": "Au plus {high} lignes.",
        "min_age": "Âge minimum : {n} ans.", "max_age": "Âge maximum : {n} ans.",
        "too_big": "Le fichier « {name} » dépasse {size}.",
        "too_many": "Au plus {n} fichier(s).", "too_few": "Au moins {n} fichier(s).",
        "step": "Étape", "javascript": "Sans JavaScript, tous les champs sont affichés : "
        "remplissez ceux qui vous concernent.",
    },
    "en": {
        "required": "required", "colon": ": ",
        "required_note": "Fields marked with an asterisk (*) are required.",
        "choose": "— Choose —", "yes": "Yes", "no": "No",
        "documents": "Documents to attach", "fees": "Fees", "total": "Total",
        "total_depends": "depending on your answers", "later": "amount set later",
        "submit": "Send the application", "add_row": "Add a row",
        "remove_row": "Remove this row", "row": "Row",
        "formats": "Accepted formats: {formats}.", "size": "Maximum size: {size} per file.",
        "files": "Number of files: {files}.", "original": "The original is shown at the "
        "counter.",
        "phone": "Togolese 8-digit number (+228), or an international number starting "
                 "with +.",
        "nin": "10 digits.", "rows": "{low} to {high} rows.",
        "rows_from": "At least {low} row(s).", "rows_to": "At most {high} rows.",
        "min_age": "Minimum age: {n} years.", "max_age": "Maximum age: {n} years.",
        "too_big": "The file “{name}” is larger than {size}.",
        "too_many": "At most {n} file(s).", "too_few": "At least {n} file(s).",
        "step": "Step", "javascript": "Without JavaScript every field is shown: fill in "
        "those that concern you.",
    },
}


@dataclass
class Choice:
    value: str
    label: str
    id: str
    when: str | None = None  # a condition key


@dataclass
class Control:
    """One field as the template draws it."""

    id: str  # the HTML id of its control (radios: of the first one)
    name: str  # the submitted name
    kind: str  # input, textarea, select, radios, checkboxes, group
    label: str
    hint: str | None
    notes: list[str]  # what the format asks (phone, NIN, ages, rows)
    required: bool
    required_attribute: str | None  # "required", "data-required" (set while shown) or None
    when: str | None  # a condition key (None: always shown)
    condition: str | None  # the condition in words (None: none)
    attributes: list[tuple[str, str]] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    placeholder: str | None = None  # a select's empty option
    rows: list[list[Control]] = field(default_factory=list)
    template: list[Control] = field(default_factory=list)  # a new row (index __i__)
    group: str | None = None
    min_rows: int = 0
    max_rows: int | None = None

    @property
    def described_by(self) -> str:
        ids = [f"{self.id}-hint"] if self.hint else []
        ids += [f"{self.id}-notes"] if self.notes else []
        return " ".join([*ids, f"{self.id}-error"])


@dataclass
class DocumentControl:
    id: str
    name: str
    label: str
    hint: str | None
    notes: list[str]
    condition: str | None
    when: str | None
    required_attribute: str | None
    required: bool
    attributes: list[tuple[str, str]]

    @property
    def described_by(self) -> str:
        ids = [f"{self.id}-hint"] if self.hint else []
        return " ".join([*ids, f"{self.id}-notes", f"{self.id}-error"])


@dataclass
class FeeLine:
    id: str
    label: str
    amount_text: str
    condition: str | None
    due_text: str
    when: str | None
    attributes: list[tuple[str, str]]


class _Conditions:
    """The conditions of one page, compiled once each (key -> JavaScript)."""

    def __init__(self, names: Iterable[str], documents: Iterable[str],
                 unset: Iterable[str]) -> None:
        self.names, self.documents, self.unset = set(names), set(documents), set(unset)
        self.code: dict[str, str] = {}
        self._keys: dict[str, str] = {}

    def key(self, expression: Expression | None, extra: Iterable[str] = ()) -> str | None:
        """The key of `expression`'s compiled code; None when it has none (no condition, or
        one the form cannot follow: always shown)."""
        if expression is None:
            return None
        names = self.names | set(extra)
        code = formjs.compile_condition(expression, names, self.documents,
                                        self.unset - names)
        if code is None:
            return None
        if code not in self._keys:
            self._keys[code] = f"c{len(self._keys)}"
            self.code[self._keys[code]] = code
        return self._keys[code]


def form_html(procedure: Procedure, language: str = "fr", *, trigger: str | None = None,
              action: str | None = None) -> str:
    """The form as one HTML document: the start data, or with `trigger` the input of that
    step (the first transition of that trigger); `action` is the URL it posts to (none: the
    page's own). Raises ValueError for an unknown trigger or language."""
    if language not in TEXTS:
        raise ValueError(f"unknown language {language!r} (fr or en)")
    texts = TEXTS[language]
    step = _transition(procedure, trigger) if trigger is not None else None
    fields = step.input if step is not None else procedure.fields
    inputs = {i.id for t in procedure.transitions for i in t.input}
    documents = procedure.documents if step is None else ()
    unset = inputs - {f.id for f in fields} if step is None else set()
    conditions = _Conditions((f.id for f in fields if f.type != "group"),
                             (d.id for d in documents), unset)
    builder = _Builder(procedure, language, conditions)
    controls = [builder.control(f) for f in fields]
    document_controls = [builder.document(d) for d in documents]
    fees = builder.fees() if step is None else []
    title = procedure.title.get(language)
    heading = (step.label.get(language) if step is not None and step.label else
               (trigger.replace("_", " ") if trigger else title))
    types = {f.id: f.type for f in fields}
    groups = {f.id: {s.id: s.type for s in f.fields} for f in fields if f.type == "group"}
    script_texts = {key: texts[key] for key in ("too_big", "too_many", "too_few", "later",
                                                "row")}
    script_texts["language"] = language
    return render(
        "form.html.j2", language=language, texts=texts, title=title, heading=heading,
        step=step is not None, action=action, controls=controls,
        documents=document_controls, fees=fees, has_fees=bool(fees),
        total_text=_total_text(procedure, language) if fees else "",
        multipart=bool(document_controls),
        conditions=formjs.conditions_script(conditions.code),
        types=formjs.js_literal(types), groups=formjs.js_literal(groups),
        script_texts=formjs.js_literal(script_texts),
    )


def _transition(procedure: Procedure, trigger: str) -> Transition:
    found = next((t for t in procedure.transitions if t.trigger == trigger), None)
    if found is None:
        known = ", ".join(procedure.triggers) or "none"
        raise ValueError(f"unknown step {trigger!r} (known: {known})")
    return found


def _total_text(procedure: Procedure, language: str) -> str:
    """The total before the script computes it: exact when every fee is fixed and
    unconditional, else the fixed part and "depending on your answers"."""
    fixed = sum(f.amount for f in procedure.fees
                if f.when is None and f.per is None and f.amount_from is None)
    if all(f.when is None and f.per is None and f.amount_from is None for f in procedure.fees):
        return words.xof(fixed, language)
    depends = TEXTS[language]["total_depends"]
    return f"{words.xof(fixed, language)} + … ({depends})" if fixed else depends


def _html_id(path: str) -> str:
    return "f-" + path.replace(".", "-")


class _Builder:
    def __init__(self, procedure: Procedure, language: str, conditions: _Conditions) -> None:
        self.procedure, self.language, self.conditions = procedure, language, conditions
        self.texts = TEXTS[language]

    def control(self, f: Field, row: str | None = None, group: Field | None = None) -> Control:
        """The control of field `f` (in row `row` of `group` when given)."""
        name = f"{group.id}.{row}.{f.id}" if group is not None and row is not None else f.id
        html_id = _html_id(name)
        extra = [s.id for s in group.fields] if group is not None else []
        when = self.conditions.key(f.when, extra)
        if not f.required:
            required = None
        elif f.when is None:
            required = "required"
        else:
            required = "data-required" if when is not None else None
        control = Control(
            id=html_id, name=name, kind="input", label=f.label.get(self.language),
            hint=f.hint.get(self.language) if f.hint else None, notes=self._notes(f),
            required=f.required, required_attribute=required, when=when,
            condition=words.condition(f.when, self.procedure, self.language))
        self._shape(control, f, extra)
        return control

    def _notes(self, f: Field) -> list[str]:
        t = self.texts
        notes = []
        if f.type == "phone":
            notes.append(t["phone"])
        if f.type == "nin":
            notes.append(t["nin"])
        if f.min_age is not None:
            notes.append(t["min_age"].format(n=f.min_age))
        if f.max_age is not None:
            notes.append(t["max_age"].format(n=f.max_age))
        if f.type == "group" and (f.min_rows or f.max_rows is not None):
            if f.min_rows and f.max_rows is not None:
                notes.append(t["rows"].format(low=f.min_rows, high=f.max_rows))
            elif f.min_rows:
                notes.append(t["rows_from"].format(low=f.min_rows))
            else:
                notes.append(t["rows_to"].format(high=f.max_rows))
        return notes

    def _shape(self, control: Control, f: Field, extra: Sequence[str]) -> None:
        """The control's kind, attributes and choices, after the field's type."""
        attributes = control.attributes
        if f.type in ("choice", "multi_choice", "boolean"):
            choices = ([Choice("true", self.texts["yes"], ""), Choice("false", self.texts["no"],
                                                                      "")]
                       if f.type == "boolean" else
                       [Choice(o.value, o.label.get(self.language), "",
                               self.conditions.key(o.when, extra)) for o in f.options])
            for i, choice in enumerate(choices):
                choice.id = f"{control.id}-{i}"
            control.choices = choices
            if f.type == "multi_choice":
                control.kind = "checkboxes"
            elif f.type == "choice" and len(choices) > MAX_RADIOS:
                control.kind, control.placeholder = "select", self.texts["choose"]
            else:
                control.kind = "radios"
            return
        if f.type == "country":
            control.kind, control.placeholder = "select", self.texts["choose"]
            control.choices = [Choice(code, name, "") for code, name in self._countries()]
            return
        if f.type == "group":
            self._group(control, f)
            return
        if f.type == "text":
            control.kind = "textarea"
        else:
            attributes.append(("type", _INPUT_TYPES.get(f.type, "text")))
        attributes.extend(_constraints(f, self.language))

    def _countries(self) -> list[tuple[str, str]]:
        index = 0 if self.language == "fr" else 1
        names = [(code, names[index]) for code, names in COUNTRY_NAMES.items()]
        return sorted(names, key=lambda item: _sort_key(item[1]))

    def _group(self, control: Control, f: Field) -> None:
        control.kind, control.group = "group", f.id
        control.min_rows, control.max_rows = f.min_rows or 0, f.max_rows
        shown = max(control.min_rows, 1)
        if control.max_rows is not None:
            shown = min(shown, control.max_rows)
        control.rows = [[self.control(s, str(i), f) for s in f.fields] for i in range(shown)]
        control.template = [self.control(s, "__i__", f) for s in f.fields]

    def document(self, d: Document) -> DocumentControl:
        t = self.texts
        when = self.conditions.key(d.when)
        notes = [t["formats"].format(formats=", ".join(_media_name(m) for m in d.media_types)),
                 t["size"].format(size=views.size_text(d.max_size, self.language))]
        if d.max_files > 1 or d.min_files > 1:
            notes.append(t["files"].format(files=_files_text(d, self.language)))
        if d.original_at_counter:
            notes.append(t["original"])
        if not d.required:
            required = None
        elif d.when is None:
            required = "required"
        else:
            required = "data-required" if when is not None else None
        attributes = [("type", "file"), ("accept", ",".join(d.media_types)),
                      ("data-max-size", str(d.max_size)),
                      ("data-max-size-text", views.size_text(d.max_size, self.language)),
                      ("data-min-files", str(d.min_files)),
                      ("data-max-files", str(d.max_files))]
        if d.max_files > 1:
            attributes.append(("multiple", ""))
        return DocumentControl(
            id="d-" + d.id, name=f"documents.{d.id}", label=d.label.get(self.language),
            hint=d.hint.get(self.language) if d.hint else None, notes=notes,
            condition=words.condition(d.when, self.procedure, self.language), when=when,
            required_attribute=required, required=d.required, attributes=attributes)

    def fees(self) -> list[FeeLine]:
        lines = []
        fee_views = {v.id: v for v in views.procedure_view(self.procedure, self.language).fees}
        for fee in self.procedure.fees:
            view = fee_views[fee.id]
            attributes = [("data-fee", fee.id)]
            if fee.amount_from is not None or (fee.per is not None
                                               and fee.per not in self.conditions.names):
                attributes.append(("data-later", ""))
            else:
                attributes.append(("data-amount", str(fee.amount)))
                if fee.per is not None:
                    attributes.append(("data-per", fee.per))
            lines.append(FeeLine(
                id=fee.id, label=view.label, amount_text=view.amount_text,
                condition=view.condition, due_text=view.due_text,
                when=self.conditions.key(fee.when), attributes=attributes))
        return lines


_INPUT_TYPES = {"string": "text", "integer": "number", "number": "number", "date": "date",
                "email": "email", "phone": "tel", "nin": "text"}


def _constraints(f: Field, language: str) -> list[tuple[str, str]]:
    """HTML attributes mirroring the server's checks of field `f` (engine/forms.py)."""
    if f.type in ("integer", "number"):
        return _number_constraints(f)
    if f.type == "date":
        return _date_constraints(f)
    return _text_constraints(f, language)


def _number_constraints(f: Field) -> list[tuple[str, str]]:
    schema = forms._number_schema(f)  # the bounds the server applies, within +-2^53
    found = [("step", "1" if f.type == "integer" else "any"),
             ("min", _number(schema["minimum"])), ("max", _number(schema["maximum"]))]
    if f.type == "integer":
        found.append(("inputmode", "numeric"))
    return found


def _date_constraints(f: Field) -> list[tuple[str, str]]:
    """Fixed bounds as attributes; `today` and ages as data the script turns into bounds
    with the browser's date (a static page is read on later days)."""
    found = []
    for key, value in (("min", f.minimum), ("max", f.maximum)):
        if value == "today":
            found.append((f"data-{key}-today", ""))
        elif isinstance(value, str):
            found.append((key, value))
    if f.min_age is not None:
        found.append(("data-min-age", str(f.min_age)))
    if f.max_age is not None:
        found.append(("data-max-age", str(f.max_age)))
    return found


def _text_constraints(f: Field, language: str) -> list[tuple[str, str]]:
    found = []
    maximum = (f.max_length if f.max_length is not None
               else max(limits.default_max_length(f.type), f.min_length or 0))
    pattern = {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN, "nin": NIN_PATTERN}.get(f.type)
    if f.type == "nin":
        maximum = min(maximum, 10)
        found.append(("inputmode", "numeric"))
    if f.type in ("email", "phone"):
        found.append(("autocomplete", "email" if f.type == "email" else "tel"))
    if f.min_length is not None:
        found.append(("minlength", str(f.min_length)))
    found.append(("maxlength", str(maximum)))
    if f.pattern and f.type in ("string", "text"):
        pattern = _html_pattern(f.pattern)
    if pattern and f.type != "text":  # a textarea has no pattern: the server checks it
        found.append(("pattern", pattern))
    if f.pattern_message is not None:
        found.append(("data-pattern-message", f.pattern_message.get(language)))
    return found


def _html_pattern(pattern: str) -> str:
    """An author's pattern (searched anywhere in the value by the server) as an HTML
    pattern (matched against the whole value)."""
    if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern
    return f"[\\s\\S]*(?:{pattern})[\\s\\S]*"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _media_name(media_type: str) -> str:
    return {"application/pdf": "PDF", "image/jpeg": "JPEG", "image/png": "PNG"}.get(
        media_type, media_type)


def _files_text(d: Document, language: str) -> str:
    low, high = max(d.min_files, 1), d.max_files
    if low == high:
        return str(low)
    joined = "à" if language == "fr" else "to"
    return f"{low} {joined} {high}"


def _sort_key(name: str) -> str:
    decomposed = unicodedata.normalize("NFD", name.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
