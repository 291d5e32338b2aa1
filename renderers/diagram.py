"""The state machine of a procedure as a picture: Mermaid `stateDiagram-v2`, Graphviz DOT, SVG.

- `mermaid(procedure, language)`: text GitHub, GitLab and most wikis draw (```mermaid blocks).
- `dot(procedure, language)`: Graphviz source; `svg(procedure, language)` runs Graphviz's
  `dot -Tsvg` on it (bounded in time and size) and raises DiagramUnavailable, with a message
  fit for one line, when Graphviz is missing or fails.

What the pictures show: the initial state (an arrow from a start dot), final states marked by
their outcome (a colour per outcome, a thick or double border, in Mermaid the end marker
`[*]`, and the outcome's word unless the state's label already says it), one arrow per
transition and source state labelled with the transition's label (its trigger when it has
none) and the labels of the roles that may fire it, deadline transitions (fired by a
`deadlines:` entry of their source state) labelled "automatically after <duration>" (and
dashed in DOT; Mermaid cannot dash one arrow), and transitions leaving a final state
(decisions revisited, e.g. a revocation) like any other.

Every author text is escaped for the target syntax (Mermaid entity codes, DOT quoted
strings), so a label holding quotes, `#`, `;`, `<`, `%%` or a newline can neither break the
diagram nor add to it. The output is deterministic: states and transitions in declaration
order (tests/golden/renderers/ holds the shipped procedures').
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from engine import graph
from engine.model import LANGUAGES, SYSTEM_ROLE, Procedure, State

from .views import duration_text

#: The Graphviz program `svg` runs (looked up on PATH).
DOT_PROGRAM = "dot"
#: The longest Graphviz may take, in seconds.
DOT_TIMEOUT = 30.0
#: The largest SVG accepted from Graphviz, in bytes.
MAX_SVG_BYTES = 8 * 1024 * 1024


class DiagramUnavailable(RuntimeError):
    """The SVG could not be made (Graphviz missing, failing, too slow or too verbose); the
    message is one line saying why."""


# --- what the diagram says ----------------------------------------------------------------------

#: The diagram's own words, per language (the procedure's texts come from the procedure).
_WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "accepted": "accepté", "rejected": "rejeté", "withdrawn": "retiré",
        "expired": "expiré", "cancelled": "annulé", "revoked": "révoqué",
        "system": "système", "after": "automatiquement après {duration}",
    },
    "en": {
        "accepted": "accepted", "rejected": "rejected", "withdrawn": "withdrawn",
        "expired": "expired", "cancelled": "cancelled", "revoked": "revoked",
        "system": "system", "after": "automatically after {duration}",
    },
}

#: Outcome -> (fill, border) colours; text stays #1a1a1a (contrast above 12:1 on each fill).
COLOURS = {
    "accepted": ("#dff3e4", "#1e6b34"),
    "rejected": ("#fbe3e4", "#a4141b"),
    "withdrawn": ("#ececec", "#555555"),
    "expired": ("#fdf0d5", "#8a5a00"),
    "cancelled": ("#e8e4f3", "#4b3a8a"),
    "revoked": ("#f6e0ef", "#8a1a5c"),
}
_INK = "#1a1a1a"


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    label: str  # the transition's label (or trigger) and roles, author text unescaped
    deadline: str | None  # "automatically after 30 days" when a deadline of `source` fires it


def _role_name(procedure: Procedure, role: str, language: str) -> str:
    if role in procedure.roles:
        return procedure.roles[role].label.get(language) or role
    return _WORDS[language]["system"] if role == SYSTEM_ROLE else role


def _edges(procedure: Procedure, language: str) -> Iterator[_Edge]:
    """One edge per transition and source state, by source state then declaration order."""
    for state in procedure.states.values():
        untimed = {id(t) for t in graph.leaving(procedure, state.id, deadlines=False)}
        for transition in graph.leaving(procedure, state.id):
            if transition.target not in procedure.states:
                continue
            name = (transition.label.get(language) if transition.label else "") \
                or transition.trigger
            deadline = None
            roles = list(transition.roles)
            if id(transition) not in untimed:
                after = next(d.after for d in state.deadlines if d.trigger == transition.trigger)
                deadline = _WORDS[language]["after"].format(
                    duration=duration_text(after, language))
                roles = [role for role in roles if role != SYSTEM_ROLE]
            if roles:
                name += " (" + ", ".join(_role_name(procedure, r, language) for r in roles) + ")"
            yield _Edge(state.id, transition.target, name, deadline)


def _state_name(state: State, language: str) -> str:
    return state.label.get(language) or state.id


def _folded(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold())
                   if not unicodedata.combining(c))


def _outcome_word(state: State, language: str) -> str | None:
    """The word naming a final state's outcome, unless its label already says it (a word
    of the label starts like the outcome's: "Rejetée" is rejected, "Délivrée" says nothing)."""
    if not state.outcome:
        return None
    word = _WORDS[language].get(state.outcome, state.outcome)
    stem = _folded(word)[:5]
    if any(part.startswith(stem) for part in re.findall(r"\w+", _folded(_state_name(
            state, language)))):
        return None
    return word


def _check(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (one of {', '.join(LANGUAGES)})")


# --- Mermaid ------------------------------------------------------------------------------------

#: Characters written as they are in Mermaid text; anything else becomes an entity code
#: (`#35;` for `#`), which Mermaid decodes after parsing, so no author text is ever syntax.
_MERMAID_PLAIN = frozenset(" .,'\u2019()/_+-?!")
#: Words of stateDiagram-v2 a state id must not be.
_MERMAID_KEYWORDS = frozenset({
    "state", "note", "end", "class", "classdef", "style", "direction", "as", "of", "left",
    "right", "click", "hide", "scale", "fork", "join", "choice", "concurrent", "root",
    "acctitle", "accdescr", "default",
})
_MERMAID_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def mermaid_text(text: str) -> str:
    """Author text made safe anywhere Mermaid takes free text (a quoted state name, a
    transition's label): whitespace runs (newlines too) as one space, every character but
    letters, digits and ` .,'’()/_+-?!` as a Mermaid entity code."""
    text = " ".join(text.split())
    return "".join(c if (c.isalnum() and c.isprintable()) or c in _MERMAID_PLAIN
                   else f"#{ord(c)};" for c in text)


def _mermaid_ids(procedure: Procedure) -> dict[str, str]:
    """State id -> the id used in Mermaid: itself when it is a plain identifier and not a
    keyword, else `s<n>` (unique)."""
    ids: dict[str, str] = {}
    taken = set(procedure.states)
    for number, state in enumerate(procedure.states):
        if _MERMAID_ID.fullmatch(state) and state.lower() not in _MERMAID_KEYWORDS:
            ids[state] = state
            continue
        candidate = f"s{number}"
        while candidate in taken:
            candidate = "s" + candidate
        taken.add(candidate)
        ids[state] = candidate
    return ids


def mermaid(procedure: Procedure, language: str = "fr") -> str:
    """The state machine as a Mermaid `stateDiagram-v2` (text ending with a newline)."""
    _check(language)
    ids = _mermaid_ids(procedure)
    outcomes = [o for o in COLOURS if any(s.outcome == o for s in procedure.states.values())]
    lines = ["%% " + " ".join(procedure.id.split()), "stateDiagram-v2"]
    for outcome in outcomes:
        fill, border = COLOURS[outcome]
        lines.append(f"    classDef {outcome} fill:{fill},stroke:{border},stroke-width:3px,"
                     f"color:{_INK}")
    for state in procedure.states.values():
        name = mermaid_text(_state_name(state, language))
        said = _outcome_word(state, language)
        if said:
            name += f" — {said}"
        lines.append(f'    state "{name}" as {ids[state.id]}')
    lines.extend(f"    [*] --> {ids[s.id]}" for s in procedure.states.values() if s.initial)
    for edge in _edges(procedure, language):
        label = mermaid_text(edge.label)
        if edge.deadline:
            label += f" — {mermaid_text(edge.deadline)}"
        lines.append(f"    {ids[edge.source]} --> {ids[edge.target]} : {label}")
    for state in procedure.states.values():
        if state.outcome:
            lines.append(f"    {ids[state.id]} --> [*]")
    for state in procedure.states.values():
        if state.outcome in COLOURS:
            lines.append(f"    class {ids[state.id]} {state.outcome}")
    return "\n".join(lines) + "\n"


# --- Graphviz DOT -------------------------------------------------------------------------------

def dot_string(text: str) -> str:
    """Author text as a DOT double-quoted string: backslashes and quotes escaped, each line's
    whitespace runs as one space, line breaks as `\\n`, other control characters dropped."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    body = "\n".join(lines).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{body}"'


def _attributes(**values: str | None) -> str:
    """`[name=value, ...]` of the values given (already DOT syntax)."""
    pairs = [f"{name}={value}" for name, value in values.items() if value is not None]
    return f" [{', '.join(pairs)}]" if pairs else ""


_FONT = '"Helvetica,Arial,sans-serif"'
_START = '"__start__"'  # state ids start with a letter: no state has this id


def dot(procedure: Procedure, language: str = "fr") -> str:
    """The state machine as Graphviz DOT source (text ending with a newline)."""
    _check(language)
    lines = [
        f"digraph {dot_string(procedure.id)} {{",
        f'    graph [charset="UTF-8", rankdir=TB, fontname={_FONT}, fontsize=16, '
        f"labelloc=t, label={dot_string(procedure.title.get(language) or procedure.id)}];",
        f'    node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#333333", '
        f'fontcolor="{_INK}", fontname={_FONT}, fontsize=12];',
        f'    edge [color="#333333", fontcolor="{_INK}", fontname={_FONT}, fontsize=10];',
        f'    {_START} [shape=point, width=0.18, label="", color="{_INK}"];',
    ]
    for state in procedure.states.values():
        name = _state_name(state, language)
        attributes: dict[str, str | None] = {}
        if state.outcome:
            said = _outcome_word(state, language)
            name += f"\n({said})" if said else ""
            fill, border = COLOURS.get(state.outcome, ("#ffffff", "#333333"))
            attributes = {"style": '"filled"', "peripheries": "2", "fillcolor": f'"{fill}"',
                          "color": f'"{border}"', "penwidth": "1.5"}
        elif state.initial:
            attributes = {"penwidth": "2"}
        lines.append(f"    {dot_string(state.id)}"
                     f"{_attributes(label=dot_string(name), **attributes)};")
    lines.extend(f"    {_START} -> {dot_string(s.id)};"
                 for s in procedure.states.values() if s.initial)
    for edge in _edges(procedure, language):
        label = edge.label + (f"\n{edge.deadline}" if edge.deadline else "")  # and dashed
        style = '"dashed"' if edge.deadline else None
        lines.append(f"    {dot_string(edge.source)} -> {dot_string(edge.target)}"
                     f"{_attributes(label=dot_string(label), style=style)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- SVG (Graphviz) -----------------------------------------------------------------------------

def svg(procedure: Procedure, language: str = "fr") -> str:
    """The state machine as an SVG element (`<svg ...>...</svg>`, without XML prolog or
    doctype, ready to be inlined in HTML or written as a file), drawn by Graphviz.

    Raises DiagramUnavailable when Graphviz's `dot` is not on PATH, fails, takes longer than
    DOT_TIMEOUT seconds or writes more than MAX_SVG_BYTES."""
    return run_dot(dot(procedure, language))


def run_dot(source: str) -> str:
    """Graphviz's SVG for DOT `source`, trimmed to its `<svg>` element (see `svg`)."""
    program = shutil.which(DOT_PROGRAM)
    if program is None:
        raise DiagramUnavailable(
            f"Graphviz is not installed ({DOT_PROGRAM!r} not found on PATH): install it "
            "(e.g. apt-get install graphviz) or ask for Mermaid or DOT instead")
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        try:
            completed = subprocess.run(
                [program, "-Tsvg"], input=source.encode("utf-8"), stdout=output,
                stderr=errors, timeout=DOT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise DiagramUnavailable(
                f"Graphviz took longer than {DOT_TIMEOUT:g} seconds and was stopped") from None
        except OSError as exc:
            raise DiagramUnavailable(
                f"Graphviz could not be run: {exc.strerror or exc}") from None
        if completed.returncode != 0:
            errors.seek(0)
            said = " ".join(errors.read(2000).decode("utf-8", "replace").split())
            raise DiagramUnavailable(f"Graphviz failed (exit status {completed.returncode})"
                                     + (f": {said[:300]}" if said else ""))
        size = output.seek(0, 2)
        if size > MAX_SVG_BYTES:
            raise DiagramUnavailable(
                f"Graphviz wrote {size} bytes, more than the limit of {MAX_SVG_BYTES}")
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    start = text.find("<svg")
    if start < 0:
        raise DiagramUnavailable("Graphviz wrote no SVG")
    return text[start:].rstrip() + "\n"
