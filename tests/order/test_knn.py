"""FAISS kNN graphs: exact below the threshold, IVF / IVF-PQ (re-ranked) above it."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import synthetic_embeddings

from curate.core import CurateError
from curate.order.knn import (
    gpu_count,
    index_description,
    knn_graph,
    l2_normalize,
    torch_cuda_available,
)


def brute_force(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    best_first = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
    nbr = np.take_along_axis(top, best_first, 1)
    return nbr, np.take_along_axis(sims, nbr, 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return synthetic_embeddings(np.arange(4000), 24, topics=40, seed=7)


def test_exact_graph_matches_brute_force(vectors):
    x = vectors[:1500]
    graph = knn_graph(x, 8, threads=1)
    truth, truth_sims = brute_force(x, 8)
    assert graph.index == "Flat"
    assert graph.neighbors.shape == (1500, 8) and graph.neighbors.dtype == np.int64
    assert not (graph.neighbors == np.arange(1500)[:, None]).any()
    assert recall(graph.neighbors, truth) > 0.999
    np.testing.assert_allclose(graph.similarities, truth_sims, atol=1e-5)
    assert np.all(np.diff(graph.similarities, axis=1) <= 1e-6)  # best first


def test_ivf_and_pq_graphs_have_high_recall_and_exact_similarities(vectors):
    truth, _ = brute_force(vectors, 10)
    ivf = knn_graph(vectors, 10, exact_max=1000, nprobe=8, threads=1)
    pq = knn_graph(vectors, 10, exact_max=1000, nprobe=8, index_memory_bytes=1, threads=1)
    assert ivf.index.startswith("IVF") and ivf.index.endswith(",Flat")
    assert ",PQ" in pq.index
    assert recall(ivf.neighbors, truth) > 0.95
    assert recall(pq.neighbors, truth) > 0.9
    exact = np.einsum("nd,nkd->nk", vectors, vectors[pq.neighbors])
    np.testing.assert_allclose(pq.similarities, exact, atol=1e-5)  # re-ranked, not PQ estimates


def test_fewer_rows_than_k_pad_with_minus_one():
    x = l2_normalize(np.eye(3, 5, dtype=np.float32) + 0.1)
    graph = knn_graph(x, 4)
    assert graph.neighbors.shape == (3, 4)
    assert (graph.neighbors[:, 2:] == -1).all() and (graph.neighbors[:, :2] >= 0).all()
    assert knn_graph(x[:1], 4).neighbors.tolist() == [[-1, -1, -1, -1]]
    assert knn_graph(x[:0], 4).neighbors.shape == (0, 4)


def test_vectors_are_normalised_and_checked():
    graph = knn_graph(np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), 1)
    np.testing.assert_allclose(graph.similarities[:, 0], [np.sqrt(0.5)] * 3, atol=1e-6)
    with pytest.raises(CurateError, match="NaN"):
        knn_graph(np.array([[np.nan, 1.0], [1.0, 0.0]]), 1)
    with pytest.raises(CurateError, match="2-d"):
        knn_graph(np.ones(4), 1)
    with pytest.raises(CurateError, match="k must be"):
        knn_graph(np.ones((4, 2)), 0)


def test_index_choice_by_size_and_memory():
    assert index_description(20_000, 384) == "Flat"
    assert index_description(1_000_000, 64) == "IVF2048,Flat"
    assert index_description(1_000_000, 384, index_memory_bytes=1 << 30) == "IVF2048,PQ64x4fsr"


def test_gpu_index_choice_avoids_fast_scan_codes_faiss_gpu_cannot_clone():
    import faiss

    cpu = index_description(1_000_000, 384, index_memory_bytes=1 << 30)
    gpu = index_description(1_000_000, 384, index_memory_bytes=1 << 30, gpu=True)
    assert gpu == "IVF2048,PQ64" and index_description(1_000_000, 64, gpu=True) == "IVF2048,Flat"
    assert isinstance(faiss.index_factory(384, cpu, faiss.METRIC_INNER_PRODUCT), faiss.IndexIVFPQFastScan)
    index = faiss.index_factory(384, gpu, faiss.METRIC_INNER_PRODUCT)
    assert type(index) is faiss.IndexIVFPQ and index.pq.M == 64 and index.pq.nbits == 8


def test_torch_exact_search_equals_faiss_flat():
    """The GPU fallback (blocked matrix products + top-k), run on the CPU here, equals IndexFlatIP."""
    from curate.order.knn import exact_knn_torch, l2_normalize

    x = l2_normalize(np.random.default_rng(3).normal(size=(700, 24)).astype(np.float32))
    faiss_graph = knn_graph(x, 7, use_gpu=False)
    neighbors, sims = exact_knn_torch(x, 7, device="cpu")
    np.testing.assert_array_equal(neighbors, faiss_graph.neighbors)
    np.testing.assert_allclose(sims, faiss_graph.similarities, atol=1e-5)
    few_n, few_s = exact_knn_torch(x[:3], 5, device="cpu")  # fewer rows than k: -1 padding
    assert (few_n[:, 2:] == -1).all() and sorted(few_n[0, :2]) == [1, 2]


@pytest.mark.skipif(gpu_count() > 0 or torch_cuda_available(), reason="a GPU is present")
def test_asking_for_a_gpu_without_one_is_a_clear_error():
    with pytest.raises(CurateError, match="faiss-gpu"):
        knn_graph(np.eye(50, 4, dtype=np.float32) + 0.01, 2, exact_max=10, use_gpu=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch_cuda_available(), reason="needs a CUDA GPU")
def test_cuda_search_without_faiss_gpu_is_exact():
    x = synthetic_embeddings(np.arange(30_000), 32, topics=300)
    graph = knn_graph(x, 10)
    assert graph.index == ("Flat (torch, cuda)" if gpu_count() == 0 else graph.index)
    sims = x @ x[:200].T  # exact neighbours of the first 200 rows, computed on the CPU
    sims[np.arange(200), np.arange(200)] = -np.inf
    expected = np.sort(sims, axis=0)[::-1][:10].T
    np.testing.assert_allclose(graph.similarities[:200], expected, atol=1e-5)


def test_synthetic_embeddings_depend_only_on_the_id():
    a = synthetic_embeddings(np.arange(100), 8, topics=5)
    b = synthetic_embeddings(np.arange(50, 60), 8, topics=5)
    np.testing.assert_array_equal(a[50:60], b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-6)
