"""The one safe expression and template language: Jinja2 in its immutable sandbox.

Every `when:` and guard is a Jinja2 expression compiled once per procedure load; every
notification or issued document is a Jinja2 template. Undefined names are errors, both when
loading (names are checked against the declared fields and the built-ins) and when evaluating
(StrictUndefined). This is the only module of the engine that imports Jinja2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: Names every expression may use besides the declared fields (documented in the README).
BUILTINS: Mapping[str, str] = {
    "today": "the current date",
    "age": "age(date): whole years from that date until today",
    "fees_due": "the total of the fees that apply to the case, in XOF",
    "fees_paid": "the total paid on the case, in XOF",
    "documents": "a mapping: document id -> number of files attached",
}
#: Names templates may use besides fields, built-ins and the transition's input.
TEMPLATE_NAMES: Mapping[str, str] = {
    "reference": "the case reference, e.g. PAS-2026-000123-K",
    "procedure_title": "the procedure's title in the reader's language",
    "state": "the case's state after the transition",
}


def age(born: dt.date | str, today: dt.date | None = None) -> int:
    """Whole years between `born` and today."""
    if isinstance(born, str):
        born = dt.date.fromisoformat(born)
    today = today or dt.date.today()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class ExpressionError(Exception):
    """An expression or template cannot be compiled."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _parse(source: str) -> nodes.Expr:
    try:
        parser = Parser(_env, source, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise ExpressionError(f'unexpected "{token.value}" after the expression')
    except TemplateSyntaxError as exc:
        raise ExpressionError(_lower(exc.message or "invalid expression")) from None
    return tree


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _all(tree: nodes.Node, kind: type[nodes.Node]) -> list[Any]:
    """Every node of `kind` in `tree`, the root included (find_all skips the root)."""
    found: list[Any] = [tree] if isinstance(tree, kind) else []
    return found + list(tree.find_all(kind))


def _names(tree: nodes.Node) -> frozenset[str]:
    return frozenset(n.name for n in _all(tree, nodes.Name) if n.ctx == "load")


@dataclass(frozen=True)
class Expression:
    """A compiled `when:` expression. `holds` never raises: an error means False (refuse)."""

    source: str
    names: frozenset[str]
    tree: nodes.Expr = field(repr=False, compare=False)
    _run: Callable[..., Any] = field(repr=False, compare=False)
    ordered_names: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate with `context` (field values and built-ins); raises on any error."""
        return self._run(**context)

    def holds(self, context: Mapping[str, Any]) -> bool:
        """True only when the expression evaluates without error to a true value."""
        try:
            return bool(self.evaluate(context))
        except Exception:  # noqa: BLE001 - an expression that cannot be evaluated refuses
            return False

    def comparisons(self) -> Iterator[tuple[nodes.Expr, str, nodes.Expr]]:
        """Every binary comparison (left, operator, right) in the expression."""
        for compare in _all(self.tree, nodes.Compare):
            left = compare.expr
            for operand in compare.ops:
                yield left, operand.op, operand.expr
                left = operand.expr


def compile_expression(source: str) -> Expression:
    """Compile one expression; raises ExpressionError on a syntax error."""
    tree = _parse(source)
    try:
        run = _env.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:  # pragma: no cover - _parse catches these first
        raise ExpressionError(_lower(exc.message or "invalid expression")) from None
    names = _names(tree)
    return Expression(source, names, tree, run, tuple(sorted(names)))


@dataclass(frozen=True)
class Template:
    """A compiled message or document template (sandboxed; HTML ones autoescaped)."""

    source: str
    names: frozenset[str]
    _render: Callable[..., str] = field(repr=False, compare=False)

    def render(self, context: Mapping[str, Any]) -> str:
        return self._render(dict(context))


def compile_template(source: str, html: bool = False) -> Template:
    """Compile one template; raises ExpressionError (with its line as column 1) on syntax errors."""
    env = _html_env if html else _env
    try:
        tree = env.parse(source)
        compiled = env.from_string(source)
    except TemplateSyntaxError as exc:
        message = _lower(exc.message or "")
        raise ExpressionError(f"line {exc.lineno} of the template: {message}") from None
    assigned = {n.name for n in _all(tree, nodes.Name) if n.ctx in ("store", "param")}
    return Template(source, _names(tree) - assigned, compiled.render)


def literal_type(node: nodes.Node) -> str | None:
    """The type of a literal node: number, string, boolean, list or None when not a literal."""
    if isinstance(node, nodes.Const):
        value = node.value
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int | float):
            return "number"
        if isinstance(value, str):
            return "string"
        return None
    if isinstance(node, nodes.List | nodes.Tuple):
        return "list"
    return None


def name_of(node: nodes.Node) -> str | None:
    """The variable name of a Name node, else None."""
    return node.name if isinstance(node, nodes.Name) else None


def call_name(node: nodes.Node) -> str | None:
    """For `f(...)` where f is a plain name, that name."""
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
        return node.node.name
    return None


def constant(node: nodes.Node) -> Any:
    """The Python value of a literal node (lists of literals included)."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        return [constant(item) for item in node.items]
    return None

