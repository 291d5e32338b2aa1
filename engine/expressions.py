"""The one safe expression and template language: Jinja2 in its immutable sandbox, bounded.

Every `when:` and guard is a Jinja2 expression compiled once per procedure load; every
notification or issued document is a Jinja2 template. Undefined names are errors, both when
loading (names are checked against the declared fields and the built-ins) and when evaluating
(StrictUndefined). This is the only module of the engine that imports Jinja2.

Nothing an author writes may run away with memory or time:
- the operators that can build big values (`+`, `*`, `**`, `%`) are intercepted, which also
  stops Jinja2 from computing them while compiling, and refuse a result over MAX_SIZE
  characters or items (nested values counted) or an integer over MAX_DIGITS digits; so do
  `~`, list and mapping literals, every filter and every call (`'a'|center(n)`,
  `s.ljust(n)`, `'{:>9999999}'.format(x)`...), checked before the value is built;
- a constant computation over a limit (`'a' * 10**9`) is refused when the file is loaded
  (ExpressionLimit, reported as `expression-limit`);
- one evaluation or rendering may do at most MAX_WORK steps (characters built or printed,
  loop iterations, calls) and last at most EVALUATE_SECONDS or RENDER_SECONDS, checked in
  every loop iteration, call, attribute access and operator; a rendered text longer than
  its template's `max_chars` is an error, never a truncated or a 1 GB message.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import math
import operator
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes, pass_context
from jinja2 import Template as JinjaTemplate
from jinja2.environment import TemplateExpression
from jinja2.parser import Parser
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

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
    "state_label": "the label of that state in the reader's language",
}
#: Names a deadline's reminder template may also use.
REMINDER_NAMES: Mapping[str, str] = {
    "due_date": "the date the reminded deadline falls",
}
#: The filter printing a choice's option label instead of its value: `{{ x | label }}`.
LABEL_FILTER = "label"
#: The key of a template's rendering context holding the procedure's option labels in the
#: language being rendered, {field id: {option value: label}} (what `label` reads).
OPTION_LABELS = "guichet_option_labels"

# --- the limits (documented in the README) -----------------------------------------------------

#: Largest value an operator, filter, call or literal may build, or a `{{ }}` may print:
#: characters of a text, items of a list or mapping, nested values counted.
MAX_SIZE = 100_000
#: Most decimal digits of an integer an operator may build or an expression may write.
MAX_DIGITS = 100
#: Most work in one evaluation or rendering: characters and items built or printed, plus one
#: per loop iteration, call and operator.
MAX_WORK = 1_000_000
#: Longest text a notification template may render, in characters (64 KiB).
MAX_NOTIFICATION_CHARS = 65_536
#: Longest text an issued-document template may render, in characters (256 KiB).
MAX_DOCUMENT_CHARS = 262_144
#: Longest time one template may take to render, in seconds.
RENDER_SECONDS = 2.0
#: Longest time one expression may take to evaluate (and its constant parts to be checked
#: when the file is loaded), in seconds.
EVALUATE_SECONDS = 1.0


def age(born: dt.date | str, today: dt.date | None = None) -> int:
    """Whole years between `born` and today."""
    if isinstance(born, str):
        born = dt.date.fromisoformat(born)
    today = today or dt.date.today()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class ExpressionError(Exception):
    """An expression or template cannot be compiled."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ExpressionLimit(ExpressionError):
    """An expression or template goes over a size or time limit, when loaded or when run.

    `line` is the template line of a constant found over a limit when loading, if known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


# --- sizes and the budget of one evaluation ----------------------------------------------------

def _size(value: Any, limit: int = MAX_SIZE) -> int:
    """Characters and items in `value`, nested values included; stops counting past `limit`."""
    if type(value) is str:  # the common case, printed text: no walk
        return max(len(value), 1)
    total, pending = 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        total += max(len(item), 1) if isinstance(item, str | bytes) else 1
        if isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
    return total


def _is_int(value: Any) -> bool:
    return isinstance(value, int)  # booleans included: True * 'a' is 'a'


def _digits(number: int) -> int:
    """Decimal digits of `number` (an upper bound, without converting it to text)."""
    return int(abs(number).bit_length() * math.log10(2)) + 1


def _refuse(message: str) -> ExpressionLimit:
    return ExpressionLimit(message)


def _too_big(what: str, size: int) -> ExpressionLimit:
    return _refuse(f"{what} would build a value of {size:,} characters or items; "
                   f"the limit is {MAX_SIZE:,}")


@dataclass
class _Budget:
    """What one evaluation or rendering may still spend."""

    seconds: float
    deadline: float
    work: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("guichet_budget",
                                                                         default=None)


def _spend(work: int = 1) -> None:
    """Count `work` against the running evaluation; raise past MAX_WORK or the deadline."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.work += work
    if budget.work > MAX_WORK:
        raise _refuse(f"more than {MAX_WORK:,} steps and characters of work")
    if time.monotonic() > budget.deadline:
        raise _refuse(f"took longer than {budget.seconds:g} s")


def _produced(value: Any, what: str = "this") -> Any:
    """Check a value just built against MAX_SIZE and MAX_DIGITS, count it, and return it."""
    if _is_int(value):
        if _digits(value) > MAX_DIGITS:
            raise _refuse(f"{what} would build a number of more than {MAX_DIGITS} digits")
        _spend()
        return value
    size = _size(value)
    if size > MAX_SIZE:
        raise _refuse(f"{what} would build a value of more than {MAX_SIZE:,} characters or "
                      "items")
    _spend(size)
    return value


def _run_bounded(seconds: float, function: Callable[[], Any]) -> Any:
    """Call `function` with a fresh budget of `seconds` and MAX_WORK."""
    token = _BUDGET.set(_Budget(seconds, time.monotonic() + seconds))
    try:
        return function()
    finally:
        _BUDGET.reset(token)


# --- operators ---------------------------------------------------------------------------------

_BOUNDED_OPERATORS: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "*": operator.mul, "**": operator.pow, "%": operator.mod,
}
_OTHER_OPERATORS: Mapping[str, Callable[[Any, Any], Any]] = {
    "-": operator.sub, "/": operator.truediv, "//": operator.floordiv,
}


def binop(symbol: str, left: Any, right: Any) -> Any:
    """`left <symbol> right` for + * ** %, refused before it builds anything over the limits."""
    if symbol == "+":
        _check_sum(left, right)
    elif symbol == "*":
        _check_product(left, right)
    elif symbol == "**":
        _check_power(left, right)
    elif symbol == "%" and isinstance(left, str):
        _check_printf(left, right)
    return _produced(_BOUNDED_OPERATORS[symbol](left, right), f'"{symbol}"')


def _is_sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _check_sum(left: Any, right: Any) -> None:
    if _is_sequence(left) and _is_sequence(right):
        size = _size(left) + _size(right)
        if size > MAX_SIZE:
            raise _too_big('"+"', size)


def _check_product(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        if _digits(left) + _digits(right) > MAX_DIGITS + 1:
            raise _refuse(f'"*" would build a number of more than {MAX_DIGITS} digits')
        return
    for sequence, count in ((left, right), (right, left)):
        if _is_sequence(sequence) and _is_int(count) and count > 0:
            size = _size(sequence) * count
            if size > MAX_SIZE:
                raise _too_big('"*"', size)


def _check_power(base: Any, exponent: Any) -> None:
    if not (_is_int(base) and _is_int(exponent)) or exponent <= 0 or abs(base) <= 1:
        return  # floats overflow with an error; negative exponents give floats
    if exponent.bit_length() > 32 or exponent * math.log10(abs(base)) > MAX_DIGITS:
        raise _refuse(f'"**" would build a number of more than {MAX_DIGITS} digits')


#: A printf-style conversion: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.DOTALL)
#: Characters one conversion may add besides its argument (the longest float is 309 digits).
_CONVERSION_SLACK = 330


def _width(text: str | None, what: str) -> int:
    """A width or precision written in a format, refused over MAX_SIZE."""
    if not text or text == "*":
        return 0
    if len(text) > len(str(MAX_SIZE)) or int(text) > MAX_SIZE:
        raise _refuse(f"{what} asks for a width of {text} characters; the limit is {MAX_SIZE:,}")
    return int(text)


def _values_of(arguments: Any) -> list[Any]:
    if isinstance(arguments, Mapping):
        return list(arguments.values())
    if isinstance(arguments, tuple):
        return list(arguments)
    return [arguments]


def _check_stars(arguments: Any, what: str) -> None:
    """`*` widths come from the arguments: every integer argument must then be a fair width."""
    for value in _values_of(arguments):
        if _is_int(value) and abs(value) > MAX_SIZE:
            raise _refuse(f"{what} asks for a width of {value} characters; "
                          f"the limit is {MAX_SIZE:,}")


def _check_printf(text: str, arguments: Any) -> None:
    """Refuse `text % arguments` when the result could go over MAX_SIZE."""
    largest = max((_size(v) for v in _values_of(arguments)), default=0)
    total, stars = len(text), False
    for match in _PRINTF.finditer(text):
        width, precision, kind = match.group(2), match.group(3), match.group(4)
        stars = stars or "*" in (width, precision)
        repeat = 10 if kind in ("r", "a") else 1  # repr escapes: up to 10 characters each
        total += (_width(width, '"%"') + _width(precision, '"%"') + repeat * largest
                  + _CONVERSION_SLACK)
    if stars:
        _check_stars(arguments, '"%"')
    if total > MAX_SIZE:
        raise _too_big('"%"', total)


def _check_format(text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse `text.format(...)` when the result could go over MAX_SIZE."""
    values = [*args, *kwargs.values(), *(_values_of(args[0]) if args else [])]
    largest = max((_size(v) for v in values), default=0)
    total = len(text)
    try:
        fields = [(spec or "", conversion) for _, name, spec, conversion
                  in string.Formatter().parse(text) if name is not None]
    except ValueError:
        return  # not a valid format: the call itself raises
    for spec, conversion in fields:
        if "{" in spec:
            _check_stars((*args, *kwargs.values()), '".format"')
        widths = sum(_width(number, '".format"') for number in re.findall(r"\d+", spec))
        total += widths + (10 if conversion in ("r", "a") else 1) * largest + _CONVERSION_SLACK
    if total > MAX_SIZE:
        raise _too_big('".format"', total)


def _check_replace(text: Any, old: Any, new: Any, count: Any, what: str) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    found = text.count(old) if old else len(text) + 1
    if _is_int(count) and count >= 0:
        found = min(found, count)
    size = len(text) + found * max(len(new) - len(old), 0)
    if size > MAX_SIZE:
        raise _too_big(what, size)


def _items(value: Any, what: str) -> list[Any]:
    """At most MAX_SIZE items of an iterable (a list, so it can be measured before use)."""
    if isinstance(value, str | list | tuple | Mapping):
        return list(value)
    items = list(islice(iter(value), MAX_SIZE + 1))
    if len(items) > MAX_SIZE:
        raise _too_big(what, len(items))
    return items


def _check_join(separator: str, items: list[Any], what: str) -> None:
    size = sum(_size(item) for item in items) + len(separator) * len(items)
    if size > MAX_SIZE:
        raise _too_big(what, size)


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str,
              default: Any = None) -> Any:
    """A positional-or-keyword argument of a call."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


# --- calls and filters -------------------------------------------------------------------------

#: Methods of text whose argument is the width of the result.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_call(function: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                ) -> tuple[Any, ...]:
    """Refuse a method call that would build a value over MAX_SIZE; returns the arguments
    to use (an iterable given to `join` is read once, into a list)."""
    method = getattr(function, "__wrapped__", function)  # the sandbox wraps str.format
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    what = f'".{name}"'
    if isinstance(owner, str | bytes):
        if name in _WIDTH_METHODS:
            _width_argument(_argument(args, kwargs, 0, "width"), what)
        elif name == "expandtabs":
            tab = _argument(args, kwargs, 0, "tabsize", 8)
            if _is_int(tab) and len(owner) * max(tab, 1) > MAX_SIZE:
                raise _too_big(what, len(owner) * tab)
        elif name == "replace":
            _check_replace(owner, _argument(args, kwargs, 0, "old"),
                           _argument(args, kwargs, 1, "new"), _argument(args, kwargs, 2, "count"),
                           what)
        elif name == "join" and args:
            items = _items(args[0], what)
            _check_join(str(owner), items, what)
            return (items, *args[1:])
        elif name in ("format", "format_map") and isinstance(owner, str):
            _check_format(owner, args, kwargs)
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((_size(v) for v in args[0].values()), default=1)
            if len(owner) * longest > MAX_SIZE:
                raise _too_big(what, len(owner) * longest)
    elif _is_int(owner) and name == "to_bytes":
        _width_argument(_argument(args, kwargs, 0, "length", 1), what)
    return args


def _width_argument(width: Any, what: str) -> None:
    if _is_int(width) and width > MAX_SIZE:
        raise _refuse(f"{what} asks for {width:,} characters or items; the limit is {MAX_SIZE:,}")


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                  ) -> Any:
    """Refuse a filter that would build a value over MAX_SIZE; returns the value to filter
    (an iterable given to `join` is read once, into a list)."""
    what = f'"|{name}"'
    if name in ("center", "batch", "slice"):
        _width_argument(_argument(args, kwargs, 0, {"center": "width", "batch": "linecount",
                                                     "slice": "slices"}[name]), what)
    elif name == "indent" and isinstance(value, str):
        width = _argument(args, kwargs, 0, "width", 4)
        each = len(width) if isinstance(width, str) else width if _is_int(width) else 0
        size = len(value) + max(each, 0) * (value.count("\n") + 1)
        if size > MAX_SIZE:
            raise _too_big(what, size)
    elif name == "wordwrap" and isinstance(value, str):
        width = _argument(args, kwargs, 0, "width", 79)
        wrap = _argument(args, kwargs, 2, "wrapstring", None) or "\n"
        if _is_int(width) and width > 0 and isinstance(wrap, str):
            size = len(value) + (len(value) // width + 1) * len(wrap)
            if size > MAX_SIZE:
                raise _too_big(what, size)
    elif name == "replace":
        _check_replace(value, _argument(args, kwargs, 0, "old"), _argument(args, kwargs, 1, "new"),
                       _argument(args, kwargs, 2, "count"), what)
    elif name == "join":
        value = _items(value, what)
        separator = _argument(args, kwargs, 0, "d", "")
        _check_join(separator if isinstance(separator, str) else "", value, what)
    elif name == "format" and isinstance(value, str):
        _check_printf(value, dict(kwargs) if kwargs else args)
    elif name == "sum" and not isinstance(_argument(args, kwargs, 1, "start", 0), int | float):
        raise _refuse(f"{what} adds numbers only here (start must be a number)")
    return value


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` (a Jinja2 filter) checked before it runs and on what it returns."""
    passes = getattr(getattr(function, "jinja_pass_arg", None), "name", None)

    @pass_context  # also keeps Jinja2 from running filters while it compiles
    def bounded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        value = _check_filter(name, value, args, kwargs)
        lead = {"context": (context,), "eval_context": (context.eval_ctx,),
                "environment": (context.environment,)}.get(passes or "", ())
        return _produced(function(*lead, value, *args, **kwargs), f'"|{name}"')

    bounded.__name__ = getattr(function, "__name__", name)
    return bounded


# --- the parts of a tree rewritten to pass through the checks -----------------------------------

_LOOP, _LITERAL, _CONCAT = "guichet_loop", "guichet_literal", "guichet_concat"


@pass_context
def _loop(context: Context, iterable: Any) -> Iterator[Any]:
    """The items of a `{% for %}`, each counted against the budget."""
    for item in iterable:
        _spend()
        yield item


@pass_context
def _literal(context: Context, value: Any) -> Any:
    """A list, tuple or mapping literal, checked like a built value."""
    return _produced(value, "a literal")


@pass_context
def _concat(context: Context, parts: list[Any]) -> str:
    """`a ~ b ~ c`, refused before it builds a text over MAX_SIZE."""
    _check_join("", parts, '"~"')
    join = markup_join if context.eval_ctx.autoescape else str_join
    return str(_produced(join(parts), '"~"'))


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    """Every `{{ }}` and every piece of literal text, checked and counted before it is printed."""
    return _produced(value, "printing")


@pass_context
def _label(context: Context, value: Any, field_id: str | None = None) -> Any:
    """`{{ x | label }}`: the label of option `value` of field `field_id` (filled in with the
    name filtered when compiling) in the language rendered; a list gives its labels joined by
    ", "; a value that is not an option is returned as it is."""
    labels = context.get(OPTION_LABELS)
    if not isinstance(labels, Mapping):
        raise ExpressionError(f'the "{LABEL_FILTER}" filter has no option labels here')
    if not isinstance(value, list | tuple):
        return _option_label(labels, field_id, value)
    parts = [str(_option_label(labels, field_id, item)) for item in value]
    _check_join(", ", parts, f'"|{LABEL_FILTER}"')
    return ", ".join(parts)


def _option_label(labels: Mapping[str, Mapping[str, str]], field_id: str | None,
                  value: Any) -> Any:
    """The label of one value: among the options of `field_id` when it is a field with
    options, else among every field's options when they all give it the same label."""
    if not isinstance(value, str):
        return value
    options = labels.get(field_id) if field_id is not None else None
    if options is not None:
        return options.get(value, value)
    found = {named[value] for named in labels.values() if value in named}
    return found.pop() if len(found) == 1 else value


def _filtered_name(node: nodes.Node) -> str | None:
    """The field a filtered value comes from: `x` -> "x", `row.kind` -> "kind"."""
    chain = attribute_chain(node)
    return chain[-1] if chain else None


def _filter(node: nodes.Node, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _Harden(NodeTransformer):
    """Send loops, literals, `~` and literal text through the checks above."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(node.iter, _LOOP)
        return node

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, _LITERAL)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, _LITERAL)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, _LITERAL) if node.ctx == "load" else node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(nodes.List(node.nodes, lineno=node.lineno), _CONCAT)

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        """`x | label` is told the name it filters: `x | label('x')`."""
        self.generic_visit(node)
        if node.name == LABEL_FILTER and node.node is not None and not node.args \
                and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None:
            named = _filtered_name(node.node)
            if named is not None:
                node.args = [nodes.Const(named, lineno=node.lineno)]
        return node

    def visit_TemplateData(self, node: nodes.TemplateData) -> list[nodes.Node]:
        """Literal text as constants, so it goes through `_finalize` (in pieces, each within
        MAX_SIZE, so a long literal document is counted but not refused)."""
        step = MAX_SIZE // 10
        return [nodes.MarkSafeIfAutoescape(nodes.Const(node.data[i:i + step], lineno=node.lineno),
                                           lineno=node.lineno)
                for i in range(0, len(node.data), step)]


def _harden(tree: nodes.Node, environment: _Sandbox) -> Any:
    hardened = _Harden().visit(tree)
    hardened.set_environment(environment)
    return hardened


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every way of building a value checked and counted."""

    intercepted_binops = frozenset(_BOUNDED_OPERATORS)

    def __init__(self, autoescape: bool) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=autoescape, finalize=_finalize)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters.update({_LOOP: _loop, _LITERAL: _literal, _CONCAT: _concat,
                             LABEL_FILTER: _bounded_filter(LABEL_FILTER, _label)})
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _spend()
        return binop(operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _spend()
        args = _check_call(obj, args, kwargs)
        return _produced(super().call(context, obj, *args, **kwargs), "a call")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend()
        return super().getitem(obj, argument)


_env = _Sandbox(autoescape=False)
_html_env = _Sandbox(autoescape=True)


# --- constants checked when loading ------------------------------------------------------------

_UNKNOWN: Any = object()


class _Constants:
    """Computes the constant parts of a tree through the same checks as at run time, so a
    constant computation over a limit is refused when the file is loaded."""

    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}

    def check(self, tree: nodes.Node) -> None:
        """Raise ExpressionLimit (with the line, for templates) at the first one over a limit."""
        for node in _all(tree, nodes.Expr):
            try:
                self.value(node)
            except ExpressionLimit as exc:
                raise ExpressionLimit(exc.message, node.lineno) from None

    def value(self, node: nodes.Node) -> Any:
        key = id(node)
        if key not in self.memo:
            self.memo[key] = self._compute(node)
        return self.memo[key]

    def _known(self, items: Iterable[nodes.Node]) -> list[Any] | None:
        values = [self.value(item) for item in items]
        return None if any(v is _UNKNOWN for v in values) else values

    def _compute(self, node: nodes.Node) -> Any:
        if isinstance(node, nodes.Const):
            if _is_int(node.value) and _digits(node.value) > MAX_DIGITS:
                raise _refuse(f"a number of more than {MAX_DIGITS} digits")
            return node.value
        if isinstance(node, nodes.List | nodes.Tuple):
            items = self._known(node.items)
            if items is None:
                return _UNKNOWN
            return _produced(items if isinstance(node, nodes.List) else tuple(items), "a literal")
        if isinstance(node, nodes.BinExpr):
            return self._operator(node)
        if isinstance(node, nodes.Concat):
            parts = self._known(node.nodes)
            if parts is None:
                return _UNKNOWN
            _check_join("", parts, '"~"')
            return _produced("".join(map(str, parts)), '"~"')
        if isinstance(node, nodes.Neg | nodes.Pos):
            operand = self.value(node.node)
            return _UNKNOWN if operand is _UNKNOWN else _attempt(
                lambda: -operand if isinstance(node, nodes.Neg) else +operand)
        if isinstance(node, nodes.Filter) and node.node is not None:
            self._filter(node)
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            self._method(node, node.node)
        return _UNKNOWN

    def _operator(self, node: nodes.BinExpr) -> Any:
        operands = self._known((node.left, node.right))
        if operands is None:
            self._partly_known(node)
            return _UNKNOWN
        left, right = operands
        if node.operator in _BOUNDED_OPERATORS:
            return _attempt(lambda: binop(node.operator, left, right))
        function = _OTHER_OPERATORS.get(node.operator)
        return _UNKNOWN if function is None else _attempt(lambda: function(left, right))

    def _partly_known(self, node: nodes.BinExpr) -> None:
        """With one operand unknown: a format asking for too wide a field, or a list literal
        repeated too many times, is over a limit whatever the other operand."""
        left, right = self.value(node.left), self.value(node.right)
        if node.operator == "%" and isinstance(left, str):
            _attempt(lambda: _check_printf(left, ()))
        if node.operator == "*":
            for literal, count in ((node.left, right), (node.right, left)):
                if isinstance(literal, nodes.List | nodes.Tuple) and literal.items \
                        and _is_int(count) and len(literal.items) * count > MAX_SIZE:
                    raise _too_big('"*"', len(literal.items) * count)

    def _arguments(self, node: nodes.Filter | nodes.Call
                   ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return None
        keywords: list[Any] = list(node.kwargs)  # nodes.Keyword (typed as Pair by Jinja2)
        args = self._known(node.args)
        kwargs = self._known(k.value for k in keywords)
        if args is None or kwargs is None:
            return None
        return tuple(args), {k.key: v for k, v in zip(keywords, kwargs, strict=True)}

    def _filter(self, node: nodes.Filter) -> None:
        assert node.node is not None
        value, arguments = self.value(node.node), self._arguments(node)
        if arguments is not None:  # widths are checked even when the value is not known
            known = None if value is _UNKNOWN else value
            _attempt(lambda: _check_filter(node.name, known, *arguments))

    def _method(self, node: nodes.Call, method: nodes.Getattr) -> None:
        owner, arguments = self.value(method.node), self._arguments(node)
        if owner is _UNKNOWN or arguments is None or method.attr.startswith("_"):
            return
        function = getattr(owner, method.attr, None)
        if callable(function):
            _attempt(lambda: _check_call(function, *arguments))


def _attempt(compute: Callable[[], Any]) -> Any:
    """The value of a constant computation; _UNKNOWN when it fails for another reason than
    a limit (it fails again at run time, where the error is reported)."""
    try:
        return compute()
    except ExpressionLimit:
        raise
    except Exception:  # noqa: BLE001 - a failing constant is left to run time
        return _UNKNOWN


def _check_constants(tree: nodes.Node) -> None:
    _run_bounded(EVALUATE_SECONDS, lambda: _Constants().check(tree))


# --- compiling ---------------------------------------------------------------------------------

def _parse(source: str) -> nodes.Expr:
    try:
        parser = Parser(_env, source, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise ExpressionError(f'unexpected "{token.value}" after the expression')
    except TemplateSyntaxError as exc:
        raise ExpressionError(_lower(exc.message or "invalid expression")) from None
    except ValueError as exc:
        raise _unreadable_number(exc) from None
    return tree


def _unreadable_number(exc: ValueError) -> ExpressionError:
    """Python refuses to read integers of more than 4,300 digits (the lexer's ValueError)."""
    if "digits" in str(exc):
        return _refuse(f"a number of more than {MAX_DIGITS} digits")
    return ExpressionError(_lower(str(exc)))


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _all(tree: nodes.Node, kind: type[nodes.Node]) -> list[Any]:
    """Every node of `kind` in `tree`, the root included (find_all skips the root)."""
    found: list[Any] = [tree] if isinstance(tree, kind) else []
    return found + list(tree.find_all(kind))


def _names(tree: nodes.Node) -> frozenset[str]:
    return frozenset(n.name for n in _all(tree, nodes.Name) if n.ctx == "load")


#: Trees deeper than this are compiled to Python when the file is loaded: Python's compiler
#: has nesting limits (20 nested loops, 200 nested parentheses...) that Jinja's code generation
#: does not check. Procedures' texts are 1 to 5 levels deep; 25 nested loops fail.
EAGER_DEPTH = 12
#: Texts longer than this are compiled each time, not kept (see COMPILED_CACHE).
CACHED_CHARS = 8_000
#: How many compiled expressions and templates are kept, keyed by their text: compiling is
#: most of the cost of checking a procedure, and re-checking after an edit (the language
#: server) or checking a directory meets the same texts again. Failures are not kept.
COMPILED_CACHE = 1024


def _depth(tree: nodes.Node) -> int:
    """How many levels of nodes `tree` has (counted without recursion)."""
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, level = pending.pop()
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in node.iter_child_nodes())
    return deepest


class _Deferred:
    """A sandboxed Jinja template whose Python code object is made on first use.

    Jinja's code generation runs at once (it is where Jinja reports an unknown filter or test,
    a block defined twice...), and a deep tree is compiled at once too, so every error is found
    when the file is loaded; compiling the generated code of the others, most of the rest of
    the cost, waits until the text is first rendered or evaluated, which checking a file
    (`guichet validate`, the language server) rarely needs.
    """

    def __init__(self, environment: _Sandbox, tree: nodes.Template) -> None:
        environment.compile(tree, raw=True)  # code generation: raises TemplateSyntaxError
        self._environment, self._tree = environment, tree
        self._template: JinjaTemplate | None = None
        self._lock = threading.Lock()
        if _depth(tree) > EAGER_DEPTH:
            self.template()

    def template(self) -> JinjaTemplate:
        """The compiled template (made once, whatever the number of threads asking)."""
        if self._template is None:
            with self._lock:
                if self._template is None:
                    self._template = self._environment.from_string(self._tree)
        return self._template

    def __call__(self, **context: Any) -> Any:
        """The expression's value (the template assigns it to `result`)."""
        return TemplateExpression(self.template(), False)(**context)


def _too_deep(what: str) -> ExpressionLimit:
    return ExpressionLimit(f"the {what} is nested too deeply to be compiled; simplify it")


@dataclass(frozen=True)
class Expression:
    """A compiled `when:` expression. `holds` never raises: an error means False (refuse)."""

    source: str
    names: frozenset[str]
    tree: nodes.Expr = field(repr=False, compare=False)
    _run: _Deferred = field(repr=False, compare=False)
    ordered_names: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate with `context` (field values and built-ins); raises on any error,
        ExpressionLimit past MAX_SIZE, MAX_WORK or EVALUATE_SECONDS (compiling on first use
        is not counted)."""
        self._run.template()
        token = _BUDGET.set(_Budget(EVALUATE_SECONDS, time.monotonic() + EVALUATE_SECONDS))
        try:
            return self._run(**context)
        finally:
            _BUDGET.reset(token)

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
    """Compile one expression; raises ExpressionError on a syntax error, ExpressionLimit on a
    constant computation over the limits or nesting too deep. A text of at most CACHED_CHARS
    compiles once: the result is immutable and shared by every caller."""
    if len(source) > CACHED_CHARS:
        return _compile_expression(source)
    return _cached_expression(source)


def _compile_expression(source: str) -> Expression:
    try:
        tree = _parse(source)
        if any(f.name == LABEL_FILTER for f in _all(tree, nodes.Filter)):
            raise ExpressionError(f'the "{LABEL_FILTER}" filter is for templates, '
                                  "not expressions")
        _check_constants(tree)
        body = [nodes.Assign(nodes.Name("result", "store"), _harden(_parse(source), _env),
                             lineno=1)]
        run = _Deferred(_env, nodes.Template(body, lineno=1))
    except TemplateSyntaxError as exc:  # e.g. an unknown filter
        raise ExpressionError(_lower(exc.message or "invalid expression")) from None
    except (RecursionError, SyntaxError, MemoryError):  # Python's own nesting limits
        raise _too_deep("expression") from None
    names = _names(tree)
    return Expression(source, names, tree, run, tuple(sorted(names)))


_cached_expression = lru_cache(maxsize=COMPILED_CACHE)(_compile_expression)


@dataclass(frozen=True)
class Template:
    """A compiled message or document template (sandboxed; HTML ones autoescaped)."""

    source: str
    names: frozenset[str]
    _compiled: _Deferred = field(repr=False, compare=False)
    max_chars: int = MAX_NOTIFICATION_CHARS

    def render(self, context: Mapping[str, Any]) -> str:
        """The text; raises on any error, ExpressionLimit when it would be longer than
        `max_chars` or take longer than RENDER_SECONDS (or go past MAX_SIZE or MAX_WORK;
        compiling on first use is not counted)."""
        template = self._compiled.template()
        token = _BUDGET.set(_Budget(RENDER_SECONDS, time.monotonic() + RENDER_SECONDS))
        try:
            parts, length = [], 0
            for chunk in template.generate(dict(context)):
                length += len(chunk)
                if length > self.max_chars:
                    raise _refuse(f"the text would be longer than {self.max_chars:,} characters")
                parts.append(chunk)
            return "".join(parts)
        finally:
            _BUDGET.reset(token)


def _check_self_contained(tree: nodes.Template) -> None:
    """A template is one text: it cannot include, extend or import another file."""
    for kind in (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport):
        for node in _all(tree, kind):
            raise TemplateSyntaxError("a template cannot include, extend or import another "
                                      "file; write the text out", node.lineno)


def compile_template(source: str, html: bool = False,
                     max_chars: int = MAX_NOTIFICATION_CHARS) -> Template:
    """Compile one template; raises ExpressionError (with its line) on syntax errors and
    ExpressionLimit on a constant computation over the limits or nesting too deep. A text of
    at most CACHED_CHARS compiles once per options: the result is immutable and shared."""
    if len(source) > CACHED_CHARS:
        return _compile_template(source, html, max_chars)
    return _cached_template(source, html, max_chars)


def _compile_template(source: str, html: bool, max_chars: int) -> Template:
    env = _html_env if html else _env
    try:
        tree = env.parse(source)
        _check_constants(tree)
        _check_self_contained(tree)
        compiled = _Deferred(env, _harden(env.parse(source), env))
    except TemplateSyntaxError as exc:
        message = _lower(exc.message or "")
        raise ExpressionError(f"line {exc.lineno} of the template: {message}") from None
    except ExpressionLimit as exc:
        where = f"line {exc.line} of the template: " if exc.line else ""
        raise ExpressionLimit(where + exc.message, exc.line) from None
    except (RecursionError, SyntaxError, MemoryError):  # Python's own nesting limits
        raise _too_deep("template") from None
    except ValueError as exc:
        raise _unreadable_number(exc) from None
    assigned = {n.name for n in _all(tree, nodes.Name) if n.ctx in ("store", "param")}
    return Template(source, _names(tree) - assigned, compiled, max_chars)


_cached_template = lru_cache(maxsize=COMPILED_CACHE)(_compile_template)


def forget() -> None:
    """Forget the compiled texts kept (for measuring a first check)."""
    _cached_expression.cache_clear()
    _cached_template.cache_clear()


# --- the expression tree, for analysis (rules, explore) ---------------------------------------
#
# Other modules read compiled expressions (`Expression.tree`, the sides of
# `Expression.comparisons`) through these functions only, so that Jinja2 stays in this module.

#: A node of an expression's tree: opaque outside this module, read with the functions below.
Node = nodes.Node


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


def is_scalar(node: Node) -> bool:
    """Whether `node` is a literal of one value: a number, a text, a boolean or `none`
    (its value: `constant`)."""
    return isinstance(node, nodes.Const)


def literal_items(node: Node) -> list[Node] | None:
    """The item nodes of a list or tuple literal (`['a', x]`), else None."""
    if isinstance(node, nodes.List | nodes.Tuple):
        return list(node.items)
    return None


def negated(node: Node) -> Node | None:
    """For `not x`, the tree of `x`; else None."""
    return node.node if isinstance(node, nodes.Not) else None


def logical(node: Node) -> tuple[str, Node, Node] | None:
    """For `a and b` or `a or b`, ("and" or "or", a, b) (`a and b and c` is
    `(a and b) and c`); else None."""
    if isinstance(node, nodes.And):
        return "and", node.left, node.right
    if isinstance(node, nodes.Or):
        return "or", node.left, node.right
    return None


def negative(node: Node) -> Node | None:
    """For `-x` (a minus sign before x: `-1` is one), the tree of `x`; else None."""
    return node.node if isinstance(node, nodes.Neg) else None


def call_arguments(node: Node) -> list[Node] | None:
    """For `f(x, y)` where f is a plain name and every argument is positional, the argument
    nodes (`age(birth_date)` gives [birth_date]); else None."""
    if not isinstance(node, nodes.Call) or call_name(node) is None or node.kwargs \
            or node.dyn_args or node.dyn_kwargs:
        return None
    return list(node.args)


def comparison(node: Node) -> tuple[Node, str, Node] | None:
    """When `node` is one comparison with one operator (`a < b`, `x in ['a', 'b']`), its
    (left, operator, right), the operator named as in `Expression.comparisons` (eq, ne, lt,
    lteq, gt, gteq, in, notin); else None (`a < b < c` is two comparisons)."""
    if isinstance(node, nodes.Compare) and len(node.ops) == 1:
        return node.expr, node.ops[0].op, node.ops[0].expr
    return None


def same_tree(a: Node, b: Node) -> bool:
    """Whether two trees are written alike: the same operations on the same names and values
    (spacing aside; `x == 1` and `1 == x` differ)."""
    return bool(a.dump() == b.dump())


def names_read(node: Node) -> frozenset[str]:
    """The names `node` reads, anywhere in its tree (functions called by name included)."""
    return _names(node)


def called(node: Node) -> frozenset[str]:
    """The names of the functions called by name anywhere in the tree of `node`
    (`age(birth) >= 18` calls "age")."""
    return frozenset(name for call in _all(node, nodes.Call)
                     if (name := call_name(call)) is not None)


def attribute_chain(node: Node) -> tuple[str, ...] | None:
    """For a name followed by attributes or text subscripts, the names in order:
    `documents.passport` and `documents['passport']` give ("documents", "passport"),
    `a.b.c` gives ("a", "b", "c") and a plain name `x` gives ("x",); else None."""
    parts: list[str] = []
    while not isinstance(node, nodes.Name):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
        else:
            return None
        node = node.node
    return (node.name, *reversed(parts))
