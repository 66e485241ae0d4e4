"""Benchmark the ``semantic_dedup`` stage (SemDeDup): wall time of the whole stage on N documents,
and the recall of its k-means partitioning against an exact all-pairs cosine search on a sample.

Corpus: real text from ../shared/data (bench/dedup_corpus.py's ``build``: Reuters, ABC, movie
reviews, webtext, plus word-edited near-copies of a fraction of them). Embeddings:

* ``lsa`` (default): tf-idf of the 50k most frequent words (sublinear tf) → truncated SVD
  (seeded), L2-normalised — cheap enough for 100k documents on a 2-core CPU;
* ``minilm``: the ``embed`` stage's all-MiniLM-L6-v2 (slow on a CPU: use it at 10k documents).

The stage runs in-process on ``local[N]`` with the embeddings as a column (the embed stage's
cost is benchmarked elsewhere); timed: the stage call plus writing kept and rejected Parquet.
Recall: every pair with cosine ≥ threshold among a hash sample of ``--sample`` documents, found
by exact float64 matrix products; a pair counts as found when the stage put both documents in
the same cluster (inside a cluster the search is exact, so those are exactly the pairs it sees).

    .venv/bin/python bench/semantic_dedup.py --docs 100000 --sample 10000
    .venv/bin/python bench/semantic_dedup.py --docs 10000 --sample 10000 --embedder minilm
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from proctime import tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "bench"))
from dedup_corpus import build  # noqa: E402


def corpus(n_docs: int, seed: int) -> list[dict]:
    """About ``n_docs`` real documents: sources plus 4 near-copies of 80 % of them (cut to n_docs by id hash)."""
    docs = build(DATA, n_sources=max(1, round(n_docs / 4.2)), copies_per_source=4, copy_fraction=0.8,
                 max_rate=0.1, seed=seed)
    docs.sort(key=lambda d: (zlib.crc32(d["id"].encode()), d["id"]))
    return sorted(docs[:n_docs], key=lambda d: d["id"])


def embed_lsa(texts: list[str], dim: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(max_features=50_000, min_df=2, sublinear_tf=True, dtype=np.float32).fit_transform(texts)
    x = TruncatedSVD(dim, algorithm="randomized", n_iter=4, random_state=seed).fit_transform(tfidf)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def embed_minilm(texts: list[str]) -> np.ndarray:
    from curate.targeted.embedding import embed_texts

    return embed_texts(texts, batch_size=64)


def exact_pairs(x: np.ndarray, threshold: float, block: int = 2048) -> set[tuple[int, int]]:
    """All pairs i < j with float64 cosine ≥ threshold (blocked full matrix products)."""
    x = x.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    pairs = set()
    for lo in range(0, len(x), block):
        sims = x[lo:lo + block] @ x.T
        rows, cols = np.nonzero(sims >= threshold)
        pairs.update((lo + r, c) for r, c in zip(rows.tolist(), cols.tolist()) if lo + r < c)
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=10_000)
    ap.add_argument("--embedder", choices=("lsa", "minilm"), default="lsa")
    ap.add_argument("--dim", type=int, default=256, help="LSA dimensions")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--cluster-size", type=int, default=5_000)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "_data")
    args = ap.parse_args()

    from curate.core import StageContext
    from curate.dedup.semantic_dedup import semantic_dedup
    from curate.engine.spark import get_spark

    work = args.work / f"semdedup-{args.embedder}-{args.docs}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    docs = corpus(args.docs, args.seed)
    texts = [d["text"] for d in docs]
    t_corpus = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = embed_lsa(texts, args.dim, args.seed) if args.embedder == "lsa" else embed_minilm(texts)
    t_embed = time.perf_counter() - t0
    print(f"corpus {t_corpus:.1f} s, embeddings {t_embed:.1f} s", flush=True)

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [d["id"] for d in docs], "text": texts,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
                      .cast(pa.list_(pa.float32()))})
    pq.write_table(table, work / "input.parquet")

    spark = get_spark(args.master, {"spark.sql.shuffle.partitions": "8"})
    df = spark.read.parquet(str(work / "input.parquet"))
    ctx = StageContext(spark, work / "stage", seed=args.seed)
    load = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), tree_cpu_seconds()
    out = semantic_dedup(df, ctx, threshold=args.threshold, cluster_size=args.cluster_size)
    out.kept.write.mode("overwrite").parquet(str(work / "kept"))
    out.rejected.write.mode("overwrite").parquet(str(work / "rejected"))
    t_stage = time.perf_counter() - t0
    cpu = sum(tree_cpu_seconds().values()) - sum(cpu0.values())

    clusters = {r["id"]: r["cluster"] for r in
                spark.read.parquet(str(ctx.artifact("semantic_clusters"))).select("id", "cluster").collect()}
    ids = [d["id"] for d in docs]
    sample = sorted(range(len(ids)), key=lambda i: (zlib.crc32(f"{args.seed}:{ids[i]}".encode()), ids[i]))
    sample = sorted(sample[:args.sample])
    t0 = time.perf_counter()
    truth = exact_pairs(x[sample], args.threshold)
    t_exact = time.perf_counter() - t0
    found = sum(clusters[ids[sample[a]]] == clusters[ids[sample[b]]] for a, b in truth)
    result = {
        "docs": len(docs), "embedder": args.embedder, "dim": int(x.shape[1]), "threshold": args.threshold,
        "master": args.master, "load_avg_1m_at_start": round(load, 2),
        "corpus_s": round(t_corpus, 1), "embed_s": round(t_embed, 1), "stage_s": round(t_stage, 1),
        "stage_docs_per_s": round(len(docs) / t_stage, 1), "stage_cpu_s": round(cpu, 1),
        "stats": out.stats, "rejected": spark.read.parquet(str(work / "rejected")).count(),
        "sample": len(sample), "exact_pairs_in_sample": len(truth), "found_pairs_in_sample": int(found),
        "pair_recall": round(found / len(truth), 4) if truth else None, "exact_all_pairs_s": round(t_exact, 1),
    }
    print(json.dumps(result, indent=2, default=str))
    spark.stop()


if __name__ == "__main__":
    main()
