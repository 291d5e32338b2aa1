"""Diagrams of the state machine (renderers/diagram.py, issue 11 point 5): Mermaid
stateDiagram-v2 and DOT as golden files for the shipped procedures (regenerate with
GUICHET_REGEN=1), SVG through Graphviz, author texts escaped for both syntaxes, and
`guichet render diagram`.

Mermaid is checked without a browser by a line grammar of the subset the renderer writes
(every line is one statement of stateDiagram-v2, free text holds no character Mermaid reads
as syntax); DOT is checked by Graphviz itself (`dot -Tjson` gives back every label exactly).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_golden

from cli import main
from engine import Procedure, compile_source, load_procedure
from renderers import diagram
from renderers.diagram import DiagramUnavailable

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "renderers" / "diagram"
PROCEDURES = sorted((ROOT / "procedures").glob("*.yaml"))
BUILDING_PERMIT = ROOT / "examples" / "procedures" / "building_permit.yaml"
#: Graphviz is installed by .ci/run; elsewhere its tests are skipped when it is missing.
needs_dot = pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"),
                               reason="Graphviz (dot) is not installed")


@pytest.fixture(scope="module")
def shipped() -> dict[str, Procedure]:
    return {path.stem: load_procedure(path) for path in PROCEDURES}


# --- golden files -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PROCEDURES, ids=[p.stem for p in PROCEDURES])
@pytest.mark.parametrize("kind", ["mermaid", "dot"])
def test_golden(path: Path, kind: str) -> None:
    procedure = load_procedure(path)
    text = getattr(diagram, kind)(procedure, "fr")
    assert_golden(GOLDEN / f"{procedure.id}.fr.{'mmd' if kind == 'mermaid' else 'dot'}", text)


def test_output_is_deterministic(shipped: dict[str, Procedure]) -> None:
    again = load_procedure(ROOT / "procedures" / "passport.yaml")
    for kind in (diagram.mermaid, diagram.dot):
        assert kind(shipped["passport"], "en") == kind(again, "en")


# --- a line grammar of the Mermaid the renderer writes ------------------------------------------

_FREE = r"(?:[^\"#;%:<>&{}\[\]|`\\\n]|#\d+;)+"  # text: nothing Mermaid reads, entity codes
_ID = r"[A-Za-z][A-Za-z0-9_]*"
_STATEMENTS = {
    "classDef": re.compile(r"    classDef (\w+) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6},"
                           r"stroke-width:3px,color:#[0-9a-f]{6}"),
    "state": re.compile(rf'    state "({_FREE})" as ({_ID})'),
    "start": re.compile(rf"    \[\*\] --> ({_ID})"),
    "edge": re.compile(rf"    ({_ID}) --> ({_ID}) : ({_FREE})"),
    "end": re.compile(rf"    ({_ID}) --> \[\*\]"),
    "class": re.compile(rf"    class ({_ID}) (\w+)"),
}


def parse_mermaid(text: str) -> dict[str, list[tuple[str, ...]]]:
    """The statements of a diagram by kind; fails on any line outside the grammar."""
    lines = text.splitlines()
    assert text.endswith("\n") and lines[0].startswith("%% ") and lines[1] == "stateDiagram-v2"
    found: dict[str, list[tuple[str, ...]]] = {kind: [] for kind in _STATEMENTS}
    for line in lines[2:]:
        kinds = [kind for kind, grammar in _STATEMENTS.items() if grammar.fullmatch(line)]
        assert len(kinds) == 1, f"not one statement of the grammar: {line!r}"
        match = _STATEMENTS[kinds[0]].fullmatch(line)
        assert match is not None
        found[kinds[0]].append(match.groups())
    states = {state_id for _, state_id in found["state"]}
    used = ([s for (s,) in found["start"]] + [s for (s,) in found["end"]]
            + [s for edge in found["edge"] for s in edge[:2]] + [s for s, _ in found["class"]])
    assert set(used) <= states, "every state used is declared"
    assert {c for _, c in found["class"]} <= {c for (c, *_) in found["classDef"]}
    return found


def unescape(text: str) -> str:
    """Mermaid's reading of entity codes."""
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text)


def test_mermaid_of_the_shipped_procedures_follows_the_grammar(
        shipped: dict[str, Procedure]) -> None:
    for procedure in shipped.values():
        for language in ("fr", "en"):
            found = parse_mermaid(diagram.mermaid(procedure, language))
            assert [s for _, s in found["state"]] == list(procedure.states)
            assert found["start"] == [(procedure.initial_state.id,)]
            finals = [s.id for s in procedure.states.values() if s.final]
            assert [s for (s,) in found["end"]] == finals
            assert found["class"] == [(s, procedure.states[s].outcome) for s in finals]
            edges = [(source, t.target) for t in procedure.transitions for source in t.sources]
            assert sorted(e[:2] for e in found["edge"]) == sorted(edges)


def test_final_states_initial_state_roles_and_labels() -> None:
    procedure = load_procedure(ROOT / "procedures" / "passport.yaml")
    text = diagram.mermaid(procedure, "fr")
    assert "    [*] --> draft\n" in text
    assert 'state "Délivré — accepté" as issued' in text  # the label does not say it
    assert 'state "Rejetée" as rejected' in text  # "Rejetée" says rejected already
    assert "classDef accepted fill:#dff3e4" in text and "class issued accepted" in text
    assert ("submitted --> sgg_review : Transmettre au SGG (Agent de la DGDN)"
            in text)
    english = diagram.mermaid(procedure, "en")
    assert "submitted --> sgg_review : Refer to the SGG (DGDN officer)" in english
    dot = diagram.dot(procedure, "fr")
    assert '"issued" [label="Délivré\\n(accepté)", style="filled", peripheries=2' in dot
    assert '"__start__" -> "draft";' in dot


def test_a_transition_without_label_shows_its_trigger() -> None:
    procedure = _compile(TINY.replace("label: {fr: Déposer, en: Submit}", ""))
    assert "draft --> submitted : submit (Demandeur)" in diagram.mermaid(procedure)
    closing = "  - {trigger: close, from: submitted, to: done, roles: [system]}\n"
    procedure = _compile(TINY + closing)
    assert "submitted --> done : close (Système)" in diagram.mermaid(procedure, "fr")
    assert "submitted --> done : close (System)" in diagram.mermaid(procedure, "en")


def test_deadline_transitions_are_dashed_with_their_duration(
        shipped: dict[str, Procedure]) -> None:
    for procedure in shipped.values():
        timed = {(s.id, d.trigger) for s in procedure.states.values() for d in s.deadlines}
        mermaid_lines = diagram.mermaid(procedure).splitlines()
        dot_lines = diagram.dot(procedure).splitlines()
        for state in procedure.states.values():
            for transition in procedure.transitions_from(state.id):
                label = transition.label.get("fr") if transition.label else transition.trigger
                mermaid = [line for line in mermaid_lines
                           if line.startswith(f"    {state.id} --> {transition.target} : "
                                              f"{diagram.mermaid_text(label or '')}")]
                dot = [line for line in dot_lines if line.startswith(
                    f'    "{state.id}" -> "{transition.target}" [label="{label}')]
                assert mermaid and dot, (state.id, transition.trigger)
                if (state.id, transition.trigger) in timed:
                    assert all(" — automatiquement après " in line for line in mermaid)
                    assert all('\\nautomatiquement après ' in line and 'style="dashed"' in line
                               for line in dot)
                else:
                    assert not any("automatiquement" in line for line in mermaid)
                    assert not any("dashed" in line for line in dot)
    passport = diagram.dot(shipped["passport"], "en")
    assert ('"enrolment_scheduled" -> "expired" [label="Close for missed enrolment\\n'
            'automatically after 60 days", style="dashed"];') in passport
    assert ("enrolment_scheduled --> expired : Clore pour absence à l'enrôlement — "
            "automatiquement après 60 jours") in diagram.mermaid(shipped["passport"])


def test_post_decision_transitions_are_shown() -> None:
    procedure = load_procedure(BUILDING_PERMIT)
    found = parse_mermaid(diagram.mermaid(procedure, "en"))
    assert ("granted", "revoked", "Revoke the permit (Director of urban planning)") \
        in found["edge"]
    assert ("granted",) in found["end"] and ("revoked",) in found["end"]
    assert '"granted" -> "revoked" [label="Revoke the permit' in diagram.dot(procedure, "en")


def test_unknown_language_is_refused() -> None:
    procedure = _compile(TINY)
    for kind in (diagram.mermaid, diagram.dot):
        with pytest.raises(ValueError, match="unknown language 'de'"):
            kind(procedure, "de")


# --- escaping -----------------------------------------------------------------------------------

TINY = """\
id: tiny
version: "1"
reference_prefix: TNY
title: {fr: Petite démarche, en: Tiny procedure}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Agent}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  submitted: {label: {fr: Déposée, en: Submitted}}
  done: {label: {fr: Terminée, en: Done}, final: accepted}
transitions:
  - trigger: submit
    from: draft
    to: submitted
    roles: [applicant]
    label: {fr: Déposer, en: Submit}
  - {trigger: accept, from: submitted, to: done, roles: [agent]}
"""

#: Texts that would break or extend a diagram if they were written as they are.
HOSTILE = [
    'Brouillon " --> [*] ; note left of draft : x',
    "Déposée\nclass submitted accepted\n%% comment",
    "Fini #35; <script>alert(1)</script> }{ ][ | & `x`",
    'Accepter "vite" -> \\" ] [label=x] } \\N \\',
    "Titre\r\n\u2028:: ;; %%{init: {'theme':'dark'}}%%",
]


def _compile(text: str) -> Procedure:
    procedure, diagnostics = compile_source(text, "tiny.yaml")
    assert procedure is not None, [str(d) for d in diagnostics]
    return procedure


def _hostile() -> Procedure:
    quoted = [json.dumps(text) for text in HOSTILE]
    return _compile(
        TINY.replace("title: {fr: Petite démarche,", f"title: {{fr: {quoted[4]},")
        .replace("draft: {label: {fr: Brouillon,", f"draft: {{label: {{fr: {quoted[0]},")
        .replace("submitted: {label: {fr: Déposée,", f"submitted: {{label: {{fr: {quoted[1]},")
        .replace("done: {label: {fr: Terminée,", f"done: {{label: {{fr: {quoted[2]},")
        .replace("label: {fr: Déposer,", f"label: {{fr: {quoted[3]},")
        .replace("agent: {label: {fr: Agent,", f"agent: {{label: {{fr: {quoted[4]},")
        + "  - {trigger: again, from: draft, to: done, roles: [agent], "
        + f"label: {{fr: {quoted[2]}, en: x}}}}\n")


def _spaced(text: str) -> str:
    return " ".join(text.split())


def test_mermaid_escapes_every_author_text() -> None:
    text = diagram.mermaid(_hostile(), "fr")
    found = parse_mermaid(text)  # no author text added a statement or broke one
    assert [state for _, state in found["state"]] == ["draft", "submitted", "done"]
    assert [edge[:2] for edge in found["edge"]] == [
        ("draft", "submitted"), ("draft", "done"), ("submitted", "done")]
    assert found["start"] == [("draft",)] and found["end"] == [("done",)]
    assert found["class"] == [("done", "accepted")]
    names = [unescape(name) for name, _ in found["state"]]
    assert names == [_spaced(HOSTILE[0]), _spaced(HOSTILE[1]),
                     _spaced(HOSTILE[2]) + " — accepté"]
    labels = [unescape(label) for *_, label in found["edge"]]
    assert labels == [f"{_spaced(HOSTILE[3])} (Demandeur)",
                      f"{_spaced(HOSTILE[2])} ({_spaced(HOSTILE[4])})",
                      f"accept ({_spaced(HOSTILE[4])})"]
    assert "%%{" not in text and "<script" not in text and "\r" not in text


def test_mermaid_text_keeps_plain_words_and_encodes_the_rest() -> None:
    assert diagram.mermaid_text("Convoquer à l'enrôlement (agent) ?") == \
        "Convoquer à l'enrôlement (agent) ?"
    assert diagram.mermaid_text('a"b#c;d<e\nf') == "a#34;b#35;c#59;d#60;e f"


def test_mermaid_state_ids_that_are_keywords_are_renamed() -> None:
    procedure = _compile(TINY.replace("done", "end").replace("submitted", "note"))
    found = parse_mermaid(diagram.mermaid(procedure))
    assert [(unescape(name), state) for name, state in found["state"]] == [
        ("Brouillon", "draft"), ("Déposée", "s1"), ("Terminée — accepté", "s2")]
    assert ("s1", "s2", "accept (Agent)") in found["edge"]


def test_dot_string_escapes_quotes_backslashes_and_newlines() -> None:
    assert diagram.dot_string('a "b" \\N c\nd\r\n\te') == '"a \\"b\\" \\\\N c\\nd\\ne"'
    assert diagram.dot_string("end \\") == '"end \\\\"'


@needs_dot
def test_graphviz_reads_every_author_text_back_exactly() -> None:
    procedure = _hostile()
    source = diagram.dot(procedure, "fr")
    layout = json.loads(subprocess.run(["dot", "-Tjson"], input=source.encode(),
                                       capture_output=True, check=True, timeout=60).stdout)
    lines = [_lines(text) for text in HOSTILE]
    assert layout["label"] == lines[4]
    labels = {node["name"]: node["label"] for node in layout["objects"]}
    assert labels == {"__start__": "", "draft": lines[0], "submitted": lines[1],
                      "done": lines[2] + "\\n(accepté)"}
    names = {node["_gvid"]: node["name"] for node in layout["objects"]}
    edges = [(names[e["tail"]], names[e["head"]], e.get("label", "")) for e in layout["edges"]]
    assert edges == [("__start__", "draft", ""),
                     ("draft", "submitted", f"{lines[3]} (Demandeur)"),
                     ("draft", "done", f"{lines[2]} ({lines[4]})"),
                     ("submitted", "done", f"accept ({lines[4]})")]


def _lines(text: str) -> str:
    """A text as Graphviz reads the label back (`dot -Tjson` gives it before the label's
    own escapes are read: `\\n` between lines, backslashes doubled): its lines, each with
    whitespace runs as one space."""
    return "\\n".join(_spaced(line).replace("\\", "\\\\") for line in text.splitlines())


# --- SVG ----------------------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("path", [*PROCEDURES, BUILDING_PERMIT],
                         ids=[*(p.stem for p in PROCEDURES), "building_permit"])
def test_svg_is_xml_holding_every_state(path: Path) -> None:
    procedure = load_procedure(path)
    svg = diagram.svg(procedure, "en")
    assert svg.startswith("<svg") and svg.endswith("</svg>\n")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = {element.text for element in root.iter("{http://www.w3.org/2000/svg}title")}
    texts = " ".join(element.text or "" for element in root.iter(
        "{http://www.w3.org/2000/svg}text"))
    for state in procedure.states.values():
        assert state.id in titles
        assert state.label.get("en") in texts
    assert "stroke-dasharray" in svg  # the deadlines


@needs_dot
def test_svg_of_hostile_texts_is_well_formed() -> None:
    root = ET.fromstring(diagram.svg(_hostile(), "fr"))
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert HOSTILE[2] in texts  # shown as written, once for the state, once for a transition
    assert 'Accepter "vite" -> \\" ] [label=x] } \\N \\ (Demandeur)' in texts
    assert ["Déposée", "class submitted accepted", "%% comment"] == texts[
        texts.index("Déposée"):texts.index("Déposée") + 3]
    assert not list(root.iter("{http://www.w3.org/2000/svg}script"))


def test_svg_without_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot there
    with pytest.raises(DiagramUnavailable, match=r"Graphviz is not installed \('dot' not found"):
        diagram.svg(_compile(TINY))


def _program(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-dot"
    script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def test_svg_when_graphviz_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(diagram, "DOT_PROGRAM", _program(
        tmp_path, "echo 'Error: <stdin>: syntax error in line 3' >&2\nexit 2"))
    with pytest.raises(DiagramUnavailable) as raised:
        diagram.svg(_compile(TINY))
    assert str(raised.value) == ("Graphviz failed (exit status 2): Error: <stdin>: syntax "
                                 "error in line 3")


def test_svg_when_graphviz_is_too_slow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(diagram, "DOT_PROGRAM", _program(tmp_path, "exec sleep 30"))
    monkeypatch.setattr(diagram, "DOT_TIMEOUT", 0.3)
    with pytest.raises(DiagramUnavailable, match="longer than 0.3 seconds"):
        diagram.svg(_compile(TINY))


def test_svg_when_graphviz_writes_too_much(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setattr(diagram, "DOT_PROGRAM", _program(
        tmp_path, "cat >/dev/null\nhead -c 5000 /dev/zero"))
    monkeypatch.setattr(diagram, "MAX_SVG_BYTES", 4096)
    with pytest.raises(DiagramUnavailable, match="wrote 5000 bytes, more than the limit"):
        diagram.svg(_compile(TINY))
    monkeypatch.setattr(diagram, "DOT_PROGRAM", _program(tmp_path, "cat >/dev/null\necho hi"))
    with pytest.raises(DiagramUnavailable, match="Graphviz wrote no SVG"):
        diagram.svg(_compile(TINY))


# --- the command line ---------------------------------------------------------------------------

def render(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["render", "diagram", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


def test_cli_prints_mermaid_by_default(at_root: Path, shipped: dict[str, Procedure]) -> None:
    code, out, _ = render("passport")
    assert code == 0 and out == diagram.mermaid(shipped["passport"], "fr")
    code, out, _ = render("procedures/passport.yaml", "--format", "dot", "--lang", "en")
    assert code == 0 and out == diagram.dot(shipped["passport"], "en")


def test_cli_writes_a_file(at_root: Path, tmp_path: Path,
                           shipped: dict[str, Procedure]) -> None:
    target = tmp_path / "association.mmd"
    code, out, err = render("association", "--lang", "en", "-o", str(target))
    assert (code, out, err) == (0, "", f"written: {target}\n")
    assert target.read_text(encoding="utf-8") == diagram.mermaid(shipped["association"], "en")


def test_cli_finds_procedures_in_another_folder(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY, encoding="utf-8")
    code, out, _ = render("tiny", "--procedures", str(tmp_path))
    assert code == 0 and out == diagram.mermaid(_compile(TINY))


@needs_dot
def test_cli_svg(at_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "passport.svg"
    code, _, _ = render("passport", "--format", "svg", "-o", str(target))
    assert code == 0
    ET.fromstring(target.read_text(encoding="utf-8"))


def test_cli_errors_are_one_line(at_root: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = render("nope")
    assert (code, out) == (1, "")
    assert err == ("error: Invalid value for 'PROCEDURE': unknown procedure 'nope' (known: "
                   "association, criminal_record, passport, water_connection)\n")
    (tmp_path / "broken.yaml").write_text("id: [\n", encoding="utf-8")
    code, out, err = render(str(tmp_path / "broken.yaml"))
    assert (code, out) == (1, "") and err.startswith("error: procedure refused")
    assert err.count("\n") == 1
    missing = tmp_path / "missing" / "x.mmd"
    code, out, err = render("passport", "-o", str(missing))
    assert (code, out) == (1, "")
    assert err == f"error: cannot write {missing}: No such file or directory\n"
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = render("passport", "--format", "svg")
    assert (code, out) == (1, "")
    assert err.startswith("error: Graphviz is not installed") and err.count("\n") == 1


# --- the README's example -----------------------------------------------------------------------

def test_readme_diagram_is_the_diagram_of_the_readme_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("A short but complete example:", 1)[1]
    example = example.split("```yaml\n", 1)[1].split("```", 1)[0]
    section = readme.split("## See your procedure", 1)[1].split("\n## The command line", 1)[0]
    shown = section.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert shown == diagram.mermaid(_compile(example), "en")
    assert "guichet render diagram" in readme.split("## The command line", 1)[1]
