"""Embedding columns as stages read them: one shape check for every stage that takes vectors
from an ``embed``-stage column (``knn_order``, ``semantic_dedup``), and the spherical k-means
that ``semantic_dedup`` and ``domain_label`` cluster them with."""
from __future__ import annotations

import numpy as np

from curate.core import CurateError


def count_and_dimension(features, vector: str, embedding_column: str, stage: str) -> tuple[int, int]:
    """Row count and embedding dimension of ``features[vector]`` in one Spark job; one clear
    error naming ``stage`` for missing or ragged embeddings."""
    from pyspark.sql import functions as F

    row = features.agg(F.count(F.lit(1)).alias("n"),
                       F.sum(F.when(F.col(vector).isNull(), 1).otherwise(0)).alias("nulls"),
                       F.min(F.size(vector)).alias("lo"), F.max(F.size(vector)).alias("hi")).first()
    if row["nulls"]:
        raise CurateError(f"{stage}: {row['nulls']} document(s) have no '{embedding_column}'; "
                          "re-run the embed stage or drop them first")
    if row["n"] and (row["lo"] != row["hi"] or row["lo"] < 1):
        raise CurateError(f"{stage}: '{embedding_column}' lengths range from {row['lo']} to {row['hi']}; "
                          "all embeddings must have the same dimension")
    return row["n"], row["hi"] or 0


def unit_rows(vectors, stage: str) -> np.ndarray:
    """Float64 rows scaled to unit length (zero rows stay zero); NaN/inf fail clearly."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise CurateError(f"{stage}: embeddings must be finite vectors of one dimension")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def spherical_centroids(sample, k: int, seed: int, stage: str, iterations: int = 20) -> np.ndarray:
    """Spherical k-means centroids (FAISS, seeded, at most 256 sampled points per centroid) of
    the rows of ``sample``, given in a fixed order so the centroids do not depend on partitioning."""
    import faiss

    x = np.ascontiguousarray(unit_rows(sample, stage), dtype=np.float32)
    kmeans = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, spherical=True,
                          max_points_per_centroid=256, verbose=False)
    kmeans.train(x)
    return unit_rows(kmeans.centroids, stage)


def nearest_centroid(vectors, centroids: np.ndarray, stage: str) -> np.ndarray:
    """Index of the most similar centroid per row (float64; ties to the lowest index)."""
    return np.argmax(unit_rows(vectors, stage) @ centroids.T, axis=1).astype(np.int32)
