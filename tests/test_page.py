"""The procedure page (renderers.page, renderers.views): golden files for the shipped
procedures in French and English, HTML and Markdown (regenerate with GUICHET_REGEN=1 and
review the diff), well-formed HTML with one h1, conditions in words and never as expressions,
fees in XOF, author texts escaped, and `guichet render page`."""

from __future__ import annotations

import html
import re
import shutil
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_golden

from cli import main
from engine import compile_source, load_procedure
from engine.model import Procedure
from renderers.page import page_html, page_markdown
from renderers.views import markdown_text, procedure_view
from renderers.words import NBSP, THIN

ROOT = Path(__file__).resolve().parent.parent
PROCEDURES = sorted((ROOT / "procedures").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden" / "renderers" / "page"
LANGUAGES = ("fr", "en")


@cache
def _loaded(path: Path) -> Procedure:
    """A procedure, loaded once for the module (loading runs every rule: seconds)."""
    return load_procedure(path)


def _load(name: str) -> Procedure:
    return _loaded(ROOT / "procedures" / f"{name}.yaml")


# --- golden files -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PROCEDURES, ids=[p.stem for p in PROCEDURES])
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["html", "md"])
def test_golden(path: Path, language: str, kind: str) -> None:
    procedure = _loaded(path)
    text = (page_html if kind == "html" else page_markdown)(procedure, language)
    assert_golden(GOLDEN / f"{procedure.id}.{language}.{kind}", text)


# --- well-formed HTML ----------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class StrictParser(HTMLParser):
    """Records what html.parser would let pass: end tags that close nothing open, elements
    left open, and the headings and scripts met."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(document: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(document)
    parser.close()
    return parser


@pytest.mark.parametrize("path", PROCEDURES, ids=[p.stem for p in PROCEDURES])
@pytest.mark.parametrize("language", LANGUAGES)
def test_html_parses_with_one_h1_and_no_request(path: Path, language: str) -> None:
    document = page_html(_loaded(path), language)
    assert document.startswith("<!doctype html>")
    parser = parsed(document)
    assert parser.errors == [] and parser.stack == []
    assert parser.tags.count("h1") == 1
    assert f'<html lang="{language}">' in document
    assert "<script" not in document and "http://" not in document and "https://" not in document


# --- conditions in words, never expressions ------------------------------------------------------

def _sources(procedure: Procedure) -> set[str]:
    """Every `when:` of the procedure as written."""
    fields = list(procedure.fields) + [i for t in procedure.transitions for i in t.input]
    expressions = [f.when for f in fields] + [o.when for f in fields for o in f.options]
    expressions += [d.when for d in procedure.documents] + [f.when for f in procedure.fees]
    expressions += [t.when for t in procedure.transitions]
    return {e.source for e in expressions if e is not None}


@pytest.mark.parametrize("path", PROCEDURES, ids=[p.stem for p in PROCEDURES])
@pytest.mark.parametrize("language", LANGUAGES)
def test_no_raw_expression_on_the_page(path: Path, language: str) -> None:
    procedure = _loaded(path)
    sources = _sources(procedure)
    assert sources
    shown = html.unescape(page_html(procedure, language))
    markdown = page_markdown(procedure, language).replace("\\", "")
    for source in sources:
        assert source not in shown and source not in markdown
    for operator in ("==", "!=", "age(", "documents.", "documents["):
        assert re.search(re.escape(operator) + r"\w", shown) is None
        assert re.search(re.escape(operator) + r"\w", markdown) is None


def test_passport_page_in_words_and_xof() -> None:
    procedure = _load("passport")
    french = html.unescape(page_html(procedure, "fr"))
    assert "Uniquement si le demandeur a moins de 18 ans." in french
    assert "Uniquement si le type de passeport est « Passeport de service »." in french
    assert f"30{THIN}000{NBSP}FCFA" in french
    assert "Si le type de passeport est « Passeport ordinaire »" in french
    assert "Original à présenter au guichet." in french
    english = html.unescape(page_html(procedure, "en"))
    assert "Only if the applicant is under 18." in english
    assert f"XOF{NBSP}30,000" in english
    assert f"Validity: 5{NBSP}years" in english


def test_fees_per_unit_and_set_at_a_step() -> None:
    association = procedure_view(_load("association"), "fr")
    copies = next(f for f in association.fees if f.id == "extra_copy_fee")
    assert copies.kind == "per_unit" and copies.amount == 500
    assert copies.amount_text == (f"500{NBSP}FCFA par unité (« Copies certifiées "
                                  "supplémentaires du récépissé »)")
    water = procedure_view(_load("water_connection"), "en")
    quote = next(f for f in water.fees if f.id == "connection_quote")
    assert quote.kind == "set_later" and quote.amount is None
    assert quote.amount_text == "amount set at the step “Draw up the quote”: Quote amount (FCFA)"
    assert water.payment_methods == ("T-Money", "Flooz", "Cash at the TdE counter")
    assert quote.due_text == "at the step “Accept and pay the quote”"


def test_who_may_apply_at_the_counter_and_organisations() -> None:
    record = procedure_view(_load("criminal_record"), "fr")
    assert [r.label for r in record.who.applicants] == ["Demandeur"]
    assert [r.id for r in record.who.at_counter] == ["clerk"]
    assert any(note.startswith("Au guichet") for note in record.who.notes)
    association = procedure_view(_load("association"), "en")
    assert association.who.organisations
    assert "An organisation may also apply" in page_markdown(_load("association"), "en")


def test_steps_breadth_first_then_outcomes() -> None:
    procedure = _load("passport")
    steps = procedure_view(procedure, "fr").steps
    assert steps[0].id == procedure.initial_state.id
    ongoing = [s.id for s in steps if not s.final]
    assert ongoing[:3] == ["draft", "submitted", "under_review"]
    assert [s.final for s in steps] == sorted(s.final for s in steps)
    issued = next(s for s in steps if s.id == "issued")
    assert issued.outcome_text == "demande acceptée"
    assert "Agent de la DGDN" in next(s for s in steps if s.id == "submitted").actors
    assert "Demandeur" not in next(s for s in steps if s.id == "submitted").actors  # withdrawing


def test_validity_read_from_the_form_is_the_duration_granted() -> None:
    procedure = load_procedure(ROOT / "examples" / "procedures" / "residence_permit.yaml")
    assert procedure_view(procedure, "fr").validity == "la durée accordée"
    assert procedure_view(procedure, "en").validity == "the duration granted"


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        page_html(_load("passport"), "de")


# --- author texts are escaped --------------------------------------------------------------------

HOSTILE = """
id: hostile
version: "1 <b>"
reference_prefix: HOS
title: {fr: "Permis <script>alert(1)</script>", en: "Permit <script>alert(1)</script>"}
description:
  fr: "Voir [ici](javascript:alert(1)) & *ceci* | x"
  en: "See <img src=x onerror=alert(1)> [ici](javascript:alert(1))"
authority: {ministry: {fr: "Ministère <i>", en: "Ministry <i>"}}
roles:
  applicant: {label: {fr: "Demandeur <u>", en: "Applicant <u>"}}
start: {roles: [applicant]}
fields:
  - id: kind
    type: choice
    label: {fr: "Type <em>", en: "Kind <em>"}
    options:
      - {value: a, label: {fr: "<script>x</script>", en: "<script>x</script>"}}
      - {value: b, label: {fr: B, en: B}}
documents:
  - {id: doc, label: {fr: "Pièce <script>", en: "Document <script>"}, when: "kind == 'a'"}
fees:
  - {id: fee, label: {fr: "Frais | <b>", en: "Fee | <b>"}, amount: 1000, due: submit,
     when: "kind == 'a'"}
states:
  draft: {label: {fr: "Brouillon <script>", en: "Draft <script>"}, initial: true, editable: true}
  done: {label: {fr: Fait, en: Done}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: done, roles: [applicant]}
"""


@pytest.fixture(scope="module")
def hostile() -> Procedure:
    procedure, diagnostics = compile_source(HOSTILE, "hostile.yaml")
    assert procedure is not None, [d for d in diagnostics if d.severity == "error"]
    return procedure


@pytest.mark.parametrize("language", LANGUAGES)
def test_author_texts_are_escaped_in_html(hostile: Procedure, language: str) -> None:
    document = page_html(hostile, language)
    parser = parsed(document)
    assert parser.errors == [] and parser.stack == []
    assert not {"script", "img", "u", "i", "b"} & set(parser.tags)
    assert parser.tags.count("em") == 1  # the page's own: the document's condition
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert "&lt;em&gt;" in document
    assert "<script>alert(1)</script>" in "".join(parser.text)  # shown as text
    assert parser.tags.count("h1") == 1


@pytest.mark.parametrize("language", LANGUAGES)
def test_author_texts_are_inert_in_markdown(hostile: Procedure, language: str) -> None:
    markdown = page_markdown(hostile, language)
    assert "<" not in markdown.replace("&lt;", "")
    assert "[ici](" not in markdown and "\\[ici\\](" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table and all(line.count(" | ") == 3 for line in table)  # escaped: "\\|"
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(markdown)
    tags = parsed(rendered).tags
    assert not {"script", "img", "a", "u", "i", "b"} & set(tags)
    assert tags.count("em") == 1  # the page's own: the document's condition


def test_markdown_text_escapes_marks() -> None:
    assert markdown_text("a *b* _c_ [d](e) | <f> & `g`\n h") == (
        "a \\*b\\* \\_c\\_ \\[d\\](e) \\| &lt;f&gt; &amp; \\`g\\` h")


# --- the command ---------------------------------------------------------------------------------

def test_cli_render_page(tmp_path: Path) -> None:
    runner = CliRunner()
    directory = str(tmp_path / "procedures")
    Path(directory).mkdir()
    shutil.copy(ROOT / "procedures" / "passport.yaml", directory)
    result = runner.invoke(main, ["render", "page", "passport", "--procedures", directory])
    assert result.exit_code == 0, result.output
    assert result.stdout == page_html(_load("passport"), "fr")
    target = tmp_path / "page.md"
    result = runner.invoke(main, ["render", "page", "passport", "--procedures", directory,
                                  "--format", "markdown", "--lang", "en", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == page_markdown(_load("passport"), "en")
    by_file = runner.invoke(main, ["render", "page", str(ROOT / "procedures" / "passport.yaml"),
                                   "--format", "markdown"])
    assert by_file.exit_code == 0 and by_file.stdout.startswith("# Demande de passeport")


def test_cli_render_page_unknown_procedure(tmp_path: Path) -> None:
    shutil.copy(ROOT / "procedures" / "passport.yaml", tmp_path)
    result = CliRunner().invoke(main, ["render", "page", "nope", "--procedures",
                                       str(tmp_path)])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "unknown procedure 'nope' (known: passport)" \
        in result.stderr


# --- the README's excerpt ------------------------------------------------------------------------

def test_readme_excerpt_is_the_passport_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("**The procedure page.**", 1)[1].split("\n## ", 1)[0]
    excerpt = section.split("```markdown\n", 1)[1].split("```", 1)[0]
    page = page_markdown(_load("passport"), "fr").replace(THIN, " ").replace(NBSP, " ")
    lines = page.splitlines()
    for line in filter(None, excerpt.splitlines()):
        assert line in lines
    assert "guichet render page" in readme.split("## The command line", 1)[1]
