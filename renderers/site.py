"""The static catalogue site: every procedure's page, form and diagram, in every language.

`build_site(procedures, directory)` writes plain files and nothing else (no script or style
fetched from anywhere, no server): an index per language grouped by authority, with a search
box that filters it offline; one folder per procedure and language holding its page
(`index.html`), its form (`form.html`) and its diagram (`diagram.svg`, or Mermaid text in the
page when Graphviz is not installed).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.model import LANGUAGES, Procedure

from . import diagram, form, page
from .html import render

#: What a procedure id must look like to name a folder (the schema's identifier).
_SAFE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Entry:
    """One procedure in an index: where it lives and what the search box reads."""

    id: str
    diagram: str  # its file name
    title: str
    description: str
    authority: str
    search: str  # lower-case, without accents


def build_site(procedures: Iterable[Procedure], directory: str | Path) -> list[Path]:
    """Write the site under `directory` (created if needed); the files written, in order.

    Raises ValueError for a procedure id that cannot name a folder, or two procedures with
    one id."""
    root = Path(directory)
    chosen = _checked(procedures)
    written: list[Path] = []
    diagrams: dict[str, str] = {}  # procedure id -> its diagram's file name
    for language in LANGUAGES:
        for procedure in chosen:
            files = _procedure_files(root / language / procedure.id, procedure, language)
            diagrams[procedure.id] = files[-1].name
            written += files
        written.append(_write(root / language / "index.html",
                              _index(chosen, diagrams, language)))
    home = _index(chosen, diagrams, LANGUAGES[0], prefix=f"{LANGUAGES[0]}/")
    written.append(_write(root / "index.html", home))
    return written


def _checked(procedures: Iterable[Procedure]) -> list[Procedure]:
    found: dict[str, Procedure] = {}
    for p in procedures:
        if not _SAFE_ID.match(p.id):
            raise ValueError(f"procedure id {p.id!r} cannot name a folder")
        if p.id in found:
            raise ValueError(f"two procedures have the id {p.id!r}")
        found[p.id] = p
    return sorted(found.values(), key=lambda p: p.id)


def _procedure_files(folder: Path, procedure: Procedure, language: str) -> list[Path]:
    try:
        picture = diagram.svg(procedure, language)
        name = "diagram.svg"
    except diagram.DiagramUnavailable:
        picture = diagram.mermaid(procedure, language)
        name = "diagram.mmd"
    return [_write(folder / "index.html", page.page_html(procedure, language)),
            _write(folder / "form.html", form.form_html(procedure, language)),
            _write(folder / name, picture)]


def _index(procedures: list[Procedure], diagrams: dict[str, str], language: str,
           prefix: str = "") -> str:
    groups: dict[str, list[Entry]] = {}
    for p in procedures:
        entry = _entry(p, diagrams[p.id], language)
        groups.setdefault(entry.authority, []).append(entry)
    other = "en" if language == "fr" else "fr"
    return render("site_index.html.j2", language=language, groups=sorted(groups.items()),
                  prefix=prefix, other=other, other_href=("" if prefix else "../") + other
                  + "/index.html", text=_TEXT[language])


def _entry(p: Procedure, diagram_file: str, language: str) -> Entry:
    title = p.title.get(language) or p.id
    description = p.description.get(language) if p.description else ""
    authority = p.ministry.get(language) if p.ministry else _TEXT[language]["other"]
    search = _plain(" ".join((title, description, authority, p.id)))
    return Entry(p.id, diagram_file, title, description, authority, search)


def _plain(text: str) -> str:
    """Lower-case, without accents: what the search box compares."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


_TEXT = {
    "fr": {"title": "Démarches en ligne", "search": "Rechercher une démarche",
           "page": "Présentation", "form": "Formulaire", "diagram": "Étapes (schéma)",
           "none": "Aucune démarche ne correspond.", "other": "Autres services",
           "language": "English"},
    "en": {"title": "Online procedures", "search": "Search for a procedure",
           "page": "About", "form": "Form", "diagram": "Steps (diagram)",
           "none": "No procedure matches.", "other": "Other services",
           "language": "Français"},
}
