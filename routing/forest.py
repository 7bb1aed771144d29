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

    def summary(self, per_edge: FloatArray) -> tuple[IntArray, FloatArray]:
        """Per node: its root, and the sum of ``per_edge`` over the edges of its path there.

        ``per_edge`` may be ``(E,)`` or ``(E, k)``: k quantities summed in one pass. Only the
        nodes the search reached take part (a search confined to a threat zone reaches few).
        Unreached nodes are their own root, with 0.
        """
        n = self.graph.node_count
        roots = np.arange(n)
        totals = np.zeros((n, *per_edge.shape[1:]))
        reached = np.flatnonzero(np.isfinite(self.distance[:n]))
        if not len(reached):
            return roots, totals
        local = np.full(n, -1, dtype=np.int64)
        local[reached] = np.arange(len(reached))
        pred = self.predecessors[reached]
        has_next = (pred >= 0) & (pred != self.source)
        jump = np.where(has_next, local[np.where(has_next, pred, 0)], np.arange(len(reached)))
        step = np.zeros((len(reached), *per_edge.shape[1:]))
        inner = np.flatnonzero(has_next)
        step[inner] = per_edge[self.graph.pair_edge(pred[inner], reached[inner], self.best)]
        total = step
        # Wyllie's list ranking: roots point to themselves and carry 0, so adding the sum held
        # by the node jumped to is right whether or not that node is a root.
        while True:
            further = jump[jump]
            if np.array_equal(further, jump):
                break
            total = total + total[jump]
            jump = further
        roots[reached] = reached[jump]
        totals[reached] = total
        return roots, totals

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
    changed: IntArray | None = None,
) -> Forest:
    """One Dijkstra over the reversed graph from a super-source joined to ``sources``
    (node, initial cost): every node's cheapest cost to reach one of them, and the way."""
    matrix, best = graph.reversed_matrix(costs, extra_sources=sources, changed=changed)
    distance, predecessors = dijkstra(
        matrix,
        directed=True,
        indices=[graph.node_count],
        return_predecessors=True,
        limit=limit,
    )
    return Forest(graph, predecessors[0].astype(np.int64), distance[0], best)
