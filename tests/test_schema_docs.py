"""The published schema teaches: every property is documented, and fields are discriminated.

- Every property of every object schema (top level, `$defs`, nested) and every `$defs` entry
  has a plain `description`, a `markdownDescription` (what the editor shows on hover) in
  French and English, and examples that validate against it.
- A field's keys depend on its `type`: probing the schema with the documented examples shows
  which keys each type takes; every type refuses a key another type takes, and the engine
  reports such a key once, at the key, saying which types it is for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from engine import compile_source
from engine.schema import schema

Pointer = str


def _object_schemas(node: Any, pointer: Pointer = "") -> Iterator[tuple[Pointer, dict[str, Any]]]:
    """(JSON pointer, schema) of every object schema with properties, at any depth."""
    if isinstance(node, dict):
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            yield pointer, node
        for key, value in node.items():
            if key != "examples":  # data, not schemas
                yield from _object_schemas(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _object_schemas(value, f"{pointer}/{index}")


def documented() -> list[tuple[Pointer, Any]]:
    """Every property of every object schema, and every $defs entry."""
    found = [(f"{pointer}/properties/{name}", sub)
             for pointer, obj in _object_schemas(schema())
             for name, sub in obj["properties"].items()]
    found += [(f"/$defs/{name}", sub) for name, sub in schema()["$defs"].items()]
    return found


@cache
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(
        schema()["$id"], Resource.from_contents(schema()))
    return registry


def validator_at(pointer: Pointer) -> Draft202012Validator:
    """A validator of the subschema at `pointer` ($refs resolved in the whole schema)."""
    return Draft202012Validator({"$ref": f"{schema()['$id']}#{pointer}"}, registry=_registry())


DOCUMENTED = documented()


def test_every_object_and_nested_property_is_reached() -> None:
    pointers = {pointer for pointer, _ in DOCUMENTED}
    assert len(pointers) == len(DOCUMENTED) > 100
    assert {
        "/properties/id", "/properties/authority/properties/directorate",
        "/properties/parties/additionalProperties/properties/phone",
        "/properties/payment_methods/items/properties/id",
        "/$defs/fee/properties/amount/anyOf/1/properties/from",
        "/$defs/text/anyOf/2/properties/all", "/$defs/field/properties/min_age",
        "/$defs/identifier", "/$defs/expression", "/$defs/duration", "/$defs/text",
    } <= pointers


@pytest.mark.parametrize(("pointer", "subschema"), DOCUMENTED, ids=[p for p, _ in DOCUMENTED])
def test_property_is_documented_in_french_and_english(pointer: Pointer, subschema: Any) -> None:
    assert isinstance(subschema, dict)
    description = subschema.get("description")
    assert isinstance(description, str) and description.strip()
    markdown = subschema.get("markdownDescription")
    assert isinstance(markdown, str)
    french, separator, english = markdown.partition("\n\n**EN** ")
    assert separator, "markdownDescription is **FR** ...\\n\\n**EN** ..."
    assert french.startswith("**FR** ") and french.removeprefix("**FR** ").strip()
    assert english == description  # the English hover text is the description
    assert french.removeprefix("**FR** ") != english


@pytest.mark.parametrize(("pointer", "subschema"), DOCUMENTED, ids=[p for p, _ in DOCUMENTED])
def test_examples_validate_against_their_property(pointer: Pointer, subschema: Any) -> None:
    examples = subschema.get("examples")
    assert isinstance(examples, list) and examples
    check = validator_at(pointer)
    for example in examples:
        errors = [e.message for e in check.iter_errors(example)]
        assert errors == [], f"example {example!r} of {pointer}"


def test_a_wrong_example_would_be_caught() -> None:
    """The example check itself refuses what the property refuses."""
    assert not validator_at("/$defs/field/properties/min_age").is_valid("eighteen")
    assert not validator_at("/properties/reference_prefix").is_valid("pas")
    assert not validator_at("/$defs/text").is_valid({"all": "Lomé", "en": "Lome"})


# --- fields are discriminated by type ----------------------------------------------------------

FIELD = "/$defs/field"
FIELD_TYPES: list[str] = schema()["$defs"]["field"]["properties"]["type"]["enum"]
#: The keys of a field besides `type`, the discriminator.
FIELD_KEYS: list[str] = sorted(set(schema()["$defs"]["field"]["properties"]) - {"type"})


def _example(key: str) -> Any:
    return schema()["$defs"]["field"]["properties"][key]["examples"][0]


@cache
def minimal_field(field_type: str) -> dict[str, Any]:
    """A valid field of `field_type`: id, type and label, plus the keys the schema says it
    needs (with their documented example)."""
    field: dict[str, Any] = {"id": "f", "type": field_type, "label": {"fr": "F", "en": "F"}}
    for error in validator_at(FIELD).iter_errors(field):
        assert error.validator == "required", error.message
        field.update({key: _example(key) for key in error.validator_value if key not in field})
    assert validator_at(FIELD).is_valid(field)
    return field


@cache
def takers(key: str) -> frozenset[str]:
    """The field types whose minimal field stays valid with `key` added."""
    return frozenset(t for t in FIELD_TYPES
                     if validator_at(FIELD).is_valid({**minimal_field(t), key: _example(key)}))


def refused(field_type: str) -> list[str]:
    """The keys some other type takes and `field_type` refuses."""
    return [k for k in FIELD_KEYS if takers(k) and field_type not in takers(k)]


def test_common_keys_apply_to_every_type_and_the_others_are_discriminated() -> None:
    common = {k for k in FIELD_KEYS if takers(k) == frozenset(FIELD_TYPES)}
    assert {"id", "label", "hint", "required", "when"} <= common
    specific = set(FIELD_KEYS) - common
    assert specific, "no key depends on the type"
    for key in specific:
        assert takers(key), f"{key} is refused by every type"


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_each_type_refuses_a_key_of_another_type(field_type: str) -> None:
    assert refused(field_type), f"a {field_type} field takes every key"
    for key in refused(field_type):
        bad = {**minimal_field(field_type), key: _example(key)}
        assert not validator_at(FIELD).is_valid(bad)


def test_a_choice_field_refuses_min_age() -> None:
    assert "min_age" in refused("choice")
    assert takers("min_age") == {"date"}


def _procedure(fields: list[dict[str, Any]]) -> str:
    """A small valid procedure around `fields`, one key per line (JSON is YAML)."""
    data = {
        "id": "demo", "version": "1", "title": {"fr": "Démo", "en": "Demo"},
        "authority": {"ministry": {"fr": "Ministère", "en": "Ministry"}},
        "roles": {"applicant": {"label": {"fr": "Demandeur", "en": "Applicant"}},
                  "clerk": {"label": {"fr": "Agent", "en": "Clerk"}}},
        "start": {"roles": ["applicant"]},
        "fields": fields,
        "states": {"draft": {"label": {"fr": "Brouillon", "en": "Draft"}, "initial": True},
                   "done": {"label": {"fr": "Fini", "en": "Done"}, "final": "accepted"}},
        "transitions": [{"trigger": "submit", "from": "draft", "to": "done",
                         "roles": ["applicant"], "requires": {"fields": "all"}}],
    }
    return json.dumps(data, indent=2, ensure_ascii=False)


def _errors(text: str) -> list[Any]:
    return [d for d in compile_source(text, "p.yaml")[1] if d.severity == "error"]


def _line_of(text: str, key: str) -> int:
    """The line of `key` in the field "f" of `text`."""
    lines = text.splitlines()
    start = lines.index('      "id": "f",')
    return next(i for i, line in enumerate(lines[start:], start + 1)
                if line.startswith(f'      "{key}":'))


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_minimal_fields_compile(field_type: str) -> None:
    assert _errors(_procedure([minimal_field(field_type)])) == []


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_a_refused_key_is_one_error_at_the_key(field_type: str) -> None:
    for key in refused(field_type):
        text = _procedure([{**minimal_field(field_type), key: _example(key)}])
        errors = _errors(text)
        assert len(errors) == 1, [str(e) for e in errors]
        error = errors[0]
        assert error.rule == "field-constraint"
        assert error.location.line == _line_of(text, key)
        types = sorted(takers(key), key=FIELD_TYPES.index)
        expected = (", ".join(types[:-1]) + " and " + types[-1]) if len(types) > 1 else types[0]
        assert error.message.startswith(f'key "{key}" does not apply to ')
        assert f" {field_type} field; it is for {expected} fields" in error.message


def test_a_refused_key_with_a_wrong_value_is_still_one_error() -> None:
    key = refused("country")[0]
    text = _procedure([{**minimal_field("country"), key: {"not": "a valid value"}}])
    assert [(e.rule, e.location.line) for e in _errors(text)] == [
        ("field-constraint", _line_of(text, key))]


@pytest.mark.parametrize("field_type", [t for t in FIELD_TYPES
                                        if set(minimal_field(t)) > {"id", "type", "label"}])
def test_a_needed_key_missing_is_one_error(field_type: str) -> None:
    for key in set(minimal_field(field_type)) - {"id", "type", "label"}:
        field = {k: v for k, v in minimal_field(field_type).items() if k != key}
        errors = _errors(_procedure([field]))
        assert [(e.rule, e.message) for e in errors] == [
            ("field-constraint", f'{field_type} field "f" needs {key}')]


# --- editors offer a field only the keys of its type -------------------------------------------

def _branch_of(field_type: str) -> dict[str, Any]:
    """The `then` of the if/then/else chain of `field` that applies to `field_type`."""
    branch: Any = schema()["$defs"]["field"]
    while "if" in branch:
        if Draft202012Validator(branch["if"]).is_valid({"type": field_type}):
            then: dict[str, Any] = branch["then"]
            return then
        branch = branch["else"]
    raise AssertionError(f"no branch for {field_type}")


@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_completion_offers_only_the_keys_of_the_type(field_type: str) -> None:
    """Editors (YAML language server) skip `doNotSuggest` properties and offer those of the
    `then` that applies: a type-specific key is offered exactly for the types taking it."""
    base = schema()["$defs"]["field"]["properties"]
    offered = {k for k, v in _branch_of(field_type)["properties"].items() if isinstance(v, dict)}
    specific = {k for k in FIELD_KEYS if takers(k) != frozenset(FIELD_TYPES)}
    assert offered == {k for k in specific if field_type in takers(k)}
    assert {k for k in specific if base[k].get("doNotSuggest") is True} == specific
    for key in offered:  # annotations only: nothing is validated twice
        assert set(_branch_of(field_type)["properties"][key]) == {
            "description", "markdownDescription"}
        assert _branch_of(field_type)["properties"][key]["description"] == base[key]["description"]


def test_an_inlined_text_matches_the_text_definition() -> None:
    """A type-specific text (pattern_message) inlines `text`: editors move doNotSuggest away
    from beside a $ref."""
    base = schema()["$defs"]["field"]["properties"]
    for key, sub in base.items():
        if sub.get("doNotSuggest") and "anyOf" in sub:
            assert sub["anyOf"] == schema()["$defs"]["text"]["anyOf"], key
