"""Renderers: turn a compiled Procedure into HTML, Markdown or diagrams (a later issue)."""

from .page import page_html, page_markdown
from .views import procedure_view
from .words import condition

__all__ = ["condition", "page_html", "page_markdown", "procedure_view"]
