"""DSIR: data selection by importance resampling over hashed n-grams (Xie et al. 2023).

Each text becomes a bag of hashed 1- to ``ngram``-grams (lower-cased word/punctuation
tokens, as in the paper). Two multinomial models over the ``num_buckets`` hash buckets are
fitted, one on target texts and one on the raw corpus, with additive smoothing; a
document's importance log-weight is Σ_ngrams [log p_target(bucket) − log p_raw(bucket)].
Resampling (Gumbel top-k) is done by ``select_budget``. Pure NumPy, plus one Spark helper
that sums bucket counts per partition.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]+")  # word / punctuation runs (like NLTK's WordPunctTokenizer)


def tokenize(text: str | None) -> list[str]:
    return _TOKEN.findall(text.lower()) if text else []


@dataclass(frozen=True)
class HashedNgrams:
    """Hashed n-gram features: crc32 of each space-joined n-gram, modulo ``num_buckets``."""

    num_buckets: int = 10_000
    ngram: int = 2

    def bucket_ids(self, text: str | None) -> np.ndarray:
        tokens = tokenize(text)
        grams = [" ".join(tokens[i:i + n]) for n in range(1, self.ngram + 1) for i in range(len(tokens) - n + 1)]
        hashes = np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.int64, count=len(grams))
        return hashes % self.num_buckets

    def counts(self, texts: Iterable[str | None]) -> np.ndarray:
        """Summed bucket counts over ``texts`` (int64 vector of length ``num_buckets``)."""
        total = np.zeros(self.num_buckets, dtype=np.int64)
        for text in texts:
            total += np.bincount(self.bucket_ids(text), minlength=self.num_buckets)
        return total

    def log_weights(self, texts: Sequence[str | None], log_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(importance log-weight, number of n-grams) per text."""
        weights = np.zeros(len(texts), dtype=np.float64)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = self.bucket_ids(text)
            weights[i] = float(log_ratio[ids].sum())
            lengths[i] = len(ids)
        return weights, lengths


def log_ratio(target_counts: np.ndarray, raw_counts: np.ndarray, *, smoothing: float = 1.0) -> np.ndarray:
    """log p_target − log p_raw per bucket, both multinomials with additive ``smoothing``."""
    def log_probs(counts: np.ndarray) -> np.ndarray:
        smoothed = counts.astype(np.float64) + smoothing
        return np.log(smoothed) - np.log(smoothed.sum())

    return log_probs(target_counts) - log_probs(raw_counts)


def spark_counts(df, features: HashedNgrams) -> np.ndarray:
    """Bucket counts of ``df.text`` summed in Spark: one vector per partition reaches the
    driver (partitions × num_buckets numbers, independent of the corpus size)."""
    import pyarrow as pa

    def per_partition(batches):
        total = np.zeros(features.num_buckets, dtype=np.int64)
        for batch in batches:
            total += features.counts(batch.column(0).to_pylist())
        yield pa.RecordBatch.from_arrays([pa.array([total.tolist()], pa.list_(pa.int64()))], names=["counts"])

    rows = df.select("text").mapInArrow(per_partition, "counts array<long>").collect()
    total = np.zeros(features.num_buckets, dtype=np.int64)
    for row in rows:
        total += np.asarray(row["counts"], dtype=np.int64)
    return total
