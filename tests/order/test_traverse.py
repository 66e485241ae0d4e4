"""The In-Context Pretraining traversal: compiled CSR walk == the paper's algorithm in plain Python."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.order.traverse import (
    HAVE_NUMBA,
    Traversal,
    _symmetric_csr,
    _walk,
    cut_groups,
    start_order,
    symmetric_graph,
    traverse,
    traverse_reference,
)


def knn_of(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force kNN lists (self excluded) of unit vectors."""
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    nbr = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return nbr, np.take_along_axis(sims, nbr, 1).astype(np.float32)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_permutation(t: Traversal, n: int) -> None:
    assert np.array_equal(np.sort(t.order), np.arange(n))
    assert np.all(np.diff(t.path) >= 0) and (n == 0 or t.path[0] == 0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), k=st.integers(1, 6), levels=st.sampled_from([3, 1000]),
       missing=st.floats(0, 0.5), seed=st.integers(0, 10_000))
def test_compiled_walk_equals_the_papers_algorithm(n, k, levels, missing, seed):
    """Random directed kNN lists with ties (few similarity levels) and missing entries (-1)."""
    rng = np.random.default_rng(seed)
    nbr = rng.integers(0, max(n, 1), size=(n, k))
    nbr[rng.random((n, k)) < missing] = -1
    sims = (rng.integers(0, levels, size=(n, k)) / levels).astype(np.float32)
    expected = traverse_reference(nbr, sims)
    got = traverse(symmetric_graph(nbr, sims))
    assert_permutation(got, n)
    assert np.array_equal(got.order, expected.order)
    assert np.array_equal(got.path, expected.path)


def test_walk_follows_the_most_similar_unvisited_neighbour():
    x = unit_vectors(400, 8, seed=1)
    nbr, sims = knn_of(x, 5)
    graph = symmetric_graph(nbr, sims)
    t = traverse(graph)
    assert_permutation(t, 400)
    assert t.order[0] == start_order(graph)[0]
    assert graph.degree[t.order[0]] == graph.degree.min()
    seen = set()
    for p in range(399):
        cur, nxt = t.order[p], t.order[p + 1]
        seen.add(cur)
        row = slice(graph.indptr[cur], graph.indptr[cur + 1])
        free = [(w, -j) for j, w in zip(graph.indices[row], graph.weights[row]) if j not in seen]
        if t.path[p + 1] == t.path[p]:
            assert -max(free)[1] == nxt
        else:
            assert not free  # a path only ends when every neighbour is visited


def test_ordered_neighbours_are_more_similar_than_random():
    x = unit_vectors(2000, 16, seed=2)
    t = traverse(symmetric_graph(*knn_of(x, 10)))
    adjacent = np.einsum("nd,nd->n", x[t.order[:-1]], x[t.order[1:]]).mean()
    shuffled = np.random.default_rng(0).permutation(2000)
    random = np.einsum("nd,nd->n", x[shuffled[:-1]], x[shuffled[1:]]).mean()
    assert adjacent > random + 0.3


def test_degree_counts_distinct_neighbours():
    nbr = np.array([[1, 2], [0, 2], [0, 1], [0, -1]])
    sims = np.array([[0.9, 0.5], [0.9, 0.4], [0.5, 0.4], [0.1, 0.0]], np.float32)
    graph = symmetric_graph(nbr, sims)
    assert graph.degree.tolist() == [3, 2, 2, 1]
    assert traverse(graph).order.tolist() == traverse_reference(nbr, sims).order.tolist() == [3, 0, 1, 2]


def test_near_duplicate_guard_keeps_copies_apart():
    base = unit_vectors(300, 12, seed=3)
    x = np.concatenate([base, base[:100] + 1e-4])  # 100 near-identical copies
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    graph = symmetric_graph(*knn_of(x, 6))

    def adjacent_copies(t: Traversal) -> int:
        return int(np.sum(np.einsum("nd,nd->n", x[t.order[:-1]], x[t.order[1:]]) >= 0.99))

    assert adjacent_copies(traverse(graph)) > 50  # unguarded, copies sit side by side
    guarded = traverse(graph, duplicate_threshold=0.99)
    assert_permutation(guarded, 400)
    assert adjacent_copies(guarded) == 0


def test_guard_places_copies_together_only_when_nothing_else_is_left():
    x = np.ones((3, 4), np.float32) / 2
    t = traverse(symmetric_graph(*knn_of(x, 2)), duplicate_threshold=0.9)
    assert_permutation(t, 3)
    assert t.path.tolist() == [0, 1, 2]


def test_cut_groups_by_documents_and_tokens():
    path = np.array([0, 0, 0, 0, 0, 1, 1])
    tokens = np.array([5, 5, 5, 20, 1, 3, 3])
    assert cut_groups(path).tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert cut_groups(path, max_docs=2).tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert cut_groups(path, tokens, max_tokens=10).tolist() == [0, 0, 1, 2, 3, 4, 4]
    assert cut_groups(path, tokens, max_docs=2, max_tokens=12).tolist() == [0, 0, 1, 2, 3, 4, 4]


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed: the plain-Python path is the only one")
def test_plain_python_fallback_gives_the_same_order():
    x = unit_vectors(300, 8, seed=4)
    nbr, sims = knn_of(x, 4)
    graph = symmetric_graph(nbr, sims)
    indptr, indices, weights, degree = _symmetric_csr.py_func(nbr, sims)
    assert np.array_equal(degree, graph.degree)
    starts = np.argsort(degree, kind="stable")
    order, path = _walk.py_func(indptr, indices, weights, starts, np.float32(0.95))
    compiled = traverse(graph, duplicate_threshold=0.95)
    assert np.array_equal(order, compiled.order) and np.array_equal(path, compiled.path)


def test_bad_graphs_are_refused():
    with pytest.raises(ValueError, match="equal"):
        symmetric_graph(np.zeros((3, 2), int), np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        symmetric_graph(np.array([[5]]), np.array([[0.5]], np.float32))
