"""The one Jinja2 environment of the renderers: trusted templates, HTML autoescaped.

Templates live in `renderers/templates/` and are the project's own (`*.html.j2`: HTML,
autoescaped; `*.md.j2`: Markdown, not escaped). An author's texts (labels, hints, messages)
reach them as values, so they are escaped in HTML and never read as a template. What an author
writes AS a template (notifications, issued documents) is never rendered here: it goes through
the sandbox of engine.expressions.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def environment() -> Environment:
    """The shared environment (built once): strict about undefined names, autoescaping
    `.html.j2` templates, trimming blocks' whitespace."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **values: Any) -> str:
    """Render one of the project's templates (a name under renderers/templates/)."""
    return environment().get_template(template).render(**values)
