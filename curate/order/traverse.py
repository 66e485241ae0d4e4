"""Document traversal of In-Context Pretraining (Shi et al. 2023, "In-Context Pretraining:
Language Modeling Beyond Document Boundaries", Algorithm 1).

Documents are the nodes of their (undirected) kNN graph, edges weighted by cosine similarity.
A path starts at the unvisited document of minimum degree and repeatedly steps to the most
similar unvisited neighbour; when none is left, the next path starts at the next
minimum-degree unvisited document. Every document is visited exactly once; the paths, laid
end to end, are the order. Ties go to the smaller index (callers index documents in id order).

Two implementations, one result:

- :func:`traverse` over CSR arrays: each document is left exactly once, so each row is
  scanned once for its most similar unvisited neighbour: O(N·k) in total, no sorting. The loops
  are compiled with numba when it is installed (same code runs as plain Python otherwise, only
  slower).
- :func:`traverse_reference`, the straightforward Python transcription of the paper (dicts, a
  set of unvisited ids); the specification in tests and the baseline in ``bench/order.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:  # optional accelerator: the functions below are valid plain Python as well
    from numba import njit as _njit

    def compiled(fn):
        return _njit(cache=True, nogil=True)(fn)

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    def compiled(fn):
        return fn

    HAVE_NUMBA = False

NO_GUARD = np.inf


@dataclass(frozen=True)
class Graph:
    """Undirected similarity graph in CSR form.

    Row ``i`` lists the neighbours of ``i`` in no particular order; an edge found from both
    ends is listed twice (harmless: the walk takes the heaviest unvisited entry).
    ``degree`` counts distinct neighbours.
    """

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int32 (nnz,)
    weights: np.ndarray  # float32 (nnz,)
    degree: np.ndarray  # int64 (n,)

    @property
    def n(self) -> int:
        return len(self.indptr) - 1


@dataclass(frozen=True)
class Traversal:
    """``order[p]`` is the document at position ``p``; ``path[p]`` the path it belongs to."""

    order: np.ndarray  # int64 (n,)
    path: np.ndarray  # int64 (n,), non-decreasing, 0-based

    def positions(self) -> np.ndarray:
        """Inverse permutation: position of every document."""
        pos = np.empty_like(self.order)
        pos[self.order] = np.arange(len(self.order))
        return pos


# --------------------------------------------------------------------------- graph

def symmetric_graph(neighbors: np.ndarray, similarities: np.ndarray) -> Graph:
    """Undirected CSR graph from a directed kNN list (``-1`` marks a missing neighbour).

    Edge ``i–j`` exists when ``j`` is among the neighbours of ``i`` or ``i`` among those of
    ``j``; its weight is the larger of the two similarities. Self loops are dropped.
    """
    nbr = np.ascontiguousarray(neighbors, dtype=np.int64)
    sim = np.ascontiguousarray(similarities, dtype=np.float32)
    if nbr.shape != sim.shape or nbr.ndim != 2:
        raise ValueError(f"neighbors {nbr.shape} and similarities {sim.shape} must be equal (n, k) arrays")
    if nbr.size and (nbr.max() >= len(nbr) or nbr.min() < -1):
        raise ValueError("neighbour index out of range")
    if len(nbr) >= 2**31:
        raise ValueError("more than 2**31 documents in one graph; partition the corpus first")
    return Graph(*_symmetric_csr(nbr, sim))


@compiled
def _symmetric_csr(nbr, sim):
    n, k = nbr.shape
    counts = np.zeros(n + 1, np.int64)
    for i in range(n):
        for t in range(k):
            j = nbr[i, t]
            if j >= 0 and j != i:
                counts[i + 1] += 1
                counts[j + 1] += 1
    indptr = np.cumsum(counts)
    fill = indptr[:-1].copy()
    indices = np.empty(indptr[n], np.int32)
    weights = np.empty(indptr[n], np.float32)
    for i in range(n):
        for t in range(k):
            j = nbr[i, t]
            if j >= 0 and j != i:
                indices[fill[i]], weights[fill[i]] = j, sim[i, t]
                fill[i] += 1
                indices[fill[j]], weights[fill[j]] = i, sim[i, t]
                fill[j] += 1
    degree = np.zeros(n, np.int64)
    seen_in_row = np.full(n, -1, np.int64)
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            if seen_in_row[indices[e]] != i:
                seen_in_row[indices[e]] = i
                degree[i] += 1
    return indptr, indices, weights, degree


# --------------------------------------------------------------------------- traversal

def start_order(graph: Graph) -> np.ndarray:
    """Documents by (degree asc, index asc): the order in which paths may start."""
    return np.argsort(graph.degree, kind="stable").astype(np.int64)


def traverse(graph: Graph, *, duplicate_threshold: float = NO_GUARD) -> Traversal:
    """The paper's greedy traversal over ``graph`` (see module docstring).

    ``duplicate_threshold``: never step to a neighbour, nor start a path right after a document,
    whose similarity is ``>=`` this (the near-duplicate guard). A start is only placed next to
    a near-duplicate when every unvisited document left is one.
    """
    order, path = _walk(graph.indptr, graph.indices, graph.weights, start_order(graph),
                        np.float32(duplicate_threshold))
    return Traversal(order, path)


@compiled
def _walk(indptr, indices, weights, starts, dup):
    n = len(indptr) - 1
    visited = np.zeros(n, np.bool_)
    order = np.empty(n, np.int64)
    path = np.empty(n, np.int64)
    pos, n_paths, next_start, prev = 0, 0, 0, -1
    while pos < n:
        while visited[starts[next_start]]:
            next_start += 1
        cur = starts[next_start]
        if prev >= 0 and _is_near_duplicate(indptr, indices, weights, dup, prev, cur):
            cur = _first_start_apart_from(indptr, indices, weights, dup, starts, visited, next_start, prev)
        while cur >= 0:
            visited[cur] = True
            order[pos], path[pos] = cur, n_paths
            pos += 1
            prev = cur
            cur = _heaviest_unvisited(indptr, indices, weights, dup, visited, prev)
        n_paths += 1
    return order, path


@compiled
def _heaviest_unvisited(indptr, indices, weights, dup, visited, node):
    """The most similar unvisited neighbour below the guard (ties: smaller index), or -1."""
    best, best_w = -1, np.float32(-np.inf)
    for e in range(indptr[node], indptr[node + 1]):
        j, w = indices[e], weights[e]
        if visited[j] or w >= dup:
            continue
        if best < 0 or w > best_w or (w == best_w and j < best):
            best, best_w = j, w
    return best


@compiled
def _is_near_duplicate(indptr, indices, weights, dup, a, b):
    for e in range(indptr[a], indptr[a + 1]):
        if indices[e] == b and weights[e] >= dup:
            return True
    return False


@compiled
def _first_start_apart_from(indptr, indices, weights, dup, starts, visited, first, prev):
    """The first unvisited start candidate that is no near-duplicate of ``prev`` (else ``starts[first]``)."""
    for s in range(first, len(starts)):
        c = starts[s]
        if not visited[c] and not _is_near_duplicate(indptr, indices, weights, dup, prev, c):
            return c
    return starts[first]


def cut_groups(path: np.ndarray, tokens: np.ndarray | None = None, *,
               max_docs: int | None = None, max_tokens: int | None = None) -> np.ndarray:
    """Group ids: each path cut into consecutive runs of at most ``max_docs`` documents and
    ``max_tokens`` tokens (a document longer than ``max_tokens`` gets a group of its own)."""
    path = np.asarray(path, np.int64)
    if tokens is None:
        tokens = np.zeros(len(path), np.int64)
    return _cut(path, np.asarray(tokens, np.int64), max_docs or 0, max_tokens or 0)


@compiled
def _cut(path, tokens, max_docs, max_tokens):
    group = np.empty(len(path), np.int64)
    g, docs, toks = -1, 0, 0
    for p in range(len(path)):
        new_path = p == 0 or path[p] != path[p - 1]
        too_many = max_docs > 0 and docs >= max_docs
        too_long = max_tokens > 0 and toks + tokens[p] > max_tokens
        if new_path or too_many or too_long:
            g, docs, toks = g + 1, 0, 0
        group[p] = g
        docs += 1
        toks += tokens[p]
    return group


# --------------------------------------------------------------------------- reference

def traverse_reference(neighbors, similarities) -> Traversal:
    """Straightforward Python version of the paper's Algorithm 1 on the same undirected graph.

    Readable specification and benchmark baseline; :func:`traverse` must give the same result.
    """
    neighbors, similarities = np.asarray(neighbors).tolist(), np.asarray(similarities, np.float32).tolist()
    n = len(neighbors)
    adjacency: list[dict[int, float]] = [{} for _ in range(n)]
    for i, (row, sims) in enumerate(zip(neighbors, similarities)):
        for j, s in zip(row, sims):
            if j < 0 or j == i:
                continue
            adjacency[i][j] = max(s, adjacency[i].get(j, s))
            adjacency[j][i] = max(s, adjacency[j].get(i, s))
    starts = sorted(range(n), key=lambda d: (len(adjacency[d]), d))
    unvisited = set(range(n))
    order, path, next_start = [], [], 0
    while unvisited:
        while starts[next_start] not in unvisited:
            next_start += 1
        current = starts[next_start]
        n_path = path[-1] + 1 if path else 0
        while current is not None:
            unvisited.remove(current)
            order.append(current)
            path.append(n_path)
            candidates = [(s, -j) for j, s in adjacency[current].items() if j in unvisited]
            current = -max(candidates)[1] if candidates else None
    return Traversal(np.array(order, np.int64), np.array(path, np.int64))
