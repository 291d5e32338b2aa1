"""The shipped JSON Schema is valid, and remembering valid definitions never hides an error.

engine/schema/__init__.py remembers the (definition, value) pairs it found valid so that a
re-check after an edit does not walk unchanged states and transitions again. These tests
check that the errors found with that memory are exactly those a plain validator finds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from engine import schema, source

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*ROOT.glob("tests/corpus*/*.yaml"), *ROOT.glob("procedures/*.yaml"),
                *ROOT.glob("examples/procedures/*.yaml")])


def test_the_schema_is_valid_against_the_meta_schema() -> None:
    Draft202012Validator.check_schema(schema.schema())


def _plain_errors(data: object) -> list[tuple[tuple[object, ...], str]]:
    validator = Draft202012Validator(schema.schema())
    return sorted(((tuple(e.absolute_path), str(e.validator)) for e in validator.iter_errors(data)),
                  key=repr)


def _remembered_errors(data: object) -> list[tuple[tuple[object, ...], str]]:
    found = schema._validator().iter_errors(data)
    return sorted(((tuple(e.absolute_path), str(e.validator)) for e in found), key=repr)


@pytest.fixture(scope="module")
def documents() -> dict[Path, source.Document]:
    """Every loadable file, each checked once so the memory holds all their valid parts."""
    loaded = {}
    for path in FILES:
        document, _ = source.load(path.read_bytes(), str(path))
        if document is not None:
            schema.check(document)
            loaded[path] = document
    return loaded


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_remembering_finds_what_a_plain_validator_finds(
        path: Path, documents: dict[Path, source.Document]) -> None:
    if path not in documents:
        pytest.skip("not loadable YAML: the schema is not consulted")
    document = documents[path]
    assert _remembered_errors(document.data) == _plain_errors(document.data)
    assert _remembered_errors(document.data) == _plain_errors(document.data)  # from memory


def test_a_value_made_invalid_is_checked_again() -> None:
    """A transition remembered as valid, then broken by an edit, is reported."""
    path = ROOT / "procedures" / "passport.yaml"
    document, _ = source.load(path.read_bytes(), str(path))
    assert document is not None
    schema.forget()
    assert schema.check(document) == []
    broken = dict(document.data)
    broken["transitions"] = [dict(t) for t in document.data["transitions"]]
    broken["transitions"][0]["to"] = 42
    edited = source.Document(document.path, broken, document.values, document.keys)
    assert [(d.rule, d.message) for d in schema.check(edited)] == [
        ("type", "expected a string, found 42")
    ]


def test_the_memory_is_bounded_in_size() -> None:
    memory = schema._Memory(entries=3, chars=100, longest=40)
    memory.add("x" * 41)
    assert "x" * 41 not in memory  # too long to keep
    for key in ("a" * 30, "b" * 30, "c" * 30):
        memory.add(key)
    assert memory.size == 90
    memory.add("d" * 30)  # 120 characters would be over 100: emptied first
    assert "a" * 30 not in memory and "d" * 30 in memory and memory.size == 30
    for key in ("e", "f", "g"):
        memory.add(key)
    assert "d" * 30 not in memory and "g" in memory  # over 3 entries: emptied first
