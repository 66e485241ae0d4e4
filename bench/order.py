"""Benchmark In-Context Pretraining ordering: FAISS kNN build and traversal throughput.

Compares, on the same FAISS kNN graph over synthetic clustered unit vectors:
  * curate.order.traverse (CSR arrays, numba-compiled walk), and
  * traverse_reference: the straightforward Python transcription of the paper's algorithm,
reporting CPU-seconds (docs/s per core: every step is single-threaded) and the mean cosine
similarity of adjacent documents for both, plus a seeded random order.
Optionally (--spark) the whole partitioned stage on local[N] for N in --spark-cores, each session
in a fresh process confined to N cores: median of --spark-passes warm passes, CPU per pass, and
the speed-up and parallel efficiency against 1 core (--spark-master local-cluster: N executor JVMs).

    .venv/bin/python bench/order.py --docs 1000000 --dim 32 --topics 5000
    .venv/bin/python bench/order.py --spark-only --spark-docs 200000 --spark-cores 1,2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from proctime import tree_cpu_seconds

from curate.order.knn import knn_graph
from curate.order.traverse import HAVE_NUMBA, symmetric_graph, traverse, traverse_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import synthetic_embeddings  # noqa: E402  (synthetic data lives with the tests)


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


def synthetic_docs(spark, n: int, dim: int, topics: int):
    """``n`` documents (id, empty text, clustered unit-vector embedding), generated in 8 partitions."""
    import helpers
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(helpers)  # executors cannot import tests/: ship it by value

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


def spark_session_passes(args, cores: int) -> dict:
    """One cold and ``--spark-passes`` warm passes of the whole stage in one session on ``cores`` cores:
    wall seconds and CPU seconds of every process (driver, JVM, Python workers) per pass."""
    from curate.core import StageContext, get_stage
    from curate.engine.spark import get_spark
    from curate.order.knn_order import knn_order

    master = f"local[{cores}]" if args.spark_master == "local" else f"local-cluster[{cores},1,{args.executor_mb}]"
    spark = get_spark(master, {"spark.sql.shuffle.partitions": "16"})
    params = get_stage("knn_order").validate({"k": args.k, "cluster_size": args.cluster_size})
    passes, stats = [], {}
    for _ in range(1 + args.spark_passes):
        with tempfile.TemporaryDirectory() as tmp:
            ctx = StageContext(spark, Path(tmp) / "stage", seed=0)
            cpu, wall = tree_cpu_seconds(), time.perf_counter()
            result = knn_order(synthetic_docs(spark, args.spark_docs, args.dim, args.topics), ctx, **params)
            result.kept.write.mode("overwrite").parquet(str(Path(tmp) / "out"))
            wall, after = time.perf_counter() - wall, tree_cpu_seconds()
            passes.append({"wall_s": round(wall, 2),
                           "cpu_s": {role: round(after[role] - cpu[role], 2) for role in after}})
            stats = {key: result.stats[key] for key in ("clusters", "largest_cluster", "mean_adjacent_similarity")}
    spark.stop()
    return {"cold": passes[0], "warm": passes[1:], **stats}


def summarize_session(session: dict) -> dict:
    """The median warm pass (by wall time), its spread and how many cores it kept busy."""
    warm = sorted(session["warm"], key=lambda p: p["wall_s"])
    median = warm[len(warm) // 2]
    cpu = sum(median["cpu_s"].values())
    return {"median_s": median["wall_s"], "min_s": warm[0]["wall_s"], "max_s": warm[-1]["wall_s"],
            "cold_s": session["cold"]["wall_s"], "median_cpu_s": median["cpu_s"],
            "busy_cores": round(cpu / median["wall_s"], 2)}


def bench_spark(args) -> dict:
    """The partitioned stage for each N in ``--spark-cores`` (local[N] or local-cluster), each in a
    fresh process confined (``sched_setaffinity``, inherited by the JVM and Python workers) to N cores."""
    out = {"spark_docs": args.spark_docs, "cluster_size": args.cluster_size, "pinned": args.pin,
           "master": args.spark_master}
    available = sorted(os.sched_getaffinity(0))
    for cores in args.spark_cores:
        if args.pin and cores > len(available):
            raise SystemExit(f"--spark-cores {cores}: only {len(available)} cores here (or pass --no-pin)")
        pin = (lambda cores=cores: os.sched_setaffinity(0, available[:cores])) if args.pin else None
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--spark-session", str(cores)],
                               stdout=subprocess.PIPE, text=True, check=True, preexec_fn=pin)
        session = json.loads(child.stdout.strip().splitlines()[-1])
        out[f"{cores} cores"] = {**summarize_session(session), "passes": session}
    base = out.get("1 cores")
    for cores in args.spark_cores:
        if base and cores > 1:
            speedup = base["median_s"] / out[f"{cores} cores"]["median_s"]
            out[f"{cores} cores"].update(speedup=round(speedup, 2), efficiency=round(speedup / cores, 2))
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
    parser.add_argument("--spark", action="store_true",
                        help="also time the partitioned Spark stage (see --spark-cores)")
    parser.add_argument("--spark-docs", type=int, default=200_000)
    parser.add_argument("--cluster-size", type=int, default=25_000)
    parser.add_argument("--spark-cores", type=lambda s: [int(c) for c in s.split(",")], default=[1, 2],
                        help="core counts N to time, each session in its own process confined to N cores")
    parser.add_argument("--spark-master", choices=["local", "local-cluster"], default="local",
                        help="local[N] (one JVM), or local-cluster[N,1,MB]: N separate one-core executor JVMs")
    parser.add_argument("--executor-mb", type=int, default=2048, help="executor memory for local-cluster")
    parser.add_argument("--spark-passes", type=int, default=5, help="warm passes per session after a cold one")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not confine each session to N cores (local[N] then shares every core)")
    parser.add_argument("--spark-only", action="store_true", help="skip the traversal comparison")
    parser.add_argument("--spark-session", type=int, help=argparse.SUPPRESS)  # internal: one child session
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.spark_session:
        print(json.dumps(spark_session_passes(args, args.spark_session)))
        return
    results = {"machine": platform.machine(), "python": platform.python_version()}
    if not args.spark_only:
        results.update(bench_traversal(args))
    if args.spark or args.spark_only:
        results["spark"] = bench_spark(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
