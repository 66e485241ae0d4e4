"""Stage ``benchmark_similarity``: Benchmark-Targeted Ranking (BETR; Mizrahi et al. 2025,
"Language Models Improve When Pretraining Data Matches Target Tasks").

Embed benchmark examples and a deterministic sample of the corpus in one space; every example
ranks the sample by inner product (FAISS); a document's score aggregates ``v(rank)`` over the
examples; the top ``positive_fraction`` of the sample are positives. A fastText classifier
trained on positives vs. (down-sampled) negatives then scores the whole corpus, and the
top tokens are kept (:func:`curate.quality.labelled_selection.select_by_trained_classifier`,
shared with perplexity correlation). Only the sample is embedded.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np

from curate.core import ID, TEXT, CurateError, StageContext, StageOutput, stage

RANK_VALUES = {
    "reciprocal": lambda ranks: 1.0 / ranks,
    "log": lambda ranks: 1.0 / np.log2(ranks + 1.0),
}
AGGREGATES = ("max", "mean")


def deterministic_sample(df, size: int, seed: int):
    """The ``size`` documents with the smallest seeded hash of their id (ties by id)."""
    from pyspark.sql import functions as F

    key = F.xxhash64(F.lit(int(seed)), F.col(ID))
    return df.select(ID, TEXT).withColumn("_sample_key", key).orderBy("_sample_key", ID).limit(size) \
        .drop("_sample_key")


def rank_scores(doc_vectors: np.ndarray, example_vectors: np.ndarray, *, rank_value: str = "reciprocal",
                aggregate: str = "max", top_k: int | None = None) -> tuple[np.ndarray, float]:
    """BETR document scores: each example ranks the documents by inner product (FAISS
    IndexFlatIP); score = max (or mean) over examples of ``v(rank)``, 0 outside an example's
    ``top_k``. Returns (scores, search seconds)."""
    import faiss

    n_docs = len(doc_vectors)
    k = n_docs if top_k is None else min(int(top_k), n_docs)
    scores = np.zeros(n_docs, dtype=np.float64)
    if n_docs == 0 or len(example_vectors) == 0:
        return scores, 0.0
    index = faiss.IndexFlatIP(doc_vectors.shape[1])
    index.add(np.ascontiguousarray(doc_vectors, dtype=np.float32))
    started = time.perf_counter()
    _, neighbours = index.search(np.ascontiguousarray(example_vectors, dtype=np.float32), k)
    seconds = time.perf_counter() - started
    values = np.broadcast_to(RANK_VALUES[rank_value](np.arange(1, k + 1, dtype=np.float64)), neighbours.shape)
    found = neighbours >= 0
    if aggregate == "max":
        np.maximum.at(scores, neighbours[found], values[found])
    else:
        np.add.at(scores, neighbours[found], values[found])
        scores /= len(example_vectors)
    return scores, seconds


def split_labels(ids: list[str], scores: np.ndarray, positive_fraction: float) -> np.ndarray:
    """True for the top ``positive_fraction`` of documents by score (ties broken by id)."""
    n_pos = max(1, math.ceil(positive_fraction * len(ids)))
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    labels = np.zeros(len(ids), dtype=bool)
    labels[order[:n_pos]] = True
    return labels


@stage("benchmark_similarity")
def benchmark_similarity(df, ctx: StageContext, *, targets: list, examples_per_benchmark: int | None = 1000,
                         sample_size: int = 10_000, positive_fraction: float = 0.1,
                         rank_value: str = "reciprocal", aggregate: str = "max", top_k: int | None = None,
                         model: str | None = None, long_docs: str = "first", batch_size: int = 64,
                         device: str | None = None, splits: list | None = None,
                         name: str = "benchmark_similarity", keep_tokens_fraction: float | None = 0.1,
                         classifier: dict | None = None) -> StageOutput:
    """Score documents by similarity to benchmark examples (BETR, Mizrahi et al. 2025) and keep the top tokens.

    ``targets``: benchmark files (train/dev splits only; see docs/benchmark_targeted.md),
    ``examples_per_benchmark`` from each. A seeded sample of ``sample_size`` documents is
    embedded and scored (``rank_value`` v(r) = 1/r or 1/log2(r+1), ``aggregate`` max or mean);
    its top ``positive_fraction`` trains a fastText classifier (``classifier``: extra trainer
    options) whose ``<name>.prob`` scores every document; ``keep_tokens_fraction`` selects
    (``null``: score only). Artifacts: sample scores, classifier, ``summary.json`` (= the stats).
    """
    from curate.quality.labelled_selection import classifier_options, select_by_trained_classifier
    from curate.targeted.benchmarks import TRAINING_SPLITS, balance, load_benchmarks, parse_specs
    from curate.targeted.embedding import embed_texts, ids_and_vectors, model_argument, with_embeddings

    _check(rank_value, aggregate, positive_fraction, sample_size, splits)
    classifier_options(classifier)  # fail before anything is embedded
    examples = balance(load_benchmarks(parse_specs(targets, ctx.resolve), tuple(splits or TRAINING_SPLITS)),
                       examples_per_benchmark, ctx.seed)
    model = model_argument(model, ctx.resolve)
    embed_options = dict(model=model, batch_size=batch_size, long_docs=long_docs, device=device)

    spread = deterministic_sample(df, sample_size, ctx.seed).repartition(
        ctx.spark.sparkContext.defaultParallelism, ID)  # embed the sample on every executor
    sample = with_embeddings(spread, **embed_options).collect()
    sample = sorted(sample, key=lambda r: r[ID])
    ids, doc_vectors = ids_and_vectors(sample)
    if len(ids) < 2:
        raise CurateError(f"benchmark_similarity: the corpus has {len(ids)} document(s); need at least 2")
    example_vectors = embed_texts([e.text for e in examples], **embed_options)
    scores, search_seconds = rank_scores(doc_vectors, example_vectors, rank_value=rank_value,
                                         aggregate=aggregate, top_k=top_k)
    labels = split_labels(ids, scores, positive_fraction)
    _write_sample(ctx, ids, scores, labels, examples)

    texts = [r[TEXT] for r in sample]
    stats = {"examples": {b: sum(e.benchmark == b for e in examples) for b in sorted({e.benchmark for e in examples})},
             "sample_docs": len(ids), "faiss_search_seconds": search_seconds}
    return select_by_trained_classifier(
        df, ctx, [t for t, y in zip(texts, labels) if y], [t for t, y in zip(texts, labels) if not y], name=name,
        keep_tokens_fraction=keep_tokens_fraction, seed=ctx.seed, classifier=classifier, stats=stats)


def _check(rank_value: str, aggregate: str, positive_fraction: float, sample_size: int, splits) -> None:
    from curate.targeted.benchmarks import TEST_SPLITS

    if rank_value not in RANK_VALUES:
        raise CurateError(f"benchmark_similarity: rank_value must be one of {', '.join(RANK_VALUES)}")
    if aggregate not in AGGREGATES:
        raise CurateError(f"benchmark_similarity: aggregate must be one of {', '.join(AGGREGATES)}")
    if not 0 < positive_fraction < 1:
        raise CurateError(f"benchmark_similarity: positive_fraction must be in (0, 1), got {positive_fraction}")
    if sample_size < 2:
        raise CurateError(f"benchmark_similarity: sample_size must be >= 2, got {sample_size}")
    if splits and set(splits) & set(TEST_SPLITS):
        raise CurateError("benchmark_similarity: targets must be train/dev splits; selecting on test "
                          "examples contaminates the evaluation")


def _write_sample(ctx: StageContext, ids, scores, labels, examples) -> None:
    """The sample's ids, scores and labels (Parquet) and the examples used (JSON)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({ID: pa.array(ids, pa.string()), "score": pa.array(scores, pa.float64()),
                      "positive": pa.array(labels, pa.bool_())})
    pq.write_table(table, ctx.artifact("sample_scores.parquet"))
    ctx.artifact("sample_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    ctx.artifact("examples.json").write_text(json.dumps(
        [{"benchmark": e.benchmark, "id": e.id, "split": e.split} for e in examples], indent=1) + "\n")
