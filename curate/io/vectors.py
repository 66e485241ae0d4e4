"""Embedding columns as stages read them: one shape check for every stage that takes vectors
from an ``embed``-stage column (``knn_order``, ``semantic_dedup``)."""
from __future__ import annotations

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
