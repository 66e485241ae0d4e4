"""Distributed connected components against a plain-Python union-find."""
from __future__ import annotations

import importlib.util
import random

from helpers import REPO

from curate.dedup.components import connected_components

_spec = importlib.util.spec_from_file_location(
    "dedup_corpus", REPO / "bench" / "dedup_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def oracle(edges):
    uf = corpus.UnionFind()
    for a, b in edges:
        uf.union(a, b)
    return uf.components()


def run(spark, edges, partitions=2):
    df = spark.createDataFrame(edges, "src string, dst string").repartition(partitions)
    return {r["node"]: r["root"] for r in connected_components(df).collect()}


def random_graph(seed, nodes=120, edges=100):
    rng = random.Random(seed)
    names = [f"n{rng.randrange(10**6):06d}" for _ in range(nodes)]
    return [(rng.choice(names), rng.choice(names)) for _ in range(edges)]


def test_random_forest_matches_union_find_whatever_the_partitioning(spark):
    edges = random_graph(1)
    expected = oracle([e for e in edges if e[0] != e[1]])
    assert run(spark, edges, 2) == expected
    assert run(spark, [(b, a) for a, b in reversed(edges)], 5) == expected


def test_long_chain_in_shuffled_order_converges_to_its_minimum(spark):
    """A path is the worst case for label propagation; large/small-star needs few rounds."""
    names = [f"v{i:03d}" for i in range(64)]
    random.Random(3).shuffle(names)
    edges = list(zip(names, names[1:]))
    result = run(spark, edges)
    assert set(result.values()) == {min(names)} and len(result) == 64


def test_self_loops_alone_give_no_nodes(spark):
    assert run(spark, [("a", "a"), ("b", "b")]) == {}
