"""The message catalogue (engine/messages.py, issue 8 point 6): every message a citizen or an
agent sees is there, in every shipped language, with the same placeholders in each; the code
asks for messages by id, every id it asks for exists and every message is asked for; and no
runtime module writes a bilingual literal any more.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import messages
from engine.errors import InvalidData, NotAllowed
from engine.messages import CATALOGUE, LANGUAGES, text
from engine.model import Text

ENGINE = Path(__file__).resolve().parent.parent / "engine"

#: Modules whose texts are not runtime messages, and why: they are not scanned.
OUT_OF_SCOPE = {
    "rules": "diagnostics of procedure files: English-only messages to authors",
    "compiler": "diagnostics of procedure files: English-only messages to authors",
    "source": "diagnostics of procedure files: English-only messages to authors",
    "explore": "an author's analysis tool (guichet explore), reports in English",
    "scenarios": "an author's test runner (guichet test), reports in English",
    "loadsim": "an author's load simulation (guichet simulate --load), reports in English",
}

#: Literal {"fr": ..., "en": ...} dicts that stay, by (module, enclosing function), and why.
ALLOWED_LITERALS = {
    ("forms", "_message"): "a field's own pattern_message: the procedure author's text, "
                           "in the procedure's languages (model.LANGUAGES)",
    ("effects", "_bilingual"): "titles and subjects of notifications and issued documents: "
                               "the procedure author's texts, in the procedure's languages",
}


def _placeholders(template: str) -> list[tuple[str, str | None, str]]:
    """(name, conversion, format spec) of each placeholder, sorted."""
    return sorted((name, conversion, spec or "")
                  for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None)


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(ENGINE.rglob("*.py")):
        relative = path.relative_to(ENGINE)
        if relative.parts[0] == "schema" or path.stem in OUT_OF_SCOPE or path.stem == "messages":
            continue
        yield path.stem, path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _text_calls(tree: ast.Module) -> Iterator[ast.Call]:
    """Calls of messages.text in a module: `text(...)` where it is imported from .messages
    (under any name), or `<messages module>.text(...)`."""
    names, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("messages"):
            names |= {a.asname or a.name for a in node.names if a.name == "text"}
        if isinstance(node, ast.ImportFrom) and node.module in (None, "engine"):
            modules |= {a.asname or a.name for a in node.names if a.name == "messages"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in names:
            yield node
        elif (isinstance(func, ast.Attribute) and func.attr == "text"
              and isinstance(func.value, ast.Name) and func.value.id in modules):
            yield node


def _used_ids() -> dict[str, list[str]]:
    """Each message id the engine asks for -> where (path:line)."""
    used: dict[str, list[str]] = {}
    for _, path, tree in _modules():
        for call in _text_calls(tree):
            where = f"{path.relative_to(ENGINE.parent)}:{call.lineno}"
            first = call.args[0] if call.args else None
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                f"{where}: text() takes a literal message id (so that it can be checked)")
            used.setdefault(first.value, []).append(where)
    return used


# --- the catalogue ------------------------------------------------------------------------------

def test_every_message_has_every_shipped_language_and_nothing_else() -> None:
    assert LANGUAGES[0] == messages.DEFAULT_LANGUAGE == "fr"
    for message_id, texts in CATALOGUE.items():
        assert set(texts) == set(LANGUAGES), message_id
        for language in LANGUAGES:
            assert texts[language].strip() == texts[language] != "", (message_id, language)


def test_every_language_has_the_same_placeholders() -> None:
    for message_id, texts in CATALOGUE.items():
        wanted = _placeholders(texts[LANGUAGES[0]])
        for language in LANGUAGES:
            assert _placeholders(texts[language]) == wanted, (message_id, language)


def test_placeholders_are_plain_names() -> None:
    """No positional, attribute or index fields and no nested ones: the only thing a text
    does with a value is show it (optionally as repr)."""
    for message_id, texts in CATALOGUE.items():
        for language, template in texts.items():
            for name, conversion, spec in _placeholders(template):
                assert name.isidentifier(), (message_id, language, name)
                assert conversion in (None, "r"), (message_id, language, conversion)
                assert spec == "", (message_id, language, spec)


def test_message_ids_are_stable_snake_case_names() -> None:
    for message_id in CATALOGUE:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", message_id), message_id


# --- the code and the catalogue agree ------------------------------------------------------------

def test_every_message_id_the_engine_uses_exists() -> None:
    used = _used_ids()
    assert used, "no call of messages.text found: has the call form changed?"
    unknown = {message_id: where for message_id, where in used.items()
               if message_id not in CATALOGUE}
    assert not unknown


def test_every_message_of_the_catalogue_is_used() -> None:
    dead = set(CATALOGUE) - set(_used_ids())
    assert not dead, f"messages nobody shows: {sorted(dead)}"


def test_no_bilingual_literal_is_left_in_the_runtime_modules() -> None:
    """A message is written in the catalogue only: no {"fr": ..., "en": ...} dict, no
    dict(fr=..., en=...), no helper taking `fr` and `en` texts."""
    found = []
    for stem, path, tree in _modules():
        for function, node in _walk_with_function(tree):
            where = f"{path.relative_to(ENGINE.parent)}:{getattr(node, 'lineno', 0)}"
            if (stem, function) in ALLOWED_LITERALS:
                continue
            if isinstance(node, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value in LANGUAGES for k in node.keys):
                found.append(where)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "dict" and {k.arg for k in node.keywords} & {*LANGUAGES}):
                found.append(where)
            elif (isinstance(node, ast.FunctionDef)
                  and {"fr", "en"} <= {a.arg for a in node.args.args}):
                found.append(where)
    assert not found, f"bilingual literals outside engine/messages.py: {found}"


def test_the_allowed_literals_still_exist() -> None:
    """An exception that is no longer needed is removed from ALLOWED_LITERALS."""
    functions = {(stem, node.name) for stem, _, tree in _modules() for node in ast.walk(tree)
                 if isinstance(node, ast.FunctionDef)}
    assert set(ALLOWED_LITERALS) <= functions


def _walk_with_function(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Every node with the name of the function it is in ("" at module level)."""
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    while stack:
        function, node = stack.pop()
        yield function, node
        inner = node.name if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else function
        stack.extend((inner, child) for child in ast.iter_child_nodes(node))


# --- text() -------------------------------------------------------------------------------------

def test_text_fills_placeholders_in_every_language() -> None:
    assert text("still_to_pay", owed=1500) == {"fr": "reste à payer : 1500 FCFA",
                                               "en": "still to pay: 1500 XOF"}
    assert text("unknown_case", reference="X-1") == {
        "fr": "aucun dossier ne porte la référence 'X-1'",
        "en": "no case has the reference 'X-1'"}
    assert text("case_closed") == {"fr": "ce dossier est clos", "en": "this case is closed"}


def test_values_are_inserted_never_interpreted() -> None:
    hostile = "{owed} {0} {__class__} {roles.__init__.__globals__} }{"
    assert text("roles_only", roles=hostile) == {"fr": f"réservé aux rôles : {hostile}",
                                                 "en": f"only for roles: {hostile}"}


def test_a_missing_or_unknown_value_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="still_to_pay"):
        text("still_to_pay")
    with pytest.raises(TypeError, match="case_closed"):
        text("case_closed", owed=1)
    with pytest.raises(KeyError):
        text("no_such_message")


def test_a_value_given_per_language_is_shown_in_each_language() -> None:
    label = Text(fr="Acte de naissance", en="Birth certificate")
    assert text("missing_document", label=label) == {
        "fr": "pièce manquante : Acte de naissance",
        "en": "missing document: Birth certificate"}
    nested = text("at_path", message=text("must_be_text"), path="members.0")
    assert nested == {"fr": "doit être un texte (en members.0)",
                      "en": "must be text (at members.0)"}
    assert text("missing_field", label={"fr": "Nom"}) == {
        "fr": "champ obligatoire manquant : Nom", "en": "missing field: Nom"}  # French fallback


def test_each_call_gives_a_new_dict() -> None:
    first = text("required")
    first["fr"] = "changed"
    assert text("required")["fr"] == "est obligatoire"


def test_a_third_language_is_a_column_of_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shipping e.g. Ewe for SMS: add "ee" to LANGUAGES and a text to every message; no
    code changes. (The texts here are stand-ins, not translations.)"""
    extended = {message_id: {**texts, "ee": f"[ee] {texts['en']}"}
                for message_id, texts in CATALOGUE.items()}
    monkeypatch.setattr(messages, "LANGUAGES", ("fr", "en", "ee"))
    monkeypatch.setattr(messages, "CATALOGUE", extended)
    closed = NotAllowed(text("case_closed"))
    assert closed.message("ee") == "[ee] this case is closed"
    assert closed.message("fr") == "ce dossier est clos"
    owed = text("still_to_pay", owed=500)
    assert owed["ee"] == "[ee] still to pay: 500 XOF"
    label = Text(fr="Nom", en="Name")  # a procedure in French and English only: French shown
    assert text("missing_field", label=label)["ee"] == "[ee] missing field: Nom"
    error = InvalidData(text("invalid_data"), {"name": text("required")})
    assert error.message("ee") == "[ee] Invalid data: name: [ee] is required"
