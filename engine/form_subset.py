"""The `when:` conditions a form can evaluate in the browser, as the citizen types.

A form shows and hides its fields, documents, fees and options as their `when:` changes. The
browser evaluates the subset of the expression language authors use for that: comparisons
(`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`), `and`, `or`, `not`, literals (numbers,
texts, booleans, `none`, lists of them), field names, `today`, `age(field)` and
`documents.<id>` (files attached). `form_tree` reads a compiled expression into that subset
(a small tree of its own, independent of Jinja2), or says why it cannot; the rule
`form-expression` warns about the latter, and renderers/formjs.py compiles the former to
JavaScript. Outside the subset, the form always shows the element (the server decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import expressions as ex

#: The comparison operators of the subset (named as in `Expression.comparisons`).
OPERATORS = ("eq", "ne", "lt", "lteq", "gt", "gteq", "in", "notin")
#: Built-in names the form cannot know while it is filled.
_UNKNOWN_BUILTINS = {"fees_due": "the fees due", "fees_paid": "the amount paid"}
#: What the subset holds, in words (for diagnostics).
SUBSET = ("comparisons, and, or, not, in, literals, fields, today, age(field) and "
          "documents.<id>")


@dataclass(frozen=True)
class Literal:
    """A number, text, boolean or None."""

    value: Any


@dataclass(frozen=True)
class Items:
    """A list (or tuple) literal whose items are in the subset."""

    items: tuple[FormTree, ...]


@dataclass(frozen=True)
class Name:
    """A field (or step input) by id."""

    name: str


@dataclass(frozen=True)
class Today:
    """The current date."""


@dataclass(frozen=True)
class Age:
    """`age(field)`: whole years from the date in `field` until today."""

    field: str


@dataclass(frozen=True)
class Files:
    """`documents.<id>`: the number of files attached for that document."""

    document: str


@dataclass(frozen=True)
class Compare:
    operator: str  # one of OPERATORS
    left: FormTree
    right: FormTree


@dataclass(frozen=True)
class Logic:
    operator: str  # "and" or "or"
    left: FormTree
    right: FormTree


@dataclass(frozen=True)
class Not:
    operand: FormTree


FormTree = Literal | Items | Name | Today | Age | Files | Compare | Logic | Not


class Outside(Exception):
    """The expression uses something outside the subset; `reason` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def form_tree(expression: ex.Expression) -> FormTree:
    """The expression in the form's subset; raises Outside (with a reason) when it is not."""
    return _read(expression.tree)


def outside_reason(expression: ex.Expression) -> str | None:
    """Why the form cannot evaluate `expression` in the browser, or None when it can."""
    try:
        form_tree(expression)
    except Outside as exc:
        return exc.reason
    return None


def _read(node: ex.Node) -> FormTree:
    if ex.is_scalar(node):
        return Literal(ex.constant(node))
    minus = ex.negative(node)
    if minus is not None and ex.literal_type(minus) == "number":
        return Literal(-ex.constant(minus))
    items = ex.literal_items(node)
    if items is not None:
        return Items(tuple(_read(item) for item in items))
    negated = ex.negated(node)
    if negated is not None:
        return Not(_read(negated))
    logical = ex.logical(node)
    if logical is not None:
        operator, left, right = logical
        return Logic(operator, _read(left), _read(right))
    compared = ex.comparison(node)
    if compared is not None:
        left, operator, right = compared
        if operator not in OPERATORS:
            raise Outside(f'the comparison "{operator}"')
        return Compare(operator, _read(left), _read(right))
    if ex.call_name(node) is not None:
        return _call(node)
    chain = ex.attribute_chain(node)
    if chain is not None:
        return _chain(chain)
    raise Outside(f"something other than {SUBSET}")


def _call(node: ex.Node) -> FormTree:
    name = ex.call_name(node)
    arguments = ex.call_arguments(node)
    if name != "age":
        raise Outside(f'the function "{name}"')
    if arguments is None or len(arguments) != 1 or ex.name_of(arguments[0]) is None:
        raise Outside("age() of something other than one field")
    return Age(str(ex.name_of(arguments[0])))


def _chain(chain: tuple[str, ...]) -> FormTree:
    first = chain[0]
    if first == "documents":
        if len(chain) == 2:
            return Files(chain[1])
        raise Outside("documents other than documents.<id>")
    if len(chain) > 1:
        raise Outside(f'an attribute of "{first}"')
    if first == "today":
        return Today()
    if first in _UNKNOWN_BUILTINS:
        raise Outside(f'"{first}", {_UNKNOWN_BUILTINS[first]}, not known while the form is '
                      "filled")
    if first == "age":
        raise Outside('"age" without a field')
    return Name(first)
