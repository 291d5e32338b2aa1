"""engine/graph.py: reachability, reversal, distances, shortest paths, strongly connected
components and the transition graph of a procedure (order, cycles, long chains)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from engine import compile_source, load_procedure
from engine.graph import (
    cyclic,
    distances,
    leaving,
    nodes,
    reachable,
    reverse,
    shortest_path,
    strongly_connected_components,
    transition_graph,
)

PROCEDURES = Path(__file__).resolve().parent.parent / "procedures"

#   a -> b -> c -> d      e -> a     f (alone)    g <-> h -> c
GRAPH = {
    "a": ["b"], "b": ["c", "c"], "c": ["d"], "e": ["a"], "f": [], "g": ["h"], "h": ["g", "c"],
}

#: Longer than Python's recursion limit: a recursive walk would fail on it.
LONG = max(10_000, sys.getrecursionlimit() + 1)


def chain(length: int = LONG, loop: bool = False) -> dict[int, list[int]]:
    """0 -> 1 -> ... -> length - 1 (-> 0 with `loop`)."""
    graph = {i: [i + 1] for i in range(length - 1)}
    graph[length - 1] = [0] if loop else []
    return graph


def test_nodes_are_the_keys_then_the_successors_only_mentioned() -> None:
    assert nodes({"x": ["z", "y"], "y": ["w"]}) == ["x", "y", "z", "w"]
    assert nodes(GRAPH) == ["a", "b", "c", "e", "f", "g", "h", "d"]


def test_reachable() -> None:
    assert reachable(GRAPH, "a") == {"a", "b", "c", "d"}
    assert reachable(GRAPH, "e", "g") == {"a", "b", "c", "d", "e", "g", "h"}
    assert reachable(GRAPH, "d") == {"d"}  # only a successor: no edge out
    assert reachable(GRAPH, "unknown") == {"unknown"}
    assert reachable(GRAPH) == set()


def test_reverse_keeps_every_node_and_the_input_order() -> None:
    backwards = reverse(GRAPH)
    assert list(backwards) == nodes(GRAPH)
    assert backwards == {"a": ["e"], "b": ["a"], "c": ["b", "h"], "d": ["c"], "e": [], "f": [],
                         "g": ["h"], "h": ["g"]}
    assert reachable(backwards, "c") == {"a", "b", "c", "e", "g", "h"}


def test_distances_by_hops() -> None:
    assert distances(GRAPH, "e") == {"e": 0, "a": 1, "b": 2, "c": 3, "d": 4}
    assert list(distances(GRAPH, "e")) == ["e", "a", "b", "c", "d"]  # nearest first
    assert distances(GRAPH, "a", "h") == {"a": 0, "h": 0, "b": 1, "g": 1, "c": 1, "d": 2}
    assert distances(GRAPH, "d").get("a", math.inf) == math.inf
    assert distances(GRAPH) == {}


def test_distances_by_weight() -> None:
    #  s -1-> x -1-> t    s -5-> t
    graph = {"s": ["t", "x"], "x": ["t"]}
    costs = {("s", "t"): 5.0, ("s", "x"): 1.0, ("x", "t"): 1.0}

    def weight(a: str, b: str) -> float:
        return costs[a, b]

    assert distances(graph, "s", weight=weight) == {"s": 0, "x": 1, "t": 2}
    assert distances(graph, "s") == {"s": 0, "t": 1, "x": 1}
    assert shortest_path(graph, "s", "t", weight) == ["s", "x", "t"]
    assert shortest_path(graph, "s", "t") == ["s", "t"]
    costs["s", "x"] = -1.0
    with pytest.raises(ValueError, match="negative weight"):
        distances(graph, "s", weight=weight)


def test_shortest_path() -> None:
    assert shortest_path(GRAPH, "e", "d") == ["e", "a", "b", "c", "d"]
    assert shortest_path(GRAPH, "g", "c") == ["g", "h", "c"]
    assert shortest_path(GRAPH, "a", "a") == ["a"]
    assert shortest_path(GRAPH, "d", "a") is None
    assert shortest_path(GRAPH, "f", "a") is None
    # two paths of two edges: the first in the input's order wins
    assert shortest_path({"s": ["x", "y"], "x": ["t"], "y": ["t"]}, "s", "t") == ["s", "x", "t"]
    assert shortest_path({"s": ["y", "x"], "x": ["t"], "y": ["t"]}, "s", "t") == ["s", "y", "t"]


def test_strongly_connected_components() -> None:
    components = strongly_connected_components(GRAPH)
    assert sorted(map(sorted, components)) == [["a"], ["b"], ["c"], ["d"], ["e"], ["f"],
                                               ["g", "h"]]
    assert components == [["d"], ["c"], ["b"], ["a"], ["e"], ["f"], ["g", "h"]]
    where = {node: i for i, component in enumerate(components) for node in component}
    for node, successors in GRAPH.items():  # sinks first: a component after those it reaches
        assert all(where[s] <= where[node] for s in successors)
    assert [c for c in components if cyclic(GRAPH, c)] == [["g", "h"]]


def test_components_of_nested_cycles_and_self_loops() -> None:
    #  a -> b -> c -> a,  c -> d -> e -> d,  e -> e,  f -> f,  g
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": ["e"], "e": ["d", "e"],
             "f": ["f"], "g": []}
    components = strongly_connected_components(graph)
    assert components == [["d", "e"], ["a", "b", "c"], ["f"], ["g"]]
    assert [cyclic(graph, c) for c in components] == [True, True, True, False]
    assert strongly_connected_components({}) == []


def test_results_do_not_depend_on_anything_but_the_input() -> None:
    first = strongly_connected_components(GRAPH)
    for _ in range(3):
        assert strongly_connected_components(dict(GRAPH)) == first
        assert reverse(GRAPH) == reverse(dict(GRAPH))


def test_a_long_chain_is_no_problem_for_the_recursion_limit() -> None:
    line = chain()
    assert len(reachable(line, 0)) == LONG
    assert distances(line, 0)[LONG - 1] == LONG - 1
    assert distances(line, 0, weight=lambda a, b: 0.5)[LONG - 1] == (LONG - 1) / 2
    path = shortest_path(line, 0, LONG - 1)
    assert path is not None and len(path) == LONG
    assert len(reverse(line)) == LONG
    assert len(strongly_connected_components(line)) == LONG
    ring = chain(loop=True)
    (component,) = strongly_connected_components(ring)
    assert component == list(range(LONG)) and cyclic(ring, component)


# --- the graph of a procedure ------------------------------------------------------------------

MINI = """\
id: mini
version: "1"
title: {fr: Mini, en: Mini}
authority:
  ministry: {fr: Ministère, en: Ministry}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent, en: Agent}}
  system: {label: {fr: Système, en: System}}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true}
  waiting:
    label: {fr: En attente, en: Waiting}
    deadlines:
      - {after: "30 days", trigger: expire}
  done: {label: {fr: Faite, en: Done}, final: accepted}
  expired: {label: {fr: Expirée, en: Expired}, final: expired}
transitions:
  - {trigger: submit, from: draft, to: waiting, roles: [applicant]}
  - {trigger: archive, from: draft, to: expired, roles: [system]}
  - {trigger: decide, from: waiting, to: done, roles: [agent]}
  - {trigger: expire, from: waiting, to: expired, roles: [system]}
  - {trigger: confirm, from: waiting, to: done, roles: [agent, system]}
"""


def test_transition_graph() -> None:
    procedure, diagnostics = compile_source(MINI, "mini.yaml")
    assert procedure is not None, diagnostics
    assert transition_graph(procedure) == {
        "draft": ["waiting", "expired"], "waiting": ["done", "expired"], "done": [],
        "expired": []}
    assert transition_graph(procedure, deadlines=False)["waiting"] == ["done"]
    assert transition_graph(procedure, deadlines=False)["draft"] == ["waiting", "expired"]
    # `confirm` may be fired by an agent too: only `archive` and `expire` are left out
    assert transition_graph(procedure, system=False) == {
        "draft": ["waiting"], "waiting": ["done"], "done": [], "expired": []}
    assert [t.trigger for t in leaving(procedure, "waiting", deadlines=False)] == [
        "decide", "confirm"]
    assert [t.trigger for t in leaving(procedure, "waiting")] == ["decide", "expire", "confirm"]


def test_the_shipped_procedures_are_connected() -> None:
    for path in sorted(PROCEDURES.glob("*.yaml")):
        procedure = load_procedure(path)
        states = transition_graph(procedure)
        assert reachable(states, procedure.initial_state.id) == set(procedure.states), path.name
        finals = [s.id for s in procedure.states.values() if s.final]
        assert reachable(reverse(states), *finals) == set(procedure.states), path.name
