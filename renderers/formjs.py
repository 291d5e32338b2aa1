"""A `when:` condition compiled to JavaScript, for the form to show and hide as the citizen types.

The expression is read into the engine's form subset (engine/form_subset.py: comparisons,
`and`/`or`/`not`, `in`, literals, field names, `today`, `age(field)`, `documents.<id>`) and
code is emitted from that tree: author text never reaches the page as code. Every literal
(and every name) is JSON-encoded with `<`, `>` and `&` escaped, so a string cannot close the
script or open a comment. The code calls a tiny evaluator, `G` (in templates/form.js.j2),
which mirrors the sandbox's semantics: Python truthiness, `and`/`or` giving an operand,
comparisons that fail between values of different kinds (the condition then cannot be
evaluated, and its field stays shown, as the server does).

An expression outside the subset, or reading a name the page does not hold, compiles to None:
the form then always shows its element and the server decides.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from engine import form_subset as fs
from engine.expressions import Expression


class _NotHere(Exception):
    """The condition reads something the page does not hold."""


def js_literal(value: Any) -> str:
    """`value` (JSON data) as a JavaScript literal that is safe inside a <script> element:
    no `<`, `>` or `&` (so no `</script>` nor `<!--`), no raw line separators."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def compile_condition(expression: Expression, names: Collection[str],
                      documents: Collection[str] = (), unset: Collection[str] = ()
                      ) -> str | None:
    """The JavaScript expression of `expression` (it reads the page through `G`), or None
    when the form cannot follow it: outside the subset, or reading a field that is neither
    in `names` (on the page) nor in `unset` (known to be unset: another step's input), or a
    document not in `documents`."""
    try:
        tree = fs.form_tree(expression)
        return _emit(tree, frozenset(names), frozenset(documents), frozenset(unset))
    except (fs.Outside, _NotHere, ValueError):  # ValueError: a literal JSON cannot hold
        return None


def _emit(tree: fs.FormTree, names: frozenset[str], documents: frozenset[str],
          unset: frozenset[str]) -> str:
    def emit(node: fs.FormTree) -> str:
        match node:
            case fs.Literal(value):
                return js_literal(value)
            case fs.Items(items):
                return "[" + ",".join(emit(item) for item in items) + "]"
            case fs.Name(name):
                return _name(name, names, unset)
            case fs.Today():
                return "G.today()"
            case fs.Age(field):
                return f"G.age({_name(field, names, unset)})"
            case fs.Files(document):
                if document not in documents:
                    raise _NotHere(document)
                return f"G.files({js_literal(document)})"
            case fs.Compare(operator, left, right):
                return f"G.cmp({js_literal(operator)},{emit(left)},{emit(right)})"
            case fs.Logic(operator, left, right):
                function = "all" if operator == "and" else "any"
                return (f"G.{function}(function(){{return {emit(left)};}},"
                        f"function(){{return {emit(right)};}})")
            case fs.Not(operand):
                return f"G.no({emit(operand)})"
        raise _NotHere(repr(node))  # pragma: no cover - every kind is handled above
    return emit(tree)


def _name(name: str, names: frozenset[str], unset: frozenset[str]) -> str:
    if name in names:
        return f"G.v({js_literal(name)})"
    if name in unset:
        return "null"
    raise _NotHere(name)


def conditions_script(conditions: dict[str, str]) -> str:
    """The table of compiled conditions (key -> JavaScript expression) as a JavaScript
    object of functions of `G`."""
    entries = ",\n".join(f"{js_literal(key)}:function(G){{return {code};}}"
                         for key, code in conditions.items())
    return "{\n" + entries + "\n}" if entries else "{}"
