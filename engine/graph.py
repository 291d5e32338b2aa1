"""The one graph module: reachability, distances, shortest paths, strongly connected components.

A graph is a mapping `node -> successors` (`Mapping[N, Iterable[N]]`): the states of a
procedure (see `transition_graph`), the nodes of an exploration, a diagram's boxes. A node
that only appears as a successor is a node without successors. Nodes are usually state ids;
any hashable value works (exploration numbers its nodes).

Every function is pure, deterministic (it follows the order of the input: the mapping's
keys, then each node's successors) and iterative, so a chain of any length is no problem
for Python's recursion limit. Successors may repeat; a repetition counts once.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from .model import SYSTEM_ROLE, Procedure, Transition

N = TypeVar("N", bound=Hashable)

#: The cost of following the edge from the first node to the second (0 or more).
Weight = Callable[[N, N], float]


def nodes(graph: Mapping[N, Iterable[N]]) -> list[N]:
    """Every node of `graph` once: its keys in order, then the nodes that are only
    successors, in order of first mention."""
    found = dict.fromkeys(graph)
    for successors in graph.values():
        for node in successors:
            found.setdefault(node)
    return list(found)


def _successors(graph: Mapping[N, Iterable[N]], node: N) -> Iterable[N]:
    return graph.get(node, ())


def reachable(graph: Mapping[N, Iterable[N]], *start: N) -> set[N]:
    """Every node reachable from one of the `start` nodes by following edges, those nodes
    included. With no start node, the empty set."""
    seen, queue = set(start), deque(start)
    while queue:
        for successor in _successors(graph, queue.popleft()):
            if successor not in seen:
                seen.add(successor)
                queue.append(successor)
    return seen


def reverse(graph: Mapping[N, Iterable[N]]) -> dict[N, list[N]]:
    """The graph with every edge turned round: node -> predecessors. Every node of `graph`
    is a key (in the order of `nodes`); predecessors follow the order of `graph`, each once."""
    backwards: dict[N, dict[N, None]] = {node: {} for node in nodes(graph)}
    for node, successors in graph.items():
        for successor in successors:
            backwards[successor][node] = None
    return {node: list(predecessors) for node, predecessors in backwards.items()}


def distances(graph: Mapping[N, Iterable[N]], *start: N,
              weight: Weight[N] | None = None) -> dict[N, float]:
    """The distance from the nearest `start` node to every node reachable from them.

    Without `weight`, the fewest edges (breadth-first search); with it, the smallest sum of
    `weight(a, b)` over the edges of a path (Dijkstra; a negative weight raises ValueError).
    Unreachable nodes are not in the result: read it with `.get(node, math.inf)`. The
    result's order is the order in which nodes were settled (nearest first).
    """
    return _search(graph, start, weight)[0]


def shortest_path(graph: Mapping[N, Iterable[N]], start: N, goal: N,
                  weight: Weight[N] | None = None) -> list[N] | None:
    """The nodes of a shortest path from `start` to `goal`, both included ([start] when
    they are the same node), or None when `goal` cannot be reached. Fewest edges without
    `weight`, smallest total weight with it (see `distances`). Among equally short paths,
    the one found first in the order of the input."""
    found, parent = _search(graph, (start,), weight, goal)
    if goal not in found:
        return None
    path = [goal]
    while path[-1] != start:
        path.append(parent[path[-1]])
    path.reverse()
    return path


def _search(graph: Mapping[N, Iterable[N]], start: Iterable[N], weight: Weight[N] | None,
            goal: N | None = None) -> tuple[dict[N, float], dict[N, N]]:
    """Distances and the parent of each reached node on a shortest path; stops at `goal`."""
    if weight is None:
        return _breadth_first(graph, start, goal)
    found: dict[N, float] = {}
    parent: dict[N, N] = {}
    best: dict[N, float] = {}
    order = itertools.count()  # breaks ties in the input's order; nodes are never compared
    heap: list[tuple[float, int, N]] = []
    for node in start:
        if node not in best:
            best[node] = 0.0
            heap.append((0.0, next(order), node))
    heapq.heapify(heap)
    while heap:
        distance, _, node = heapq.heappop(heap)
        if node in found:
            continue
        found[node] = distance
        if node == goal:
            break
        for successor in _successors(graph, node):
            cost = weight(node, successor)
            if cost < 0:
                raise ValueError(f"negative weight {cost} from {node!r} to {successor!r}")
            if successor not in found and distance + cost < best.get(successor, float("inf")):
                best[successor] = distance + cost
                parent[successor] = node
                heapq.heappush(heap, (distance + cost, next(order), successor))
    return found, parent


def _breadth_first(graph: Mapping[N, Iterable[N]], start: Iterable[N], goal: N | None
                   ) -> tuple[dict[N, float], dict[N, N]]:
    found: dict[N, float] = {}
    parent: dict[N, N] = {}
    queue: deque[N] = deque()
    for node in start:
        if node not in found:
            found[node] = 0
            queue.append(node)
    while queue and goal not in found:
        node = queue.popleft()
        for successor in _successors(graph, node):
            if successor not in found:
                found[successor] = found[node] + 1
                parent[successor] = node
                queue.append(successor)
    return found, parent


def strongly_connected_components(graph: Mapping[N, Iterable[N]]) -> list[list[N]]:
    """The strongly connected components of `graph` (iterative Tarjan): every node is in
    exactly one; a component's nodes are in the order of `nodes`.

    Components come sinks first: each one after every component it can reach (reverse
    topological order; reverse the list for the topological one). The search starts from
    the nodes in the order of `nodes`, so the result is the same for the same input.
    """
    position = {node: i for i, node in enumerate(nodes(graph))}
    index: dict[N, int] = {}
    low: dict[N, int] = {}
    stack: list[N] = []
    on_stack: set[N] = set()
    found: list[list[N]] = []
    for root in position:
        if root in index:
            continue
        work = [_enter(graph, root, index, low, stack, on_stack)]
        while work:
            node, successors, done = work[-1]
            if done < len(successors):
                work[-1] = (node, successors, done + 1)
                successor = successors[done]
                if successor not in index:
                    work.append(_enter(graph, successor, index, low, stack, on_stack))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            work.pop()  # every successor of `node` done
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component, key=position.__getitem__))
    return found


def _enter(graph: Mapping[N, Iterable[N]], node: N, index: dict[N, int], low: dict[N, int],
           stack: list[N], on_stack: set[N]) -> tuple[N, list[N], int]:
    """Number `node` and push it (Tarjan); its successors left to visit, from the first."""
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    return node, list(_successors(graph, node)), 0


def cyclic(graph: Mapping[N, Iterable[N]], component: Iterable[N]) -> bool:
    """Whether a strongly connected component holds a cycle: it has more than one node, or
    its node has an edge to itself."""
    members = list(component)
    if len(members) != 1:
        return len(members) > 1
    return members[0] in set(_successors(graph, members[0]))


# --- the graph of a procedure -------------------------------------------------------------------

def leaving(procedure: Procedure, state: str, *, deadlines: bool = True,
            system: bool = True) -> list[Transition]:
    """The transitions out of `state` that `transition_graph` follows with the same options,
    in declaration order (a target that is not a state of the procedure included).

    `deadlines=False` leaves out the transitions fired by a deadline of `state` (their
    trigger is one of its deadlines' triggers); `system=False` those only the system role
    may fire (`model.SYSTEM_ROLE` is their only role).
    """
    timed = ({d.trigger for d in procedure.states[state].deadlines}
             if not deadlines and state in procedure.states else set())
    return [t for t in procedure.transitions_from(state)
            if t.trigger not in timed and (system or set(t.roles) != {SYSTEM_ROLE})]


def transition_graph(procedure: Procedure, *, deadlines: bool = True,
                     system: bool = True) -> dict[str, list[str]]:
    """State -> the states its transitions lead to, for every state of `procedure` in
    declaration order (targets in the order of the transitions, each once). Sources and
    targets that are not states are left out (rules read leniently-built procedures).
    The options leave transitions out as `leaving` says."""
    return {
        state: list(dict.fromkeys(
            t.target for t in leaving(procedure, state, deadlines=deadlines, system=system)
            if t.target in procedure.states))
        for state in procedure.states
    }
