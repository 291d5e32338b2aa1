"""Links between procedures: the follow-up cases one opens or offers (`opens:`, `follow_ups:`).

The rules check a file alone; a follow-up names another procedure, so it is checked where
procedures are known together: `lint` over several files (an unknown procedure is a warning
there, the files checked may be a part only) and the Engine, which refuses to start with a
follow-up it could not open (an error).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from .errors import Diagnostic, Location, Severity
from .model import Field, FollowUp, Procedure
from .source import Document

#: Field types a carried value may move between (the child's form validates it again).
_COMPATIBLE = {frozenset({"string", "text"}), frozenset({"integer", "number"})}


def follow_ups(p: Procedure) -> Iterator[FollowUp]:
    """Every follow-up a procedure opens or offers."""
    for state in p.states.values():
        yield from state.follow_ups
    yield from (t.opens for t in p.transitions if t.opens)


def check(procedures: Iterable[tuple[Procedure, Document | None]], unknown: Severity
          ) -> list[Diagnostic]:
    """Diagnostics of the follow-ups of `procedures` (each with its source document when
    known, for line numbers): a procedure not among them (`unknown` severity), a carried
    field the follow-up does not have, or of another type."""
    given = list(procedures)
    known = {p.id: p for p, _ in given}
    found = []
    for p, document in given:
        for link in follow_ups(p):
            found += _link_problems(p, document, link, known.get(link.procedure), unknown)
    return found


def _link_problems(p: Procedure, document: Document | None, link: FollowUp,
                   child: Procedure | None, unknown: Severity) -> list[Diagnostic]:
    def at(path: tuple[str | int, ...]) -> Location:
        return document.at(path) if document else Location(p.source_path or p.id)

    if child is None:
        return [Diagnostic(at((*link.path, "procedure")), unknown, "follow-up",
                           f'follow-up procedure "{link.procedure}" is not among the '
                           "procedures loaded")]
    return [Diagnostic(at((*link.path, "carry", target)), "error", "follow-up", problem)
            for target, problem in _carry_problems(p, child, link)]


def _carry_problems(parent: Procedure, child: Procedure, link: FollowUp
                    ) -> Iterator[tuple[str, str]]:
    fields = {f.id: f for f in child.fields}
    sources = _data_fields(parent)
    for target, source in link.carry:
        if target not in fields:
            yield target, f'procedure "{child.id}" has no field "{target}"'
        elif source in sources and not _compatible(sources[source], fields[target]):
            yield target, (f'"{source}" ({sources[source].type}) cannot fill "{target}" '
                           f'({fields[target].type}) of procedure "{child.id}"')
        elif source in sources and not _as_protected(sources[source], fields[target]):
            yield target, (f'"{source}" is protected (sensitive, visible_to) and would be '
                           f'less so in "{target}" of procedure "{child.id}": mark it at least '
                           "as much")


def _data_fields(p: Procedure) -> Mapping[str, Field]:
    return {f.id: f for f in (*p.fields, *(i for t in p.transitions for i in t.input))}


def _as_protected(source: Field, target: Field) -> bool:
    """Whether a value carried from `source` stays at least as protected in `target`:
    sensitive if it was, seen by no role it was not (role names, as each procedure names
    them)."""
    if source.sensitive and not target.sensitive:
        return False
    if source.visible_to:
        return bool(target.visible_to) and set(target.visible_to) <= set(source.visible_to)
    return True


def _compatible(source: Field, target: Field) -> bool:
    return source.type == target.type or frozenset({source.type, target.type}) in _COMPATIBLE
