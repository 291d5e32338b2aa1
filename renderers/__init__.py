"""Renderers: what a person sees of a procedure, from its compiled `Procedure` alone (and a
case's values for issued documents): the page, the form, diagrams, documents, the site.

Each renderer is its own module (renderers.page, .form, .diagram, .documents, .site); the
names below are the ones most hosts need. Documents are not re-exported: they need the
`documents` extra (cryptography, segno)."""

from .page import page_html, page_markdown
from .views import procedure_view
from .words import condition

__all__ = ["condition", "page_html", "page_markdown", "procedure_view"]
