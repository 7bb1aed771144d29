"""Shortest-path forests from one reversed search: follow, label and sum them, vectorised.

A search over the reversed graph from a super-source S gives, for every node, its predecessor:
the next node on its way to S's targets (muster points, an incident). Sums along those chains
(length, walking time) are needed only for the nodes people start from: their chains are walked
all at once, a few steps per numpy operation. Where the chains are long and many, pointer
jumping over the whole forest (each round doubles the distance jumped) takes over, so a forest
over 100k nodes never costs more than a dozen passes over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from routing.graph import FloatArray, IntArray, NetworkGraph

NO_PREDECESSOR = -9999  # what scipy.sparse.csgraph returns for "none"

#: Steps walked per numpy operation between checks for walks that have ended.
WALK_STRIDE = 8
#: Node steps walked, per node of the forest, before pointer jumping takes over.
WALK_BUDGET = 8


@dataclass(frozen=True)
class Forest:
    """Predecessors of a reversed search from super-source ``source`` (= node_count)."""

    graph: NetworkGraph
    predecessors: IntArray  # per node: next node towards the target, source, or -9999
    distance: FloatArray  # per node, cost to the target (inf if unreachable)
    matrix: sp.csr_matrix  # the reversed graph searched (row = edge head, column = edge tail)
    best: IntArray  # per stored pair of ``matrix``, the directed edge chosen

    @property
    def source(self) -> int:
        return self.graph.node_count

    @cached_property
    def edges(self) -> IntArray:
        """Per node, the directed edge to its next node (-1 at roots and unreached nodes).

        The entry (next node, node) of the matrix searched: rows are short, so every node
        looks along its next node's row at once, one position per round."""
        n = self.graph.node_count
        pred = self.predecessors[:n]
        nodes = np.flatnonzero((pred >= 0) & (pred != self.source))
        indices = self.matrix.indices
        position = self.matrix.indptr[pred[nodes]].astype(np.int64)
        looking = np.flatnonzero(indices[position] != nodes)
        while len(looking):
            position[looking] += 1
            looking = looking[indices[position[looking]] != nodes[looking]]
        edges = np.full(n, -1, dtype=np.int64)
        edges[nodes] = self.best[position]
        return edges

    def sums(
        self, nodes: IntArray, per_edge: Sequence[FloatArray], *, budget: float = WALK_BUDGET
    ) -> tuple[IntArray, FloatArray]:
        """Per node of ``nodes``: its root, and the sums of each ``per_edge`` array (one value
        per directed edge) over the edges of its path there, shape ``(len(per_edge),
        len(nodes))``. Unreached nodes are their own root, with 0.

        The distinct nodes' paths are walked together; once the walk has taken ``budget``
        steps per reached node of the forest, pointer jumping finishes the remaining ones.
        """
        nodes = np.asarray(nodes, dtype=np.int64)
        edges = self.edges
        moving = edges >= 0
        somewhere = np.where(moving, edges, 0)
        steps = [np.where(moving, quantity[somewhere], 0.0) for quantity in per_edge]
        # The next node of a root is itself, with 0 to add: a walk may overrun its root.
        following = np.where(moving, self.predecessors[: len(edges)], np.arange(len(edges)))

        starts, inverse = np.unique(nodes, return_inverse=True)
        roots = starts.copy()
        totals = [np.zeros(len(starts)) for _ in per_edge]
        walking = np.flatnonzero(moving[starts])  # the walks not yet at their root
        at = starts[walking]
        sums = [total[walking] for total in totals]
        allowance = budget * np.count_nonzero(np.isfinite(self.distance[: len(edges)]))
        while len(walking) and allowance > 0:
            for _ in range(WALK_STRIDE):
                for q, step in enumerate(steps):
                    sums[q] += step[at]
                at = following[at]
            allowance -= WALK_STRIDE * len(walking)
            roots[walking] = at
            going = moving[at]
            for total, walked in zip(totals, sums, strict=True):
                total[walking] = walked
            walking, at = walking[going], at[going]
            sums = [walked[going] for walked in sums]
        if len(walking):
            jump_roots, jump_sums = _jump(following, steps)
            roots[walking] = jump_roots[at]
            for total, walked, jumped in zip(totals, sums, jump_sums, strict=True):
                total[walking] = walked + jumped[at]
        return roots[inverse], np.array([total[inverse] for total in totals])

    def path(self, node: int) -> list[int]:
        """Nodes from ``node`` to its root, following the forest."""
        out = [node]
        pred = self.predecessors
        source = self.source
        limit = self.graph.node_count
        following = int(pred[node])
        while following >= 0 and following != source:
            out.append(following)
            if len(out) > limit:  # pragma: no cover - a forest has no cycles
                raise RuntimeError("cycle in a shortest-path forest")
            following = int(pred[following])
        return out


def _jump(following: IntArray, steps: list[FloatArray]) -> tuple[IntArray, list[FloatArray]]:
    """Every node's root and sums of ``steps`` (per node, the value of its next edge) along
    its path, by Wyllie's list ranking: roots point to themselves and carry 0, so adding the
    sums held by the node jumped to is right whether or not that node is a root."""
    jump = following.astype(np.int32)
    totals = [step.copy() for step in steps]
    further = np.empty_like(jump)
    while True:
        np.take(jump, jump, out=further)
        if np.array_equal(further, jump):
            return jump.astype(np.int64), totals
        for total in totals:
            total += total[jump]
        jump, further = further, jump


def reverse_search(
    graph: NetworkGraph,
    costs: FloatArray,
    sources: Sequence[tuple[int, float]],
    *,
    limit: float = np.inf,
    changed: IntArray | None = None,
    within: IntArray | None = None,
) -> Forest:
    """One Dijkstra over the reversed graph from a super-source joined to ``sources``
    (node, initial cost): every node's cheapest cost to reach one of them, and the way.

    ``within``, when given, lists the only directed edges the search may use (a search
    confined to a zone): the search then costs little more than those edges."""
    matrix, best = graph.reversed_matrix(
        costs, extra_sources=sources, changed=changed, within=within
    )
    return search_matrix(graph, matrix, best, limit=limit)


def search_matrix(
    graph: NetworkGraph, matrix: sp.csr_matrix, best: IntArray, *, limit: float = np.inf
) -> Forest:
    """The search of :func:`reverse_search` on a matrix from ``graph.reversed_matrix`` with
    ``extra_sources``: searches that differ only in ``limit`` build the matrix once."""
    distance, predecessors = dijkstra(
        matrix,
        directed=True,
        indices=[graph.node_count],
        return_predecessors=True,
        limit=limit,
    )
    return Forest(graph, predecessors[0].astype(np.int64), distance[0], matrix, best)
