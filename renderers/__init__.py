"""Renderers: turn a compiled Procedure into HTML, Markdown or diagrams (a later issue)."""
