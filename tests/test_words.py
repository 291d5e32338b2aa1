"""Conditions in plain words (renderers.words): every construct in French and English, option
labels rather than values, and a generic text, never the expression, for what cannot be said."""

from __future__ import annotations

import pytest

from engine import compile_source
from engine.expressions import compile_expression
from engine.model import Procedure
from renderers.words import GENERIC, NBSP, THIN, condition, date, describe, number, xof

SOURCE = """
id: words
version: "1"
reference_prefix: WRD
title: {fr: Essai, en: Test}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Officer}}
start: {roles: [applicant]}
fields:
  - id: passport_type
    type: choice
    label: {fr: Type de passeport, en: Passport type}
    options:
      - {value: ordinary, label: {fr: Passeport ordinaire, en: Ordinary passport}}
      - {value: service, label: {fr: Passeport de service, en: Service passport}}
      - {value: diplomatic, label: {fr: Passeport diplomatique, en: Diplomatic passport}}
  - {id: birth_date, type: date, label: {fr: Date de naissance, en: Date of birth}}
  - id: spouse_birth_date
    type: date
    label: {fr: Date de naissance du conjoint, en: Spouse's date of birth}
  - {id: copies, type: integer, label: {fr: Nombre de copies, en: Number of copies}}
  - {id: nationality, type: country, label: {fr: Nationalité, en: Nationality}}
  - {id: by_proxy, type: boolean, label: {fr: Retrait par un mandataire, en: Collection by a proxy}}
  - {id: email, type: email, label: {fr: Adresse électronique, en: Email address}}
  - id: services
    type: multi_choice
    label: {fr: Services demandés, en: Services requested}
    options:
      - {value: water, label: {fr: Eau, en: Water}}
      - {value: power, label: {fr: Électricité, en: Electricity}}
  - id: occupancy
    type: choice
    label: {fr: Vous êtes, en: You are}
    options:
      - {value: owner, label: {fr: Propriétaire, en: Owner}}
      - {value: tenant, label: {fr: Locataire, en: Tenant}}
documents:
  - {id: photos, label: {fr: Photos d'identité, en: Passport photos}, max_files: 3}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true, editable: true}
  done: {label: {fr: Terminé, en: Done}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: done, roles: [applicant]}
"""


@pytest.fixture(scope="module")
def procedure() -> Procedure:
    compiled, diagnostics = compile_source(SOURCE, "words.yaml")
    assert compiled is not None, diagnostics
    return compiled


def say(procedure: Procedure, source: str, language: str) -> str | None:
    return condition(compile_expression(source), procedure, language)


CASES = [
    ("passport_type == 'service'",
     "si le type de passeport est « Passeport de service »",
     "if the passport type is “Service passport”"),
    ("passport_type != 'service'",
     "si le type de passeport n'est pas « Passeport de service »",
     "if the passport type is not “Service passport”"),
    ("'service' == passport_type",
     "si le type de passeport est « Passeport de service »",
     "if the passport type is “Service passport”"),
    ("passport_type in ['service', 'diplomatic']",
     "si le type de passeport est « Passeport de service » ou « Passeport diplomatique »",
     "if the passport type is “Service passport” or “Diplomatic passport”"),
    ("passport_type not in ['service', 'diplomatic']",
     "si le type de passeport n'est ni « Passeport de service » ni « Passeport diplomatique »",
     "if the passport type is neither “Service passport” nor “Diplomatic passport”"),
    ("age(birth_date) < 18", "si le demandeur a moins de 18 ans",
     "if the applicant is under 18"),
    ("age(birth_date) >= 18", "si le demandeur a au moins 18 ans",
     "if the applicant is 18 or over"),
    ("18 <= age(birth_date)", "si le demandeur a au moins 18 ans",
     "if the applicant is 18 or over"),
    ("age(birth_date) > 60", "si le demandeur a plus de 60 ans",
     "if the applicant is over 60"),
    ("age(spouse_birth_date) < 18",
     "si l'âge déduit de « Date de naissance du conjoint » vaut moins de 18 ans",
     "if the age from “Spouse's date of birth” is less than 18 years"),
    ("copies > 2", "si le nombre de copies vaut plus de 2",
     "if the number of copies is more than 2"),
    ("copies <= 1000", f"si le nombre de copies vaut au plus 1{THIN}000",
     "if the number of copies is at most 1,000"),
    ("copies >= 3", "si le nombre de copies vaut au moins 3",
     "if the number of copies is at least 3"),
    ("copies < 3", "si le nombre de copies vaut moins de 3",
     "if the number of copies is less than 3"),
    ("birth_date < '2000-01-01'",
     "si la date de naissance est avant le 1er janvier 2000",
     "if the date of birth is before 1 January 2000"),
    ("birth_date >= '2000-06-15'",
     "si la date de naissance est au plus tôt le 15 juin 2000",
     "if the date of birth is on or after 15 June 2000"),
    ("birth_date <= today",
     "si la date de naissance est au plus tard aujourd'hui",
     "if the date of birth is on or before today"),
    ("today > '2026-03-01'",
     "si la date du jour est après le 1er mars 2026",
     "if today is after 1 March 2026"),
    ("nationality == 'TG'", "si la nationalité est « Togo »",
     "if the nationality is “Togo”"),
    ("nationality != 'BJ'", "si la nationalité n'est pas « Bénin »",
     "if the nationality is not “Benin”"),
    ("by_proxy", "si la réponse à « Retrait par un mandataire » est oui",
     "if the answer to “Collection by a proxy” is yes"),
    ("not by_proxy", "si la réponse à « Retrait par un mandataire » est non",
     "if the answer to “Collection by a proxy” is no"),
    ("by_proxy == false", "si la réponse à « Retrait par un mandataire » est non",
     "if the answer to “Collection by a proxy” is no"),
    ("email", "si l'adresse électronique est renseignée",
     "if the email address is given"),
    ("email == none", "si l'adresse électronique n'est pas renseignée",
     "if the email address is not given"),
    ("'water' in services", "si les services demandés comprennent « Eau »",
     "if the services requested include “Water”"),
    ("'water' not in services", "si les services demandés ne comprennent pas « Eau »",
     "if the services requested do not include “Water”"),
    ("services == none", "si les services demandés ne sont pas renseignés",
     "if the services requested are not given"),
    ("occupancy == 'tenant'", "si la réponse à « Vous êtes » est « Locataire »",
     "if the answer to “You are” is “Tenant”"),
    ("documents.photos", "si le document « Photos d'identité » est joint",
     "if the document “Passport photos” is attached"),
    ("documents['photos'] == 0", "si le document « Photos d'identité » n'est pas joint",
     "if the document “Passport photos” is not attached"),
    ("documents.photos >= 2", "si au moins 2 fichiers sont joints pour « Photos d'identité »",
     "if at least 2 files are attached for “Passport photos”"),
    ("fees_due > 10000", f"si le total des frais vaut plus de 10{THIN}000{NBSP}FCFA",
     f"if the total of the fees is more than XOF{NBSP}10,000"),
    ("passport_type == 'service' and by_proxy",
     "si le type de passeport est « Passeport de service » et la réponse à « Retrait par un "
     "mandataire » est oui",
     "if the passport type is “Service passport” and the answer to “Collection by a proxy” "
     "is yes"),
    ("passport_type == 'service' or copies > 2 or by_proxy",
     "si le type de passeport est « Passeport de service », le nombre de copies vaut plus de "
     "2 ou la réponse à « Retrait par un mandataire » est oui",
     "if the passport type is “Service passport”, the number of copies is more than 2 or the "
     "answer to “Collection by a proxy” is yes"),
    ("by_proxy and (copies > 2 or passport_type == 'service')",
     "si la réponse à « Retrait par un mandataire » est oui et soit le nombre de copies vaut "
     "plus de 2, soit le type de passeport est « Passeport de service »",
     "if the answer to “Collection by a proxy” is yes and either the number of copies is more "
     "than 2 or the passport type is “Service passport”"),
    ("not (passport_type == 'service')",
     "si le type de passeport n'est pas « Passeport de service »",
     "if the passport type is not “Service passport”"),
    ("not (by_proxy and copies > 2)",
     "si la réponse à « Retrait par un mandataire » est non ou le nombre de copies vaut au "
     "plus 2",
     "if the answer to “Collection by a proxy” is no or the number of copies is at most 2"),
]


@pytest.mark.parametrize(("source", "french", "english"), CASES, ids=[c[0] for c in CASES])
def test_each_construct_in_both_languages(procedure: Procedure, source: str, french: str,
                                          english: str) -> None:
    assert say(procedure, source, "fr") == french
    assert say(procedure, source, "en") == english


UNSAYABLE = [
    "(birth_date - today).days <= 92",
    "copies * 2 > 4",
    "copies > copies",
    "passport_type | length > 3",
    "passport_type == 'service' or (birth_date - today).days <= 92",
    "range(3) | list",
]


@pytest.mark.parametrize("source", UNSAYABLE)
def test_what_cannot_be_said_gets_a_generic_text_never_the_expression(
        procedure: Procedure, source: str) -> None:
    expression = compile_expression(source)
    assert describe(expression, procedure, "fr") is None
    for language in ("fr", "en"):
        said = condition(expression, procedure, language)
        assert said == GENERIC[language]
        assert source not in said and "copies" not in said and "birth_date" not in said


def test_no_condition_is_none_and_option_labels_not_values(procedure: Procedure) -> None:
    assert condition(None, procedure, "fr") is None
    said = say(procedure, "passport_type in ['ordinary', 'service']", "fr")
    assert said is not None and "ordinary" not in said and "Passeport ordinaire" in said


def test_unknown_language_is_refused(procedure: Procedure) -> None:
    with pytest.raises(ValueError, match="unknown language"):
        describe(compile_expression("by_proxy"), procedure, "de")


def test_numbers_amounts_and_dates_per_language() -> None:
    import datetime as dt

    assert number(25000, "fr") == f"25{THIN}000" and number(25000, "en") == "25,000"
    assert number(2.5, "fr") == "2,5" and number(2.5, "en") == "2.5"
    assert xof(25000, "fr") == f"25{THIN}000{NBSP}FCFA"
    assert xof(25000, "en") == f"XOF{NBSP}25,000"
    assert date(dt.date(2026, 6, 1), "fr") == "1er juin 2026"
    assert date(dt.date(2026, 6, 2), "en") == "2 June 2026"
