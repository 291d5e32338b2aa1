"""Plausible sample values for a procedure's fields, to render its templates at validate time.

`sample_context(procedure, state)` gives what a template rendered on entering `state` sees
(engine/effects.py): every form field and step input with a value of its type, the built-ins,
and the template names (reference, procedure title, state and its label, a reminder's
`due_date`, an issued document's `valid_until`). The values are ordinary rather than extreme
(a name of 7 letters, the smallest allowed number), so that a text found too long with them
is too long for most cases. engine.analysis has richer samplers for exploration; the rules
cannot import it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .effects import option_labels
from .expressions import OPTION_LABELS, age
from .model import VALID_UNTIL, Field, Procedure

#: The day samples are taken on (a Monday).
SAMPLE_DAY = dt.date(2026, 1, 5)
_TEXTS = {"string": "Exemple", "text": "Texte d'exemple", "email": "nom@example.tg",
          "phone": "+22890123456", "country": "TG", "nin": "1234567890"}
_SAMPLE_FEES = 10_000


def sample_value(field: Field, today: dt.date = SAMPLE_DAY) -> Any:
    """An ordinary value of `field`'s type, within its declared length and bounds."""
    kind = field.type
    if kind in ("choice", "multi_choice"):
        first = field.options[0].value if field.options else "option"
        return [first] if kind == "multi_choice" else first
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return _number(field)
    if kind == "date":
        return today
    if kind == "group":
        return []
    text = _TEXTS.get(kind, _TEXTS["string"])
    if field.max_length is not None and field.max_length >= 0:
        text = text[:field.max_length]
    if field.min_length is not None and len(text) < field.min_length:
        text = (text * (field.min_length // max(len(text), 1) + 1))[:field.min_length]
    return text


def _number(field: Field) -> int | float:
    low, high = field.minimum, field.maximum
    value: int | float = 1
    if isinstance(low, int | float) and not isinstance(low, bool):
        value = max(value, low)
    if isinstance(high, int | float) and not isinstance(high, bool):
        value = min(value, high)
    return int(value) if field.type == "integer" else value


def sample_reference(procedure: Procedure) -> str:
    """A reference of the procedure's shape (PREFIX-YEAR-NUMBER-CHECK)."""
    return f"{procedure.reference_prefix or 'REF'}-{SAMPLE_DAY.year}-000123-K"


def sample_context(procedure: Procedure, state: str, language: str = "fr",
                   today: dt.date = SAMPLE_DAY) -> dict[str, Any]:
    """What a template rendered on entering `state` sees, with sample values."""
    data_fields = [*procedure.fields, *(i for t in procedure.transitions for i in t.input)]
    context: dict[str, Any] = {f.id: sample_value(f, today) for f in reversed(data_fields)}
    reached = procedure.states.get(state)
    context.update(
        today=today, age=lambda born: age(born, today), fees_due=_SAMPLE_FEES,
        fees_paid=_SAMPLE_FEES, documents={d.id: 1 for d in procedure.documents},
        reference=sample_reference(procedure), state=state,
        procedure_title=procedure.title.get(language),
        state_label=reached.label.get(language) if reached else state,
        due_date=today + dt.timedelta(days=30), **{VALID_UNTIL: today.replace(year=today.year + 1)},
    )
    context[OPTION_LABELS] = option_labels(procedure, language)
    return context
