"""engine/expressions.py: the tree API that analysis (rules, explore) reads expressions with."""

from __future__ import annotations

from engine import expressions as ex


def tree(source: str) -> ex.Node:
    return ex.compile_expression(source).tree


def test_comparison_and_negation() -> None:
    found = ex.comparison(tree("age(born) >= 18"))
    assert found is not None
    left, op, right = found
    assert op == "gteq" and ex.called(left) == {"age"} and ex.constant(right) == 18
    assert ex.comparison(tree("1 < x < 3")) is None
    assert ex.comparison(tree("x")) is None
    inner = ex.negated(tree("not (kind == 'a')"))
    assert inner is not None and ex.same_tree(inner, tree("kind == 'a'"))
    assert not ex.same_tree(tree("kind == 'a'"), tree("'a' == kind"))
    assert ex.negated(tree("kind")) is None


def test_literals() -> None:
    assert ex.is_scalar(tree("'a'")) and ex.is_scalar(tree("none")) and ex.is_scalar(tree("2"))
    assert not ex.is_scalar(tree("x")) and not ex.is_scalar(tree("[1]"))
    items = ex.literal_items(tree("['a', x]"))
    assert items is not None and [ex.constant(items[0]), ex.name_of(items[1])] == ["a", "x"]
    assert ex.literal_items(tree("x")) is None


def test_names_calls_and_attribute_chains() -> None:
    assert ex.names_read(tree("age(born) > limit and documents.passport")) == {
        "age", "born", "limit", "documents"}
    assert ex.called(tree("age(a) + [1, b]|max + x.f(1)")) == {"age"}  # no filter, no method
    assert ex.called(tree("min(age(a), 3)")) == {"min", "age"}
    assert ex.attribute_chain(tree("documents.passport")) == ("documents", "passport")
    assert ex.attribute_chain(tree("documents['passport']")) == ("documents", "passport")
    assert ex.attribute_chain(tree("a.b.c")) == ("a", "b", "c")
    assert ex.attribute_chain(tree("x")) == ("x",)
    assert ex.attribute_chain(tree("f(x).y")) is None
    assert ex.attribute_chain(tree("a[b]")) is None
