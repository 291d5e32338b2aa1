"""`guichet lsp` end to end: a real LSP client (pytest-lsp) drives the command over stdio."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("pygls")

import pytest_lsp  # noqa: E402 - only once pygls is known to be there
from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

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
    ("roles:\n  app", None),
    ("transitions:\n  - trigger: a\n    to: b  # com", None),
])
def test_the_kind_of_id_expected_is_read_from_the_lines_around(text: str, kind: str | None
                                                                ) -> None:
    from lsp.context import expected_kind
    lines = text.split("\n")
    assert expected_kind(lines, len(lines) - 1, len(lines[-1])) == kind
