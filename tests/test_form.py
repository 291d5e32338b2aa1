"""The citizen's form (renderers/form.py) and its conditions in JavaScript (renderers/formjs.py).

The passport start form in French is a golden file; refresh it after an intended change and
review the diff:

    GUICHET_REGEN=1 pytest tests/test_form.py
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_golden

from cli import main
from engine import compile_source, load_procedure
from engine.expressions import compile_expression
from engine.form_subset import outside_reason
from engine.model import Procedure
from renderers.form import form_html
from renderers.formjs import compile_condition, js_literal

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "renderers"
SHIPPED = sorted([*(ROOT / "procedures").glob("*.yaml"),
                  *(ROOT / "examples" / "procedures").glob("*.yaml")])


@pytest.fixture(scope="module")
def passport() -> Procedure:
    return load_procedure(ROOT / "procedures" / "passport.yaml")


# --- an HTML reader -------------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Page(HTMLParser):
    """Reads a page strictly: every element closed in order; collects controls, labels,
    fieldsets with legends and the scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, dict[str, str | None]]] = []
        self.problems: list[str] = []
        self.controls: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.labels: set[str] = set()
        self.legends: list[int] = []  # depth of fieldsets whose legend was seen
        self.ids: list[str] = []
        self.scripts: list[str] = []
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        if tag == "label" and attributes.get("for"):
            self.labels.add(str(attributes["for"]))
        if tag == "legend":
            self.legends.append(len(self.open))
        if tag in ("input", "select", "textarea"):
            legends = [str(d) for d in self.legends]
            fieldsets = [i for i, (t, _) in enumerate(self.open) if t == "fieldset"]
            self.controls.append((tag, attributes, [str(i) for i in fieldsets
                                                    if str(i + 1) in legends]))
        if tag == "script":
            self._script = []
        if tag not in VOID:
            self.open.append((tag, attributes))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.open or self.open[-1][0] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1][0] if self.open else None}")
            return
        if tag == "fieldset":
            depth = len(self.open)
            self.legends = [d for d in self.legends if d < depth]
        self.open.pop()
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)


def read(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_golden_passport_form_in_french(passport: Procedure) -> None:
    html = form_html(passport, "fr")
    assert_golden(GOLDEN / "form" / "passport.fr.html", html)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_form_parses_and_every_control_has_a_label(path: Path, language: str) -> None:
    procedure = load_procedure(path)
    pages = [form_html(procedure, language)]
    pages += [form_html(procedure, language, trigger=t.trigger)
              for t in procedure.transitions if t.input]
    for html in pages:
        page = read(html)
        assert page.problems == []
        assert page.open == []
        assert html.startswith("<!doctype html>")
        assert f'<html lang="{language}">' in html
        duplicates = {i for i in page.ids if page.ids.count(i) > 1}
        assert duplicates == set()
        for tag, attributes, fieldsets in page.controls:
            if attributes.get("type") in ("radio", "checkbox"):
                assert attributes.get("id") in page.labels, attributes
                assert fieldsets, f"{attributes.get('name')} is not in a fieldset with a legend"
            else:
                assert attributes.get("id") in page.labels, (tag, attributes)


def test_no_external_request(passport: Procedure) -> None:
    html = form_html(passport, "fr")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script src" not in html
    assert "<link" not in html


def test_constraints_mirror_the_server(passport: Procedure) -> None:
    html = form_html(passport, "fr")
    surname = re.search(r'<input id="f-surname"[^>]*>', html)
    assert surname is not None
    assert 'maxlength="60"' in surname.group() and " required" in surname.group()
    birth = re.search(r'<input id="f-birth_date"[^>]*>', html)
    assert birth is not None
    assert 'type="date"' in birth.group() and 'min="1900-01-01"' in birth.group()
    assert "data-max-today" in birth.group()  # set from the browser's date
    nin = re.search(r'<input id="f-nin"[^>]*>', html)
    assert nin is not None and 'pattern="[0-9]{10}"' in nin.group()
    assert "data-required" in nin.group() and " required" not in nin.group()  # conditional
    phone = re.search(r'<input id="f-phone"[^>]*>', html)
    assert phone is not None and 'type="tel"' in phone.group() and "pattern=" in phone.group()
    old = re.search(r'<input id="f-old_passport_number"[^>]*>', html)
    assert old is not None
    assert 'pattern="^[A-Z0-9]+$"' in old.group() and 'minlength="6"' in old.group()
    photos = re.search(r'<input id="d-photos"[^>]*>', html)
    assert photos is not None
    assert 'accept="image/jpeg,image/png"' in photos.group() and "multiple" in photos.group()
    assert 'data-max-size="2097152"' in photos.group()
    assert "Taille maximale : 2\u00a0Mo par fichier." in html


def test_phone_pattern_accepts_what_the_server_accepts() -> None:
    from renderers.form import PHONE_PATTERN
    pattern = re.compile(PHONE_PATTERN)
    for good in ["90123456", "90 12 34 56", "+22890123456", "+228 90.12-34-56", "+33612345678"]:
        assert pattern.fullmatch(good), good
    for bad in ["9012345", "+0123456789", "abc", "+1234", "901234567"]:
        assert not pattern.fullmatch(bad), bad


def test_choices_radios_select_checkboxes_and_country() -> None:
    procedure = _procedure("""\
fields:
  - {id: colour, type: choice, label: {fr: Couleur, en: Colour}, options: [
      {value: a, label: {fr: A, en: A}}, {value: b, label: {fr: B, en: B}},
      {value: c, label: {fr: C, en: C}}, {value: d, label: {fr: D, en: D}},
      {value: e, label: {fr: E, en: E}, when: "size > 2"}]}
  - {id: size, type: integer, min: 0, label: {fr: Taille, en: Size}}
  - {id: tags, type: multi_choice, label: {fr: Étiquettes, en: Tags}, options: [
      {value: x, label: {fr: X, en: X}}, {value: z, label: {fr: Z, en: Z}}]}
  - {id: country, type: country, label: {fr: Pays, en: Country}}
  - {id: agree, type: boolean, label: {fr: D'accord, en: Agreed}, required: true}
""")
    html = form_html(procedure, "en")
    assert re.search(r'<select id="f-colour" name="colour"', html)  # five options: a select
    assert '<option value="e" data-when="c0" data-option>E</option>' in html
    assert html.count('type="checkbox"') == 2
    assert '<option value="TG">Togo</option>' in html
    assert '<option value="CI">Côte d&#39;Ivoire</option>' in html
    assert re.search(r'type="radio" id="f-agree-0" name="agree" value="true" required', html)


def test_group_rows_and_template() -> None:
    procedure = _procedure("""\
fields:
  - id: members
    type: group
    label: {fr: Membres, en: Members}
    min_rows: 2
    max_rows: 4
    fields:
      - {id: name, type: string, label: {fr: Nom, en: Name}, required: true}
      - {id: role, type: string, label: {fr: Rôle, en: Role}, when: "name == 'x'"}
""")
    html = form_html(procedure, "fr")
    assert 'data-min-rows="2" data-max-rows="4"' in html
    assert 'name="members.0.name"' in html and 'name="members.1.name"' in html
    assert 'name="members.2.name"' not in html
    assert 'name="members.__i__.name"' in html  # the row the add button copies
    assert "De 2 à 4 lignes." in html
    assert '"members":{"name":"string","role":"string"}' in html
    assert "<button type=\"button\" data-add hidden>Ajouter une ligne</button>" in html


def test_fee_summary(passport: Procedure) -> None:
    html = form_html(passport, "en")
    assert re.search(r'<li id="fee-passport_fee" data-when="c\d+" data-fee="passport_fee" '
                     r'data-amount="30000">', html)
    assert "XOF\u00a030,000" in html
    assert "depending on your answers" in html  # the total before the script runs
    water = load_procedure(ROOT / "procedures" / "water_connection.yaml")
    assert "data-later" in form_html(water, "fr")


def test_step_form(passport: Procedure) -> None:
    html = form_html(passport, "en", trigger="schedule_enrolment", action="/cases/x/fire")
    assert '<form id="guichet-form" method="post" action="/cases/x/fire">' in html
    assert "<h1>Schedule the enrolment</h1>" in html
    assert 'name="appointment_date"' in html and "data-min-today" in html
    assert 'id="fee-' not in html and 'type="file"' not in html
    with pytest.raises(ValueError, match="unknown step"):
        form_html(passport, "fr", trigger="no_such_step")
    with pytest.raises(ValueError, match="unknown language"):
        form_html(passport, "de")


def test_author_texts_are_escaped() -> None:
    hostile = "<script>alert(1)</script>\" onmouseover=\"x"
    procedure = _procedure(f"""\
fields:
  - {{id: name, type: string, label: {{fr: {js_literal(hostile)}, en: x}},
      hint: {{fr: "<b>gras</b> & co", en: x}}, pattern: "^[a-z<>\\"]+$"}}
""")
    html = form_html(procedure, "fr")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34; onmouseover=&#34;x" in html
    assert "&lt;b&gt;gras&lt;/b&gt; &amp; co" in html
    assert 'pattern="^[a-z&lt;&gt;&#34;]+$"' in html
    assert read(html).problems == []


# --- conditions in JavaScript ---------------------------------------------------------------------

def _js(source: str, names: tuple[str, ...] = ("a", "b", "birth", "kind", "tags"),
        documents: tuple[str, ...] = ("proof",), unset: tuple[str, ...] = ()) -> str | None:
    return compile_condition(compile_expression(source), names, documents, unset)


@pytest.mark.parametrize(("source", "code"), [
    ("a == 1", 'G.cmp("eq",G.v("a"),1)'),
    ("a != 'x'", 'G.cmp("ne",G.v("a"),"x")'),
    ("a < -2.5", 'G.cmp("lt",G.v("a"),-2.5)'),
    ("a <= b", 'G.cmp("lteq",G.v("a"),G.v("b"))'),
    ("a > 0", 'G.cmp("gt",G.v("a"),0)'),
    ("a >= none", 'G.cmp("gteq",G.v("a"),null)'),
    ("kind in ['x', 'y']", 'G.cmp("in",G.v("kind"),["x","y"])'),
    ("kind not in ('x',)", 'G.cmp("notin",G.v("kind"),["x"])'),
    ("'x' in tags", 'G.cmp("in","x",G.v("tags"))'),
    ("a and b", 'G.all(function(){return G.v("a");},function(){return G.v("b");})'),
    ("a or not b", 'G.any(function(){return G.v("a");},function(){return G.no(G.v("b"));})'),
    ("not (a == true)", 'G.no(G.cmp("eq",G.v("a"),true))'),
    ("age(birth) < 18", 'G.cmp("lt",G.age(G.v("birth")),18)'),
    ("birth <= today", 'G.cmp("lteq",G.v("birth"),G.today())'),
    ("documents.proof > 0", 'G.cmp("gt",G.files("proof"),0)'),
    ("documents['proof'] == 0", 'G.cmp("eq",G.files("proof"),0)'),
    ("a == false", 'G.cmp("eq",G.v("a"),false)'),
])
def test_each_construct_compiles(source: str, code: str) -> None:
    assert _js(source) == code
    assert outside_reason(compile_expression(source)) is None


@pytest.mark.parametrize("source", [
    "a + 1 > 2", "a | int > 3", "a is none", "fees_due > 0", "fees_paid >= 100",
    "documents", "a < b < 3", "(a - today).days > 3", "range(3)", "a if b else 3",
    "age(a, b) > 3", "a.b == 1", "documents.proof.x",
])
def test_outside_the_subset(source: str) -> None:
    assert _js(source) is None
    assert outside_reason(compile_expression(source)) is not None


def test_names_the_page_does_not_hold() -> None:
    assert _js("zzz == 1") is None  # not on the page: always shown
    assert _js("documents.other > 0") is None
    assert _js("quote == 1", unset=("quote",)) == 'G.cmp("eq",null,1)'  # a later step's input


def test_a_hostile_literal_cannot_leave_the_script() -> None:
    hostile = "</script><script>alert(1)</script><!-- \u2028 \" ' `${x}` \\"
    source = f"kind == {js_literal(hostile)}"
    code = _js(source)
    assert code is not None
    assert "<" not in code and ">" not in code and "\u2028" not in code
    assert code == 'G.cmp("eq",G.v("kind"),' + js_literal(hostile) + ")"
    procedure = _procedure(f"""\
fields:
  - {{id: kind, type: string, label: {{fr: Genre, en: Kind}}}}
  - {{id: other, type: string, label: {{fr: Autre, en: Other}}, when: {js_literal(source)}}}
""")
    html = form_html(procedure, "fr")
    page = read(html)
    assert page.problems == []
    script = page.scripts[-1]
    assert "alert" in script and "</script" not in script.lower() and "<!--" not in script
    assert html.lower().count("</script>") == len(page.scripts)


def test_shipped_procedures_have_no_form_expression_warning() -> None:
    from engine import lint
    found = [str(d) for d in lint(SHIPPED) if d.rule == "form-expression"]
    assert found == []


def test_cli_render_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    result = runner.invoke(main, ["render", "form", "passport", "--lang", "en"])
    assert result.exit_code == 0, result.output
    assert '<html lang="en">' in result.stdout
    target = tmp_path / "step.html"
    result = runner.invoke(main, ["render", "form", "procedures/passport.yaml", "--step",
                                  "reject", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "Motif du rejet" in target.read_text(encoding="utf-8")
    result = runner.invoke(main, ["render", "form", "passport", "--step", "nope"])
    assert result.exit_code == 1
    assert "unknown step 'nope'" in result.stderr


# --- helpers --------------------------------------------------------------------------------------

SKELETON = """\
id: demo
version: "1"
title: {fr: Démo, en: Demo}
authority: {ministry: Ministère}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Agent, en: Clerk}}
start: {roles: [applicant]}
%s
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  done: {label: {fr: Terminée, en: Done}, final: accepted}
transitions:
  - {trigger: submit, from: draft, to: done, roles: [applicant], requires: {fields: all}}
"""


def _procedure(fields: str) -> Procedure:
    procedure, diagnostics = compile_source((SKELETON % fields).encode(), "demo.yaml")
    assert procedure is not None, [str(d) for d in diagnostics]
    return procedure
