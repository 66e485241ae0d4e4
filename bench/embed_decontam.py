"""Benchmark: embedding throughput, FAISS search for the BETR sample, decontamination docs/s per core.

    .venv/bin/python bench/embed_decontam.py [--docs 300] [--sample 10000] [--device cpu]
    # GPU machine: embedding throughput only, on a copied Reuters sample and model directory
    python3 bench/embed_decontam.py --embed-only --corpus .gpu/reuters.jsonl --model .gpu/minilm-fp16 --docs 5000

Reads ../shared/data (never copied). Single process, so "per core" numbers are per process.
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
from proctime import timed

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read_jsonl(path: Path, limit: int) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


def main() -> None:
    from curate.targeted.embedding import embed_texts, load_embedder

    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--examples", type=int, default=1_000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--corpus", type=Path, default=DATA / "corpora" / "reuters21578.jsonl.gz")
    parser.add_argument("--model", default=None, help="model directory (default: the bundled package)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--embed-only", action="store_true", help="skip the FAISS and decontamination parts")
    args = parser.parse_args()
    docs = [r["text"] for r in read_jsonl(args.corpus, args.docs)]
    chars = sum(map(len, docs))
    results = {"docs": len(docs), "avg_chars": round(chars / len(docs))}

    embedder, load_s = timed(lambda: load_embedder(args.model, device=args.device))
    results["device"] = str(embedder.device)
    embed_texts(docs[:256], model=embedder, batch_size=args.batch_size)  # warm-up
    for mode in ("first", "mean"):
        _, secs = timed(lambda mode=mode: embed_texts(docs, model=embedder, batch_size=args.batch_size,
                                                      long_docs=mode))
        results[f"embed_{mode}_docs_per_s"] = round(len(docs) / secs, 1)
    results["model_load_s"] = round(load_s, 2)
    if args.embed_only:
        print(json.dumps(results, indent=2))
        return
    from curate.targeted.benchmark_similarity import rank_scores
    from curate.targeted.benchmarks import TEST_SPLITS, load_benchmarks, parse_specs
    from curate.targeted.ngrams import build_index, scan

    rng = np.random.default_rng(0)
    sample = rng.standard_normal((args.sample, 384)).astype(np.float32)
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    examples = sample[rng.choice(args.sample, args.examples, replace=False)] + 0.1
    _, secs = timed(lambda: rank_scores(sample, examples))
    results[f"betr_scores_{args.examples}x{args.sample}_s"] = round(secs, 2)

    targets = [str(DATA / "benchmarks" / "mmlu_test.jsonl"),
               {"path": str(DATA / "benchmarks" / "arc_easy.jsonl"), "split": "test"},
               {"path": str(DATA / "benchmarks" / "arc_challenge.jsonl"), "split": "test"}]
    examples_text = load_benchmarks(parse_specs(targets), TEST_SPLITS)
    (index, _), secs = timed(lambda: build_index((e.benchmark, e.text) for e in examples_text))
    results["decontam_index"] = {"examples": len(examples_text), "ngrams": int(len(index.hashes)),
                                 "build_s": round(secs, 2)}
    news = [r["text"] for r in read_jsonl(DATA / "corpora" / "reuters21578.jsonl.gz", 5000)]
    _, secs = timed(lambda: [scan(t, index) for t in news])
    results["decontam_docs_per_s_per_core"] = round(len(news) / secs)
    results["decontam_mb_per_s_per_core"] = round(sum(map(len, news)) / secs / 1e6, 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
