"""Benchmark: CPU embedding throughput per core — curate's ``embed`` path (all-MiniLM-L6-v2), plain
sentence-transformers ``encode`` on the same model, and a static Model2Vec model distilled from it
(Tulkens & van Dongen 2024; ``curate embed distill``) — in one process, one core, same documents;
then the static model's quality against MiniLM on a labelled retrieval task.

    .venv/bin/python bench/embed_speed.py --static /tmp/minilm-static [--docs 4000] [--slow-docs 64] \
        [--passes 3] [--per-topic 40]

Build the static model first: ``.venv/bin/curate embed distill -o /tmp/minilm-static``.

Speed: ~4 KB documents packed from real text in ../shared/data (``bench/decontam.py``'s
``web_like_documents``). One core: ``torch.set_num_threads(1)``, tokenizers without its thread pool
(``RAYON_NUM_THREADS=1``). "docs/s per core" is documents per CPU second of this process
(``time.process_time``), fair on a loaded machine; wall docs/s is printed beside it. Each figure is
the median of passes 2..``--passes`` (the first pass is shown apart: the static model's memo of
word pieces per chunk starts empty, as in a fresh Spark worker); the transformer paths embed the
first ``--slow-docs`` documents, the static model all ``--docs``.

Quality: Reuters-21578 documents with exactly one topic, ``--per-topic`` from each of the ten
largest topics. For each document, its 10 nearest neighbours by cosine (itself excluded):
same-topic precision (what ``knn_order`` relies on: neighbours of the same label end up adjacent)
for MiniLM and for the static model, and the overlap of the two models' neighbour sets.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter

import numpy as np
from one_core import DATA  # pins the thread pools before tokenizers or numba starts one

NEIGHBOURS = 10


def timed_passes(fn, docs: list[str], passes: int) -> tuple[list[float], list[float]]:
    """(docs per CPU second, docs per wall second) of each pass."""
    per_cpu, per_wall = [], []
    for _ in range(passes):
        cpu, wall = time.process_time(), time.perf_counter()
        fn(docs)
        per_cpu.append(len(docs) / (time.process_time() - cpu))
        per_wall.append(len(docs) / (time.perf_counter() - wall))
    return per_cpu, per_wall


def speed(static_dir: str, docs: list[str], slow_docs: int, passes: int) -> dict[str, float]:
    import dataclasses

    import torch
    from model2vec import StaticModel

    from curate.targeted.embedding import embed_texts, load_embedder, resolve_model_dir

    torch.set_num_threads(1)
    minilm = load_embedder(None, "cpu")
    static = load_embedder(static_dir)
    tokenizer_only = dataclasses.replace(static, word_pieces=None)  # every document through the tokenizer
    reference = StaticModel.from_pretrained(static_dir)
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(resolve_model_dir(None)), device="cpu", local_files_only=True)
    slow = docs[:slow_docs]
    embed_texts(["compile the pooling kernels"], model=tokenizer_only)  # numba (cached on disk), before timing
    embed_texts(["compile the pooling kernels"], model=static)
    runs = {
        "embed path, MiniLM (long_docs: first)": (lambda d: embed_texts(d, model=minilm, batch_size=64), slow),
        "sentence-transformers encode, MiniLM": (
            lambda d: plain.encode(d, batch_size=64, normalize_embeddings=True, show_progress_bar=False), slow),
        "static, tokenizer on every document (512 tokens)": (lambda d: embed_texts(d, model=tokenizer_only), docs),
        "embed path, static (first 512 tokens)": (lambda d: embed_texts(d, model=static), docs),
        "embed path, static (long_docs: mean, all tokens)": (
            lambda d: embed_texts(d, model=static, long_docs="mean"), docs),
        "model2vec StaticModel.encode (512 tokens)": (
            lambda d: reference.encode(d, max_length=512, use_multiprocessing=False), docs),
    }
    results = {}
    print(f"{'docs/s per core (CPU-s), one process':<50}{'docs':>6}{'1st pass':>10}{'later (median)':>16}"
          f"{'wall, later':>13}")
    for name, (fn, subset) in runs.items():
        per_cpu, per_wall = timed_passes(fn, subset, passes)
        results[name] = statistics.median(per_cpu[1:])
        print(f"{name:<50}{len(subset):>6}{per_cpu[0]:>10.1f}{results[name]:>16.1f}"
              f"{statistics.median(per_wall[1:]):>13.1f}", flush=True)
    base = results["embed path, MiniLM (long_docs: first)"]
    fast = results["embed path, static (first 512 tokens)"]
    print(f"static / embed MiniLM: {fast / base:.0f}x per core; static / sentence-transformers: "
          f"{fast / results['sentence-transformers encode, MiniLM']:.0f}x")
    return results


def labelled_reuters(per_topic: int) -> tuple[list[str], list[str]]:
    """Reuters documents with exactly one topic: ``per_topic`` of each of the ten largest topics."""
    import gzip
    import json

    rows = []
    with gzip.open(DATA / "corpora" / "reuters21578.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            topics = record["meta"].get("topics") or []
            if len(topics) == 1 and len(record["text"]) > 200:
                rows.append((topics[0], record["text"]))
    top = [t for t, _ in Counter(t for t, _ in rows).most_common(10)]
    chosen = [(t, text) for t in top for text in [x for s, x in rows if s == t][:per_topic]]
    return [text for _, text in chosen], [t for t, _ in chosen]


def neighbours(vectors: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def quality(static_dir: str, per_topic: int) -> None:
    from curate.targeted.embedding import embed_texts

    texts, labels = labelled_reuters(per_topic)
    labels = np.asarray(labels)
    minilm_nn = neighbours(embed_texts(texts, batch_size=64))
    static_nn = neighbours(embed_texts(texts, model=static_dir))

    def precision(nn):
        return float((labels[nn] == labels[:, None]).mean())

    overlap = np.mean([len(set(a) & set(b)) / NEIGHBOURS for a, b in zip(minilm_nn, static_nn)])
    chance = sum((c / len(labels)) ** 2 for c in Counter(labels).values())
    p_minilm, p_static = precision(minilm_nn), precision(static_nn)
    print(f"Reuters, {len(texts)} docs, 10 topics: same-topic precision@{NEIGHBOURS} MiniLM {p_minilm:.3f}, "
          f"static {p_static:.3f} (ratio {p_static / p_minilm:.3f}; chance {chance:.3f}); "
          f"neighbour overlap static vs MiniLM {overlap:.3f}")


def main() -> None:
    from decontam import web_like_documents

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--static", required=True, help="static model directory (curate embed distill)")
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--slow-docs", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3, help=">= 2")
    parser.add_argument("--per-topic", type=int, default=40)
    args = parser.parse_args()
    docs = web_like_documents(args.docs, 0.0, [])
    print(f"{len(docs)} documents, mean {sum(map(len, docs)) / len(docs):.0f} chars; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    speed(args.static, docs, args.slow_docs, args.passes)
    quality(args.static, args.per_topic)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
