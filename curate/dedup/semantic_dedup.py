"""Stage ``semantic_dedup``: remove semantic near-duplicates by embedding similarity
(SemDeDup, Abbas et al. 2023, "SemDeDup: Data-efficient learning at web-scale through
semantic deduplication").

1. Embeddings: an ``embed``-stage column, or computed here with the same embedder
   (:mod:`curate.targeted.embedding`, all-MiniLM-L6-v2 by default) into ``artifacts/embeddings``.
2. Spherical k-means (FAISS, as ``knn_order``) trained on the driver on a seeded hash sample of
   the embeddings sorted by id; every document goes to its nearest centroid (float64 scores).
3. Per cluster, inside Spark (``groupBy(cluster).applyInPandas``): every pair with cosine
   similarity ≥ ``threshold`` — FAISS range search on the cluster's unit vectors, each candidate
   then re-checked in float64, so the decision does not depend on BLAS blocking.
4. Documents are ranked by ``score`` (highest first, nulls last) then by id; walking that
   ranking, a document is removed when a *kept* higher-ranked document is at least
   ``threshold`` similar (the most similar such one is its ``duplicate_of``). This is
   SemDeDup's rule restricted to survivors: every removed document points at a survivor
   at least ``threshold`` similar, no two survivors of a cluster are that similar (running
   the stage twice removes nothing more), and no chains of merely transitive matches are removed.

Pairs that k-means puts in different clusters are never compared: the recall of that
approximation against an exact all-pairs search is measured by ``bench/semantic_dedup.py``.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from curate.core import ID, REJECT_REASON, TEXT, CurateError, StageContext, StageOutput, stage
from curate.io.vectors import count_and_dimension, nearest_centroid, spherical_centroids, unit_rows

REASON = "semantic_duplicate"
DUPLICATE_OF, SIMILARITY = "duplicate_of", "similarity"
CLUSTER, VECTOR, SCORE = "_cluster", "_vector", "_score"
KMEANS_POINTS_PER_CLUSTER = 256  # FAISS's sample per centroid (curate.io.vectors.spherical_centroids)
STAGE = "semantic_dedup"
KMEANS_SAMPLE_CAP = 200_000
SLACK = 1e-4  # float32 range-search margin; candidates are re-checked in float64
RESULT_SCHEMA = "id string, cluster int, duplicate_of string, similarity double, pairs int"


@stage("semantic_dedup")
def semantic_dedup(df, ctx: StageContext, *, threshold: float = 0.95, embedding_column: str = "embedding",
                   model: str | None = None, batch_size: int = 64, score: str | None = None,
                   cluster_size: int = 5_000, clusters: int | None = None,
                   kmeans_iterations: int = 20) -> StageOutput:
    """Remove documents whose embedding has cosine ≥ ``threshold`` with a kept, better-ranked
    one in the same k-means cluster (SemDeDup, Abbas et al. 2023).

    Embeddings come from ``embedding_column`` or are computed with ``embed``'s model. Rank:
    ``score`` (a column, highest kept; nulls last) then smallest id. ``clusters`` defaults to
    ceil(rows / ``cluster_size``). Rejected rows: reason ``semantic_duplicate``, with
    ``duplicate_of`` (the survivor's id) and ``similarity`` (their cosine).
    """
    from pyspark.sql import functions as F

    _check_params(threshold, cluster_size, clusters, kmeans_iterations)
    if embedding_column not in df.columns:
        from curate.targeted.embedding import model_argument, with_embeddings

        embedded = with_embeddings(df.select(ID, TEXT), model=model_argument(model, ctx.resolve),
                                   column=embedding_column, batch_size=batch_size)
        source = df.select(ID, *([score.split(".")[0]] if score else [])).join(
            ctx.artifact_table("embeddings", embedded.select(ID, embedding_column)), ID)
    else:
        source = df
    features = _features(source, embedding_column, score)
    n, dim = count_and_dimension(features, VECTOR, embedding_column, "semantic_dedup")
    n_clusters = min(n, clusters or max(1, math.ceil(n / cluster_size))) if n else 1
    assigned = _assign_clusters(features, n_clusters, n, ctx.seed, kmeans_iterations)

    def per_cluster(pdf):
        return dedup_cluster_frame(pdf, threshold=threshold)

    grouped = assigned.groupBy(CLUSTER).applyInPandas(per_cluster, RESULT_SCHEMA)
    result = ctx.artifact_table("semantic_clusters", grouped)
    removed = result.where(result[DUPLICATE_OF].isNotNull()).select(ID, DUPLICATE_OF, SIMILARITY)
    kept = df.join(removed.select(ID), ID, "left_anti")
    rejected = df.join(removed, ID).withColumn(REJECT_REASON, F.lit(REASON))
    return StageOutput(kept=kept, rejected=rejected,
                       stats={"rows_in": n, "dim": dim, "threshold": threshold, "score": score,
                              **_result_stats(result, n_clusters)})


# --------------------------------------------------------------------------- inputs

def _check_params(threshold: float, cluster_size: int, clusters: int | None, kmeans_iterations: int) -> None:
    if not 0 < threshold <= 1:
        raise CurateError(f"semantic_dedup: threshold must be in (0, 1], got {threshold}")
    if cluster_size < 2:
        raise CurateError(f"semantic_dedup: cluster_size must be >= 2, got {cluster_size}")
    if clusters is not None and clusters < 1:
        raise CurateError(f"semantic_dedup: clusters must be >= 1 (or omitted), got {clusters}")
    if kmeans_iterations < 1:
        raise CurateError(f"semantic_dedup: kmeans_iterations must be >= 1, got {kmeans_iterations}")


def _features(df, embedding_column: str, score: str | None):
    """The narrow frame: id, vector (array<float>), score (double or null)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    value = F.lit(None).cast("double")
    if score is not None:
        value = F.col(score).cast("double")
        try:
            _ = df.select(value).schema  # analysed eagerly: a missing column fails here
        except AnalysisException:
            raise CurateError(f"semantic_dedup: score column '{score}' not found; "
                              f"columns: {', '.join(df.columns)}") from None
        value = F.when(F.isnan(value), None).otherwise(value)
    return df.select(ID, F.col(embedding_column).cast("array<float>").alias(VECTOR), value.alias(SCORE))


# --------------------------------------------------------------------------- k-means

def _hash_fraction(seed: int):
    """A uniform number in [0, 1) per document from its id and ``seed`` (partition-independent)."""
    from pyspark.sql import functions as F

    bits = F.xxhash64(F.lit(seed), F.col(ID)).bitwiseAND(F.lit((1 << 53) - 1))
    return bits.cast("double") / F.lit(float(1 << 53))


def _assign_clusters(features, n_clusters: int, n: int, seed: int, iterations: int):
    """``features`` plus the cluster of every row (all in cluster 0 when there is one)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, StructField, StructType

    if n_clusters <= 1:
        return features.withColumn(CLUSTER, F.lit(0))
    want = min(n, KMEANS_SAMPLE_CAP, max(KMEANS_POINTS_PER_CLUSTER * n_clusters, 10_000))
    sample = (features.where(_hash_fraction(seed) < want / n).select(ID, VECTOR)
              .toPandas().sort_values(ID, kind="stable"))
    if len(sample) < n_clusters:
        raise CurateError(f"semantic_dedup: {n_clusters} clusters need at least as many sampled documents "
                          f"(got {len(sample)}); raise cluster_size or lower clusters")
    centroids = spherical_centroids(np.stack(sample[VECTOR].to_numpy()), n_clusters, seed, STAGE, iterations)
    schema = StructType([*features.schema.fields, StructField(CLUSTER, IntegerType())])
    return features.mapInArrow(functools.partial(_assign_batches, centroids=centroids), schema)


def _assign_batches(batches, *, centroids: np.ndarray):
    import pyarrow as pa

    for batch in batches:
        if batch.num_rows == 0:
            continue
        flat = batch.column(VECTOR).flatten().to_numpy(zero_copy_only=False)
        nearest = nearest_centroid(flat.reshape(batch.num_rows, -1), centroids, STAGE)
        yield batch.append_column(CLUSTER, pa.array(nearest, pa.int32()))


# --------------------------------------------------------------------------- per cluster

def rank_order(ids, scores) -> np.ndarray:
    """Row indices best first: score descending (null/NaN last), then id ascending."""
    ids = list(ids)
    s = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in scores]
    return np.array(sorted(range(len(ids)), key=lambda i: (s[i] is None, -(s[i] or 0.0), ids[i])), dtype=np.int64)


def similar_pairs(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, similarity)`` of every pair i < j of unit rows ``x`` with cosine ≥ ``threshold``:
    FAISS exact range search (float32) at ``threshold − SLACK``, re-checked in float64."""
    import faiss

    n = len(x)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatIP(x32.shape[1])
    index.add(x32)
    lims, _, found = index.range_search(x32, float(threshold) - SLACK)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(lims).astype(np.int64))
    found = found.astype(np.int64)
    upper = found > rows
    i, j = rows[upper], found[upper]
    sims = np.einsum("pd,pd->p", x[i], x[j])
    hit = sims >= threshold
    return i[hit], j[hit], sims[hit]


def greedy_duplicates(n: int, i: np.ndarray, j: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows 0..n−1 in rank order and similar pairs (i < j): ``(duplicate_of, similarity)``,
    −1 / NaN for survivors. Row j is removed when a surviving row i < j is similar; its
    ``duplicate_of`` is the most similar such row (ties: the better ranked)."""
    duplicate_of = np.full(n, -1, np.int64)
    similarity = np.full(n, np.nan)
    for p in np.lexsort((i, -sims, j)):  # by j, then most similar first, then best rank
        a, b = i[p], j[p]
        if duplicate_of[b] < 0 and duplicate_of[a] < 0:
            duplicate_of[b], similarity[b] = a, sims[p]
    return duplicate_of, similarity


def dedup_cluster(ids, vectors, scores, threshold: float) -> dict[str, list]:
    """Semantic dedup of one cluster: per input row its ``duplicate_of`` id (None = kept), its
    ``similarity`` to it and ``pairs`` (similar better-ranked rows). Plain Python/numpy."""
    order = rank_order(ids, scores)
    x = unit_rows(np.asarray(vectors, dtype=np.float64)[order], STAGE) if len(order) else np.zeros((0, 1))
    i, j, sims = similar_pairs(x, threshold)
    dup, sim = greedy_duplicates(len(order), i, j, sims)
    ranked_ids = [ids[k] for k in order]
    pairs = np.bincount(j, minlength=len(order))
    out = {ID: ranked_ids, DUPLICATE_OF: [ranked_ids[d] if d >= 0 else None for d in dup],
           SIMILARITY: [None if d < 0 else float(s) for d, s in zip(dup, sim)], "pairs": pairs.tolist()}
    return out


def dedup_cluster_frame(pdf, *, threshold: float):
    """``applyInPandas`` body: one cluster's (id, vector, score) → RESULT_SCHEMA rows."""
    import faiss
    import pandas as pd

    faiss.omp_set_num_threads(1)  # one core per Spark task
    ids = pdf[ID].tolist()
    vectors = np.stack(pdf[VECTOR].to_numpy()) if len(pdf) else np.zeros((0, 1))
    out = dedup_cluster(ids, vectors, pdf[SCORE].tolist(), threshold)
    frame = pd.DataFrame(out)
    frame.insert(1, "cluster", int(pdf[CLUSTER].iloc[0]) if len(pdf) else 0)
    return frame[[ID, "cluster", DUPLICATE_OF, SIMILARITY, "pairs"]].astype({"cluster": "int32", "pairs": "int32"})


# --------------------------------------------------------------------------- stats

def _result_stats(result, n_clusters: int) -> dict:
    """Cluster sizes, similar pairs found and documents removed (one job over the artifact)."""
    from pyspark.sql import functions as F

    sizes = result.groupBy("cluster").agg(F.count(F.lit(1)).alias("size"), F.sum("pairs").alias("pairs"),
                                          F.count(DUPLICATE_OF).alias("removed"))
    row = sizes.agg(F.count(F.lit(1)).alias("clusters"), F.max("size").alias("largest"),
                    F.sum("pairs").alias("pairs"), F.sum("removed").alias("removed")).first()
    return {"clusters": n_clusters, "nonempty_clusters": int(row["clusters"] or 0),
            "largest_cluster": int(row["largest"] or 0), "similar_pairs": int(row["pairs"] or 0),
            "duplicates": int(row["removed"] or 0)}
