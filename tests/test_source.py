"""engine/source.py: the strict YAML loader (locations, refusals, YAML 1.1 surprises, bounds)."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import lint, load_procedure, source
from engine.analysis.scenarios import load_scenario, run_suite
from engine.errors import Diagnostic, Location, ProcedureError
from engine.source import (
    MAX_ALIASES,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_VALUES,
    Document,
    decode,
    load,
    read,
)

PATH = "p.yaml"

SAMPLE = """\
id: demo
roles:
  clerk:
    label: {fr: Agent, en: Clerk}
states: [draft,
         done]
"""


def loaded(text: str | bytes) -> Document:
    document, diagnostics = load(text, PATH)
    assert diagnostics == []
    assert document is not None
    return document


def problems(text: str | bytes) -> list[tuple[str, int, int, str]]:
    """(rule, line, column, message) of every diagnostic."""
    _, diagnostics = load(text, PATH)
    return [(d.rule, d.location.line, d.location.column, d.message) for d in diagnostics]


def rules(text: str | bytes) -> list[str]:
    return [rule for rule, *_ in problems(text)]


# --- locations ------------------------------------------------------------------------------------

def test_data_is_plain_json_like() -> None:
    document = loaded(SAMPLE)
    assert document.data == {
        "id": "demo",
        "roles": {"clerk": {"label": {"fr": "Agent", "en": "Clerk"}}},
        "states": ["draft", "done"],
    }


@pytest.mark.parametrize(
    ("path", "line", "column"),
    [
        ((), 1, 1),
        (("id",), 1, 5),
        (("roles",), 3, 3),
        (("roles", "clerk"), 4, 5),
        (("roles", "clerk", "label"), 4, 12),
        (("roles", "clerk", "label", "en"), 4, 28),
        (("states",), 5, 9),
        (("states", 0), 5, 10),
        (("states", 1), 6, 10),
    ],
)
def test_location_of_values(path: tuple[str | int, ...], line: int, column: int) -> None:
    assert loaded(SAMPLE).at(path) == Location(PATH, line, column)


@pytest.mark.parametrize(
    ("path", "line", "column"),
    [
        (("id",), 1, 1),
        (("roles",), 2, 1),
        (("roles", "clerk"), 3, 3),
        (("roles", "clerk", "label"), 4, 5),
        (("roles", "clerk", "label", "en"), 4, 24),
        (("states",), 5, 1),
    ],
)
def test_location_of_keys(path: tuple[str | int, ...], line: int, column: int) -> None:
    assert loaded(SAMPLE).key_at(path) == Location(PATH, line, column)


def test_missing_path_falls_back_to_nearest_parent() -> None:
    document = loaded(SAMPLE)
    assert document.at(("roles", "clerk", "description")) == Location(PATH, 4, 5)
    assert document.at(("nowhere", 3)) == Location(PATH, 1, 1)


def test_key_of_a_list_item_falls_back_to_the_value() -> None:
    assert loaded(SAMPLE).key_at(("states", 1)) == Location(PATH, 6, 10)


def test_text_input_is_accepted_like_bytes() -> None:
    assert loaded(SAMPLE).data == loaded(SAMPLE.encode()).data


# --- duplicate keys, merge keys, keys that are not names -----------------------------------------

def test_duplicate_key_is_reported_at_the_second_and_the_first_value_kept() -> None:
    text = "id: first\nversion: '1'\nid: second\n"
    document, diagnostics = load(text, PATH)
    assert [(d.rule, str(d.location), d.message) for d in diagnostics] == [
        ("duplicate-key", "p.yaml:3:1", 'duplicate key "id"; first defined on line 1')
    ]
    assert document is not None
    assert document.data == {"id": "first", "version": "1"}


def test_duplicate_key_in_nested_flow_mapping() -> None:
    assert problems("a:\n  b: {x: 1, y: 2, x: 3}\n") == [
        ("duplicate-key", 2, 19, 'duplicate key "x"; first defined on line 2')
    ]


def test_merge_key_is_refused() -> None:
    text = "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n"
    document, diagnostics = load(text, PATH)
    assert [(d.rule, d.location.line, d.location.column) for d in diagnostics] == [
        ("yaml-merge-key", 3, 3)
    ]
    assert document is not None
    assert document.data["other"] == {"y": 2}


def test_quoted_merge_key_is_an_ordinary_key() -> None:
    assert loaded("'<<': 1\n").data == {"<<": 1}


def test_non_scalar_key_is_refused_and_the_rest_kept() -> None:
    text = "a: 1\n? [x, y]\n: 2\nb: 3\n"
    document, diagnostics = load(text, PATH)
    assert [(d.rule, d.location.line, d.location.column) for d in diagnostics] == [
        ("yaml-key", 2, 3)
    ]
    assert document is not None
    assert document.data == {"a": 1, "b": 3}


# --- scalars: YAML 1.2 core, YAML 1.1 surprises reported ------------------------------------------

@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True), ("False", False), ("null", None), ("~", None), ("", None),
        ("0", 0), ("-12", -12), ("1.5", 1.5), ("-.5", -0.5), ("2e3x", "2e3x"),
        ("hello", "hello"), ("'no'", "no"), ('"010"', "010"),
        ("'1:20'", "1:20"), ("|\n  no\n", "no\n"), ("2026-01-31", "2026-01-31"),
    ],
)
def test_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    assert loaded(f"v: {text}\n").data == {"v": value}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("no", "boolean"), ("No", "boolean"), ("NO", "boolean"), ("yes", "boolean"),
        ("y", "boolean"), ("n", "boolean"), ("on", "boolean"), ("Off", "boolean"),
        ("010", "number"), ("1:20", "number"), ("190:20:30", "number"), ("1_000", "number"),
        ("0x1F", "number"),
    ],
)
def test_yaml_1_1_surprises_stay_text_and_are_reported(text: str, kind: str) -> None:
    document, diagnostics = load(f"v: {text}\n", PATH)
    assert document is not None
    assert document.data == {"v": text}  # never False, 8, 80, 1000...
    assert [(d.rule, d.severity, d.location.line, d.location.column) for d in diagnostics] == [
        ("yaml-ambiguous", "error", 1, 4)
    ]
    assert f'"{text}"' in diagnostics[0].message
    assert kind in diagnostics[0].message
    assert f"('{text}')" in diagnostics[0].message


def test_quoted_no_stays_text_without_diagnostic() -> None:
    assert loaded("country: 'no'\nanswer: \"no\"\n").data == {"country": "no", "answer": "no"}


def test_keys_are_always_text() -> None:
    document = loaded("1: a\ntrue: b\nnull: c\n")
    assert document.data == {"1": "a", "true": "b", "null": "c"}


# --- tags -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    [
        "v: !!python/object:os.system {}\n",
        "v: !!python/object/apply:os.system ['true']\n",
        "v: !!python/name:os.system ''\n",
        "v: !custom x\n",
        "v: !!binary aGVsbG8=\n",
        "v: !!set {a, b}\n",
        "v: !!timestamp 2026-01-01\n",
    ],
)
def test_unknown_tags_are_refused(text: str) -> None:
    document, diagnostics = load(text, PATH)
    assert document is None
    assert [(d.rule, d.location.line, d.location.column) for d in diagnostics] == [
        ("yaml-tag", 1, 4)
    ]


@pytest.mark.parametrize(
    ("text", "value", "advice"),
    [
        ("!!str off", "off", "quote the value"), ("!!bool true", True, "true or false"),
        ("!!bool yes", "yes", "true or false"), ("!!int 12", 12, "the number"),
        ("!!float 1.5", 1.5, "the number"), ("!!null ''", "", "leave the value empty"),
        ("!!seq [1]", [1], "the list"), ("!!map {x: 1}", {"x": 1}, "the mapping"),
    ],
)
@pytest.mark.parametrize("fast", [True, False], ids=["libyaml", "python"])
def test_standard_tags_are_one_error_each(text: str, value: object, advice: str,
                                          fast: bool) -> None:
    """The README says tags are errors: one per tag (no second one about the value), with
    what to write instead; the rest of the file is still checked."""
    document, diagnostics = load(f"v: {text}\nw: 1\n", PATH, fast=fast)
    assert document is not None
    assert document.data == {"v": value, "w": 1}
    assert [(d.rule, d.location.line, d.location.column) for d in diagnostics] == [
        ("yaml-tag", 1, 4)
    ]
    assert f'tag "{text.split()[0]}" is not allowed' in diagnostics[0].message
    assert advice in diagnostics[0].message


def _corpus_files() -> list[Path]:
    root = Path(__file__).resolve().parent.parent
    return sorted([*root.glob("tests/corpus*/*.yaml"), *root.glob("procedures/*.yaml"),
                   *root.glob("examples/procedures/*.yaml")])


@pytest.mark.skipif(not source.LIBYAML, reason="PyYAML without libyaml")
@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_libyaml_and_python_parsers_agree(path: Path) -> None:
    """The C parser (the default) and the pure-Python fallback give the same values, the same
    locations and the same diagnostics; only libyaml's wording of a syntax error may differ."""
    raw = path.read_bytes()
    fast, slow = load(raw, str(path), fast=True), load(raw, str(path), fast=False)

    def shape(loaded: tuple[Document | None, list[Diagnostic]]) -> object:
        document, diagnostics = loaded
        found = [(d.rule, d.location.line, d.location.column,
                  "" if d.rule == "yaml-syntax" else d.message) for d in diagnostics]
        kept = (document.data, document.values, document.keys) if document else None
        return kept, found

    assert shape(fast) == shape(slow)


# --- file level: empty, binary, encoding, size, BOM, not a mapping, syntax ------------------------

@pytest.mark.parametrize("raw", [b"", b"\n\n", b"# just a comment\n", b"   \n# x\n"])
def test_empty_file(raw: bytes) -> None:
    assert problems(raw) == [
        ("file-empty", 1, 1, "file is empty; a procedure starts with id, version, title, roles, "
                             "states and transitions")
    ]


def test_binary_file() -> None:
    assert rules(b"id: demo\n\x00\x00") == ["file-binary"]


def test_utf16_file_is_binary() -> None:
    assert rules("id: demo\n".encode("utf-16")) == ["file-binary"]


def test_non_utf8_file() -> None:
    assert problems("id: démo\n".encode("latin-1")) == [
        ("file-encoding", 1, 6, "file is not UTF-8 (byte 0xe9); save it as UTF-8")
    ]


def test_size_limit() -> None:
    at_limit = b"id: demo\n" + b"#" * (MAX_BYTES - 10) + b"\n"
    assert len(at_limit) == MAX_BYTES
    assert decode(at_limit, PATH)[1] == []
    over = at_limit + b"\n"
    text, diagnostics = decode(over, PATH)
    assert text is None
    assert [(d.rule, d.message) for d in diagnostics] == [
        ("file-size", f"file is {MAX_BYTES + 1} bytes; the limit is {MAX_BYTES} bytes")
    ]


def test_bom_is_accepted_and_does_not_shift_columns() -> None:
    document = loaded(b"\xef\xbb\xbfid: demo\nversion: '1'\n")
    assert document.data == {"id": "demo", "version": "1"}
    assert document.key_at(("id",)) == Location(PATH, 1, 1)
    assert document.at(("id",)) == Location(PATH, 1, 5)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("- a\n- b\n", "a list"),
        ("just text\n", 'the value "just text"'),
        ("42\n", 'the value "42"'),
    ],
)
def test_not_a_mapping(text: str, found: str) -> None:
    assert problems(text) == [
        ("not-a-mapping", 1, 1,
         f"a procedure must be a mapping of keys (id, title, states, ...); found {found}")
    ]


@pytest.mark.parametrize("fast", [True, False], ids=["libyaml", "python"])
def test_syntax_error_is_located(fast: bool) -> None:
    _, diagnostics = load("id: demo\ntitle: {fr: x\nversion: '1'\n", PATH, fast=fast)
    assert [(d.rule, d.location.line, d.location.column) for d in diagnostics] == [
        ("yaml-syntax", 3, 8)
    ]
    assert "expected ',' or '}'" in diagnostics[0].message
    assert diagnostics[0].message.endswith("(while parsing a flow mapping)")


def test_several_documents_are_a_syntax_error() -> None:
    assert rules("id: a\n---\nid: b\n") == ["yaml-syntax"]


def test_undefined_alias_is_a_syntax_error() -> None:
    assert problems("id: *nowhere\n") == [("yaml-syntax", 1, 5, "found undefined alias 'nowhere'")]


# --- bounds: depth, aliases, expansion ------------------------------------------------------------

def test_nesting_at_the_limit_is_accepted() -> None:
    depth = MAX_DEPTH - 1  # the root mapping is the first level
    expected: list[object] = []
    for _ in range(depth - 1):
        expected = [expected]
    assert loaded("a: " + "[" * depth + "]" * depth + "\n").data == {"a": expected}


def test_nesting_past_the_limit_is_refused() -> None:
    depth = MAX_DEPTH
    assert problems("a: " + "[" * depth + "]" * depth + "\n") == [
        ("yaml-depth", 1, 3 + depth, f"nesting deeper than {MAX_DEPTH} levels")
    ]


@pytest.mark.parametrize("opening", ["[", "{", "- "])
def test_ten_thousand_openings_give_one_diagnostic(opening: str) -> None:
    document, diagnostics = load(opening * 10_000, PATH)  # no RecursionError
    assert document is None
    assert [(d.rule, d.location.line) for d in diagnostics] == [("yaml-depth", 1)]


def test_deep_block_nesting_is_refused() -> None:
    text = "".join(" " * i + f"k{i}:\n" for i in range(MAX_DEPTH)) + " " * MAX_DEPTH + "v\n"
    assert rules(text) == ["yaml-depth"]


BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]"
       for prev, name in zip("abcdefgh", "bcdefghi", strict=True)]
) + "\n"


def test_alias_bomb_is_small() -> None:
    assert len(BOMB) < 400
    assert BOMB.count("*") < MAX_ALIASES  # refused for its expansion, not its alias count


def test_alias_bomb_is_refused_using_little_memory() -> None:
    tracemalloc.start()
    try:
        document, diagnostics = load(BOMB, PATH)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert document is None
    assert [d.rule for d in diagnostics] == ["yaml-alias-limit"]
    assert f"more than {MAX_VALUES} values" in diagnostics[0].message
    assert peak < 10 * 1024 * 1024


def test_recursive_alias_is_refused_at_the_alias() -> None:
    assert problems("a: &loop [1, *loop]\n") == [
        ("yaml-alias-limit", 1, 14, "an alias refers to the value that contains it")
    ]


def test_recursive_alias_in_a_mapping_is_refused() -> None:
    assert rules("a: &m {x: 1, self: *m}\n") == ["yaml-alias-limit"]


def test_too_many_aliases_are_refused() -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    assert problems(text) == [
        ("yaml-alias-limit", 2, 5 + 4 * MAX_ALIASES,
         f"more than {MAX_ALIASES} aliases; write the values out instead")
    ]


def test_a_few_aliases_are_fine() -> None:
    text = "a: &a [1, 2]\nb: " + "[" + ", ".join(["*a"] * MAX_ALIASES) + "]\n"
    document = loaded(text)
    assert document.data["b"] == [[1, 2]] * MAX_ALIASES


def test_expansion_just_under_the_limit_is_accepted() -> None:
    # the root, 2 keys and twice a list of `items` values (once through the alias): 19 985
    items = MAX_VALUES // 2 - 10
    text = "a: &a [" + ", ".join(["x"] * items) + "]\nb: *a\n"
    document = loaded(text)
    assert len(document.data["b"]) == items


def test_expansion_just_over_the_limit_is_refused() -> None:
    items = MAX_VALUES // 2
    text = "a: &a [" + ", ".join(["x"] * items) + "]\nb: *a\n"
    assert rules(text) == ["yaml-alias-limit"]


# --- robustness -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\xfd", b"\t", b"a: \x07", b"a: [", b"a: {", b"]", b"? ", b": :", b"&a", b"*a",
        b"a: &a", b"--- !!map", b"%YAML 1.1\n---\na: 1\n", b"%TAG ! tag:evil:\n--- !x 1\n",
        b"a: 'unterminated", b'a: "\\q"', b"- ? - ? - x", b"\xef\xbb\xbf", b"a:\n- b\n c",
    ],
)
def test_hostile_inputs_give_diagnostics_never_exceptions(raw: bytes) -> None:
    document, diagnostics = load(raw, PATH)
    assert document is not None or diagnostics
    assert all(d.severity == "error" for d in diagnostics)


# --- numbers: bounded digits, finite floats -------------------------------------------------------

@pytest.mark.parametrize("digits", [MAX_DIGITS + 1, 400, 5000])
def test_huge_integer_is_a_located_diagnostic(digits: int) -> None:
    # 5,000 digits ended in a ValueError traceback (Python reads at most 4,300 digits)
    text = "id: demo\namount: " + "9" * digits + "\n"
    assert problems(text) == [
        ("yaml-number", 2, 9, f"integer of {digits:,} digits; the limit is {MAX_DIGITS} digits "
                              "(quote it to mean text)")
    ]


def test_integer_at_the_digit_limit_is_read() -> None:
    assert loaded("a: -" + "9" * MAX_DIGITS + "\n").data == {"a": -int("9" * MAX_DIGITS)}


def test_quoted_huge_integer_is_text() -> None:
    assert loaded('a: "' + "9" * 5000 + '"\n').data == {"a": "9" * 5000}


@pytest.mark.parametrize("text", ["1e400", "-1e999", "9" * 400 + ".5"])
def test_float_read_as_infinity_is_refused(text: str) -> None:
    assert rules("a: " + text + "\n") == ["yaml-number"]


# --- files: only regular files, size checked before reading ---------------------------------------

def test_read_gives_the_bytes_of_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(SAMPLE.encode())
    assert read(path) == (SAMPLE.encode(), [])


def read_problems(path: str | Path) -> list[tuple[str, str]]:
    raw, diagnostics = read(path)
    assert raw is None
    return [(d.rule, d.message) for d in diagnostics]


def test_dev_zero_is_refused_at_once_without_reading() -> None:
    # `guichet validate /dev/zero` read until MemoryError
    tracemalloc.start()
    started = time.monotonic()
    try:
        found = read_problems("/dev/zero")
        diagnostics = lint(["/dev/zero"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == [("file-kind", "not a regular file: this is a character device")]
    assert [d.rule for d in diagnostics] == ["file-kind"]
    assert time.monotonic() - started < 1
    assert peak < 1024 * 1024


def test_directory_given_as_a_file_is_refused(tmp_path: Path) -> None:
    assert read_problems(tmp_path) == [("file-kind", "not a regular file: this is a directory")]
    with pytest.raises(ProcedureError) as refused:
        load_procedure(tmp_path)
    assert [d.rule for d in refused.value.diagnostics] == ["file-kind"]


def _without_hanging(function: Callable[[], object], fifo: Path) -> object:
    """Run `function` in a thread; if it blocks on the FIFO, unblock it and fail."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(function()), daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a writer lets open() return
        os.close(descriptor)
        worker.join(5)
        pytest.fail("reading a FIFO blocked")
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    # opening a FIFO with no writer blocked `guichet validate` for ever
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    assert _without_hanging(lambda: read_problems(fifo), fifo) == [
        ("file-kind", "not a regular file: this is a named pipe (FIFO)")]
    diagnostics = _without_hanging(lambda: lint([fifo]), fifo)
    assert [str(d) for d in diagnostics] == [  # type: ignore[attr-defined]
        f"{fifo}:1:1: error: not a regular file: this is a named pipe (FIFO) [file-kind]"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_guichet_test_refuses_a_fifo_among_scenarios_and_procedures(tmp_path: Path) -> None:
    # `guichet test` read scenario and procedure files with read_bytes(): a FIFO blocked it
    fifo = tmp_path / "scenario.yaml"
    os.mkfifo(fifo)
    scenario, diagnostics = _without_hanging(  # type: ignore[misc]
        lambda: load_scenario(fifo, {}), fifo)
    assert scenario is None and [d.rule for d in diagnostics] == ["file-kind"]
    suite = _without_hanging(lambda: run_suite([fifo]), fifo)
    assert [d.rule for d in suite.diagnostics] == ["file-kind"]  # type: ignore[attr-defined]


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    # a sparse 64 MiB file: refused from its size, never read into memory
    path = tmp_path / "huge.yaml"
    with path.open("wb") as stream:
        stream.truncate(64 * MAX_BYTES)
    tracemalloc.start()
    try:
        found = read_problems(path)
        diagnostics = lint([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = 64 * MAX_BYTES
    assert found == [("file-size", f"file is {size} bytes; the limit is {MAX_BYTES} bytes")]
    assert [d.rule for d in diagnostics] == ["file-size"]
    assert peak < 1024 * 1024


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    assert read_problems(tmp_path / "gone.yaml") == [
        ("file-unreadable", "cannot read file: no such file or directory")]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_file_without_permission_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(SAMPLE.encode())
    path.chmod(0)
    assert read_problems(path) == [("file-unreadable", "cannot read file: permission denied")]


@pytest.mark.parametrize("fast", [True, False], ids=["libyaml", "python"])
@pytest.mark.parametrize(("text", "line"), [
    ("id: demo\ntitle: x\ud800\n", 2),  # a str from an editor, not a file
    ('id: demo\ntitle: "\\ud800"\n', 2),
    ('id: "\\U00110000"\n', 1),
])
def test_text_that_is_not_unicode_is_one_diagnostic(text: str, line: int, fast: bool) -> None:
    document, diagnostics = load(text, PATH, fast=fast)
    assert [d.rule for d in diagnostics] == ["yaml-syntax"]
    assert diagnostics[0].location.line in (1, line)
    assert document is None or "\ud800" not in str(document.data) or diagnostics
