"""Benchmark In-Context Pretraining ordering: FAISS kNN build and traversal throughput.

Compares, on the same FAISS kNN graph over synthetic clustered unit vectors:
  * curate.traverse (CSR arrays, numba-compiled walk), and
  * traverse_reference: the straightforward Python transcription of the paper's algorithm,
reporting CPU-seconds (docs/s per core: every step is single-threaded) and the mean cosine
similarity of adjacent documents for both, plus a seeded random order.
Optionally (--spark) the partitioned stage on local[1] vs local[2] (best of --spark-repeat passes each).

    .venv/bin/python bench/order.py --docs 1000000 --dim 32 --topics 5000
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from curate.knn import knn_graph, synthetic_embeddings
from curate.traverse import HAVE_NUMBA, symmetric_graph, traverse, traverse_reference


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def adjacent_similarity(x: np.ndarray, order: np.ndarray) -> float:
    sims = np.zeros(0)
    chunks = [np.einsum("nd,nd->n", x[order[lo:lo + 1_000_001][:-1]], x[order[lo:lo + 1_000_001][1:]])
              for lo in range(0, len(order) - 1, 1_000_000)]
    sims = np.concatenate(chunks) if chunks else sims
    return float(sims.mean())


def compiled_traversal(neighbors, similarities):
    return traverse(symmetric_graph(neighbors, similarities))


def bench_traversal(args) -> dict:
    ids = np.arange(args.docs)
    x = np.concatenate([synthetic_embeddings(ids[lo:lo + 200_000], args.dim, topics=args.topics)
                        for lo in range(0, args.docs, 200_000)])
    knn_graph(x[:2000], args.k, nprobe=args.nprobe, threads=args.threads)  # warm-up: CUDA context, thread pools
    graph, knn_wall, knn_cpu = timed(knn_graph, x, args.k, nprobe=args.nprobe, threads=args.threads)
    compiled_traversal(np.array([[1], [0]]), np.ones((2, 1), np.float32))  # JIT warm-up / cache load
    fast, fast_wall, fast_cpu = timed(compiled_traversal, graph.neighbors, graph.similarities)
    result = {
        "docs": args.docs, "dim": args.dim, "topics": args.topics, "k": args.k, "index": graph.index,
        "knn_wall_s": knn_wall, "knn_cpu_s": knn_cpu, "knn_threads": args.threads,
        "numba": HAVE_NUMBA,
        "curate_cpu_s": fast_cpu, "curate_wall_s": fast_wall,
        "curate_docs_per_core_s": args.docs / fast_cpu,
        "curate_adjacent_similarity": adjacent_similarity(x, fast.order),
        "curate_paths": int(fast.path[-1]) + 1,
        "random_adjacent_similarity": adjacent_similarity(x, np.random.default_rng(0).permutation(args.docs)),
    }
    if not args.skip_reference:
        ref, ref_wall, ref_cpu = timed(traverse_reference, graph.neighbors, graph.similarities)
        result.update({
            "reference_cpu_s": ref_cpu, "reference_wall_s": ref_wall,
            "reference_docs_per_core_s": args.docs / ref_cpu,
            "reference_adjacent_similarity": adjacent_similarity(x, ref.order),
            "identical_order": bool(np.array_equal(ref.order, fast.order)),
            "speedup_per_core": ref_cpu / fast_cpu,
        })
    result["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def bench_spark(args) -> dict:
    """The partitioned stage end to end on local[1] and local[2] (separate sessions)."""
    from pyspark.sql import SparkSession

    from curate.core import StageContext, get_stage
    from curate.spark import get_spark
    from curate.stages.order import knn_order

    def docs(spark, n, dim, topics):
        def embed(batches):
            import pyarrow as pa

            for batch in batches:
                ids = batch.column("n").to_numpy()
                x = synthetic_embeddings(ids, dim, topics=topics)
                yield pa.RecordBatch.from_arrays(
                    [pa.array([f"d{i:09d}" for i in ids]), pa.array([""] * len(ids)),
                     pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim).cast(pa.list_(pa.float32()))],
                    ["id", "text", "embedding"])
        return (spark.range(0, n, 1, 8).withColumnRenamed("id", "n")
                .mapInArrow(embed, "id string, text string, embedding array<float>"))

    out = {}
    for cores in args.spark_cores:
        spark = get_spark(f"local[{cores}]", {"spark.sql.shuffle.partitions": "16"})
        params = get_stage("knn_order").validate({"k": args.k, "cluster_size": args.cluster_size})
        times = []
        for _ in range(args.spark_repeat):  # the first pass also warms the JVM and the Python workers
            with tempfile.TemporaryDirectory() as tmp:
                ctx = StageContext(spark, Path(tmp) / "stage", seed=0)
                wall = time.perf_counter()
                result = knn_order(docs(spark, args.spark_docs, args.dim, args.topics), ctx, **params)
                result.kept.write.mode("overwrite").parquet(str(Path(tmp) / "out"))
                times.append(time.perf_counter() - wall)
                out["clusters"] = result.stats["clusters"]
                out["mean_adjacent_similarity"] = result.stats["mean_adjacent_similarity"]
        out[f"local[{cores}]_runs_s"] = [round(t, 2) for t in times]
        out[f"local[{cores}]_s"] = min(times)
        spark.stop()
        SparkSession._instantiatedSession = None
    out["spark_docs"] = args.spark_docs
    out["order"] = [f"local[{c}]" for c in args.spark_cores]
    if "local[1]_s" in out and "local[2]_s" in out:
        out["speedup_2_vs_1"] = out["local[1]_s"] / out["local[2]_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--topics", type=int, default=5_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads for the kNN build")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--spark", action="store_true", help="also time the partitioned stage on local[1]/[2]")
    parser.add_argument("--spark-docs", type=int, default=200_000)
    parser.add_argument("--cluster-size", type=int, default=25_000)
    parser.add_argument("--spark-cores", type=lambda s: [int(c) for c in s.split(",")], default=[1, 2],
                        help="local[N] sessions to time, in this order (e.g. 2,1 to check order effects)")
    parser.add_argument("--spark-repeat", type=int, default=3, help="timed passes per session; the best counts")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = {"machine": platform.machine(), "python": platform.python_version(), **bench_traversal(args)}
    if args.spark:
        results["spark"] = bench_spark(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
