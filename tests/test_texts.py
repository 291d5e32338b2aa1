"""Texts of a procedure (issue 10, point 9): `{all: Lomé}`, one text for every language, and
the template filter `label`, printing a choice's option label in the language rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import APPLICANT, CLERK, MakeEngine

from engine import Engine, compile_source
from engine.compiler import text
from engine.effects import option_labels
from engine.expressions import (
    MAX_SIZE,
    OPTION_LABELS,
    ExpressionError,
    ExpressionLimit,
    compile_expression,
    compile_template,
)
from engine.model import Text
from engine.outbox import Event

# --- {all: ...} ---------------------------------------------------------------------------------

EVERYWHERE = """\
id: everywhere
version: "1"
reference_prefix: EVE
title: {all: Lomé}
description: {all: Lomé}
authority: {ministry: {all: Lomé}, directorate: {all: Lomé}}
legal_basis: [{all: Lomé}]
roles:
  applicant: {label: {all: Lomé}, description: {all: Lomé}}
  clerk: {label: {all: Lomé}}
start: {roles: [applicant]}
fields:
  - id: town
    type: choice
    label: {all: Lomé}
    hint: {all: Lomé}
    required: true
    options: [{value: lome, label: {all: Lomé}}, {value: kara, label: {all: Kara}}]
  - {id: code, type: string, label: {all: Code}, pattern: "[0-9]+",
     pattern_message: {all: "0-9"}}
documents:
  - {id: plan, label: {all: Lomé}, hint: {all: Lomé}, required: false}
fees:
  - {id: stamp, label: {all: Lomé}, amount: 100, due: decide}
states:
  draft: {label: {all: Lomé}, description: {all: Lomé}, initial: true}
  done: {label: {all: Lomé}, final: accepted}
transitions:
  - trigger: submit
    label: {all: Lomé}
    from: draft
    to: draft
    roles: [applicant]
    requires: {fields: all}
    notify:
      - channel: portal
        subject: {all: Lomé}
        template: {all: "{{ town | label }} {{ reference }}"}
  - trigger: decide
    from: draft
    to: done
    roles: [clerk]
    requires: {documents: [plan]}
    issue:
      - {id: permit, title: {all: Lomé}, template: {all: "{{ procedure_title }}"}}
"""


def test_all_gives_one_text_to_every_language() -> None:
    assert text({"all": "Lomé"}) == Text(fr="Lomé", en="Lomé")
    assert text({"fr": "Lomé"}) == Text(fr="Lomé")  # unchanged without `all`


def test_a_procedure_written_with_all_validates_without_a_warning() -> None:
    procedure, diagnostics = compile_source(EVERYWHERE, "everywhere.yaml")
    assert procedure is not None and diagnostics == []
    assert procedure.title == Text(fr="Lomé", en="Lomé")
    assert procedure.fields[0].options[0].label == Text(fr="Lomé", en="Lomé")
    [note] = procedure.transitions[0].notify
    assert set(note.template) == {"fr", "en"} and note.subject == Text(fr="Lomé", en="Lomé")


def test_a_text_given_in_one_language_still_warns() -> None:
    half = EVERYWHERE.replace("title: {all: Lomé}", "title: {fr: Lomé}", 1)
    _, diagnostics = compile_source(half, "everywhere.yaml")
    assert [(d.rule, d.severity, d.message) for d in diagnostics] == [
        ("missing-translation", "warning", "missing English text")]


def test_all_is_not_combined_with_a_language() -> None:
    mixed = EVERYWHERE.replace("title: {all: Lomé}", "title: {all: Lomé, en: Lome}",
                                    1)
    procedure, diagnostics = compile_source(mixed, "everywhere.yaml")
    assert procedure is None
    assert [(d.rule, d.location.line) for d in diagnostics] == [("unknown-key", 4)]


def test_a_template_written_with_all_renders_in_every_language(
        make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> None:
    source = tmp_path / "everywhere.yaml"
    source.write_text(EVERYWHERE, encoding="utf-8")
    engine = make_engine(sqlite_url, procedures=source)
    sent = _notifications(engine)
    reference = engine.start("everywhere", APPLICANT, {"town": "kara"}).reference
    engine.fire(reference, "submit", APPLICANT)
    [note] = sent
    assert note.payload["text"] == {"fr": f"Kara {reference}", "en": f"Kara {reference}"}


# --- the label filter ---------------------------------------------------------------------------

LABELS = {
    "passport_type": {"ordinary": "Ordinaire", "service": "De service"},
    "services": {"photo": "Photo", "courier": "Envoi"},
    "kind": {"child": "Enfant"},
    "other": {"ordinary": "Autre ordinaire"},
}


def _render(source: str, **values: Any) -> str:
    return compile_template(source).render({**values, OPTION_LABELS: LABELS})


def test_label_prints_the_label_of_the_value_of_the_field_filtered() -> None:
    assert _render("{{ passport_type | label }}", passport_type="service") == "De service"
    assert _render("{{ other | label }}", other="ordinary") == "Autre ordinaire"


def test_label_joins_the_labels_of_a_list() -> None:
    assert _render("{{ services | label }}", services=["courier", "photo"]) == "Envoi, Photo"
    assert _render("{{ services | label }}", services=[]) == ""


def test_label_prints_a_value_that_is_not_an_option_unchanged() -> None:
    assert _render("{{ passport_type | label }}", passport_type="diplomatic") == "diplomatic"
    assert _render("{{ services | label }}", services=["photo", "x"]) == "Photo, x"
    assert _render("{{ passport_type | label }}", passport_type=None) == "None"
    assert _render("{{ n | label }}", n=3) == "3"


def test_label_reads_sub_fields_and_values_not_named_after_a_field() -> None:
    rows = [{"kind": "child"}, {"kind": "adult"}]
    assert _render("{% for r in rows %}{{ r.kind | label }};{% endfor %}",
                   rows=rows) == "Enfant;adult;"
    assert _render("{{ 'courier' | label }}") == "Envoi"  # one field has it
    assert _render("{{ 'ordinary' | label }}") == "ordinary"  # two fields: not guessed
    assert _render("{{ 'ordinary' | label('other') }}") == "Autre ordinaire"


def test_label_fails_closed() -> None:
    with pytest.raises(Exception, match="nothing"):
        _render("{{ nothing | label }}")
    with pytest.raises(ExpressionError, match="no option labels"):
        compile_template("{{ x | label }}").render({"x": "ordinary"})
    with pytest.raises(ExpressionError, match="for templates"):
        compile_expression("passport_type | label == 'Ordinaire'")
    with pytest.raises(ExpressionLimit):
        _render("{{ services | label }}", services=["photo"] * (MAX_SIZE // 5))


def test_label_reaches_nothing_but_the_labels() -> None:
    assert _render("{{ 'x' | label('__class__') }}") == "x"
    with pytest.raises(Exception, match="unsafe|attribute"):
        _render("{{ (passport_type | label).__class__.__mro__ }}", passport_type="service")


LABELLED = """\
id: labelled
version: "1"
reference_prefix: LAB
title: {fr: Essai, en: Trial}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Agent, en: Clerk}}
start: {roles: [applicant]}
fields:
  - id: passport_type
    type: choice
    label: {fr: Type, en: Type}
    options:
      - {value: ordinary, label: {fr: Ordinaire, en: Ordinary}}
      - {value: service, label: {fr: De service, en: Official}}
  - id: services
    type: multi_choice
    label: {fr: Services, en: Services}
    options:
      - {value: photo, label: {fr: Photo sur place, en: Photo on site}}
      - {value: courier, label: {fr: Envoi, en: Courier}}
  - id: children
    type: group
    label: {fr: Enfants, en: Children}
    fields:
      - id: relation
        type: choice
        label: {fr: Lien, en: Relation}
        options: [{value: son, label: {fr: Fils, en: Son}}]
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  decided: {label: {fr: Décidée, en: Decided}, final: accepted}
transitions:
  - trigger: decide
    from: draft
    to: decided
    roles: [clerk]
    input:
      - id: verdict
        type: choice
        label: {fr: Décision, en: Verdict}
        options: [{value: granted, label: {fr: Accordé, en: Granted}}]
    notify:
      - channel: portal
        template:
          fr: "{{ passport_type | label }} / {{ services | label }} / {{ verdict | label }}
            / {% for c in children %}{{ c.relation | label }}{% endfor %} / {{ state_label }}"
          en: "{{ passport_type | label }} / {{ services | label }} / {{ verdict | label }}
            / {% for c in children %}{{ c.relation | label }}{% endfor %} / {{ state_label }}"
"""


def _notifications(engine: Engine) -> list[Event]:
    sent: list[Event] = []
    engine.on("notification", sent.append)
    return sent


def test_a_notification_prints_labels_in_each_language(make_engine: MakeEngine,
                                                       sqlite_url: str, tmp_path: Path) -> None:
    source = tmp_path / "labelled.yaml"
    source.write_text(LABELLED, encoding="utf-8")
    engine = make_engine(sqlite_url, procedures=source)
    sent = _notifications(engine)
    data = {"passport_type": "service", "services": ["courier", "photo"],
            "children": [{"relation": "son"}]}
    reference = engine.start("labelled", APPLICANT, data).reference
    engine.fire(reference, "decide", CLERK, {"verdict": "granted"})
    [note] = sent
    assert note.payload["text"] == {
        "fr": "De service / Envoi, Photo sur place / Accordé / Fils / Décidée",
        "en": "Official / Courier, Photo on site / Granted / Son / Decided"}


def test_option_labels_cover_fields_inputs_and_sub_fields() -> None:
    procedure, diagnostics = compile_source(LABELLED, "labelled.yaml")
    assert procedure is not None and diagnostics == []
    assert option_labels(procedure, "en") == {
        "passport_type": {"ordinary": "Ordinary", "service": "Official"},
        "services": {"photo": "Photo on site", "courier": "Courier"},
        "verdict": {"granted": "Granted"}, "relation": {"son": "Son"}}
