"""The preview's own words (its buttons and headings), in French and English.

Author texts (labels, hints, messages) come from the procedure; engine messages from
engine.messages (through each error's `.message(lang)`). Only the preview's chrome is here.
"""

from __future__ import annotations

LANGUAGES = ("fr", "en")

_TEXTS: dict[str, dict[str, str]] = {
    "preview": {"fr": "Aperçu Guichet", "en": "Guichet preview"},
    "procedures": {"fr": "Procédures", "en": "Procedures"},
    "procedure_page": {"fr": "Page de la procédure", "en": "Procedure page"},
    "form": {"fr": "Formulaire", "en": "Form"},
    "diagram": {"fr": "Diagramme", "en": "Diagram"},
    "not_available": {"fr": "pas encore disponible", "en": "not available yet"},
    "act_as": {"fr": "Agir en tant que", "en": "Act as"},
    "role": {"fr": "Rôle", "en": "Role"},
    "actor_id": {"fr": "Identifiant", "en": "Id"},
    "language": {"fr": "Langue", "en": "Language"},
    "apply": {"fr": "Changer", "en": "Switch"},
    "acting_as": {"fr": "Vous agissez en tant que", "en": "You act as"},
    "cases": {"fr": "Dossiers ouverts dans cet aperçu", "en": "Cases opened in this preview"},
    "no_cases": {"fr": "Aucun dossier pour l'instant.", "en": "No case yet."},
    "case": {"fr": "Dossier", "en": "Case"},
    "state": {"fr": "État", "en": "State"},
    "outcome": {"fr": "Issue", "en": "Outcome"},
    "data": {"fr": "Données", "en": "Data"},
    "documents": {"fr": "Pièces", "en": "Documents"},
    "no_file": {"fr": "aucun fichier", "en": "no file"},
    "required": {"fr": "obligatoire", "en": "required"},
    "optional": {"fr": "facultatif", "en": "optional"},
    "conditional": {"fr": "selon le cas", "en": "when it applies"},
    "missing": {"fr": "manquante", "en": "missing"},
    "attach": {"fr": "Joindre", "en": "Attach"},
    "file": {"fr": "Fichier", "en": "File"},
    "fees": {"fr": "Frais", "en": "Fees"},
    "fees_due": {"fr": "Dus", "en": "Due"},
    "fees_paid": {"fr": "Payés", "en": "Paid"},
    "outstanding": {"fr": "Reste à payer", "en": "Outstanding"},
    "pay": {"fr": "Payer", "en": "Pay"},
    "amount": {"fr": "Montant (XOF)", "en": "Amount (XOF)"},
    "method": {"fr": "Moyen de paiement", "en": "Payment method"},
    "steps": {"fr": "Étapes possibles", "en": "Available steps"},
    "no_steps": {"fr": "Aucune étape depuis cet état.", "en": "No step from this state."},
    "blocked": {"fr": "Bloqué", "en": "Blocked"},
    "step_form": {"fr": "formulaire de l'étape", "en": "step form"},
    "edit": {"fr": "Modifier le formulaire", "en": "Edit the form"},
    "save": {"fr": "Enregistrer", "en": "Save"},
    "history": {"fr": "Historique", "en": "History"},
    "when": {"fr": "Quand", "en": "When"},
    "step": {"fr": "Étape", "en": "Step"},
    "by": {"fr": "Par", "en": "By"},
    "details": {"fr": "Détails", "en": "Details"},
    "issued": {"fr": "Document délivré", "en": "Document issued"},
    "notification": {"fr": "Notification", "en": "Notification"},
    "yes": {"fr": "oui", "en": "yes"},
    "no": {"fr": "non", "en": "no"},
    "start": {"fr": "Déposer", "en": "Submit"},
    "refused": {"fr": "Refusé", "en": "Refused"},
    "done": {"fr": "C'est fait.", "en": "Done."},
    "seen_as_system": {"fr": "Vous ne pouvez pas lire ce dossier ; il est affiché tel que le "
                             "système le voit.",
                       "en": "You may not read this case; it is shown as the system sees it."},
    "not_found": {"fr": "Page introuvable.", "en": "Page not found."},
    "unknown_procedure": {"fr": "Aucune procédure ne porte cet identifiant.",
                          "en": "No procedure has this id."},
    "csrf": {"fr": "Formulaire expiré ou venu d'ailleurs : rechargez la page et recommencez.",
             "en": "This form expired or came from elsewhere: reload the page and try again."},
    "internal": {"fr": "Erreur interne de l'aperçu (voir le terminal).",
                 "en": "Internal error of the preview (see the terminal)."},
    "bad_request": {"fr": "Requête invalide.", "en": "Bad request."},
    "back": {"fr": "Retour aux procédures", "en": "Back to the procedures"},
    "open_case": {"fr": "Ouvrir le dossier", "en": "Open the case"},
    "version": {"fr": "version", "en": "version"},
    "step_start": {"fr": "Ouverture du dossier", "en": "Case opened"},
    "step_attach": {"fr": "Pièce jointe", "en": "File attached"},
    "step_remove": {"fr": "Pièce retirée", "en": "File removed"},
    "step_pay": {"fr": "Paiement", "en": "Payment"},
    "step_edit": {"fr": "Formulaire modifié", "en": "Form edited"},
    "step_claim": {"fr": "Dossier réclamé", "en": "Case claimed"},
    "step_members": {"fr": "Membres changés", "en": "Members changed"},
    "step_purge": {"fr": "Données effacées", "en": "Data erased"},
    "if_input": {"fr": "Sans les réponses de cette étape, elle serait refusée :",
                 "en": "Without this step's answers, it would be refused:"},
    "colon": {"fr": "\u00a0: ", "en": ": "},
}


def texts(language: str) -> dict[str, str]:
    """Every text of the preview in `language` (French when it has no such language)."""
    return {key: values.get(language) or values["fr"] for key, values in _TEXTS.items()}
