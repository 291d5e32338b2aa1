"""Every message the engine shows a citizen or an agent, in every shipped language: one file.

A message has a stable id (`not_yours`, `still_to_pay`...) and one text per language of
LANGUAGES, with named placeholders in `str.format` style ("reste à payer : {owed} FCFA").
The code never writes a message; it asks for one by id: `text("still_to_pay", owed=1500)`
gives {"fr": "reste à payer : 1500 FCFA", "en": "still to pay: 1500 XOF"}, the form every
runtime error and refusal reason carries (errors.GuichetError, errors.Reason, InvalidData).

- A translator edits this file only. To ship a third language (e.g. "ee", Ewe, for SMS), add
  it to LANGUAGES and a text in that language to every message; tests/test_messages.py fails
  until every message has every language with the same placeholders.
- Placeholders are plain names, optionally with a conversion (`{reference!r}`); a literal
  brace is written `{{`. Only the catalogue's text is a format string: values are inserted
  as they are, never read as one (a value holding "{x}" shows "{x}").
- A value may itself be given in several languages (another `text(...)`, a procedure's
  label): each language's message then shows that language's version of it, or the
  French one when it has none.

Out of this catalogue: the texts of a procedure (labels, notifications: its author's), and
diagnostics of procedure files (for authors, in English: rules.py, compiler.py, source.py).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Protocol

#: The languages every message is shipped in; the first is the fallback.
LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = LANGUAGES[0]

#: A message in every language: language -> text.
Texts = dict[str, str]


class PerLanguage(Protocol):
    """A value given in several languages: a `Texts`, or a procedure's `model.Text`."""

    def get(self, language: str, /) -> str | None: ...


#: What a placeholder takes: a value shown as is, or one given per language.
Value = str | int | float | PerLanguage

#: message id -> language -> text. Grouped by where the message appears.
CATALOGUE: Mapping[str, Mapping[str, str]] = {
    # --- errors: the head of each runtime error -------------------------------------------------
    "invalid_data": {
        "fr": "Données invalides :",
        "en": "Invalid data:"},
    "step_impossible": {
        "fr": "« {trigger} » est impossible :",
        "en": '"{trigger}" is not possible:'},
    "unknown_procedure": {
        "fr": "procédure inconnue : {procedure_id}",
        "en": "unknown procedure: {procedure_id}"},
    "unknown_trigger": {
        "fr": "étape inconnue : {trigger}",
        "en": "unknown trigger: {trigger}"},
    "unknown_case": {
        "fr": "aucun dossier ne porte la référence {reference!r}",
        "en": "no case has the reference {reference!r}"},
    "case_changed_meanwhile": {
        "fr": "le dossier a été modifié entre-temps ; rechargez-le",
        "en": "the case was changed meanwhile; reload it"},
    "database_unavailable": {
        "fr": "la base de données est indisponible",
        "en": "the database is unavailable"},
    "database_url_unusable": {
        "fr": "l'adresse de la base de données est inutilisable",
        "en": "the database URL is not usable"},

    # --- who may act ----------------------------------------------------------------------------
    "not_yours": {
        "fr": "ce dossier n'est pas le vôtre",
        "en": "this case is not yours"},
    "case_closed": {
        "fr": "ce dossier est clos",
        "en": "this case is closed"},
    "case_not_editable": {
        "fr": "le dossier ne peut pas être modifié à cette étape",
        "en": "the case cannot be changed at this step"},
    "start_roles_only": {
        "fr": "seuls ces rôles peuvent ouvrir un dossier : {roles}",
        "en": "only these roles may open a case: {roles}"},
    "on_behalf_roles_only": {
        "fr": "seuls ces rôles peuvent ouvrir un dossier pour une personne : {roles}",
        "en": "only these roles may open a case for a person: {roles}"},
    "already_claimed": {
        "fr": "ce dossier a déjà son demandeur",
        "en": "this case already has its applicant"},
    "wrong_claim_code": {
        "fr": "ce code ne correspond pas au récépissé",
        "en": "this code does not match the receipt"},
    "not_administrator": {
        "fr": "seul l'administrateur de l'organisation peut gérer ses membres sur ce dossier",
        "en": "only the organisation's administrator manages its members on this case"},
    "no_organisations": {
        "fr": "cette procédure n'est pas ouverte aux organisations",
        "en": "this procedure is not open to organisations"},
    "nobody_starts": {
        "fr": "personne ne peut ouvrir de dossier pour cette procédure",
        "en": "no one may open a case of this procedure"},
    "roles_only": {
        "fr": "réservé aux rôles : {roles}",
        "en": "only for roles: {roles}"},
    "own_case": {
        "fr": "vous ne pouvez pas traiter votre propre dossier",
        "en": "you cannot handle your own case"},
    "step_already_done": {
        "fr": "vous avez déjà réalisé l'étape « {step} » de ce dossier",
        "en": 'you already did step "{step}" on this case'},

    # --- who may read ---------------------------------------------------------------------------
    "may_not_read": {
        "fr": "vous n'avez pas accès à ce dossier",
        "en": "you may not read this case"},
    "may_not_see_payments": {
        "fr": "vous n'avez pas accès aux paiements de cette procédure",
        "en": "you may not see the payments of this procedure"},

    # --- what a step still needs ----------------------------------------------------------------
    "not_from_state": {
        "fr": "impossible depuis l'état « {state} »",
        "en": 'not possible from state "{state}"'},
    "missing_field": {
        "fr": "champ obligatoire manquant : {label}",
        "en": "missing field: {label}"},
    "missing_document": {
        "fr": "pièce manquante : {label}",
        "en": "missing document: {label}"},
    "still_to_pay": {
        "fr": "reste à payer : {owed} FCFA",
        "en": "still to pay: {owed} XOF"},
    "guard_not_met": {
        "fr": "les conditions de « {step} » ne sont pas remplies pour ce dossier",
        "en": "the conditions for \"{step}\" are not met for this case"},
    "guard_not_evaluable": {
        "fr": "les conditions de « {step} » ne peuvent pas être vérifiées pour le moment",
        "en": "the conditions for \"{step}\" cannot be checked for now"},
    "template_failed": {
        "fr": "« {subject} » n'a pas pu être produit ; le service est prévenu",
        "en": '"{subject}" could not be produced; the service has been told'},

    # --- a field's value (after the field's name) -----------------------------------------------
    "required": {
        "fr": "est obligatoire",
        "en": "is required"},
    "case_purged": {
        "fr": "ce dossier a été purgé : plus rien ne peut y être fait",
        "en": "this case has been purged: nothing more can be done on it"},
    "follow_up_alone": {
        "fr": "un dossier de suite appartient au demandeur du dossier d'origine : il ne "
              "s'ouvre ni pour autrui ni au nom d'une organisation",
        "en": "a follow-up belongs to the applicant of the case it follows: it is not opened "
              "for someone else or on behalf of an organisation"},
    "no_follow_up": {
        "fr": "ce dossier ne permet pas d'ouvrir une démarche « {procedure} » à cette étape",
        "en": "this case does not offer a \"{procedure}\" follow-up at this step"},
    "option_not_offered": {
        "fr": "choix non proposé pour ce dossier : {value}",
        "en": "choice not offered for this case: {value}"},
    "not_editable_here": {
        "fr": "ne peut pas être modifié à cette étape",
        "en": "cannot be changed at this step"},
    "wrong_type": {
        "fr": "doit être de type {type}",
        "en": "must be {type}"},
    "type_integer": {
        "fr": "entier",
        "en": "a whole number"},
    "type_number": {
        "fr": "nombre",
        "en": "a number"},
    "type_string": {
        "fr": "texte",
        "en": "text"},
    "type_boolean": {
        "fr": "oui/non",
        "en": "true or false"},
    "type_array": {
        "fr": "liste",
        "en": "a list"},
    "type_object": {
        "fr": "objet",
        "en": "a set of fields"},
    "not_an_option": {
        "fr": "n'est pas une valeur proposée",
        "en": "is not one of the options"},
    "at_least": {
        "fr": "doit être au moins {minimum}",
        "en": "must be at least {minimum}"},
    "at_most": {
        "fr": "doit être au plus {maximum}",
        "en": "must be at most {maximum}"},
    "too_short": {
        "fr": "doit compter au moins {min_length} caractère(s)",
        "en": "must be at least {min_length} character(s) long"},
    "too_long": {
        "fr": "doit compter au plus {max_length} caractères",
        "en": "must be at most {max_length} characters long"},
    "wrong_format": {
        "fr": "n'a pas le format attendu",
        "en": "does not have the expected format"},
    "too_few_rows": {
        "fr": "au moins {min_rows} ligne(s) requise(s)",
        "en": "needs at least {min_rows} row(s)"},
    "too_many_rows": {
        "fr": "au plus {max_rows} ligne(s)",
        "en": "allows at most {max_rows} row(s)"},
    "duplicate": {
        "fr": "contient un doublon",
        "en": "has a duplicate"},
    "not_a_form_field": {
        "fr": "n'est pas un champ de ce formulaire",
        "en": "is not a field of this form"},
    "invalid": {
        "fr": "est invalide",
        "en": "is invalid"},
    "bad_phone": {
        "fr": "doit être un numéro international (+228…) ou togolais à 8 chiffres",
        "en": "must be an international number (+228…) or a Togolese 8-digit one"},
    "bad_date": {
        "fr": "n'est pas une date valide (AAAA-MM-JJ)",
        "en": "is not a valid date (YYYY-MM-DD)"},
    "date_too_early": {
        "fr": "doit être le {date} ou après",
        "en": "must be on or after {date}"},
    "date_too_late": {
        "fr": "doit être le {date} ou avant",
        "en": "must be on or before {date}"},
    "too_young": {
        "fr": "l'âge doit être d'au moins {min_age} ans",
        "en": "age must be at least {min_age}"},
    "too_old": {
        "fr": "l'âge doit être d'au plus {max_age} ans",
        "en": "age must be at most {max_age}"},

    # --- limits on what callers hand the engine (engine/limits.py) ------------------------------
    "nul_character": {
        "fr": "contient un caractère nul ({code})",
        "en": "contains a NUL character ({code})"},
    "lone_surrogate": {
        "fr": "contient un caractère invalide ({code}, demi-paire UTF-16 isolée)",
        "en": "contains an invalid character ({code}, a lone UTF-16 surrogate)"},
    "control_character": {
        "fr": "contient un caractère de contrôle ({code})",
        "en": "contains a control character ({code})"},
    "must_be_text": {
        "fr": "doit être un texte",
        "en": "must be text"},
    "role_required": {
        "fr": "au moins un rôle est requis",
        "en": "at least one role is required"},
    "amount_not_positive": {
        "fr": "le montant doit être un entier positif (FCFA)",
        "en": "amount must be a positive whole number (XOF)"},
    "amount_too_large": {
        "fr": "le montant ne peut dépasser {maximum} FCFA",
        "en": "amount cannot exceed {maximum} XOF"},
    "more_than_owed": {
        "fr": "dépasse ce qui reste dû sur le dossier ({owed} FCFA)",
        "en": "is more than what is still due on the case ({owed} XOF)"},
    "data_not_object": {
        "fr": "doit être un objet associant des champs à des valeurs",
        "en": "must be an object mapping fields to values"},
    "data_too_large": {
        "fr": "les données dépassent {max_bytes} octets au total",
        "en": "the data exceeds {max_bytes} bytes in all"},
    "integer_beyond_64_bits": {
        "fr": "est un entier hors des limites de 64 bits",
        "en": "is an integer beyond 64 bits"},
    "number_not_finite": {
        "fr": "doit être un nombre fini",
        "en": "must be a finite number"},
    "not_json_value": {
        "fr": "n'est pas une valeur JSON (texte, nombre, oui/non, null, liste ou objet)",
        "en": "is not a JSON value (text, number, true/false, null, list or object)"},
    "key_not_text": {
        "fr": "a une clé qui n'est pas un texte (les clés JSON sont des textes)",
        "en": "has a key that is not text (JSON object keys are text)"},
    "not_field_name": {
        "fr": "n'est pas un nom de champ (texte)",
        "en": "is not a field name (text)"},
    "nested_too_deep": {
        "fr": "est imbriqué sur plus de {max_depth} niveaux",
        "en": "is nested more than {max_depth} levels deep"},
    "at_path": {
        "fr": "{message} (en {path})",
        "en": "{message} (at {path})"},

    # --- the reminder a deadline sends when its procedure writes none (engine/effects.py) -------
    "reminder_subject": {
        "fr": "Rappel : une échéance approche",
        "en": "Reminder: a deadline is coming up"},
    "reminder_default": {
        "fr": "Rappel : votre dossier {reference} est à l'étape « {state} ». "
              "L'échéance est fixée au {due_date}.",
        "en": 'Reminder: your case {reference} is at the step "{state}". '
              "The deadline is {due_date}."},

    # --- documents and payments (engine/runtime.py) ---------------------------------------------
    "unknown_document": {
        "fr": "pièce inconnue pour cette procédure",
        "en": "unknown document for this procedure"},
    "too_many_files": {
        "fr": "au plus {max_files} fichier(s)",
        "en": "at most {max_files} file(s)"},
    "file_too_large": {
        "fr": "fichier trop volumineux (max {max_size} octets)",
        "en": "file too large (max {max_size} bytes)"},
    "file_type_refused": {
        "fr": "type de fichier refusé (acceptés : {accepted})",
        "en": "file type refused (accepted: {accepted})"},
    "payment_reference_used": {
        "fr": "cette référence de paiement est déjà utilisée",
        "en": "this payment reference is already used"},
    "no_file_attached": {
        "fr": "aucun fichier n'est joint pour cette pièce",
        "en": "no file is attached for this document"},
    "no_file_with_hash": {
        "fr": "aucun fichier de cette pièce n'a cette empreinte SHA-256",
        "en": "no file of this document has this SHA-256 hash"},
    "payment_method_required": {
        "fr": "indiquez le moyen de paiement (acceptés : {accepted})",
        "en": "say how it was paid (accepted: {accepted})"},
    "payment_method_refused": {
        "fr": "moyen de paiement non accepté (acceptés : {accepted})",
        "en": "payment method not accepted (accepted: {accepted})"},

    # --- statistics (engine/stats.py) -----------------------------------------------------------
    "statistics_not_allowed": {
        "fr": "vous n'avez pas accès aux statistiques de cette procédure",
        "en": "you may not see the statistics of this procedure"},
    "unknown_breakdown": {
        "fr": "« {by} » n'est pas une ventilation possible : {known}",
        "en": '"{by}" is not a breakdown of these procedures: {known}'},
    "breakdown_not_allowed": {
        "fr": "vous n'avez pas accès aux valeurs du champ « {by} » : pas de ventilation "
              "par ce champ",
        "en": 'you may not read the values of the field "{by}": no breakdown by it'},
}


def placeholders(template: str) -> frozenset[str]:
    """The names of the placeholders of one catalogue text."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template)
                     if name is not None)


_NAMES = {message_id: placeholders(texts[DEFAULT_LANGUAGE])
          for message_id, texts in CATALOGUE.items()}


def text(message_id: str, /, **values: Value) -> Texts:
    """Message `message_id` in every language of LANGUAGES, its placeholders filled with
    `values` (each given exactly: a missing or unknown one is a TypeError)."""
    texts = CATALOGUE[message_id]
    if values.keys() != _NAMES[message_id]:
        raise TypeError(f"message {message_id!r} takes {sorted(_NAMES[message_id])}, "
                        f"not {sorted(values)}")
    if all(isinstance(value, str | int | float) for value in values.values()):
        return {language: texts[language].format(**values) for language in LANGUAGES}
    return {language: texts[language].format(**{name: _in(language, value)
                                                 for name, value in values.items()})
            for language in LANGUAGES}


def _in(language: str, value: Value) -> object:
    """A placeholder's value as shown in `language`."""
    if isinstance(value, str | int | float):
        return value
    get = getattr(value, "get", None)
    if get is None:  # not given per language after all: shown as is
        return value
    return get(language) or get(DEFAULT_LANGUAGE) or ""
