"""`guichet lsp` end to end: a real LSP client (pytest-lsp) drives the command over stdio."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

pytest.importorskip("pygls")

import pytest_lsp  # noqa: E402 - only once pygls is known to be there
from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

from engine import compile_source, rules  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PASSPORT = ROOT / "procedures" / "passport.yaml"
TEXT = PASSPORT.read_text(encoding="utf-8")
LINES = TEXT.splitlines()
TO_SUBMITTED = LINES.index("    to: submitted")           # the first transition, `submit`
SUBMITTED_KEY = LINES.index("  submitted:")


@pytest_lsp.fixture(
    scope="module",
    loop_scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "cli", "lsp"],      # `guichet lsp`
        server_env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])},
    ),
)
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=ROOT.as_uri()))
    yield
    await lsp_client.shutdown_session()


def _uri(name: str) -> str:
    return (ROOT / "procedures" / name).as_uri()


def _open(client: LanguageClient, uri: str, text: str) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="yaml", version=1,
                                             text=text)))


async def _diagnostics(client: LanguageClient, uri: str, rule: str | None = None,
                       timeout: float = 5.0) -> list[types.Diagnostic]:
    """The diagnostics published for `uri` (once one with `rule` is among them)."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(client.diagnostics.get(uri, ()))
        if uri in client.diagnostics and (rule is None or any(d.code == rule for d in found)):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no diagnostics {rule or ''} for {uri}: {found}")
        await asyncio.sleep(0.02)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_misspelled_state_is_reported_within_a_second_of_the_change(
        client: LanguageClient) -> None:
    uri = _uri("typo.yaml")
    _open(client, uri, TEXT)
    assert not [d for d in await _diagnostics(client, uri)
                if d.severity == types.DiagnosticSeverity.Error]
    typo = TEXT.replace("    to: submitted\n", "    to: submited\n", 1)
    started = time.monotonic()
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=typo)]))
    found = await _diagnostics(client, uri, "undefined-state", timeout=1.0)
    assert time.monotonic() - started < 1.0
    [wrong] = [d for d in found if d.code == "undefined-state"]
    assert wrong.source == "guichet"
    assert wrong.severity == types.DiagnosticSeverity.Error
    assert wrong.range == types.Range(start=types.Position(TO_SUBMITTED, 8),
                                      end=types.Position(TO_SUBMITTED, 16))
    assert '"submitted"' in wrong.message


@pytest.mark.asyncio(loop_scope="module")
async def test_completion_offers_the_state_ids_after_to(client: LanguageClient) -> None:
    uri = _uri("complete.yaml")
    # half-written lines: the text no longer loads (an open `[`), completion still reads it
    _open(client, uri, TEXT.replace("    to: submitted\n    roles: [applicant]\n",
                                    "    to: \n    roles: [appl\n", 1))
    found = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(TO_SUBMITTED, 8)))
    assert isinstance(found, types.CompletionList)
    labels = {item.label for item in found.items}
    assert {"draft", "submitted", "under_review", "issued"} <= labels
    assert "applicant" not in labels        # a role, not a state
    roles = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(TO_SUBMITTED + 1, len("    roles: ["))))
    assert isinstance(roles, types.CompletionList)
    assert "applicant" in {item.label for item in roles.items}
    assert await _diagnostics(client, uri, "yaml-syntax")


@pytest.mark.asyncio(loop_scope="module")
async def test_definition_and_hover_of_a_state_id(client: LanguageClient) -> None:
    uri = _uri("navigate.yaml")
    _open(client, uri, TEXT)
    on_value = types.Position(TO_SUBMITTED, 11)   # inside `submitted` of `to: submitted`
    found = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=on_value))
    assert found == types.Location(uri=uri, range=types.Range(
        start=types.Position(SUBMITTED_KEY, 2), end=types.Position(SUBMITTED_KEY, 11)))
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=on_value))
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    assert "state" in hover.contents.value and "Submitted" in hover.contents.value


@pytest.mark.parametrize("garbage", [
    "", "{{{: [", "\x00\x01\x02", "- - -\n  : :\n\t!!python/object x", "states:\n  a: [",
    "é" * 3 + "\n\U0001f600: {to: [", "a: &x [*x, *x]\n" * 50,
])
@pytest.mark.asyncio(loop_scope="module")
async def test_garbage_gives_diagnostics_not_a_crash(client: LanguageClient, garbage: str
                                                      ) -> None:
    uri = _uri(f"garbage{abs(hash(garbage))}.yaml")
    _open(client, uri, garbage)
    found = await _diagnostics(client, uri)
    assert found and all(d.source == "guichet" for d in found)
    for line in range(3):      # and the server still answers, wherever the cursor is
        for character in (0, 1, 5):
            position = types.Position(line, character)
            where = types.TextDocumentIdentifier(uri=uri)
            await client.text_document_completion_async(
                types.CompletionParams(text_document=where, position=position))
            await client.text_document_hover_async(
                types.HoverParams(text_document=where, position=position))
            await client.text_document_references_async(types.ReferenceParams(
                text_document=where, position=position,
                context=types.ReferenceContext(include_declaration=True)))
    assert not [m for m in client.log_messages if m.type == types.MessageType.Error]


@pytest.mark.parametrize(("text", "kind"), [
    ("transitions:\n  - trigger: a\n    requires: {fields: [bi", "field"),
    ("transitions:\n  - trigger: a\n    requires:\n      documents:\n        - ph", "document"),
    ("transitions:\n  - trigger: a\n    from:\n      - dr", "state"),
    ("transitions:\n  - {trigger: abandon, from: draft, to: expired, roles: [sy", "role"),
    ("transitions:\n  - trigger: a\n    notify:\n      - channel: sms\n        to: ag", "role"),
    ("fees:\n  - {id: x, amount: 5, due: su", "trigger"),
    ("states:\n  draft:\n    deadlines:\n      - {after: 30 days, trigger: ab", "trigger"),
    ("states:\n  draft:\n    editable: {roles: [agent], fields: [na", "field"),
    ("start:\n  on_behalf: [ag", "role"),
    ("read: [ag", "role"),
    ("fields:\n  - id: a\n    visible_to: [ag", "role"),
    ("fees:\n  - {id: x, amount: {from: nb", "field"),
    ("states:\n  a:\n    deadlines:\n      - after: {field: da", "field"),
    ("parties:\n  owner: {phone: ph", "field"),
    ("roles:\n  app", None),
    ("transitions:\n  - trigger: a\n    to: b  # com", None),
])
def test_the_kind_of_id_expected_is_read_from_the_lines_around(text: str, kind: str | None
                                                                ) -> None:
    from lsp.context import expected_kind
    lines = text.split("\n")
    assert expected_kind(lines, len(lines) - 1, len(lines[-1])) == kind


# --- references, quick fixes, completion in expressions ---------------------------------------

def _where(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


def _spans(pattern: str, name: str) -> set[tuple[int, int, int]]:
    """(line, start, end) of each `name` on the lines of TEXT matching `pattern`."""
    return {(row, found.start(), found.end()) for row, line in enumerate(LINES)
            if re.match(pattern, line) for found in re.finditer(rf"\b{name}\b", line)}


async def _references(client: LanguageClient, uri: str, position: types.Position,
                      declaration: bool) -> set[tuple[int, int, int]]:
    found = await client.text_document_references_async(types.ReferenceParams(
        text_document=_where(uri), position=position,
        context=types.ReferenceContext(include_declaration=declaration)))
    assert found is not None and all(each.uri == uri for each in found)
    assert all(each.range.start.line == each.range.end.line for each in found)
    return {(each.range.start.line, each.range.start.character, each.range.end.character)
            for each in found}


@pytest.mark.asyncio(loop_scope="module")
async def test_references_of_a_state_are_its_from_and_to(client: LanguageClient) -> None:
    uri = _uri("references.yaml")
    _open(client, uri, TEXT)
    uses = _spans(r"    (from|to): ", "submitted")
    assert (TO_SUBMITTED, 8, 17) in uses and len(uses) == 4   # one `to:`, three `from:`
    on_declaration = types.Position(SUBMITTED_KEY, 4)
    assert await _references(client, uri, on_declaration, declaration=False) == uses
    on_use = types.Position(TO_SUBMITTED, 11)          # not the "unless submitted." of a text
    assert await _references(client, uri, on_use, declaration=True) == \
        uses | {(SUBMITTED_KEY, 2, 11)}
    rejected = _spans(r"    to: ", "rejected")          # not `final: rejected`, an outcome
    assert len(rejected) == 2 and _spans(r"    final: ", "rejected")
    found = await _references(client, uri, types.Position(LINES.index("  rejected:"), 2),
                              declaration=False)
    assert found == rejected


@pytest.mark.asyncio(loop_scope="module")
async def test_references_while_a_line_is_half_written(client: LanguageClient) -> None:
    uri = _uri("references_typing.yaml")
    assert LINES[TO_SUBMITTED + 1] == "    roles: [applicant]"
    _open(client, uri, TEXT.replace("    to: submitted\n    roles: [applicant]\n",
                                    "    to: submitted\n    roles: [applicant\n", 1))
    assert await _diagnostics(client, uri, "yaml-syntax")       # the text does not load
    found = await _references(client, uri, types.Position(SUBMITTED_KEY, 4), declaration=True)
    assert found == _spans(r"    (from|to): ", "submitted") | {(SUBMITTED_KEY, 2, 11)}


@pytest.mark.asyncio(loop_scope="module")
async def test_references_of_a_field_are_in_expressions_and_templates(
        client: LanguageClient) -> None:
    uri = _uri("references_field.yaml")
    _open(client, uri, TEXT)
    declared = LINES.index("  - id: birth_date")
    in_when = _spans(r"\s+when: age\(birth_date\)", "birth_date")
    in_templates = _spans(r".*\{\{ birth_date \}\}", "birth_date")
    assert len(in_when) >= 10 and len(in_templates) == 2
    found = await _references(client, uri, types.Position(declared, 10), declaration=False)
    assert found == in_when | in_templates


@pytest.mark.parametrize(("right", "wrong", "rule"), [
    ("    to: submitted\n", "    to: submited\n", "undefined-state"),
    ("\ntitle:\n", "\ntitel:\n", "unknown-key"),
    ("    when: age(birth_date) >= 18\n", "    when: age(birth_dat) >= 18\n", "undeclared-name"),
])
@pytest.mark.asyncio(loop_scope="module")
async def test_the_did_you_mean_quick_fix_makes_the_file_validate(
        client: LanguageClient, right: str, wrong: str, rule: str) -> None:
    uri = _uri(f"quickfix_{rule}.yaml")
    typo = TEXT.replace(right, wrong, 1)
    _open(client, uri, typo)
    [diagnostic] = [d for d in await _diagnostics(client, uri, rule) if d.code == rule]
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=_where(uri), range=diagnostic.range,
        context=types.CodeActionContext(diagnostics=[diagnostic])))
    assert actions is not None
    [action] = actions
    assert isinstance(action, types.CodeAction)
    assert action.kind == types.CodeActionKind.QuickFix
    assert list(action.diagnostics or ()) == [diagnostic]
    assert action.edit is not None and action.edit.changes is not None
    fixed = _apply(typo, action.edit.changes[uri])
    assert fixed == TEXT
    _, found = compile_source(fixed, str(PASSPORT))
    assert not [d for d in found if d.severity == "error"]


def _apply(text: str, edits: Sequence[types.TextEdit]) -> str:
    """`text` with `edits` made (one-line ranges; the texts here are all in the BMP)."""
    lines = text.split("\n")
    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character),
                       reverse=True):
        start, end = edit.range.start, edit.range.end
        assert start.line == end.line
        line = lines[start.line]
        lines[start.line] = line[:start.character] + edit.new_text + line[end.character:]
    return "\n".join(lines)


@pytest.mark.parametrize("message", [
    rules.unknown("state", "submited", ["submitted", "draft"]),
    rules.unknown("name", "birth_dat", ["birth_date"]) + " in: age(birth_dat) >= 18",
])
def test_the_suggestion_is_read_from_the_engine_s_message(message: str) -> None:
    from lsp.quickfix import suggestion
    assert suggestion(message) in (("submited", "submitted"), ("birth_dat", "birth_date"))
    assert suggestion(rules.unknown("state", "zzz", ["submitted"])) is None   # nothing close
    assert suggestion('"x" is not one of a, b') is None


@pytest.mark.asyncio(loop_scope="module")
async def test_completion_in_a_when_expression_offers_the_names_it_may_use(
        client: LanguageClient) -> None:
    uri = _uri("complete_when.yaml")
    row = LINES.index("    when: request_type == 'renewal'")
    written = ["    when: ", "    when: age(", "    when: documents.", "    when: sex == 'fe"]
    _open(client, uri, "\n".join([*LINES[:row], *written, *LINES[row + 1:]]))
    offered = []
    for number, line in enumerate(written):
        found = await client.text_document_completion_async(types.CompletionParams(
            text_document=_where(uri), position=types.Position(row + number, len(line))))
        assert isinstance(found, types.CompletionList)
        offered.append({item.label: item.detail for item in found.items})
    names, in_call, documents, in_string = offered
    assert {"request_type", "birth_date", "holder_verified", "today", "age"} <= set(names)
    assert "Date of birth" in (names["birth_date"] or "")
    assert not {"submitted", "agent", "photos"} & set(names)   # a state, a role, a document
    assert "birth_date" in in_call
    assert "photos" in documents and "birth_date" not in documents
    assert in_string == {}


@pytest.mark.parametrize(("code", "kind", "found"), [
    ("documents.photo > 0 and documents['photo']", "document", [10, 35]),
    ("photo == 'photo' and x.photo and y | photo", "field", [0]),
    ("{{ photo }} photo {% if photo %}", "field", []),
])
def test_names_an_expression_reads(code: str, kind: str, found: list[int]) -> None:
    from lsp.references import names_in
    template = code.startswith("{")
    assert [start for _, start, _ in names_in([(0, 0, code)], kind, "photo", template)] == \
        ([3, 24] if template else found)


class _CountedLines(list[str]):
    """Lines that count how many times a line is read (by index, slice or iteration)."""

    reads = 0

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        found = super().__getitem__(index)
        self.reads += len(found) if isinstance(index, slice) else 1
        return found

    def __iter__(self):  # type: ignore[no-untyped-def]
        for line in super().__iter__():
            self.reads += 1
            yield line


@pytest.mark.parametrize("size", [500, 2000])
def test_references_in_a_text_that_does_not_load_read_each_line_a_few_times(size: int
                                                                             ) -> None:
    """Finding the uses of an id in a text being typed reads each line a bounded number of
    times (it read every line above each top-level or blank line, and above each use in a
    long block: quadratic, seconds on a few thousand lines, the server frozen meanwhile)."""
    from lsp import index, references
    uses = "".join(f'  - requires: {{fields: [request_type]}}\n    when: request_type == "{n}"\n'
                   for n in range(size))
    tops = "".join(f"x{n}: 1\n\n" for n in range(size))
    scanned = index.build(f"{TEXT}\nextra:\n{uses}{tops}broken: [\n")
    assert scanned.document is None
    declared = scanned.definitions["field"]["request_type"]
    counted = _CountedLines(scanned.lines)
    scanned.lines = counted
    found = references.uses(scanned, declared)
    first = len(LINES) + 2
    assert {(row, start) for row, start, _ in found if row >= first} == \
        {(first + 2 * n, 24) for n in range(size)} | {(first + 2 * n + 1, 10) for n in range(size)}
    assert counted.reads <= 4 * len(counted), f"{counted.reads} reads of {len(counted)} lines"


def test_the_outline_finds_the_keys_above_as_the_lines_above_do() -> None:
    from lsp.context import Outline, _ancestors
    lines = [*LINES, "  # a comment: x", "", "   - {a: [b", "x:", "  - y: z", "      w:"]
    outline = Outline(lines)
    for row in range(len(lines) + 1):
        for indent in range(12):
            assert outline.ancestors(row, indent) == _ancestors(lines, row, indent)
