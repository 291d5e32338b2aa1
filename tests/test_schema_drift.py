"""The published JSON Schema and the compiler accept exactly the same keys.

`tests/corpus_valid/kitchen_sink.yaml` uses every property of every object of the schema; the
compiler's builder is run on it while recording every key it reads. Then:
- every schema property is in the kitchen sink (so the next checks see all of them);
- every key of the kitchen sink is read by the compiler (nothing the schema allows is ignored);
- every key the compiler reads is a schema property (nothing it reads is refused by the schema).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import compile_source, compiler, source
from engine.schema import schema

KITCHEN_SINK = Path(__file__).resolve().parent / "corpus_valid" / "kitchen_sink.yaml"

#: Mappings whose keys are names chosen by the author (roles, states...), not schema properties.
NAMED_MAPPINGS = {
    ("roles",), ("states",), ("parties",),
    ("simulation", "staff"), ("simulation", "handling"), ("simulation", "delays"),
    ("simulation", "weights"), ("simulation", "lead_times"),
    ("states", "accepted", "follow_ups", 0, "carry"), ("transitions", 3, "opens", "carry"),
}

#: Keys the schema allows but the compiler never reads, as ("path", "pattern") with "*" for any
#: name or index. Each entry is drift to fix; remove it once the compiler reads the key.
KNOWN_UNREAD: set[tuple[str, str]] = set()

Pair = tuple[tuple[str | int, ...], str]


def _object_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield node
        for value in node.values():
            yield from _object_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _object_schemas(value)


def schema_properties() -> set[str]:
    names: set[str] = set()
    for obj in _object_schemas(schema()):
        names |= set(obj["properties"])
    return names


def document_keys(data: Any, path: tuple[str | int, ...] = ()) -> set[Pair]:
    """(path of the mapping, key) of every key in `data`, names of roles and states left out."""
    found: set[Pair] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if path not in NAMED_MAPPINGS:
                found.add((path, key))
            found |= document_keys(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found |= document_keys(value, (*path, index))
    return found


def _pattern(pair: Pair) -> tuple[str, str]:
    path, key = pair
    parts = ["*" if isinstance(p, int) or path[:i] in NAMED_MAPPINGS else str(p)
             for i, p in enumerate(path)]
    return ".".join(parts), key


class Recording(dict[str, Any]):
    """A mapping that logs (its path, key) on every `get`, `[key]` and `items()`.

    `items()` reads every key (templates are {language: text}); on NAMED_MAPPINGS it only
    enumerates names, which are not logged.
    """

    def __init__(self, data: dict[str, Any], path: tuple[str | int, ...], log: set[Pair]):
        super().__init__(data)
        self.path, self.log = path, log

    def _wrap(self, value: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(value, dict) and not isinstance(value, Recording):
            return Recording(value, path, self.log)
        if isinstance(value, list):
            return [self._wrap(item, (*path, i)) for i, item in enumerate(value)]
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.log.add((self.path, key))
        return self._wrap(super().get(key, default), (*self.path, key))

    def __getitem__(self, key: str) -> Any:
        self.log.add((self.path, key))
        return self._wrap(super().__getitem__(key), (*self.path, key))

    def items(self) -> Any:
        pairs = list(super().items())
        if self.path not in NAMED_MAPPINGS:
            self.log.update((self.path, k) for k, _ in pairs)
        return [(k, self._wrap(v, (*self.path, k))) for k, v in pairs]


def _plain(value: Any) -> Any:
    """The data under a Recording, read without logging (for the version hash)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in dict.items(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.fixture(scope="module")
def kitchen_sink() -> source.Document:
    document, diagnostics = source.load(KITCHEN_SINK.read_bytes(), str(KITCHEN_SINK))
    assert diagnostics == []
    assert document is not None
    return document


@pytest.fixture
def reads(kitchen_sink: source.Document, monkeypatch: pytest.MonkeyPatch) -> set[Pair]:
    """Every (path, key) the compiler's builder reads while building the kitchen sink."""
    expected, _ = compiler.compile_document(kitchen_sink)
    assert expected is not None
    log: set[Pair] = set()
    stray: list[dict[str, Any]] = []

    def recording_dict(value: Any) -> dict[str, Any]:
        if isinstance(value, Recording):
            return value
        if isinstance(value, dict):  # a mapping reached without a recorded path
            stray.append(value)
            return Recording(value, ("?",), log)
        return {}

    monkeypatch.setattr(compiler, "_dict", recording_dict)
    canonical_json = compiler.canonical_json
    monkeypatch.setattr(compiler, "canonical_json", lambda data: canonical_json(_plain(data)))
    top = Recording(kitchen_sink.data, (), log)
    procedure = compiler._Builder(dataclasses.replace(kitchen_sink, data=top)).procedure()
    assert procedure.id == "kitchen_sink"
    assert procedure.hash == expected.hash
    assert stray == []
    return log


def test_kitchen_sink_is_valid() -> None:
    procedure, diagnostics = compile_source(KITCHEN_SINK.read_bytes(), str(KITCHEN_SINK))
    assert [str(d) for d in diagnostics if d.severity == "error"] == []
    assert procedure is not None


def test_schema_has_properties_to_check() -> None:
    assert {"id", "transitions", "fr", "not_actor_of", "remind_before"} <= schema_properties()


def test_kitchen_sink_uses_every_schema_property(kitchen_sink: source.Document) -> None:
    used = {key for _, key in document_keys(kitchen_sink.data)}
    assert schema_properties() - used == set()


def test_kitchen_sink_uses_only_schema_properties(kitchen_sink: source.Document) -> None:
    used = {key for _, key in document_keys(kitchen_sink.data)}
    assert used - schema_properties() == set()


def test_compiler_reads_every_key_of_the_document(
    kitchen_sink: source.Document, reads: set[Pair]
) -> None:
    unread = {_pattern(pair) for pair in document_keys(kitchen_sink.data) - reads}
    assert unread == KNOWN_UNREAD


def test_compiler_reads_only_schema_properties(reads: set[Pair]) -> None:
    assert {key for _, key in reads} - schema_properties() == set()


def test_recording_sees_reads(reads: set[Pair]) -> None:
    """The recorder itself works: known reads at several depths are logged."""
    assert ((), "id") in reads
    assert (("authority",), "directorate") in reads
    assert (("states", "draft", "deadlines", 0, "reminder"), "subject") in reads
    assert (("transitions", 2, "separation"), "not_actor_of") in reads
    assert (("fields", 5, "fields", 0), "id") in reads
