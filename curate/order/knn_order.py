"""Stage ``knn_order``: In-Context Pretraining document order (Shi et al. 2023).

Related documents are placed next to each other: a FAISS kNN graph over the embeddings,
then the paper's greedy traversal (:mod:`curate.order.traverse`). At scale the corpus is first cut
into coarse clusters (FAISS spherical k-means on a hash sample, every document assigned to
its nearest centroid); kNN + traversal run per cluster inside Spark (``applyInPandas``), and
the clusters are chained by the same traversal over their centroids. The driver only ever
holds the sample, the centroids and one row per cluster.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from curate.core import ID, TEXT, CurateError, StageContext, StageOutput, stage
from curate.io.vectors import count_and_dimension

ORDER = "order"
GROUP = "group"
CLUSTER = "_cluster"
LABELS = "_labels"
TOKENS = "_tokens"
VECTOR = "_vector"
DUPLICATE_REPORT_THRESHOLD = 0.97  # near-duplicates counted in stats when the guard is off
KMEANS_POINTS_PER_CLUSTER = 256
KMEANS_SAMPLE_CAP = 200_000
GRAPH_SCHEMA = ("id string, cluster int, position long, group long, neighbors array<string>, "
                "similarities array<float>, prev_similarity float, prev_same_label boolean, "
                "edge_vector array<float>, edge_labels array<string>")


@stage("knn_order")
def knn_order(df, ctx: StageContext, *, k: int = 10, embedding_column: str = "embedding",
              model: str | None = None, batch_size: int = 64, cluster_size: int = 100_000,
              clusters: int | None = None, exact_max: int = 20_000, nprobe: int = 16,
              duplicate_threshold: float | None = 0.97, max_group_docs: int | None = None,
              max_group_tokens: int | None = None, tokens_column: str | None = None,
              label_column: str | None = None, stats_sample: int = 20_000,
              use_gpu: bool | None = None) -> StageOutput:
    """Order documents so that similar ones are adjacent (In-Context Pretraining, Shi et al. 2023).

    Adds ``order`` (global position) and ``group`` (path id, cut by ``max_group_docs`` /
    ``max_group_tokens``). Embeddings come from ``embedding_column`` or are computed with
    ``embed``'s model. ``duplicate_threshold``: adjacent documents never have a kNN similarity
    at or above it. More than ``cluster_size`` documents (or ``clusters`` > 1) run partitioned.
    Stats compare adjacent similarity (and shared ``label_column`` values) with a random order.
    """
    _check_params(k=k, cluster_size=cluster_size, clusters=clusters, duplicate_threshold=duplicate_threshold,
                  max_group_docs=max_group_docs, max_group_tokens=max_group_tokens, stats_sample=stats_sample)
    for column in (tokens_column, label_column):
        if column is not None:
            _require_column(df, column)
    if embedding_column not in df.columns:
        df_embedded = _embed_to_artifact(df, ctx, column=embedding_column, model=model, batch_size=batch_size)
    else:
        df_embedded = df
    features = _features(df_embedded, embedding_column, tokens_column if max_group_tokens else None,
                         label_column, estimate_tokens=bool(max_group_tokens))
    n, dim = count_and_dimension(features, VECTOR, embedding_column, "knn_order")
    n_clusters = clusters or max(1, math.ceil(n / cluster_size))
    assigned, chain = _assign_clusters(features, n_clusters, n, k, ctx.seed)
    options = dict(
        k=k, exact_max=exact_max, nprobe=nprobe,
        duplicate_threshold=np.inf if duplicate_threshold is None else duplicate_threshold,
        max_group_docs=max_group_docs, max_group_tokens=max_group_tokens, use_gpu=use_gpu, seed=ctx.seed)

    def per_cluster(pdf):
        return _order_cluster(pdf, **options)

    graph = ctx.artifact_table("knn_graph", assigned.groupBy(CLUSTER).applyInPandas(per_cluster, GRAPH_SCHEMA))
    offsets, sizes = _offsets(ctx.spark, graph, chain)
    placed = graph.join(offsets, "cluster").selectExpr(
        ID, f"doc_offset + position AS {ORDER}", f"group_offset + `group` AS {GROUP}")
    kept = df.drop(ORDER, GROUP).join(placed, ID)
    stats = {"rows_in": n, "dim": dim, "k": k, "clusters": n_clusters,
             "largest_cluster": max(sizes.values(), default=0),
             "index": _index_names(sizes, dim, exact_max),
             **_order_stats(graph, chain, duplicate_threshold),
             **_random_order_stats(features, embedding_column, n, stats_sample, ctx.seed,
                                   has_labels=label_column is not None)}
    return StageOutput(kept=kept, stats=stats, order_by=ORDER)


def _assign_clusters(features, n_clusters: int, n: int, k: int, seed: int):
    """(features with a ``cluster`` column, the order in which clusters are concatenated):
    k-means on a sample when there is more than one cluster, else everything in cluster 0."""
    if n_clusters == 1:
        from pyspark.sql import functions as F

        return features.withColumn(CLUSTER, F.lit(0)), [0]
    from pyspark.sql.types import IntegerType, StructField, StructType

    centroids = _train_centroids(features, n_clusters, n, seed)
    schema = StructType([*features.schema.fields, StructField(CLUSTER, IntegerType())])
    assigned = features.mapInArrow(functools.partial(_assign_batches, centroids=centroids), schema)
    return assigned, _cluster_chain(centroids, k)


# --------------------------------------------------------------------------- inputs

def _check_params(*, k, cluster_size, clusters, duplicate_threshold, max_group_docs, max_group_tokens,
                  stats_sample) -> None:
    if k < 1:
        raise CurateError(f"knn_order: k must be >= 1, got {k}")
    if cluster_size < 2:
        raise CurateError(f"knn_order: cluster_size must be >= 2, got {cluster_size}")
    if clusters is not None and clusters < 1:
        raise CurateError(f"knn_order: clusters must be >= 1 (or omitted), got {clusters}")
    if duplicate_threshold is not None and not 0 < duplicate_threshold <= 1:
        raise CurateError(f"knn_order: duplicate_threshold must be in (0, 1] or null, got {duplicate_threshold}")
    for name, value in (("max_group_docs", max_group_docs), ("max_group_tokens", max_group_tokens)):
        if value is not None and value < 1:
            raise CurateError(f"knn_order: {name} must be >= 1 or null, got {value}")
    if stats_sample < 2:
        raise CurateError(f"knn_order: stats_sample must be >= 2, got {stats_sample}")


def _require_column(df, column: str) -> None:
    from pyspark.sql.utils import AnalysisException

    try:
        _ = df.select(column).schema  # analysed eagerly: a missing column fails here
    except AnalysisException:
        raise CurateError(f"knn_order: column '{column}' not found; columns: {', '.join(df.columns)}") from None


def _embed_to_artifact(df, ctx: StageContext, *, column: str, model: str | None, batch_size: int):
    """Embed once with ``curate.targeted.embedding`` and materialise (id, embedding) as an artifact."""
    from curate.targeted.embedding import model_argument, with_embeddings

    embedded = with_embeddings(df.select(ID, TEXT), model=model_argument(model, ctx.resolve),
                               column=column, batch_size=batch_size)
    return df.join(ctx.artifact_table("embeddings", embedded.select(ID, column)), ID)


def _features(df, embedding_column: str, tokens_column: str | None, label_column: str | None, *,
              estimate_tokens: bool):
    """The narrow frame the ordering needs: id, vector, tokens, labels."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    if tokens_column:
        tokens = F.col(tokens_column).cast("long")
    elif estimate_tokens:  # ~4 characters per BPE token of English text
        tokens = F.ceil(F.length(TEXT) / 4).cast("long")
    else:
        tokens = F.lit(0).cast("long")
    labels = F.lit(None).cast("array<string>")
    if label_column:
        is_array = isinstance(df.select(label_column).schema[0].dataType, ArrayType)
        raw = F.col(label_column)
        labels = raw.cast("array<string>") if is_array else F.when(raw.isNotNull(), F.array(raw.cast("string")))
    return df.select(ID, F.col(embedding_column).cast("array<float>").alias(VECTOR),
                     tokens.alias(TOKENS), labels.alias(LABELS))


# --------------------------------------------------------------------------- clusters

def _hash_fraction(seed: int):
    """A uniform number in [0, 1) per document, from its id and ``seed`` (deterministic)."""
    from pyspark.sql import functions as F

    bits = F.xxhash64(F.lit(seed), F.col(ID)).bitwiseAND(F.lit((1 << 53) - 1))
    return bits.cast("double") / F.lit(float(1 << 53))


def _train_centroids(features, n_clusters: int, n: int, seed: int) -> np.ndarray:
    """Spherical k-means (FAISS) on a hash sample of the embeddings, sorted by id."""
    import faiss

    from curate.order.knn import l2_normalize

    want = min(n, KMEANS_SAMPLE_CAP, max(KMEANS_POINTS_PER_CLUSTER * n_clusters, 10_000))
    sample = (features.where(_hash_fraction(seed) < want / n).select(ID, VECTOR)
              .toPandas().sort_values(ID, kind="stable"))
    if len(sample) < n_clusters:
        raise CurateError(f"knn_order: {n_clusters} clusters need at least as many documents; "
                          f"raise cluster_size or lower clusters")
    x = l2_normalize(np.stack(sample[VECTOR].to_numpy()))
    kmeans = faiss.Kmeans(x.shape[1], n_clusters, niter=20, seed=seed, spherical=True,
                          max_points_per_centroid=KMEANS_POINTS_PER_CLUSTER, verbose=False)
    kmeans.train(x)
    return l2_normalize(kmeans.centroids)


def _assign_batches(batches, *, centroids: np.ndarray):
    """Add the nearest centroid to every row (float64 scores: independent of batching)."""
    import pyarrow as pa

    from curate.order.knn import l2_normalize

    centroids64 = centroids.astype(np.float64)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        vectors = batch.column(VECTOR).flatten().to_numpy(zero_copy_only=False)
        x = l2_normalize(vectors.reshape(batch.num_rows, -1)).astype(np.float64)
        nearest = np.argmax(x @ centroids64.T, axis=1).astype(np.int32)
        yield batch.append_column(CLUSTER, pa.array(nearest, pa.int32()))


def _cluster_chain(centroids: np.ndarray, k: int) -> list[int]:
    """The order of the clusters: the same traversal over the centroids' kNN graph."""
    from curate.order.knn import knn_graph
    from curate.order.traverse import symmetric_graph, traverse

    graph = knn_graph(centroids, min(k, len(centroids) - 1), exact_max=len(centroids))
    return traverse(symmetric_graph(graph.neighbors, graph.similarities)).order.tolist()


# --------------------------------------------------------------------------- per cluster

def _order_cluster(pdf, *, k: int, exact_max: int, nprobe: int, duplicate_threshold: float,
                   max_group_docs: int | None, max_group_tokens: int | None, use_gpu: bool | None, seed: int):
    """kNN graph + traversal of one cluster (one pandas frame, rows sorted by id here)."""
    import pandas as pd

    from curate.order.knn import knn_graph, l2_normalize
    from curate.order.traverse import cut_groups, symmetric_graph, traverse

    pdf = pdf.sort_values(ID, kind="stable").reset_index(drop=True)
    x = l2_normalize(np.stack(pdf[VECTOR].to_numpy()))
    knn = knn_graph(x, k, exact_max=exact_max, nprobe=nprobe, use_gpu=use_gpu, seed=seed, threads=1)
    walk = traverse(symmetric_graph(knn.neighbors, knn.similarities), duplicate_threshold=duplicate_threshold)
    order = walk.order
    groups = cut_groups(walk.path, pdf[TOKENS].to_numpy()[order], max_docs=max_group_docs,
                        max_tokens=max_group_tokens)
    ids = pdf[ID].to_numpy()
    labels = pdf[LABELS].to_numpy()[order]
    prev_similarity = np.full(len(order), np.nan, np.float32)
    prev_similarity[1:] = np.einsum("nd,nd->n", x[order[:-1]], x[order[1:]])
    edge = np.zeros(len(order), bool)
    edge[[0, -1]] = True
    return pd.DataFrame({
        ID: ids[order],
        "cluster": pdf[CLUSTER].iloc[0],
        "position": np.arange(len(order), dtype=np.int64),
        "group": groups,
        "neighbors": [ids[row[row >= 0]] for row in knn.neighbors[order]],
        "similarities": [sims[row >= 0] for row, sims in zip(knn.neighbors[order], knn.similarities[order])],
        "prev_similarity": prev_similarity,
        "prev_same_label": [None] + [_share_label(a, b) for a, b in zip(labels[:-1], labels[1:])],
        "edge_vector": [x[i] if is_edge else None for i, is_edge in zip(order, edge)],
        "edge_labels": [lab if is_edge else None for lab, is_edge in zip(labels, edge)],
    })


def _share_label(a, b) -> bool | None:
    """Whether two label lists intersect; None when either document has no label."""
    if a is None or b is None or len(a) == 0 or len(b) == 0:
        return None
    return bool(set(a) & set(b))


# --------------------------------------------------------------------------- placement & stats

def _offsets(spark, graph, chain: list[int]):
    """Per cluster: first global position and first global group id, following ``chain``."""
    from pyspark.sql import functions as F

    rows = graph.groupBy("cluster").agg(F.count(F.lit(1)).alias("docs"),
                                        (F.max("group") + 1).alias("groups")).collect()
    sizes = {r["cluster"]: (r["docs"], r["groups"]) for r in rows}
    offsets, doc_offset, group_offset = [], 0, 0
    for cluster in chain:
        if cluster in sizes:
            offsets.append((cluster, doc_offset, group_offset))
            doc_offset += sizes[cluster][0]
            group_offset += sizes[cluster][1]
    frame = spark.createDataFrame(offsets, "cluster int, doc_offset long, group_offset long")
    return F.broadcast(frame), {c: docs for c, (docs, _) in sizes.items()}


def _index_names(sizes: dict[int, int], dim: int, exact_max: int) -> list[str]:
    from curate.order.knn import index_description

    return sorted({index_description(size, dim, exact_max=exact_max) for size in sizes.values()})


def _order_stats(graph, chain: list[int], duplicate_threshold: float | None) -> dict:
    """Adjacent-pair statistics of the produced order, cluster boundaries included."""
    from pyspark.sql import functions as F

    threshold = DUPLICATE_REPORT_THRESHOLD if duplicate_threshold is None else duplicate_threshold
    inner = graph.agg(
        F.sum("prev_similarity").alias("sim_sum"), F.count("prev_similarity").alias("pairs"),
        F.sum(F.when(F.col("prev_similarity") >= threshold, 1).otherwise(0)).alias("dups"),
        F.sum(F.col("prev_same_label").cast("int")).alias("same"), F.count("prev_same_label").alias("labelled"),
        F.countDistinct("cluster", "group").alias("groups")).first()
    first, last = _cluster_edges(graph)
    sim_sum, pairs, dups = inner["sim_sum"] or 0.0, inner["pairs"], inner["dups"] or 0
    same, labelled = inner["same"] or 0, inner["labelled"]
    present = [c for c in chain if c in first]
    for left, right in zip(present[:-1], present[1:]):
        a, b = last[left], first[right]
        sim = float(np.dot(a["edge_vector"], b["edge_vector"]))
        sim_sum, pairs, dups = sim_sum + sim, pairs + 1, dups + (sim >= threshold)
        shared = _share_label(a["edge_labels"], b["edge_labels"])
        if shared is not None:
            same, labelled = same + shared, labelled + 1
    return {"groups": inner["groups"], "adjacent_pairs": pairs,
            "mean_adjacent_similarity": sim_sum / pairs if pairs else None,
            "near_duplicate_adjacent": int(dups),
            "adjacent_same_label": same / labelled if labelled else None}


def _cluster_edges(graph) -> tuple[dict, dict]:
    """The first and the last row of every cluster's order (two rows per cluster at most)."""
    from pyspark.sql import functions as F

    rows = (graph.where(F.col("edge_vector").isNotNull())
            .select("cluster", "position", "edge_vector", "edge_labels").collect())
    first = {r["cluster"]: r for r in rows if r["position"] == 0}
    last = {}
    for r in sorted(rows, key=lambda r: r["position"]):
        last[r["cluster"]] = r
    return first, last


def _random_order_stats(features, embedding_column: str, n: int, stats_sample: int, seed: int, *,
                        has_labels: bool) -> dict:
    """The same statistics for a seeded random order of a hash sample of ≤ ``stats_sample`` documents."""
    from curate.order.knn import l2_normalize

    if n < 2:
        return {"random_mean_adjacent_similarity": None, "random_adjacent_same_label": None}
    sample = (features.where(_hash_fraction(seed + 1) < stats_sample / n).select(ID, VECTOR, LABELS)
              .toPandas().sort_values(ID, kind="stable"))
    shuffled = sample.iloc[np.random.default_rng(seed).permutation(len(sample))]
    x = l2_normalize(np.stack(shuffled[VECTOR].to_numpy())) if len(shuffled) else np.zeros((0, 1), np.float32)
    sims = np.einsum("nd,nd->n", x[:-1], x[1:])
    labels = shuffled[LABELS].to_numpy()
    shares = [s for s in (_share_label(a, b) for a, b in zip(labels[:-1], labels[1:])) if s is not None]
    return {"random_sample": len(sample),
            "random_mean_adjacent_similarity": float(sims.mean()) if len(sims) else None,
            "random_adjacent_same_label": float(np.mean(shares)) if has_labels and shares else None}
