"""k-nearest-neighbour graphs with FAISS (Johnson et al. 2019, "Billion-scale similarity
search with GPUs"), by inner product on L2-normalised vectors (= cosine similarity).

- exact search (``IndexFlatIP``) up to ``exact_max`` vectors;
- an inverted file (``IndexIVFFlat``) above it, with 4-bit fast-scan product quantisation
  (``IndexIVFPQFastScan``)
  when the flat codes would exceed ``index_memory_bytes``; PQ candidates are re-ranked with
  exact inner products, so the similarities in the graph are always exact;
- on GPUs when FAISS sees any (faiss-gpu), through ``index_cpu_to_all_gpus``: same code path;
- without faiss-gpu but with a CUDA GPU visible to torch, exact search as blocked float32
  matrix products on the GPU (:func:`exact_knn_torch`) up to ``TORCH_EXACT_MAX`` vectors.

Every input row is a query; it is dropped from its own neighbour list. Results depend only
on the rows and their order (callers sort by id), so ties are broken by id.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.core import CurateError

EXACT_MAX = 20_000
INDEX_MEMORY_BYTES = 2 << 30
TRAIN_POINTS_PER_LIST = 64
SEARCH_BATCH = 16_384
RERANK = 8  # PQ candidates fetched per wanted neighbour, re-ranked exactly
TORCH_EXACT_MAX = 4_000_000  # exact GPU search through torch up to this many vectors
TORCH_BLOCK_BYTES = 1 << 30  # similarity block held on the device at a time


@dataclass(frozen=True)
class KnnGraph:
    """``neighbors[i]``: indices of the ``k`` rows most similar to row ``i`` (``-1`` when fewer
    exist), most similar first; ``similarities[i]`` their inner products."""

    neighbors: np.ndarray  # int64 (n, k)
    similarities: np.ndarray  # float32 (n, k)
    index: str  # the FAISS index description used, e.g. "Flat" or "IVF1024,Flat"


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Float32 rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise CurateError(f"embeddings must be a 2-d array (documents × dims), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise CurateError("embeddings contain NaN or infinite values; recompute them")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1), dtype=np.float32)


def index_description(n: int, d: int, *, exact_max: int = EXACT_MAX,
                      index_memory_bytes: int = INDEX_MEMORY_BYTES, gpu: bool = False) -> str:
    """The FAISS factory string for ``n`` vectors of dimension ``d`` (``gpu``: one faiss-gpu can
    clone, i.e. 8-bit PQ codes instead of the CPU's 4-bit fast-scan ones)."""
    if n <= exact_max:
        return "Flat"
    nlist = int(np.clip(2 ** round(np.log2(2 * np.sqrt(n))), 16, 65_536))
    if n * d * 4 <= index_memory_bytes:
        return f"IVF{nlist},Flat"
    m = max((s for s in (64, 48, 32, 24, 16, 12, 8, 4, 2) if d % s == 0 and 2 * s <= d), default=2)
    if gpu:  # every m above is a code length GpuIndexIVFPQ supports (56+ bytes with float16 tables)
        return f"IVF{nlist},PQ{m}"
    return f"IVF{nlist},PQ{m}x4fsr"  # 4-bit fast-scan residual codes: quick to train, m/2 bytes per vector


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu or without FAISS)."""
    try:
        import faiss
    except ImportError:
        return 0
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def search_backend(n: int, use_gpu: bool | None) -> str:
    """``faiss-gpu``, ``torch-cuda`` (exact) or ``faiss-cpu`` for ``n`` vectors."""
    if use_gpu is not False and gpu_count() > 0:
        return "faiss-gpu"
    if use_gpu is not False and n <= TORCH_EXACT_MAX and torch_cuda_available():
        return "torch-cuda"
    if use_gpu:
        raise CurateError("use_gpu: true but no GPU is usable: install faiss-gpu or a CUDA build of torch "
                          f"(torch searches exactly up to {TORCH_EXACT_MAX:,} vectors), or drop use_gpu")
    return "faiss-cpu"


def exact_knn_torch(x: np.ndarray, k: int, device: str = "cuda") -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` most similar other rows of unit rows ``x`` by blocked float32 matrix products
    on ``device`` (TF32 off, so similarities are full float32 inner products)."""
    import torch

    n = len(x)
    base = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    rows_per_block = int(max(1, min(n, TORCH_BLOCK_BYTES // (4 * n))))
    take = min(k, n - 1)
    neighbors = np.full((n, k), -1, np.int64)
    sims = np.zeros((n, k), np.float32)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.inference_mode():
            for lo in range(0, n, rows_per_block):
                hi = min(n, lo + rows_per_block)
                block = base[lo:hi] @ base.T
                block[torch.arange(hi - lo, device=device), torch.arange(lo, hi, device=device)] = -torch.inf
                values, indices = torch.topk(block, take, dim=1)
                neighbors[lo:hi, :take] = indices.cpu().numpy()
                sims[lo:hi, :take] = values.cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return neighbors, sims


def knn_graph(vectors: np.ndarray, k: int = 10, *, exact_max: int = EXACT_MAX, nprobe: int = 16,
              index_memory_bytes: int = INDEX_MEMORY_BYTES, use_gpu: bool | None = None,
              seed: int = 0, threads: int | None = None) -> KnnGraph:
    """The ``k`` most similar other rows of every row of ``vectors`` (normalised here).

    ``threads``: FAISS OpenMP threads (default: FAISS's own choice); Spark tasks pass 1.
    """
    if k < 1:
        raise CurateError(f"k must be >= 1, got {k}")
    x = l2_normalize(vectors)
    n, d = x.shape
    backend = search_backend(n, use_gpu) if n > 1 else "faiss-cpu"
    description = index_description(n, d, exact_max=exact_max, index_memory_bytes=index_memory_bytes,
                                    gpu=backend == "faiss-gpu")
    if n <= 1:
        return KnnGraph(np.full((n, k), -1, np.int64), np.zeros((n, k), np.float32), description)
    if backend == "torch-cuda":
        return KnnGraph(*exact_knn_torch(x, k, "cuda"), "Flat (torch, cuda)")
    if threads is not None:
        import faiss

        faiss.omp_set_num_threads(threads)
    index = _build_index(x, description, nprobe=nprobe, use_gpu=backend == "faiss-gpu", seed=seed)
    quantized = ",PQ" in description
    fetch = min(n, RERANK * k + 1 if quantized else k + 1)
    neighbors = np.empty((n, k), np.int64)
    sims = np.empty((n, k), np.float32)
    for lo in range(0, n, SEARCH_BATCH):
        hi = min(n, lo + SEARCH_BATCH)
        found_sims, found = index.search(x[lo:hi], fetch)
        if quantized:
            found_sims, found = _rerank(x, lo, found)
        neighbors[lo:hi], sims[lo:hi] = _best_others(found, found_sims, np.arange(lo, hi), k)
    return KnnGraph(neighbors, sims, description)


def _build_index(x: np.ndarray, description: str, *, nprobe: int, use_gpu: bool, seed: int):
    import faiss

    d = x.shape[1]
    index = faiss.index_factory(d, description, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        ivf.nprobe = nprobe
        index.train(_training_sample(x, ivf.nlist))
    if use_gpu:
        options = faiss.GpuMultipleClonerOptions()
        options.useFloat16 = ",PQ" in description  # float16 PQ lookup tables; candidates are re-ranked exactly
        index = faiss.index_cpu_to_all_gpus(index, co=options)
        if description != "Flat":
            faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    index.add(x)
    return index


def _training_sample(x: np.ndarray, nlist: int) -> np.ndarray:
    """An evenly strided (hence deterministic) sample of ``TRAIN_POINTS_PER_LIST × nlist`` rows."""
    want = TRAIN_POINTS_PER_LIST * nlist
    stride = max(1, len(x) // want)
    return np.ascontiguousarray(x[::stride][:want])


def _rerank(x: np.ndarray, lo: int, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of queries ``x[lo:]`` with their candidates, re-sorted best first."""
    queries = x[lo:lo + len(found)]
    sims = np.einsum("qd,qkd->qk", queries, x[np.maximum(found, 0)])
    sims = np.where(found >= 0, sims, -np.inf).astype(np.float32)
    best_first = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, best_first, 1), np.take_along_axis(found, best_first, 1)


def _best_others(found: np.ndarray, sims: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row from its own results and keep the first ``k`` others (``-1`` padding)."""
    other = (found >= 0) & (found != rows[:, None])
    keep = other & (np.cumsum(other, axis=1) <= k)
    take = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    nbr = np.take_along_axis(found, take, 1)
    sim = np.take_along_axis(sims, take, 1)
    valid = np.take_along_axis(keep, take, 1)
    width = nbr.shape[1]
    out_n = np.full((len(rows), k), -1, np.int64)
    out_s = np.zeros((len(rows), k), np.float32)
    out_n[:, :width] = np.where(valid, nbr, -1)
    out_s[:, :width] = np.where(valid, sim, 0)
    return out_n, out_s
