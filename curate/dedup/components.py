"""Connected components of an edge DataFrame, entirely in Spark (nothing on the driver).

Alternating large-star / small-star (Kiveris, Lattanzi, Mirrokni, Rastogi & Vassilvitskii
2014, "Connected Components in MapReduce and Beyond"): each round rewires every node to the
smallest id of its neighbourhood, converging in O(log^2 n) rounds to one star per
component centred on its smallest id. The result depends only on the set of edges, never
on partitioning or task order. Each round is ``localCheckpoint``-ed so lineage stays short;
the checkpoint is lazy, so computing a round, saving it and testing convergence is one
Spark job per round.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from curate.core import CurateError

NODE, ROOT = "node", "root"


def _oriented(edges: DataFrame, src: str, dst: str) -> DataFrame:
    """Distinct undirected edges as (u, v) with u > v; self-loops dropped."""
    return (edges.select(F.greatest(src, dst).alias("u"), F.least(src, dst).alias("v"))
            .where(F.col("u") != F.col("v")).distinct())


def large_star(edges: DataFrame) -> DataFrame:
    """Connect every larger neighbour of n to the smallest node of n's neighbourhood."""
    both = edges.select("u", "v").unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))
    hoods = both.groupBy("u").agg(F.collect_set("v").alias("nbrs"))
    centre = F.least(F.array_min("nbrs"), F.col("u"))
    larger = F.filter("nbrs", lambda x: x > F.col("u"))
    return hoods.select(F.explode(larger).alias("u"), centre.alias("v")).distinct()


def small_star(edges: DataFrame) -> DataFrame:
    """Connect u and all its smaller neighbours to the smallest of them."""
    hoods = edges.groupBy("u").agg(F.collect_set("v").alias("nbrs"))
    centre = F.array_min("nbrs")
    members = F.filter(F.array_union("nbrs", F.array("u")), lambda x: x != centre)
    return hoods.select(F.explode(members).alias("u"), centre.alias("v")).distinct()


def _is_star_forest(edges: DataFrame) -> bool:
    """True when every component is a star around its smallest node: the fixed point.

    One aggregate: no node may have two parents, and no centre may have a parent.
    """
    as_leaf = edges.select(F.col("u").alias("n"), F.lit(1).alias("parents"), F.lit(0).alias("centre"))
    as_centre = edges.select(F.col("v").alias("n"), F.lit(0).alias("parents"), F.lit(1).alias("centre"))
    per_node = as_leaf.unionByName(as_centre).groupBy("n").agg(
        F.sum("parents").alias("parents"), F.max("centre").alias("centre"))
    bad = (F.col("parents") > 1) | ((F.col("parents") == 1) & (F.col("centre") == 1))
    return per_node.where(bad).isEmpty()


def connected_components(edges: DataFrame, src: str = "src", dst: str = "dst",
                         max_rounds: int = 64) -> DataFrame:
    """``(node, root)`` for every node that has an edge; ``root`` is its component's smallest node.

    Roots map to themselves. Rounds are O(log^2 n); CurateError if ``max_rounds`` runs out.
    """
    current = _oriented(edges, src, dst).localCheckpoint(eager=False)
    for _ in range(max_rounds):
        if _is_star_forest(current):  # also materialises the lazy checkpoint of this round
            return _with_roots(current)
        current = small_star(large_star(current)).localCheckpoint(eager=False)
    raise CurateError(f"connected components did not converge in {max_rounds} rounds; raise max_rounds")


def _with_roots(stars: DataFrame) -> DataFrame:
    members = stars.select(F.col("u").alias(NODE), F.col("v").alias(ROOT))
    roots = stars.select(F.col("v").alias(NODE), F.col("v").alias(ROOT)).distinct()
    return members.unionByName(roots)
