"""Shortest-path forests from one reversed search: follow, label and sum them, vectorised.

A search over the reversed graph from a super-source S gives, for every node, its predecessor:
the next node on its way to S's targets (muster points, an incident). These helpers walk all those
chains at once by pointer jumping (each round doubles the distance jumped), so a forest over
100k nodes is summed in a dozen numpy operations instead of a Python loop per person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import dijkstra

from routing.graph import FloatArray, IntArray, NetworkGraph

NO_PREDECESSOR = -9999  # what scipy.sparse.csgraph returns for "none"


@dataclass(frozen=True)
class Forest:
    """Predecessors of a reversed search from super-source ``source`` (= node_count)."""

    graph: NetworkGraph
    predecessors: IntArray  # per node: next node towards the target, source, or -9999
    distance: FloatArray  # per node, cost to the target (inf if unreachable)
    best: IntArray  # per stored pair, the directed edge chosen (from reversed_matrix)

    @property
    def source(self) -> int:
        return self.graph.node_count

    def roots(self) -> IntArray:
        """Per node, the last node before the target (the node attached to the super-source)."""
        n = self.graph.node_count
        pred = self.predecessors[:n]
        jump = np.where((pred == self.source) | (pred < 0), np.arange(n), pred)
        while True:
            nxt = jump[jump]
            if np.array_equal(nxt, jump):
                return jump
            jump = nxt

    def along(self, per_edge: FloatArray) -> FloatArray:
        """Per node, the sum of ``per_edge`` over the edges of its path to its root.

        ``per_edge`` may be ``(E,)`` or ``(E, k)``: k quantities summed in one pass.
        """
        n = self.graph.node_count
        pred = self.predecessors[:n]
        has_next = (pred >= 0) & (pred != self.source)
        nodes = np.flatnonzero(has_next)
        step = np.zeros((n, *per_edge.shape[1:]))
        edges = self.graph.pair_edge(pred[nodes], nodes, self.best)
        step[nodes] = per_edge[edges]
        jump = np.where(has_next, pred, np.arange(n))
        total = step
        # Wyllie's list ranking: roots point to themselves and carry 0, so adding the sum held
        # by the node jumped to is right whether or not that node is a root.
        while True:
            further = jump[jump]
            if np.array_equal(further, jump):
                return total
            total = total + total[jump]
            jump = further

    def path(self, node: int) -> list[int]:
        """Nodes from ``node`` to its root, following the forest."""
        out = [node]
        pred = self.predecessors
        while pred[out[-1]] >= 0 and pred[out[-1]] != self.source:
            out.append(int(pred[out[-1]]))
            if len(out) > self.graph.node_count:  # pragma: no cover - a forest has no cycles
                raise RuntimeError("cycle in a shortest-path forest")
        return out


def reverse_search(
    graph: NetworkGraph,
    costs: FloatArray,
    sources: Sequence[tuple[int, float]],
    *,
    limit: float = np.inf,
) -> Forest:
    """One Dijkstra over the reversed graph from a super-source joined to ``sources``
    (node, initial cost): every node's cheapest cost to reach one of them, and the way."""
    matrix, best = graph.reversed_matrix(costs, extra_sources=sources)
    distance, predecessors = dijkstra(
        matrix,
        directed=True,
        indices=[graph.node_count],
        return_predecessors=True,
        limit=limit,
    )
    return Forest(graph, predecessors[0].astype(np.int64), distance[0], best)
