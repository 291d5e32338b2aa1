"""engine/expressions.py: expressions and templates bounded in size, digits, work and time.

Hostile inputs are kept small enough here that the code before the bounds finished them
(quickly, building a few megabytes): the tests then fail on the missing ExpressionLimit
rather than hang. The one true bomb, `([1] * 10**9)`, runs in a child process with a memory
and time limit.
"""

from __future__ import annotations

import datetime as dt
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import expressions as ex
from engine.expressions import (
    MAX_DIGITS,
    MAX_DOCUMENT_CHARS,
    MAX_NOTIFICATION_CHARS,
    MAX_SIZE,
    ExpressionError,
    ExpressionLimit,
    age,
    compile_expression,
    compile_template,
)

ROOT = Path(__file__).resolve().parent.parent
OVER = MAX_SIZE * 10  # well over the limit, yet cheap to build without it


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = function()
    return result, time.monotonic() - started


# --- constant computations: refused when the file is loaded ---------------------------------------

@pytest.mark.parametrize(
    "source",
    [
        f"'a' * {OVER} == x",
        f"([1] * {OVER}) | length > 0",
        f"x in [0] * {OVER}",
        "x < 10 ** 1000",
        "x == 3 ** 300",
        f"'%0{OVER}d' % 1 == x",
        f"('ab' ~ 'cd') * {OVER // 4} == x",
        f"'a' | center({OVER}) == x",
        f"x | center({OVER}) == x",
        f"'a'.ljust({OVER}) == x",
        f"'{{:>{OVER}}}'.format(1) == x",
        "x > 1" + "0" * MAX_DIGITS,
        "x > 1" + "0" * 5000,  # a ValueError from Python's int() before
    ],
)
def test_constant_over_a_limit_is_refused_when_compiling(source: str) -> None:
    with pytest.raises(ExpressionLimit):
        compile_expression(source)


@pytest.mark.parametrize(
    "source",
    [
        f"{{{{ 'a' * {OVER} }}}}",
        f"Réf. {{{{ reference }}}}\n{{{{ reference | center({OVER}) }}}}",
        f"{{% if state %}}{{{{ '%-{OVER}s' % state }}}}{{% endif %}}",
        f"{{{{ [reference] * {OVER} }}}}",
    ],
)
def test_template_constant_over_a_limit_is_refused_with_its_line(source: str) -> None:
    with pytest.raises(ExpressionLimit) as refused:
        compile_template(source)
    line = source[:source.index(str(OVER))].count("\n") + 1
    assert refused.value.message.startswith(f"line {line} of the template: ")
    assert refused.value.line == line


def test_expression_limit_is_an_expression_error() -> None:
    assert issubclass(ExpressionLimit, ExpressionError)


def test_constants_within_the_limits_still_work() -> None:
    expression = compile_expression("x == 'ab' * 3 and y < 10 ** 20 and ('%05d' % 42) == z")
    assert expression.evaluate({"x": "ababab", "y": 5, "z": "00042"}) is True
    template = compile_template("{{ '-' * 5 }}{{ 'a' ~ 'b' }}{{ [1, 2] | join(',') }}")
    assert template.render({}) == "-----ab1,2"


def test_jinja2_no_longer_computes_constants_while_compiling() -> None:
    code = ex._env.compile("{{ 'ab' * 3 }}{{ 2 ** 3 }}{{ '%d' % 4 }}{{ 1 + 2 }}", raw=True)
    assert code.count("call_binop") == 4
    assert "ababab" not in code


def _child_validate(path: Path) -> subprocess.CompletedProcess[str]:
    def limit_memory() -> None:  # 1.5 GiB: the list of 10**9 items needs 8 GB
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))

    code = "import sys; from cli import main; sys.argv[1:] = ['validate', sys.argv[1]]; main()"
    return subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, text=True,
                          capture_output=True, timeout=60, preexec_fn=limit_memory)


def test_validate_of_a_billion_item_constant_returns_quickly(tmp_path: Path) -> None:
    # Jinja2 folded constants while compiling: validating this never finished
    source = (ROOT / "tests" / "corpus" / "expression-limit.yaml").read_text(encoding="utf-8")
    assert "([1] * 10**9) | length > 0" in source
    path = tmp_path / "bomb.yaml"
    path.write_text(source, encoding="utf-8")
    result, seconds = timed(lambda: _child_validate(path))
    assert seconds < 20
    assert result.returncode == 1, result.stderr[-2000:]
    assert "goes over a limit" in result.stdout
    found = [line for line in result.stdout.splitlines() if "[who-may-start]" not in line]
    assert found and all(line.endswith("[expression-limit]") for line in found)


# --- operators at run time ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("source", "context"),
    [
        ("x * n", {"x": "a", "n": OVER}),
        ("n * x", {"x": [1, 2], "n": OVER}),
        ("x * n", {"x": ["a" * 1000], "n": 200}),  # nested values count
        ("x + x", {"x": "a" * (MAX_SIZE // 2 + 1)}),
        ("x + x", {"x": list(range(MAX_SIZE // 2 + 1))}),
        ("x ** n", {"x": 10, "n": MAX_DIGITS + 1}),
        ("x * x", {"x": 10 ** 60}),
        ("f % x", {"f": f"%0{OVER}d", "x": 1}),
        ("f % x", {"f": "%(a)s" * 200, "x": {"a": "b" * 1000}}),
        ("x ~ x", {"x": "a" * (MAX_SIZE // 2 + 1)}),
        ("[x, x, x]", {"x": "a" * (MAX_SIZE // 2)}),
    ],
)
def test_operator_over_a_limit_raises_at_run_time(source: str, context: dict[str, Any]) -> None:
    expression = compile_expression(source)
    with pytest.raises(ExpressionLimit):
        expression.evaluate(context)
    assert expression.holds(context) is False


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("x * n", {"x": "ab", "n": 3}, "ababab"),
        ("x + y", {"x": [1], "y": [2]}, [1, 2]),
        ("x ** n", {"x": 10, "n": 30}, 10 ** 30),
        ("f % x", {"f": "%s!", "x": "a" * 1000}, "a" * 1000 + "!"),
        ("x ~ y", {"x": "a", "y": 1}, "a1"),
        ("fees_due + 1", {"fees_due": 2_000_000_000}, 2_000_000_001),
    ],
)
def test_operators_within_the_limits(source: str, context: dict[str, Any], expected: Any) -> None:
    assert compile_expression(source).evaluate(context) == expected


def test_ordinary_guard() -> None:
    guard = compile_expression("age(birth_date) >= 18 and nationality in ['TG', 'BJ']")
    context = {"age": age, "birth_date": dt.date(1990, 1, 1), "nationality": "TG"}
    assert guard.holds(context) is True
    assert guard.holds({**context, "nationality": "FR"}) is False


# --- filters and methods at run time --------------------------------------------------------------

@pytest.mark.parametrize(
    ("source", "context"),
    [
        ("x | center(n)", {"x": "a", "n": OVER}),
        ("x.ljust(n)", {"x": "a", "n": OVER}),
        ("x.zfill(n)", {"x": "1", "n": OVER}),
        ("x | indent(n)", {"x": "a\n" * 100, "n": 10_000}),
        ("x | wordwrap(1, wrapstring=y)", {"x": "a" * 1000, "y": "b" * 1000}),
        ("x | replace('a', y)", {"x": "a" * 1000, "y": "b" * 1000}),
        ("x.replace('a', y)", {"x": "a" * 1000, "y": "b" * 1000}),
        ("x | join(y)", {"x": ["a"] * 1000, "y": "b" * 1000}),
        ("y.join(x)", {"x": ["a"] * 1000, "y": "b" * 1000}),
        ("x | map('center', n) | list", {"x": list(range(100)), "n": 50_000}),
        ("x | format(1)", {"x": f"%0{OVER}d"}),
        ("f.format(1)", {"f": "{:>" + str(OVER) + "}"}),
        ("f.format(x)", {"f": "{0}" * 1000, "x": "a" * 1000}),
        ("x.translate(m)", {"x": "a" * 1000, "m": {97: "b" * 1000}}),
        ("x.expandtabs(n)", {"x": "\t" * 1000, "n": 1000}),
        ("x | batch(n, 0) | list", {"x": [1], "n": OVER}),
        ("x | sum(start=[])", {"x": [[1]] * 10}),
        ("x.to_bytes(n, 'big')", {"x": 1, "n": OVER}),
    ],
)
def test_filter_or_method_over_a_limit_raises(source: str, context: dict[str, Any]) -> None:
    with pytest.raises(ExpressionLimit):
        compile_expression(source).evaluate(context)


def test_filters_and_methods_within_the_limits() -> None:
    expression = compile_expression(
        "[x | center(5), x.ljust(3, '.'), y | join(', '), ', '.join(y), x | replace('b', 'B'),"
        " '{}/{}'.format(x, 2), y | map('upper') | list, y | sum(start=0) if false else 0]")
    assert expression.evaluate({"x": "ab", "y": ["a", "b"]}) == [
        "  ab ", "ab.", "a, b", "a, b", "aB", "ab/2", ["A", "B"], 0]


# --- templates: size of the text, work and time ---------------------------------------------------

def test_notification_longer_than_its_limit_is_an_error() -> None:
    template = compile_template("{{ x }}")
    assert template.render({"x": "a" * MAX_NOTIFICATION_CHARS}) == "a" * MAX_NOTIFICATION_CHARS
    with pytest.raises(ExpressionLimit) as refused:
        template.render({"x": "a" * (MAX_NOTIFICATION_CHARS + 1)})
    assert refused.value.message == (
        f"the text would be longer than {MAX_NOTIFICATION_CHARS:,} characters")


def test_many_short_pieces_cannot_make_a_long_text() -> None:
    template = compile_template("{% for i in x %}{{ y }}, {% endfor %}")
    with pytest.raises(ExpressionLimit):
        template.render({"x": list(range(10_000)), "y": "ten chars!"})


def test_issued_document_has_a_larger_limit() -> None:
    source = "{{ x }}{{ x }}{{ x }}"
    context = {"x": "a" * 50_000}
    with pytest.raises(ExpressionLimit):
        compile_template(source).render(context)
    document = compile_template(source, max_chars=MAX_DOCUMENT_CHARS)
    assert document.render(context) == "a" * 150_000


def test_long_literal_text_is_not_a_value_over_the_limit() -> None:
    text = "x" * (MAX_SIZE + 50_000)
    assert compile_template(text, max_chars=MAX_DOCUMENT_CHARS).render({}) == text


def test_doubling_a_text_in_a_loop_is_stopped() -> None:
    template = compile_template("{% set ns = namespace(s='ab') %}{% for i in x %}"
                                "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}")
    with pytest.raises(ExpressionLimit):
        template.render({"x": list(range(40))})


def test_text_built_in_a_macro_is_bounded() -> None:
    template = compile_template("{% macro m() %}{% for i in x %}0123456789{% endfor %}"
                                "{% endmacro %}{{ m() | length }}")
    with pytest.raises(ExpressionLimit):
        template.render({"x": list(range(200_000))})


def test_nested_values_are_counted_when_printed() -> None:
    template = compile_template("{% set a = [s, s, s, s, s, s, s, s, s, s] %}"
                                "{% set b = [a, a, a, a, a, a, a, a, a, a] %}{{ b }}")
    with pytest.raises(ExpressionLimit):
        template.render({"s": "x" * 5_000})


def test_loops_without_output_are_bounded() -> None:
    # 9 million empty iterations: they ran to the end before
    template = compile_template("{% for i in x %}{% for j in x %}{% endfor %}{% endfor %}done")
    with pytest.raises(ExpressionLimit):
        template.render({"x": list(range(3_000))})


def test_recursion_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "MAX_WORK", 100_000)  # keeps the test short; 2**18 calls in all
    template = compile_template("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                                "{% endmacro %}{{ f(17) }}")
    with pytest.raises(ExpressionLimit) as refused:
        template.render({})
    assert refused.value.message == "more than 100,000 steps and characters of work"


def test_rendering_time_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "RENDER_SECONDS", 0.05)
    # each iteration looks through 200,000 items: cheap in work, slow in time
    template = compile_template("{% for i in x %}{{ -1 in z }}{% endfor %}")
    context = {"x": list(range(300)), "z": list(range(200_000))}
    with pytest.raises(ExpressionLimit) as refused:
        timed(lambda: template.render(context))
    assert refused.value.message == "took longer than 0.05 s"


def test_evaluation_time_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "EVALUATE_SECONDS", 0.05)
    expression = compile_expression("x | map('string') | map('length') | sum > 0")
    with pytest.raises(ExpressionLimit):
        expression.evaluate({"x": [list(range(2_000))] * 2_000})


def test_ordinary_templates_render_as_before() -> None:
    template = compile_template(
        "Demande {{ reference }} reçue{% if tracking is defined and tracking %} (suivi "
        "{{ tracking }}){% endif %}.{% for r in rows %} {{ loop.index }}/{{ loop.length }}"
        " {{ r.name ~ '!' }}{% else %} -{% endfor %}")
    assert template.render({"reference": "CJN-1", "tracking": "T9", "rows": [{"name": "a"}]}) \
        == "Demande CJN-1 reçue (suivi T9). 1/1 a!"
    assert template.render({"reference": "CJN-1", "rows": []}) == "Demande CJN-1 reçue. -"


def test_html_templates_are_still_escaped() -> None:
    template = compile_template("<b>{{ x }}</b>{{ x ~ '<' }}", html=True)
    assert template.render({"x": "<i>"}) == "<b>&lt;i&gt;</b>&lt;i&gt;&lt;"


def test_sandbox_still_refuses_private_attributes() -> None:
    with pytest.raises(Exception, match="unsafe"):
        compile_template("{{ x | attr('__class__') }}").render({"x": 1})


@pytest.mark.parametrize("source", [
    '{% include "other.txt" %}', '{% extends "base.txt" %}', '{% import "macros" as m %}',
    '{% from "macros" import m %}', 'Bonjour {% if x %}{% include "x" %}{% endif %}',
])
def test_a_template_cannot_reach_another_file(source: str) -> None:
    """Refused when the file is loaded, not only when rendering would fail."""
    with pytest.raises(ExpressionError, match="cannot include, extend or import"):
        compile_template(source)


def test_compiled_texts_are_shared_and_render_once_compiled() -> None:
    """The same text compiles to the same object (kept by text), and rendering it from several
    threads at once gives every thread the right text."""
    source = "{{ name }} ({{ n * 2 }})"
    assert compile_template(source) is compile_template(source)
    assert compile_expression("n > 1") is compile_expression("n > 1")
    template = compile_template(source + " ")  # not rendered before
    results: list[str] = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        template.render({"name": f"t{i}", "n": i}))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(f"t{i} ({i * 2}) " for i in range(8))


@pytest.mark.parametrize(("compile_", "source"), [
    (compile_template, "{% for i in [1] %}" * 25 + "x" + "{% endfor %}" * 25),
    (compile_template, "{{ " + "-" * 200 + "x }}"),
    (compile_expression, "(" * 100 + "x" + ")" * 100),
    (compile_expression, "not " * 200 + "x"),
])
def test_nesting_python_cannot_compile_is_refused_at_load(
        compile_: Callable[[str], Any], source: str) -> None:
    """Python's compiler limits (nested blocks, parentheses) are met when the file is loaded,
    not at the first render: a procedure never validates with a text that cannot run."""
    with pytest.raises(ExpressionLimit, match="nested too deeply"):
        compile_(source)


def test_compiling_on_first_use_is_not_charged_to_the_render_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    template = compile_template("{{ who }} is slow to compile")
    deferred = type(template._compiled)
    made = deferred.template

    def slow(self: Any) -> Any:
        time.sleep(0.2)
        return made(self)

    monkeypatch.setattr(ex, "RENDER_SECONDS", 0.1)
    monkeypatch.setattr(deferred, "template", slow)
    assert template.render({"who": "this"}) == "this is slow to compile"


def test_only_short_texts_are_kept_compiled() -> None:
    short, long = "{{ a }}", "{{ a }}" + "x" * ex.CACHED_CHARS
    assert compile_template(short) is compile_template(short)
    assert compile_template(long) is not compile_template(long)
    assert compile_template(long).render({"a": 1}) == "1" + "x" * ex.CACHED_CHARS
