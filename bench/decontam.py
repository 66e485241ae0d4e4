"""Benchmark: n-gram decontamination throughput — the reference ``scan``, the compiled
``scan_many`` and a plain Python 13-gram set loop, on the same documents in one process.

    .venv/bin/python bench/decontam.py [--docs 5000] [--old-docs 1000] [--contaminated 0.002] [--passes 3]

Documents are ~4 KB, packed from real text in ../shared/data (news, web text, Wikipedia,
reviews, abc science), with a test question of MMLU planted in ``--contaminated`` of them.
The index is every MMLU test question with its choices (13-grams, whole-example grams for
8–12-word questions). "Per core" is MB of UTF-8 text per CPU second of this single process
(``time.process_time``), so it is fair on a loaded machine; each figure is the median of
``--passes`` passes (the reference runs once, on the first ``--old-docs`` documents). The
plain loop is the one issue 19 names: lower-case ``\\w+`` words, a set of 13-gram strings,
``any()`` — it has no normalisation, short-example grams, counts or spans. ``scan_many`` is
checked to equal ``scan`` on every document the reference ran on.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

from dedup_corpus import read_corpus

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
SOURCES = ("reuters21578.jsonl.gz", "nltk_webtext.jsonl", "enwiki_gensim.jsonl", "nltk_movie_reviews.jsonl",
           "nltk_abc.jsonl", "wikitext2.jsonl")
DOC_CHARS = 4000


def web_like_documents(count: int, contaminated: float, questions: list[str], seed: int = 0) -> list[str]:
    """``count`` documents of about ``DOC_CHARS`` characters packed from real paragraphs; a
    random ``contaminated`` share get one benchmark question planted in the middle."""
    rng = random.Random(seed)
    paragraphs = [p.strip() for name in SOURCES for row in read_corpus(DATA, name)
                  for p in row["text"].split("\n\n") if len(p.strip()) > 40]
    rng.shuffle(paragraphs)
    docs, current, cursor = [], [], 0
    while len(docs) < count:
        current.append(paragraphs[cursor % len(paragraphs)])
        cursor += 1
        if sum(len(p) + 2 for p in current) >= DOC_CHARS:
            docs.append("\n\n".join(current)[:DOC_CHARS])
            current = []
    for i in rng.sample(range(count), round(contaminated * count)):
        middle = len(docs[i]) // 2
        docs[i] = docs[i][:middle] + " " + rng.choice(questions) + " " + docs[i][middle:]
    return docs


def plain_loop_index(texts: list[str], n: int = 13) -> set[str]:
    """The naive index: every run of ``n`` lower-case ``\\w+`` words, joined by spaces."""
    grams = set()
    for text in texts:
        tokens = re.findall(r"\w+", text.lower())
        grams.update(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return grams


def plain_loop(docs: list[str], grams: set[str], n: int = 13) -> list[bool]:
    flags = []
    for doc in docs:
        tokens = re.findall(r"\w+", doc.lower())
        flags.append(any(" ".join(tokens[i:i + n]) in grams for i in range(len(tokens) - n + 1)))
    return flags


def cpu_seconds(fn) -> tuple[object, float]:
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def median_rate(fn, megabytes: float, passes: int) -> tuple[object, float, list[float]]:
    """(result, median MB per CPU second, every pass's rate)."""
    rates, result = [], None
    for _ in range(passes):
        result, seconds = cpu_seconds(fn)
        rates.append(megabytes / seconds)
    return result, statistics.median(rates), rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--old-docs", type=int, default=1000, help="documents the reference scan runs on")
    parser.add_argument("--contaminated", type=float, default=0.002, help="share of documents with a question")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000, help="documents per scan_many call (Arrow batch)")
    args = parser.parse_args()

    from curate.targeted.benchmarks import TEST_SPLITS, load_benchmarks, parse_specs
    from curate.targeted.ngrams import build_index, scan, scan_many

    examples = load_benchmarks(parse_specs([str(DATA / "benchmarks" / "mmlu_test.jsonl")]), TEST_SPLITS)
    texts = [e.text for e in examples]
    (index, _), build_s = cpu_seconds(lambda: build_index((("mmlu", t) for t in texts), 13, 8))
    grams, plain_build_s = cpu_seconds(lambda: plain_loop_index(texts))
    print(f"index: {len(examples)} MMLU test examples, {len(index.hashes):,} grams of lengths {index.lengths}; "
          f"built in {build_s:.1f} CPU s (numba compile included on a cold cache); plain set {plain_build_s:.1f} s")

    docs = web_like_documents(args.docs, args.contaminated, texts)
    megabytes = sum(len(d.encode()) for d in docs) / 1e6
    old_docs = docs[:args.old_docs]
    old_mb = sum(len(d.encode()) for d in old_docs) / 1e6
    print(f"documents: {len(docs)} ({megabytes:.1f} MB, {sum(not d.isascii() for d in docs)} with non-ASCII text, "
          f"{round(args.contaminated * len(docs))} planted); reference on the first {len(old_docs)} ({old_mb:.1f} MB)")

    def new():
        return [o for i in range(0, len(docs), args.batch) for o in scan_many(docs[i:i + args.batch], index)]

    scan_many(docs[:10], index)  # load the compiled kernels and the word table once
    new_result, new_rate, new_rates = median_rate(new, megabytes, args.passes)
    plain_result, plain_rate, plain_rates = median_rate(lambda: plain_loop(docs, grams), megabytes, args.passes)
    old_result, old_rate, _ = median_rate(lambda: [scan(d, index) for d in old_docs], old_mb, 1)

    identical = new_result[:len(old_docs)] == old_result
    flagged = sum(bool(o.ngrams) for o in new_result)
    print(f"scan_many == scan on all {len(old_docs)} reference documents: {identical}; "
          f"flagged: scan_many {flagged}, plain loop {sum(plain_result)}")
    print(f"{'method':<34}{'MB/s per core':>15}  passes")
    for name, rate, rates in (("scan (reference, today)", old_rate, [old_rate]),
                              ("plain Python 13-gram set loop", plain_rate, plain_rates),
                              ("scan_many (compiled prefilter)", new_rate, new_rates)):
        print(f"{name:<34}{rate:>15.1f}  {' '.join(f'{r:.1f}' for r in rates)}")
    print(f"scan_many / plain loop: {new_rate / plain_rate:.1f}x; scan_many / scan: {new_rate / old_rate:.0f}x")
    if not identical:
        sys.exit("scan_many differs from scan")


if __name__ == "__main__":
    main()
