"""The language server: pygls wiring of diagnostics, completion, definition, hover,
references and quick fixes.

Diagnostics are the complete checks of `guichet validate`, run on open at once and on
change after a short pause (DEBOUNCE seconds without typing). Completion, definition,
hover and references read the lines around the cursor (lsp.context), the ids of the text
(lsp.index) and where they are used (lsp.references); quick fixes read the diagnostics'
"did you mean" (lsp.quickfix).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import ServerTextPosition, ServerTextRange, TextDocument

from engine.expressions import BUILTINS
from lsp import context, diagnostics, index, quickfix, references

DEBOUNCE = 0.15
_ITEM_KIND = {
    "state": types.CompletionItemKind.EnumMember,
    "role": types.CompletionItemKind.Class,
    "field": types.CompletionItemKind.Field,
    "document": types.CompletionItemKind.File,
    "fee": types.CompletionItemKind.Value,
    "trigger": types.CompletionItemKind.Event,
    "input": types.CompletionItemKind.Field,
}
#: a string an expression has closed
_CLOSED_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
#: what an expression has written just before a document id: `documents.`, `documents["`
_DOCUMENT_KEY = re.compile(r"(?<![\w.])documents\s*(?:\.get\(\s*['\"]|\[\s*['\"]|\.\s*)\w*$")


@dataclass
class _Indexed:
    version: int | None
    current: index.Index
    loaded: index.Index | None     # the last index of a text that loaded (for its labels)


class GuichetServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("guichet", "0.1.0")
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.indexed: dict[str, _Indexed] = {}

    def lines(self, document: TextDocument) -> list[str]:
        return [line.rstrip("\r\n") for line in document.lines]

    def index_of(self, document: TextDocument) -> index.Index:
        """The ids of the document's current text (rebuilt once per version)."""
        known = self.indexed.get(document.uri)
        if known is not None and known.version == document.version:
            return known.current
        previous = known.loaded if known else None
        built = index.build(document.source, previous)
        self.indexed[document.uri] = _Indexed(document.version, built,
                                              built if built.loaded else previous)
        return built

    async def publish(self, uri: str, delay: float = 0.0) -> None:
        """Check the document (after `delay`) and publish its diagnostics, unless it has
        changed meanwhile (a newer check is then on its way)."""
        if delay:
            await asyncio.sleep(delay)
        document = self.workspace.get_text_document(uri)
        version, text, lines = document.version, document.source, self.lines(document)
        found = await asyncio.to_thread(diagnostics.check, text, document.path, lines)
        if self.workspace.get_text_document(uri).version != version:
            return
        for each in found:
            each.range = _client_range(document, each.range)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=found, version=version))

    def schedule(self, uri: str, delay: float) -> None:
        previous = self.pending.pop(uri, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.get_running_loop().create_task(self.publish(uri, delay))
        self.pending[uri] = task
        task.add_done_callback(lambda done: self._forget(uri, done))

    def _forget(self, uri: str, task: asyncio.Task[None]) -> None:
        if self.pending.get(uri) is task:
            del self.pending[uri]
        with contextlib.suppress(asyncio.CancelledError):
            if task.exception() is not None:
                self.window_log_message(types.LogMessageParams(
                    type=types.MessageType.Error, message=f"guichet: {task.exception()!r}"))

    def id_at(self, uri: str, position: types.Position
              ) -> tuple[index.Definition, types.Range] | None:
        """The declaration of the id under `position`, and the id's range there."""
        document = self.workspace.get_text_document(uri)
        lines = self.lines(document)
        where = document.position_from_client_units(position)
        if where.line >= len(lines):
            return None
        line = lines[where.line]
        words = (context.word_at(line, where.character),        # `a.b-c`, else `b` in it
                 context.identifier_at(line, where.character))
        for name, start, end in filter(None, words):
            kind = context.expected_kind(lines, where.line, start)
            found = self.index_of(document).find(name, kind)
            if found is not None:
                span = types.Range(start=types.Position(where.line, start),
                                   end=types.Position(where.line, end))
                return found, _client_range(document, span)
        return None


def _client_range(document: TextDocument, span: types.Range) -> types.Range:
    """A range in code points (as Python counts) in the client's units (UTF-16 by default)."""
    return document.range_to_client_units(ServerTextRange(
        ServerTextPosition(span.start.line, span.start.character),
        ServerTextPosition(span.end.line, span.end.character)))


server = GuichetServer()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: GuichetServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0.0)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: GuichetServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, DEBOUNCE)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: GuichetServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0.0)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: GuichetServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    task = ls.pending.pop(uri, None)
    if task is not None:
        task.cancel()
    ls.indexed.pop(uri, None)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=[" ", "[", ",", ".", "("]))
def completion(ls: GuichetServer, params: types.CompletionParams) -> types.CompletionList:
    """The ids of the kind expected at the cursor (state ids after `to:`, ...), or the
    names a `when:` expression may use there."""
    document = ls.workspace.get_text_document(params.text_document.uri)
    where = document.position_from_client_units(params.position)
    lines, ids = ls.lines(document), ls.index_of(document)
    expression = context.expression_before(lines, where.line, where.character)
    if expression is not None:
        return types.CompletionList(is_incomplete=False,
                                    items=_expression_items(ids, expression))
    kind = context.expected_kind(lines, where.line, where.character)
    items = [] if kind is None else [_item(each) for each in ids.ids(kind)]
    return types.CompletionList(is_incomplete=False, items=items)


def _item(declared: index.Definition) -> types.CompletionItem:
    return types.CompletionItem(label=declared.id, kind=_ITEM_KIND[declared.kind],
                                detail=declared.describe())


def _expression_items(ids: index.Index, expression: str) -> list[types.CompletionItem]:
    """What an expression may name where it ends: document ids after `documents.`, else
    the fields, the transitions' input ids and the built-ins (`today`, `age`...); nothing
    inside a string or after `.` or `|`."""
    code = expression.lstrip()
    code = code[1:] if code[:1] in ('"', "'") else code     # the value's own YAML quotes
    if _DOCUMENT_KEY.search(code):
        return [_item(each) for each in ids.ids("document")]
    bare = _CLOSED_STRING.sub("", code)
    if "'" in bare or '"' in bare or re.search(r"[.|]\s*\w*$", bare):
        return []
    names = [_item(each) for kind in ("field", "input") for each in ids.ids(kind)]
    return names + [types.CompletionItem(
        label=name, detail=meaning, kind=types.CompletionItemKind.Function if name == "age"
        else types.CompletionItemKind.Variable) for name, meaning in BUILTINS.items()]


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def definition(ls: GuichetServer, params: types.DefinitionParams) -> types.Location | None:
    """From an id to the line that declares it (a state's key, a field's `id:`...)."""
    found = ls.id_at(params.text_document.uri, params.position)
    if found is None:
        return None
    declared = found[0]
    document = ls.workspace.get_text_document(params.text_document.uri)
    span = _range((declared.line, declared.start, declared.end))
    return types.Location(uri=document.uri, range=_client_range(document, span))


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: GuichetServer, params: types.HoverParams) -> types.Hover | None:
    """An id's kind and label(s)."""
    found = ls.id_at(params.text_document.uri, params.position)
    if found is None:
        return None
    declared, span = found
    lines = [f"**{declared.kind}** `{declared.id}`", ""]
    lines += [f"- {text}" if lang == "all" else f"- {lang}: {text}"
              for lang, text in declared.labels]
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                                    value="\n".join(lines)), range=span)


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
def find_references(ls: GuichetServer, params: types.ReferenceParams) -> list[types.Location]:
    """Every use of the id under the cursor (from a use or from its declaration), and its
    declaration too when the client asks for it."""
    found = ls.id_at(params.text_document.uri, params.position)
    if found is None:
        return []
    declared = found[0]
    document = ls.workspace.get_text_document(params.text_document.uri)
    spans = references.uses(ls.index_of(document), declared)
    if params.context.include_declaration:
        spans = sorted([*spans, (declared.line, declared.start, declared.end)])
    return [types.Location(uri=document.uri, range=_client_range(document, _range(span)))
            for span in spans]


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
    code_action_kinds=[types.CodeActionKind.QuickFix]))
def code_action(ls: GuichetServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """For each of our diagnostics given that suggests a word ("did you mean"), a quick fix
    writing the suggestion in place of the wrong word."""
    document = ls.workspace.get_text_document(params.text_document.uri)
    lines = ls.lines(document)
    actions = []
    for diagnostic in params.context.diagnostics:
        fix = quickfix.suggestion(diagnostic.message)
        if diagnostic.source != diagnostics.SOURCE or fix is None:
            continue
        wrong, right = fix
        start = document.position_from_client_units(diagnostic.range.start)
        edits = [types.TextEdit(range=_client_range(document, _range(span)), new_text=right)
                 for span in quickfix.wrong_spans(lines, start.line, start.character, wrong)]
        if edits:
            actions.append(types.CodeAction(
                title=f'Replace "{wrong}" with "{right}"', kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic], is_preferred=True,
                edit=types.WorkspaceEdit(changes={document.uri: edits})))
    return actions


def _range(span: references.Span) -> types.Range:
    line, start, end = span
    return types.Range(start=types.Position(line, start), end=types.Position(line, end))


def main() -> None:
    """Serve over stdio until the client exits."""
    server.start_io()
