"""The procedure page: what a citizen reads before applying, as HTML and as Markdown.

Both lay out the same view model (renderers.views): who may apply, the documents with their
conditions in plain words, the fees in XOF, time limits, the steps in order, where to go and
the legal basis. The HTML page extends base.html.j2 (autoescaped: an author's text is never
markup); the Markdown page escapes an author's text with `views.markdown_text`.
"""

from __future__ import annotations

from engine.model import Procedure

from .html import render
from .views import markdown_text, procedure_view

__all__ = ["page_html", "page_markdown"]

#: The page's own words (the procedure's texts come from the procedure).
_TEXTS = {
    "fr": {
        "who": "Qui peut faire la demande", "documents": "Pièces à fournir",
        "no_documents": "Aucune pièce à fournir.", "optional": "facultatif",
        "only": "Uniquement", "formats": "Formats", "at_most": "au maximum",
        "original": "Original à présenter au guichet.",
        "fees": "Coût", "fee": "Frais", "amount": "Montant", "when": "Condition",
        "payable": "Paiement", "always": "Toujours", "no_fees": "Aucun frais.",
        "methods": "Moyens de paiement", "times": "Délais",
        "processing_time": "Délai de traitement", "validity": "Durée de validité",
        "steps": "Étapes", "outcomes": "Issues possibles", "actors": "Qui agit",
        "where": "Où s'adresser", "ministry": "Ministère", "directorate": "Direction",
        "legal_basis": "Base légale", "version": "Version", "colon": " : ",
    },
    "en": {
        "who": "Who may apply", "documents": "Documents to provide",
        "no_documents": "No document to provide.", "optional": "optional",
        "only": "Only", "formats": "Formats", "at_most": "at most",
        "original": "Original to be shown at the counter.",
        "fees": "Cost", "fee": "Fee", "amount": "Amount", "when": "Condition",
        "payable": "Payment", "always": "Always", "no_fees": "No fee.",
        "methods": "Payment methods", "times": "Time limits",
        "processing_time": "Processing time", "validity": "Validity",
        "steps": "Steps", "outcomes": "Possible outcomes", "actors": "Who acts",
        "where": "Where to go", "ministry": "Ministry", "directorate": "Directorate",
        "legal_basis": "Legal basis", "version": "Version", "colon": ": ",
    },
}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _values(procedure: Procedure, language: str) -> dict[str, object]:
    view = procedure_view(procedure, language)
    return {"view": view, "language": language, "t": _TEXTS[language], "capital": _capital}


def page_html(procedure: Procedure, language: str = "fr") -> str:
    """The procedure's page, a whole HTML document in `language` (fr or en)."""
    return render("page.html.j2", **_values(procedure, language))


def page_markdown(procedure: Procedure, language: str = "fr") -> str:
    """The procedure's page in Markdown, in `language` (fr or en)."""
    return render("page.md.j2", md=markdown_text, **_values(procedure, language))
